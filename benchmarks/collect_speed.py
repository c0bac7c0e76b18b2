"""Collection throughput of env settings side by side: env steps/s and rendered frames/s of one worker.

Runs the env's scripted expert exactly as `lewm collect` does (same episode function, one worker,
the process's threads as set), for each settings variant in turn, in alternating rounds in one
process, so that the ratios hold on a shared, noisy machine. Prints a table and writes JSON.

    MUJOCO_GL=egl python benchmarks/collect_speed.py --env lewm/Cube-v0 \
        --variants '{"render_quality": "fast"}' '{"render_quality": "lite"}' --episodes 2 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from lewm_agent.data import collect


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="lewm/Cube-v0")
    p.add_argument("--variants", nargs="+", default=['{"render_quality": "fast"}', '{"render_quality": "lite"}'],
                   help="env kwargs (JSON) of each variant; the first is the baseline of the ratios")
    p.add_argument("--episodes", type=int, default=2, help="episodes per variant and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="results/collect_speed.json")
    args = p.parse_args()
    variants = [json.loads(v) for v in args.variants]
    steps = [0] * len(variants)
    seconds = [0.0] * len(variants)
    for r in range(args.rounds):
        for i, kwargs in enumerate(variants):
            cfg = collect.CollectConfig(args.env, args.episodes, "unused.h5", env_kwargs=kwargs, progress=False)
            collect._init_worker(cfg, in_parent=True)  # the worker of `lewm collect`
            collect._episode(0)  # warm-up: renderer, caches
            t0 = time.perf_counter()
            for k in range(args.episodes):
                steps[i] += len(collect._episode(1 + r * args.episodes + k)["actions"])
            seconds[i] += time.perf_counter() - t0
            collect._WORKER["env"].close()
    rows = [{"env_kwargs": kw, "env_steps": n, "seconds": round(t, 2), "env_steps_per_s": n / t,
             "rendered_frames_per_s": n / t,  # an observation image per step (goal images at new subtasks aside)
             "speedup": (n / t) / (steps[0] / seconds[0])} for kw, n, t in zip(variants, steps, seconds)]
    info = {"env": args.env, "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            "episodes_per_round": args.episodes, "rounds": args.rounds, "results": rows}
    print(f"{args.env}, one worker, {args.rounds} alternating rounds of {args.episodes} episodes")
    print(f"{'env kwargs':<40} {'steps/s':>9} {'x':>6}")
    for r in rows:
        print(f"{json.dumps(r['env_kwargs']):<40} {r['env_steps_per_s']:>9.1f} {r['speedup']:>6.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
