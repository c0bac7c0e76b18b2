"""Open-loop prediction in training (--open-loop-steps): what the predictor is scored on when it
is fed its own outputs, as the planner feeds it."""
import json

import pytest
import torch

from lewm_agent.checkpoint import load_checkpoint
from lewm_agent.config import preset
from lewm_agent.model.world_model import WorldModel
from lewm_agent.training.train import TrainConfig, train


def cfg(data, out, **kw):
    base = dict(preset="tiny", steps=40, batch_size=32, lr=3e-3, warmup_steps=10, eval_interval=20,
                ckpt_interval=20, log_interval=10, val_windows=64, num_projections=128, progress=False)
    return TrainConfig(data=str(data), out=str(out), **{**base, **kw})


def test_imagined_frames_are_fed_back_not_encoded():
    torch.manual_seed(0)
    model = WorldModel(preset("tiny", action_dim=2)).eval()
    h = model.cfg.history
    emb = torch.randn(2, h + 2, model.cfg.latent_dim)
    actions = torch.randn(2, h + 1, model.cfg.action_block_dim)
    with torch.no_grad():
        imagined = model.imagine_window(emb, actions, 2)
        first = model.predict(emb[:, :h], actions[:, :h])[:, -1]  # from encoded frames only
        fed = torch.cat([emb[:, 1:h], imagined[:, :1]], 1)      # the window ending at the first imagined frame
        second = model.predict(fed, actions[:, 1:h + 1])[:, -1]
        teacher = model.predict(emb[:, 1:h + 1], actions[:, 1:h + 1])[:, -1]
    torch.testing.assert_close(imagined[:, 0], first, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(imagined[:, 1], second, atol=1e-5, rtol=1e-4)
    assert (imagined[:, 1] - teacher).abs().max() > 1e-3  # teacher forcing would have used frame h's encoding
    with pytest.raises(ValueError, match="open_loop: 3 steps .* at least 6 frames, got 5"):
        model.imagine_window(emb, actions, 3)


def test_training_with_open_loop_steps_logs_and_records_it(dot_dataset, tmp_path):
    out = tmp_path / "ol"
    train(cfg(dot_dataset, out, open_loop_steps=2))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in log if "train/open_loop_loss" in r]
    val_rows = [r for r in log if "val/open_loop_loss" in r]
    assert len(train_rows) == 4 and len(val_rows) == 2
    assert all(r["train/loss"] > r["train/pred_loss"] + r["train/open_loop_loss"] - 1e-3 for r in train_rows)
    _, meta = load_checkpoint(out)
    assert meta.training["train_config"]["open_loop_steps"] == 2
    with pytest.raises(ValueError, match="different settings"):
        train(cfg(dot_dataset, out, steps=60, open_loop_steps=3))


def test_windows_too_short_for_the_open_loop_steps_are_refused(dot_dataset, tmp_path):
    with pytest.raises(ValueError, match="sequence_frames: 2 open-loop steps after history=3 frames need "
                                         "windows of at least 5 frames, got 4"):
        train(cfg(dot_dataset, tmp_path / "short", open_loop_steps=2, sequence_frames=4))
    with pytest.raises(ValueError, match="open_loop_steps"):
        cfg(dot_dataset, tmp_path, open_loop_steps=-1)
