"""The reference's HDF5 dataset layout (stable-worldmodel's HDF5Writer) read in place by train / eval / probe.

`write_reference_layout` writes what that writer writes (one chunked dataset per column, `ep_len`
int32 and `ep_offset` int64, no attributes; the recorder's action rotation: row t is the action
from frame t, the reset's NaN action last), from one of our rollout files, so the two hold the
same episodes and every read can be compared.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from safetensors.torch import load_file

from lewm_agent.data.reference import ReferenceRollouts
from lewm_agent.data.rollouts import RolloutFile
from lewm_agent.training.config import TrainConfig
from lewm_agent.training.train import train

ROOT = Path(__file__).resolve().parents[1]


def write_reference_layout(ours: Path, out: Path) -> None:
    with RolloutFile(ours) as rf:
        eps = [rf.episode(i) for i in range(rf.num_episodes)]
    cols = {"pixels": [e["pixels"] for e in eps], "action": [e["action"] for e in eps],
            "state": [e["state"] for e in eps], "proprio": [e["observation"] for e in eps]}
    with h5py.File(out, "w", libver="latest") as f:
        for name, parts in cols.items():
            data = np.concatenate(parts)
            f.create_dataset(name, data=data, maxshape=(None, *data.shape[1:]), chunks=(1, *data.shape[1:]))
        lengths = np.array([len(e["pixels"]) for e in eps])
        f.create_dataset("ep_len", data=lengths.astype(np.int32), maxshape=(None,))
        f.create_dataset("ep_offset", data=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
                         maxshape=(None,))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("refdata")
    ours, ref = d / "ours.h5", d / "reference.h5"
    subprocess.run([sys.executable, "-m", "lewm_agent", "collect", "--env", "lewm/TwoRoom-v0", "--episodes", "8",
                    "--out", str(ours), "--seed", "0", "--image-size", "32"], check=True, capture_output=True, cwd=ROOT)
    write_reference_layout(ours, ref)
    return ours, ref


def test_detected_and_read_like_ours(files) -> None:
    ours, ref = files
    with RolloutFile(ours) as a, RolloutFile(ref) as b:
        assert isinstance(b, ReferenceRollouts) and not isinstance(a, ReferenceRollouts)
        assert b.num_episodes == a.num_episodes == 8 and b.num_frames == a.num_frames
        assert (b.episode_starts == a.episode_starts).all() and (b.episode_lengths == a.episode_lengths).all()
        assert b.action_dim == a.action_dim and b.image_shape == a.image_shape and b.env_id is None
        for c in ("pixels", "action", "state", "observation"):
            np.testing.assert_array_equal(b.episode(3, (c,))[c], a.episode(3, (c,))[c])


def test_trains_on_the_same_windows_as_our_file(files, tmp_path: Path) -> None:
    """Frameskip windows and action blocks cut the same: the same run on both files ends with the same weights."""
    ours, ref = files
    outs = []
    for data, name in ((ours, "a"), (ref, "b")):
        out = tmp_path / name
        train(TrainConfig(data=str(data), out=str(out), preset="tiny", steps=4, batch_size=8, warmup_steps=1,
                          eval_interval=4, ckpt_interval=4, log_interval=2, val_windows=8, num_projections=16,
                          progress=False, precision="fp32", data_mode="stream", workers=0, device="cpu"),
              {"image_size": 32, "frameskip": 2})
        outs.append(load_file(str(out / "model.safetensors")))
    assert outs[0].keys() == outs[1].keys()
    assert all((outs[0][k] == outs[1][k]).all() for k in outs[0])


def test_eval_and_probe_take_it(files, tmp_path: Path) -> None:
    ours, ref = files
    ckpt = tmp_path / "ckpt"
    train(TrainConfig(data=str(ours), out=str(ckpt), preset="tiny", steps=2, batch_size=8, warmup_steps=1,
                      eval_interval=2, ckpt_interval=2, log_interval=1, val_windows=8, num_projections=16,
                      progress=False, precision="fp32", device="cpu"), {"image_size": 32})
    run = lambda *a: subprocess.run([sys.executable, "-m", "lewm_agent", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=ROOT)
    r = run("eval", "--checkpoint", str(ckpt), "--data", str(ref), "--episodes", "2", "--seeds", "0",
            "--num-samples", "8", "--num-iterations", "1", "--num-elites", "2", "--out", str(tmp_path / "eval"))
    assert r.returncode == 0, r.stderr
    assert "| replay | 100.0" in r.stdout
    r = run("probe", "--checkpoint", str(ckpt), "--data", str(ref), "--frames", "64")
    assert r.returncode == 0, r.stderr


def test_broken_ledger_refused(files, tmp_path: Path) -> None:
    _, ref = files
    bad = tmp_path / "bad.h5"
    bad.write_bytes(ref.read_bytes())
    with h5py.File(bad, "a") as f:
        f["ep_offset"][1] = 0  # episode 1 overlaps episode 0
    with pytest.raises(ValueError, match="ep_offset/ep_len"):
        RolloutFile(bad)
