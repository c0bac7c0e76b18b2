import json

import h5py
import pytest
import torch

import lewm_agent.training.train as train_mod
from lewm_agent.checkpoint import load_checkpoint
from lewm_agent.config import default_sigreg_weight
from lewm_agent.training.train import TrainConfig, train


def cfg(data, out, **kw):
    base = dict(preset="tiny", steps=60, batch_size=32, lr=3e-3, warmup_steps=10, eval_interval=30,
                ckpt_interval=20, log_interval=10, val_windows=64, num_projections=128, progress=False)
    return TrainConfig(data=str(data), out=str(out), **{**base, **kw})


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_prediction_loss_falls_and_embeddings_do_not_collapse(trained_checkpoint):
    trained = trained_checkpoint
    log = read_log(trained)
    pred = [r["train/pred_loss"] for r in log if "train/pred_loss" in r]
    assert pred[-1] < 0.5 * pred[0]
    val = [r for r in log if "val/pred_loss" in r][-1]
    assert val["val/emb_std"] > 0.25  # without SIGReg the same run falls below 0.1 (next test)
    assert val["val/emb_rank"] > 2    # the dot world is 2-D; a collapsed model sits at ~1
    model, meta = load_checkpoint(trained)
    assert meta.env_id == "test/Dot-v0" and meta.model.action_dim == 2
    card = (trained / "README.md").read_text()
    front, body = card.split("\n---\n\n", 1)  # YAML front matter, then the card
    assert front.startswith("---\nlicense: mit\nlibrary_name: lewm_agent") and "- success_rate" in front
    assert body.startswith("# LeWM checkpoint")


def test_without_sigreg_the_same_run_collapses(dot_dataset, tmp_path):
    out = tmp_path / "no_sigreg"
    train(cfg(dot_dataset, out, steps=200, ckpt_interval=100, eval_interval=100, sigreg_weight=0.0))
    val = [r for r in read_log(out) if "val/emb_std" in r][-1]
    assert val["val/emb_std"] < 0.1  # what the SIGReg run above keeps above 0.25


def test_resume_after_interruption_continues_from_saved_step(dot_dataset, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train(cfg(dot_dataset, straight))

    real_sigreg, calls = train_mod.sigreg, []

    def dying_sigreg(*args, **kw):  # the process "dies" during step 31 (checkpoints at 20, 40, ...)
        calls.append(1)
        if len(calls) == 31 + 1:     # +1: the validation pass at step 30
            raise KeyboardInterrupt
        return real_sigreg(*args, **kw)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(train_mod, "sigreg", dying_sigreg)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(dot_dataset, resumed))
    monkeypatch.setattr(train_mod, "sigreg", real_sigreg)
    assert max(r["step"] for r in read_log(resumed)) == 30  # the log ran ahead of the checkpoint
    train(cfg(dot_dataset, resumed))

    steps = [r["step"] for r in read_log(resumed) if "train/loss" in r]
    assert steps == list(range(10, 61, 10))  # no step logged twice after the resume
    a, _ = load_checkpoint(straight)
    b, _ = load_checkpoint(resumed)
    for k, v in a.state_dict().items():  # same batches, same RNG: the same weights
        torch.testing.assert_close(v, b.state_dict()[k], atol=1e-5, rtol=1e-4)


def test_resume_refuses_changed_settings(dot_dataset, tmp_path):
    train(cfg(dot_dataset, tmp_path / "r", steps=20))
    with pytest.raises(ValueError, match="different settings"):
        train(cfg(dot_dataset, tmp_path / "r", steps=40, lr=1e-2))
    train(cfg(dot_dataset, tmp_path / "r", steps=30))  # more steps is fine


def test_default_lambda_is_recorded_and_the_paper_preset_gets_the_reference_scale(dot_dataset, tmp_path):
    # The reference averages the prediction loss over D; ours sums, so its 0.09 is 0.09 * D here.
    assert default_sigreg_weight("paper", 192) == pytest.approx(17.28)
    assert default_sigreg_weight("tiny", 32) == pytest.approx(0.09)
    train(cfg(dot_dataset, tmp_path / "d", steps=20))
    recorded = json.loads((tmp_path / "d" / "config.json").read_text())["training"]["train_config"]
    assert recorded["sigreg_weight"] == pytest.approx(0.09)
    train(cfg(dot_dataset, tmp_path / "d", steps=30))  # resuming with the default again is not a change
    with pytest.raises(ValueError, match="sigreg_weight"):
        cfg(dot_dataset, tmp_path, sigreg_weight=-1.0)


def test_bad_data_is_reported(dot_dataset, tmp_path):
    short = tmp_path / "short.h5"
    from conftest import write_dot_dataset
    write_dot_dataset(short, episodes=3, length=10)
    with pytest.raises(ValueError, match="no training window of 16 env steps"):
        train(cfg(short, tmp_path / "o"))
    broken = tmp_path / "broken.h5"
    broken.write_bytes(dot_dataset.read_bytes())
    with h5py.File(broken, "r+") as f:
        del f["observation"]
    with pytest.raises(ValueError, match="observation"):
        train(cfg(broken, tmp_path / "o2"))
    with pytest.raises(ValueError, match="preset"):
        cfg(dot_dataset, tmp_path, preset="huge")


def test_batchnorm_statistics_are_recalibrated_to_exact_averages(dot_dataset):
    import numpy as np

    from lewm_agent import WorldModel, preset
    from lewm_agent.data.rollouts import RolloutFile
    from lewm_agent.data.windows import MemoryWindows, WindowSpec
    with RolloutFile(dot_dataset) as rf:
        pixels, actions = rf.column("pixels")[:rf.num_frames], rf.column("action")[:rf.num_frames]
    model_cfg = preset("tiny")
    spec = WindowSpec(model_cfg.history, model_cfg.frameskip, 8, 0)
    starts = np.arange(0, 20)
    source = MemoryWindows(pixels, actions.astype(np.float32), starts, spec)
    model = WorldModel(model_cfg)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms
    seen = {id(m): [] for m in norms}
    for m in norms:
        m.running_mean.fill_(100.0)  # stale statistics
        m.register_forward_hook(lambda mod, inp, out: seen[id(mod)].append(inp[0].detach()))
    train_mod.recalibrate_batchnorm(model, source, cfg(dot_dataset, "unused", bn_batches=3), torch.device("cpu"))
    for m in norms:
        assert len(seen[id(m)]) == 3 and m.momentum == 0.1  # momentum restored for training
        means = torch.stack([x.mean(0) for x in seen[id(m)]])
        torch.testing.assert_close(m.running_mean, means.mean(0), atol=1e-5, rtol=1e-5)


def test_a_short_run_fits_its_warmup_and_intervals_and_says_so(dot_dataset, tmp_path, caplog):
    short = cfg(dot_dataset, tmp_path / "short", steps=30, warmup_steps=500, eval_interval=500, ckpt_interval=15)
    assert (short.run_warmup, short.run_eval_interval, short.run_ckpt_interval) == (6, 10, 15)
    assert short.warmup_steps == 500  # stored as given: a resume with another --steps is the same run
    assert train_mod.lr_at(6, short) == short.lr  # the peak is reached
    with caplog.at_level("INFO", logger="lewm_agent.training.train"):
        train(short)
    notes = [r.getMessage() for r in caplog.records if "fitted to the run's length" in r.getMessage()]
    assert notes == ["fitted to the run's length: warmup_steps 500 -> 6 (longer than the run, so a fifth of "
                     "--steps 30)",
                     "fitted to the run's length: eval_interval 500 -> 10 (over half, so a third of --steps 30)"]
    assert [r["step"] for r in read_log(tmp_path / "short") if "val/pred_loss" in r] == [10, 20, 30]


def test_a_trained_checkpoint_plans_with_its_envs_shipped_settings(two_room_ck, trained_checkpoint):
    from lewm_agent.checkpoint import read_meta, shipped_checkpoints, shipped_planner
    from lewm_agent.config import PlannerConfig
    shipped = read_meta(shipped_checkpoints()["two_room"]).planner
    assert shipped != PlannerConfig()  # the tuned settings differ from the untuned defaults
    assert read_meta(two_room_ck).planner == shipped
    assert PlannerConfig.from_dict(shipped_planner("lewm/TwoRoom-v0")) == shipped
    assert read_meta(trained_checkpoint).planner == PlannerConfig()  # an env nothing is shipped for
