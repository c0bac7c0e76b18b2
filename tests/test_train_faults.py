"""The trainer under faults: torn logs, failed writes, kills at random moments, bad action rows."""
import json
import os
import subprocess
import sys
from dataclasses import replace

import h5py
import numpy as np
import pytest

from lewm_agent.checkpoint import load_checkpoint
from lewm_agent.data.windows import check_actions
from lewm_agent.lock import LOCK_FILE
from lewm_agent.training.train import TrainConfig, train


def small(data, out, **kw):
    return TrainConfig(data=str(data), out=str(out), preset="tiny", steps=20, batch_size=16, lr=3e-3,
                       warmup_steps=5, eval_interval=10, ckpt_interval=10, log_interval=5, val_windows=32,
                       num_projections=32, progress=False, **kw)


def test_resume_drops_a_torn_last_log_line(dot_dataset, tmp_path):
    out = tmp_path / "run"
    train(small(dot_dataset, out))
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 21, "train/lo')  # killed mid-write
    train(replace(small(dot_dataset, out), steps=30))  # resumes from step 20
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 30 and not (out / LOCK_FILE).exists()


def test_non_finite_or_absurd_actions_are_refused_by_row(dot_dataset, tmp_path):
    ends = np.array([3, 6])
    ok = np.array([[0.1, 0.2], [0.3, -0.4], [np.nan, np.nan], [1, 1], [-1, 0], [np.nan, np.nan]])
    check_actions(ok, ends, [-1, -1], [1, 1])  # NaN only on each episode's last row: the format
    with pytest.raises(ValueError, match=r"action: row 1 is \[0.3, inf\]"):
        check_actions(np.array([[0.1, 0.2], [0.3, np.inf], [np.nan, np.nan]]), np.array([3]), [-1, -1], [1, 1])
    with pytest.raises(ValueError, match="row 0 .* over 100x the action bounds"):
        check_actions(np.array([[1e30, 0.0], [np.nan, np.nan]]), np.array([2]), [-1, -1], [1, 1])
    bad = tmp_path / "bad.h5"
    bad.write_bytes(dot_dataset.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["action"][5] = [np.nan, 0.0]
    with pytest.raises(ValueError, match="action: row 5"):
        train(small(bad, tmp_path / "o"))


def test_a_failure_between_any_two_file_writes_leaves_a_loadable_folder_that_resumes(dot_dataset, tmp_path,
                                                                                    monkeypatch):
    """Every rename the trainer makes is a step from one state to the next; fail each one in turn."""
    real_replace = os.replace
    calls = []
    monkeypatch.setattr(os, "replace", lambda s, d: (calls.append(d), real_replace(s, d))[1])
    train(replace(small(dot_dataset, tmp_path / "count"), steps=10, ckpt_interval=5, eval_interval=5))
    n_writes = len(calls)
    assert n_writes >= 6  # state, config staging, weights, config, card... at two checkpoints
    for k in range(n_writes):
        out, seen = tmp_path / f"fail{k}", []

        def failing(src, dst):
            seen.append(dst)  # noqa: B023  (this iteration's list: the patch is undone before the next)
            if len(seen) == k + 1:  # noqa: B023
                raise OSError(28, "injected: no space left on device")
            real_replace(src, dst)
        monkeypatch.setattr(os, "replace", failing)
        cfg = replace(small(dot_dataset, out), steps=10, ckpt_interval=5, eval_interval=5)
        with pytest.raises(OSError, match="injected"):
            train(cfg)
        monkeypatch.setattr(os, "replace", real_replace)
        try:
            load_checkpoint(out)
        except FileNotFoundError as e:  # only before the first complete checkpoint
            assert "no checkpoint yet" in str(e) and k < n_writes // 2
        train(cfg)  # the same command resumes (or restarts) and finishes
        model, meta = load_checkpoint(out)
        assert meta.training["steps"] == 10 and not (out / LOCK_FILE).exists()


@pytest.mark.parametrize("delay", [2.0, 4.0, 6.5])
def test_a_trainer_killed_at_a_random_moment_leaves_a_loadable_folder(dot_dataset, tmp_path, delay):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "lewm_agent", "train", "--data", str(dot_dataset), "--out", str(out), "--preset",
            "tiny", "--steps", "400", "--batch-size", "16", "--ckpt-interval", "7", "--eval-interval", "7",
            "--log-interval", "3", "--val-windows", "32", "--num-projections", "32", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
    try:
        load_checkpoint(out)
    except FileNotFoundError as e:
        # killed before its first checkpoint (or before making the folder): said so, not a traceback
        assert "no checkpoint yet" in str(e) or "no such folder" in str(e)
    args[args.index("--steps") + 1] = "20"  # resume to a short end
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(out)[1].training["steps"] >= 20


def _nan_loss_from(monkeypatch, first: int, last: int = 10**9):
    """pred_loss turns NaN on calls first..last (one call per training step; validation calls it too)."""
    import lewm_agent.training.train as train_mod
    calls, real = [0], train_mod.pred_loss

    def poisoned(pred, target):
        calls[0] += 1
        out = real(pred, target)
        return out * float("nan") if first <= calls[0] <= last and pred.requires_grad else out
    monkeypatch.setattr(train_mod, "pred_loss", poisoned)


def test_a_diverging_run_stops_in_one_line_and_keeps_its_last_checkpoint(dot_dataset, tmp_path, monkeypatch,
                                                                         capsys):
    from lewm_agent.cli import main
    _nan_loss_from(monkeypatch, first=13)  # steps 1-12 fine: the step-10 checkpoint is written
    out = tmp_path / "run"
    args = ["train", "--data", str(dot_dataset), "--out", str(out), "--preset", "tiny", "--steps", "20",
            "--batch-size", "16", "--warmup-steps", "5", "--eval-interval", "10", "--ckpt-interval", "10",
            "--val-windows", "32", "--num-projections", "32", "--max-bad-steps", "2", "--precision", "fp32",
            "--no-progress"]  # fp32: an "auto" measurement would call pred_loss too
    assert main(args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lewm train")]
    import re
    found = re.search(r"stopped: step (\d+): non-finite gradient norm \(3 such steps, more than --max-bad-steps 2\)",
                      err[0])
    assert len(err) == 1 and found and 10 < int(found.group(1)) <= 15
    assert f"the last good checkpoint is {out} (step 10)" in err[0]
    model, meta = load_checkpoint(out)
    assert meta.training["steps"] == 10 and all(bool(p.isfinite().all()) for p in model.parameters())


def test_no_checkpoint_yet_is_said_and_a_few_bad_batches_can_be_skipped(dot_dataset, tmp_path, monkeypatch):
    from lewm_agent.training.train import TrainingDiverged
    _nan_loss_from(monkeypatch, first=2)
    with pytest.raises(TrainingDiverged, match=r"^step 2: .* no checkpoint yet in "):
        train(small(dot_dataset, tmp_path / "a", max_bad_steps=0, precision="fp32"))
    assert not (tmp_path / "a" / "model.safetensors").exists()
    monkeypatch.undo()
    _nan_loss_from(monkeypatch, first=4, last=5)  # two bad batches, then fine again
    out = train(small(dot_dataset, tmp_path / "b", max_bad_steps=2, precision="fp32"))
    model, meta = load_checkpoint(out)
    assert meta.training["steps"] == 20 and all(bool(p.isfinite().all()) for p in model.parameters())
    with pytest.raises(ValueError, match="^max_bad_steps: must be >= 0"):
        small(dot_dataset, tmp_path / "c", max_bad_steps=-1)
