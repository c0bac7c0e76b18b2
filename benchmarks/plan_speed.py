"""Milliseconds per CEM solve of the agent's real planning path (encode + batched CEM).

Paper settings by default (300 samples x 30 iterations, 30 elites, horizon 5, the paper
model with random weights: speed does not depend on the weights), a full context of
`history` frames, for 1 and for 50 envs planned together. Median of `--repeats` solves
after one warm-up solve. Prints a table and writes JSON.

    python benchmarks/plan_speed.py --envs 1 50 --out results/plan_speed.json

`--against reference` times the public reference (`pip install -e .[bench]`) beside it in
alternating rounds in one process, both planning from one context frame (the reference's
default), at fp32 and bf16, and prints the ratio at each side's best precision and at fp32.
A precision more than 1.5x slower than fp32 in a one-iteration screen (bf16 on CPUs without
native bf16 matrix units) is reported and not timed in full. `--compile` plans with the
agent's compiled path (`--compile cudagraph`: each solve one CUDA graph) and the reference's
predictor under `torch.compile`, same mode (reduce-overhead against cudagraph).

    python benchmarks/plan_speed.py --against reference --envs 1
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lewm_agent import LeWMAgent, ModelConfig, PlannerConfig, WorldModel, preset
from lewm_agent.checkpoint import CheckpointMeta
from lewm_agent.device import resolve_device

PRECISIONS = ("fp32", "bf16")
SCREEN_SLOWER = 1.5  # a precision this much slower than fp32 in the screen is not timed in full


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()  # our solve returns numpy and the reference's a CPU tensor: both include the device->host copy
    sync(device)
    return time.perf_counter() - t0


def agent_for(model: WorldModel, cfg: ModelConfig, device: torch.device, planner: PlannerConfig,
              precision: str, compile_mode: str | None) -> LeWMAgent:
    a = cfg.action_dim
    meta = CheckpointMeta(cfg, [0.0] * a, [1.0] * a, [-1.0] * a, [1.0] * a)
    return LeWMAgent(model, meta, device, planner, seed=0, precision=precision, compile=compile_mode)


def inputs(cfg: ModelConfig, n: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(0)
    s = cfg.image_size
    context = rng.integers(0, 256, (n, frames, s, s, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    blocks = rng.normal(size=(n, frames - 1, cfg.action_block_dim)).astype(np.float32) if frames > 1 else None
    return context, goal, blocks


def ours_alone(cfg: ModelConfig, args: argparse.Namespace, device: torch.device, planner: PlannerConfig) -> dict:
    agent = agent_for(WorldModel(cfg), cfg, device, planner, args.precision, args.compile)
    rows = []
    for n in args.envs:
        context, goal, blocks = inputs(cfg, n, cfg.history)
        solve = lambda: agent.plan(context, goal, blocks)  # noqa: E731, B023  (used in this iteration only)
        solve()  # warm-up: allocations, kernel selection, compilation
        times = [timed(solve, device) for _ in range(args.repeats)]
        med = statistics.median(times)
        rows.append({"envs": n, "ms_per_solve": 1e3 * med, "ms_per_env": 1e3 * med / n,
                     "ms_per_iteration": 1e3 * med / args.iterations, "repeats": args.repeats,
                     "min_ms": 1e3 * min(times), "max_ms": 1e3 * max(times)})
    print(f"{'envs':>5} {'ms/solve':>10} {'ms/env':>9} {'ms/iter':>9}")
    for r in rows:
        print(f"{r['envs']:>5} {r['ms_per_solve']:>10.1f} {r['ms_per_env']:>9.1f} {r['ms_per_iteration']:>9.2f}")
    return {"precision": agent.precision_choice.precision, "precision_reason": agent.precision_choice.reason,
            "context_frames": cfg.history, "results": rows}


def solvers(cfg: ModelConfig, n: int, device: torch.device, planner: PlannerConfig, precision: str,
            compile_mode: str | None) -> dict[str, Callable[[], object]]:
    """One full solve of each side, at one precision, for `n` envs from one context frame."""
    import reference
    torch.manual_seed(0)
    agent = agent_for(WorldModel(cfg), cfg, device, planner, precision, compile_mode)
    context, goal, _ = inputs(cfg, n, 1)
    ref_model = reference.build_model(cfg)
    if compile_mode:  # its closest counterpart to our whole-solve graph: its predictor under CUDA graphs
        mode = "reduce-overhead" if compile_mode == "cudagraph" else compile_mode
        ref_model.predictor = torch.compile(ref_model.predictor, mode=mode)
    ref = reference.Planner(ref_model, cfg, n, planner.num_samples, planner.num_iterations, planner.num_elites,
                            planner.horizon, device, bf16=precision == "bf16")
    return {"lewm_agent": lambda: agent.plan(context, goal), "reference": ref.solve}


def screen(cfg: ModelConfig, args: argparse.Namespace, device: torch.device, planner: PlannerConfig
           ) -> tuple[dict[str, dict[str, float]], dict[str, list[str]]]:
    """Seconds of a one-iteration solve per precision and side, and the precisions each side keeps."""
    one = PlannerConfig(**{**planner.to_dict(), "num_iterations": 1})
    secs = {p: {side: min(timed(f, device) for _ in range(2))  # the first call warms up
                for side, f in solvers(cfg, args.envs[0], device, one, p, None).items()}
            for p in args.precisions}
    kept = {side: [p for p in args.precisions if "fp32" not in secs
                   or secs[p][side] <= SCREEN_SLOWER * secs["fp32"][side]] for side in ("lewm_agent", "reference")}
    return secs, kept


def time_alternating(fns: dict[str, Callable[[], object]], label: dict, repeats: int, device: torch.device,
                     failed: list[dict]) -> list[dict]:
    """Median ms per solve of each side, one warm-up each (a side that fails it is reported and dropped),
    then alternating rounds so that drift and load hit both sides alike."""
    for side, f in list(fns.items()):
        try:
            f()  # warm-up (and compilation)
        except Exception as e:  # e.g. a side that does not compile: reported, the other still timed
            print(f"{side} {label} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            failed.append({"side": side, **label, "error": f"{type(e).__name__}: {e}"[:2000]})
            del fns[side]
    times: dict[str, list[float]] = {side: [] for side in fns}
    for _ in range(repeats):
        for side, f in fns.items():
            times[side].append(timed(f, device))
    return [{"side": side, **label, "ms_per_solve": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts),
             "max_ms": 1e3 * max(ts), "repeats": repeats} for side, ts in times.items()]


def ratios(rows: list[dict], envs: list[int]) -> list[dict]:
    """Per env count: the reference's time over ours, at each side's best precision and at fp32."""
    out = []
    for n in envs:
        best = {side: min((r for r in rows if r["side"] == side and r["envs"] == n), key=lambda r: r["ms_per_solve"],
                          default=None) for side in ("lewm_agent", "reference")}
        if None in best.values():
            continue
        fp32 = {r["side"]: r for r in rows if r["envs"] == n and r["precision"] == "fp32"}
        out.append({"envs": n, "best": best["reference"]["ms_per_solve"] / best["lewm_agent"]["ms_per_solve"],
                    "best_precision": {s: r["precision"] for s, r in best.items()},
                    "fp32": fp32["reference"]["ms_per_solve"] / fp32["lewm_agent"]["ms_per_solve"]
                    if len(fp32) == 2 else None})
    return out


def against_reference(cfg: ModelConfig, args: argparse.Namespace, device: torch.device,
                      planner: PlannerConfig) -> dict:
    """Both sides per env count and precision; precisions the screen drops are reported, not timed."""
    import reference
    why = reference.missing()
    if why:
        print(f"reference column skipped: {why}")
        return {"reference": None, "skipped": why}
    secs, kept = screen(cfg, args, device, planner)
    rows: list[dict] = []
    failed: list[dict] = []
    for n in args.envs:
        for p in args.precisions:
            fns = {side: f for side, f in solvers(cfg, n, device, planner, p, args.compile).items() if p in kept[side]}
            rows += time_alternating(fns, {"envs": n, "precision": p}, args.repeats, device, failed)
    for r in rows:
        r["ms_per_iteration"] = r["ms_per_solve"] / args.iterations
    summary = ratios(rows, args.envs)
    print("one-iteration screen (ms): " + ", ".join(f"{side} {p} {1e3 * t:.0f}" for p, d in secs.items()
                                                    for side, t in d.items()))
    print(f"{'side':>11} {'envs':>5} {'prec':>5} {'ms/solve':>10} {'ms/iter':>9}")
    for r in rows:
        print(f"{r['side']:>11} {r['envs']:>5} {r['precision']:>5} {r['ms_per_solve']:>10.1f} "
              f"{r['ms_per_iteration']:>9.2f}")
    for r in summary:
        fp32_txt = f"{r['fp32']:.2f}x" if r["fp32"] else "-"
        print(f"envs {r['envs']}: lewm_agent is {r['best']:.2f}x the reference's speed at each side's best "
              f"precision ({r['best_precision']['lewm_agent']} vs {r['best_precision']['reference']}), "
              f"{fp32_txt} at fp32")
    screened = {side: [p for p in args.precisions if p not in kept[side]] for side in kept}
    return {"context_frames": 1, "screen_ms": {p: {s: 1e3 * t for s, t in d.items()} for p, d in secs.items()},
            "screened_out": screened, "failed": failed, "results": rows, "ratios": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--model", default="{}", help="JSON overrides of the preset's ModelConfig fields")
    p.add_argument("--envs", type=int, nargs="+", default=None, help="default: 1 50 (1 with --against)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS,
                   help="with --against: the precisions both sides are timed at")
    p.add_argument("--against", choices=["reference"], default=None)
    p.add_argument("--compile", nargs="?", const="default", default=None,
                   help="cudagraph (CUDA: whole solves replayed as CUDA graphs) or a torch.compile mode of the "
                        "imagined rollout (default, reduce-overhead, max-autotune)")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--elites", type=int, default=30)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="results/plan_speed.json")
    args = p.parse_args()
    args.envs = args.envs or ([1] if args.against else [1, 50])
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    cfg = preset(args.preset, **json.loads(args.model))
    planner = PlannerConfig(num_samples=args.samples, num_iterations=args.iterations, num_elites=args.elites,
                            horizon=args.horizon, receding_horizon=args.horizon)
    dev = (torch.cuda.get_device_name(device) if device.type == "cuda" else
           f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    print(f"device: {dev}  preset: {args.preset}  S={args.samples} iters={args.iterations} H={args.horizon}"
          f"  compile: {args.compile or 'off'}")
    body = against_reference(cfg, args, device, planner) if args.against else ours_alone(cfg, args, device, planner)
    info = {"device": dev, "torch": torch.__version__, "preset": args.preset, "model": cfg.to_dict(),
            "planner": planner.to_dict(), "compile": args.compile, **body}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
