"""torchrun: N processes on CPU (gloo) compute the single-process step; shards, resume and failures."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lewm_agent import LeWMAgent
from lewm_agent.data.windows import WindowSpec
from lewm_agent.distributed import Ranks

HERE = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}


def torchrun(*args: str, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def failure(run: subprocess.CompletedProcess) -> str:
    """What a failed torchrun said: the ranks' own lines first (torchrun's traceback of its
    ChildFailedError, which comes last, is long and says only that a rank died)."""
    lines = run.stderr.splitlines()
    own = [ln for ln in lines if "torch/distributed/" not in ln and not ln.startswith((" ", "Traceback"))]
    return "\n".join(own[:40]) + "\n...\n" + run.stderr[-800:]


def test_ranks_draw_disjoint_slices_of_the_single_process_batch():
    starts = np.arange(1000)
    for step in range(3):
        whole = WindowSpec(3, 5, 12, seed=4).draw(starts, step)
        parts = [WindowSpec(3, 5, 12, seed=4, rank=r, world=3).draw(starts, step) for r in range(3)]
        assert all(len(p) == 4 for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), whole)  # disjoint, and together the batch
    assert Ranks(1, 4).shard(8) == slice(2, 4) and Ranks().main and not Ranks(1, 2).main


def test_two_ranks_compute_the_gradient_of_one_process_on_the_global_batch(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(HERE / "helpers" / "dist_step.py"), str(one)], env=ENV, check=True, timeout=120)
    run = torchrun(str(HERE / "helpers" / "dist_step.py"), str(two))
    assert run.returncode == 0, failure(run)
    a, b = torch.load(one), torch.load(two)
    assert float(a["pred_loss"]) == pytest.approx(float(b["pred_loss"]), rel=1e-5)
    assert float(a["sigreg"]) == pytest.approx(float(b["sigreg"]), rel=1e-5)  # SIGReg of the global batch
    torch.testing.assert_close(a["running_mean"], b["running_mean"], atol=1e-6, rtol=1e-5)  # global BN stats
    scale = max(g.abs().max() for g in a["grads"].values())
    for name, g in a["grads"].items():  # tolerance: float summation order across ranks
        torch.testing.assert_close(b["grads"][name], g, atol=1e-5 * float(scale), rtol=1e-4, msg=name)


def _train_args(data: Path, out: Path, steps: int) -> list[str]:
    return ["-m", "lewm_agent", "train", "--data", str(data), "--out", str(out), "--preset", "tiny",
            "--steps", str(steps), "--batch-size", "16", "--lr", "3e-3", "--warmup-steps", "2",
            "--eval-interval", "2", "--ckpt-interval", "2", "--log-interval", "1", "--val-windows", "32",
            "--num-projections", "64", "--bn-batches", "2", "--device", "cpu", "--precision", "fp32",
            "--no-progress"]  # fp32: the test compares arithmetic, and auto may choose per process


def test_a_two_rank_run_matches_one_process_resumes_and_its_checkpoint_plans(dot_dataset, tmp_path):
    ranks2, single = tmp_path / "two", tmp_path / "one"
    run = torchrun(*_train_args(dot_dataset, ranks2, 2))
    assert run.returncode == 0, failure(run)
    run = torchrun(*_train_args(dot_dataset, ranks2, 4))  # an interrupted run restarted: resumes at 2
    assert run.returncode == 0, failure(run)
    subprocess.run([sys.executable, *_train_args(dot_dataset, single, 4)], env=ENV, check=True, timeout=240,
                   capture_output=True)
    logs = [[__import__("json").loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
            for d in (ranks2, single)]
    steps = [[r["step"] for r in log if "train/loss" in r] for log in logs]
    assert steps[0] == steps[1] == [1, 2, 3, 4]  # one writer, nothing logged twice
    for a, b in zip(*[[r["train/loss"] for r in log if "train/loss" in r] for log in logs]):
        assert a == pytest.approx(b, rel=1e-3)
    w2, w1 = load_file(ranks2 / "model.safetensors"), load_file(single / "model.safetensors")
    # Biases that only shift the input of a BatchNorm have a zero gradient in exact arithmetic; Adam
    # turns their float noise into full steps of either sign. They, and the running means that
    # follow them, may differ; the BatchNorm output (checked below through the embeddings) may not.
    shifted = {"encoder.norm.bias", "projector.fc1.bias", "norm.bias", "pred_projector.fc1.bias",
               "projector.norm.running_mean", "pred_projector.norm.running_mean"}
    for k in set(w1) - shifted:
        torch.testing.assert_close(w2[k], w1[k], atol=2e-4, rtol=1e-3, msg=k)
    frames = torch.randint(0, 256, (4, 2, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    emb = [LeWMAgent.from_pretrained(d, device="cpu").model.encode(frames) for d in (ranks2, single)]
    torch.testing.assert_close(emb[0], emb[1], atol=1e-3, rtol=1e-3)
    assert "2 processes (torchrun)" in (ranks2 / "README.md").read_text()
    agent = LeWMAgent.from_pretrained(ranks2, device="cpu", num_samples=8, num_elites=2, num_iterations=1)
    img = np.zeros((32, 32, 3), np.uint8)
    assert agent.act({"pixels": img, "goal": img}).shape == (2,)


def test_a_rank_that_dies_ends_the_others_within_the_timeout(tmp_path):
    script = ("import os, sys, time\n"
              "from lewm_agent.distributed import setup, barrier\n"
              "ranks, _ = setup('cpu', timeout_s=5)\n"
              "if ranks.rank == 1:\n    sys.exit(3)\n"
              "barrier(ranks)\n")
    procs = []
    port = 29500 + os.getpid() % 2000
    for rank in range(2):
        env = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True))
    t0 = time.monotonic()
    codes = [p.wait(timeout=120) for p in procs]
    assert codes[1] == 3 and codes[0] != 0  # rank 0 does not wait forever for the dead rank
    assert time.monotonic() - t0 < 60


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(dot_dataset, tmp_path):
    args = _train_args(dot_dataset, tmp_path / "x", 2)
    args[args.index("--batch-size") + 1] = "15"
    run = torchrun(*args)
    assert run.returncode != 0 and "batch_size: the global batch 15 must split evenly over the 2" in run.stderr
