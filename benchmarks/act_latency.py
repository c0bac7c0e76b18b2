"""Milliseconds per `act()` call and per replanning solve of the shipped agents, as users call them.

For each checkpoint (shipped names or folders) and each env count, builds that many envs with the
checkpoint's own settings, resets them, and times `agent.act(obs)` for `--steps` env steps with the
checkpoint's shipped planner settings: a call either replans (one batched CEM solve for every env
that needs a plan) or returns the next action of the current plan. Prints p50 / p95 and writes JSON.

    python benchmarks/act_latency.py                                   # pusht, two_room; 1 and 50 envs
    python benchmarks/act_latency.py --checkpoints two_room --envs 1 --steps 20
    python benchmarks/act_latency.py --checkpoints runs/two_room_actor --envs 1 --planner-kinds cem policy policy+cem
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from lewm_agent import LeWMAgent, make_env


def measure(checkpoint: str, n_envs: int, steps: int, seed: int, kind: str = "cem") -> dict:
    agent = LeWMAgent.from_pretrained(checkpoint, device="cpu", planner_kind=kind)
    envs = [make_env(checkpoint) for _ in range(n_envs)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    agent.reset()
    solves_before = len(agent.solve_seconds)
    calls = []
    for _ in range(steps):
        batch = obs[0] if n_envs == 1 else {k: np.stack([o[k] for o in obs]) for k in obs[0]}
        t0 = time.perf_counter()
        actions = agent.act(batch)
        calls.append(time.perf_counter() - t0)
        actions = actions[None] if n_envs == 1 else actions
        for i, env in enumerate(envs):
            obs[i], _, terminated, truncated, _ = env.step(actions[i])
            if terminated or truncated:
                obs[i] = env.reset(seed=seed + 1000 + i)[0]
    solves = np.asarray(list(agent.solve_seconds)[solves_before:])
    calls_ms = 1e3 * np.asarray(calls)
    return {"checkpoint": checkpoint, "planner_kind": kind, "envs": n_envs, "act_calls": steps,
            "planner": _describe(agent),
            "act_ms_p50": float(np.percentile(calls_ms, 50)), "act_ms_p95": float(np.percentile(calls_ms, 95)),
            "solves": int(len(solves)),
            "solve_ms_p50": float(1e3 * np.percentile(solves, 50)) if len(solves) else None,
            "solve_ms_p95": float(1e3 * np.percentile(solves, 95)) if len(solves) else None}


def _describe(agent: LeWMAgent) -> str:
    p = agent.planner_cfg
    if agent.planner_kind == "policy":
        return f"actor alone, horizon {p.horizon}, replan every block"
    iterations = agent.seeded_iterations if agent.planner_kind == "policy+cem" else p.num_iterations
    seeded = "actor-seeded CEM " if agent.planner_kind == "policy+cem" else ""
    return f"{seeded}{p.num_samples} x {iterations}, horizon {p.horizon}, replan every {p.receding_horizon}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", default=["pusht", "two_room"])
    p.add_argument("--envs", type=int, nargs="+", default=[1, 50])
    p.add_argument("--planner-kinds", nargs="+", default=["cem"], choices=["cem", "policy", "policy+cem"],
                   help="planner kinds to time (policy ones need a checkpoint with an actor: lewm train-policy)")
    p.add_argument("--steps", type=int, default=30, help="act() calls per measurement")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/act_latency.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(c, n, args.steps, args.seed, k) for c in args.checkpoints for n in args.envs
            for k in args.planner_kinds]
    info = {"device": f"cpu ({platform.machine()}, {torch.get_num_threads()} threads, {os.cpu_count()} cores)",
            "torch": torch.__version__, "load_before": os.getloadavg()[0], "results": rows}
    print(f"device: {info['device']}, load average before: {info['load_before']:.2f}")
    print(f"{'checkpoint':>10} {'kind':>10} {'envs':>5} {'act p50 ms':>11} {'act p95 ms':>11} {'solves':>7} "
          f"{'solve p50 ms':>13} {'solve p95 ms':>13}  planner")
    for r in rows:
        fmt = lambda v: f"{v:.1f}" if v is not None else "-"  # noqa: E731
        print(f"{r['checkpoint']:>10} {r['planner_kind']:>10} {r['envs']:>5} {r['act_ms_p50']:>11.1f} "
              f"{r['act_ms_p95']:>11.1f} {r['solves']:>7} "
              f"{fmt(r['solve_ms_p50']):>13} {fmt(r['solve_ms_p95']):>13}  {r['planner']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
