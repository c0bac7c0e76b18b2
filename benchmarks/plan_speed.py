"""Milliseconds per CEM solve of the agent's real planning path (encode + batched CEM).

Paper settings by default (300 samples x 30 iterations, 30 elites, horizon 5, the paper
model with random weights: speed does not depend on the weights), a full context of
`history` frames, for 1 and for 50 envs planned together. Median of `--repeats` solves
after one warm-up solve. Prints a table and writes JSON.

    python benchmarks/plan_speed.py --envs 1 50 --out results/plan_speed.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from lewm_agent import LeWMAgent, PlannerConfig, WorldModel, preset
from lewm_agent.device import resolve_device
from lewm_agent.checkpoint import CheckpointMeta


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--envs", type=int, nargs="+", default=[1, 50])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--elites", type=int, default=30)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="results/plan_speed.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    cfg = preset(args.preset)
    model = WorldModel(cfg)
    a = cfg.action_dim
    meta = CheckpointMeta(cfg, [0.0] * a, [1.0] * a, [-1.0] * a, [1.0] * a)
    planner = PlannerConfig(num_samples=args.samples, num_iterations=args.iterations, num_elites=args.elites,
                            horizon=args.horizon, receding_horizon=args.horizon)
    agent = LeWMAgent(model, meta, device, planner, seed=0, precision=args.precision)
    rng = np.random.default_rng(0)
    s, h = cfg.image_size, cfg.history
    rows = []
    for n in args.envs:
        context = rng.integers(0, 256, (n, h, s, s, 3), dtype=np.uint8)
        goal = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
        blocks = rng.normal(size=(n, h - 1, cfg.action_block_dim)).astype(np.float32)
        agent.plan(context, goal, blocks)  # warm-up: allocations, kernel selection
        times = []
        for _ in range(args.repeats):
            sync(device)
            t0 = time.perf_counter()
            agent.plan(context, goal, blocks)  # returns numpy: includes the device->host copy
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"envs": n, "ms_per_solve": 1e3 * med, "ms_per_env": 1e3 * med / n,
                     "ms_per_iteration": 1e3 * med / args.iterations, "repeats": args.repeats,
                     "min_ms": 1e3 * min(times), "max_ms": 1e3 * max(times)})
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
            "torch": torch.__version__, "preset": args.preset, "precision": "bf16" if agent.bf16 else "fp32",
            "planner": planner.to_dict(), "context_frames": h, "results": rows}
    print(f"device: {info['device']}  precision: {info['precision']}  preset: {args.preset}  "
          f"S={args.samples} iters={args.iterations} H={args.horizon}")
    print(f"{'envs':>5} {'ms/solve':>10} {'ms/env':>9} {'ms/iter':>9}")
    for r in rows:
        print(f"{r['envs']:>5} {r['ms_per_solve']:>10.1f} {r['ms_per_env']:>9.1f} {r['ms_per_iteration']:>9.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
