"""FLOPs and time of one CEM iteration's imagined rollouts: the window predictor against the
banded (key/value-cached) one of the same sizes.

One `WorldModel.rollout` call is what each CEM iteration spends in the model: `--samples`
candidates per env, `--horizon` blocks, from a full context of `history` frames. FLOPs come
from torch's FlopCounterMode (matrix products); time is the median over alternating rounds in
one process, so that load and drift hit both alike. Random weights: cost does not depend on them.

    python benchmarks/predictor_cost.py --preset paper --envs 1
    python benchmarks/predictor_cost.py --preset tiny --model '{"image_size": 64, ...}' --envs 50
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from lewm_agent import WorldModel, preset
from lewm_agent.precision import cpu_capability

KINDS = ("window", "banded")


def rollout_inputs(model: WorldModel, envs: int, samples: int, horizon: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    c = model.cfg
    ctx = torch.randn(envs, c.history, c.latent_dim, generator=g)
    past = torch.randn(envs, c.history - 1, c.action_block_dim, generator=g)
    cand = torch.randn(envs, samples, horizon, c.action_block_dim, generator=g)
    return ctx, cand, past


def flops(model: WorldModel, inputs: tuple[torch.Tensor, ...]) -> int:
    with FlopCounterMode(display=False) as counter:
        model.rollout(inputs[0], inputs[1], inputs[2] if model.cfg.history > 1 else None)
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--model", default="{}", help="JSON overrides of the preset's ModelConfig fields")
    p.add_argument("--envs", type=int, default=1)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="results/predictor_cost.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = json.loads(args.model)
    models = {}
    for kind in KINDS:
        torch.manual_seed(0)
        models[kind] = WorldModel(preset(args.preset, **{**overrides, "predictor_attention": kind})).eval()
    inputs = rollout_inputs(models["window"], args.envs, args.samples, args.horizon)
    past = inputs[2] if models["window"].cfg.history > 1 else None
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    with torch.inference_mode():
        counts = {k: flops(m, inputs) for k, m in models.items()}
        for m in models.values():
            m.rollout(inputs[0], inputs[1], past)  # warm-up
        for _ in range(args.repeats):
            for kind, m in models.items():
                t0 = time.perf_counter()
                m.rollout(inputs[0], inputs[1], past)
                times[kind].append(time.perf_counter() - t0)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    machine = f"cpu {cpu_capability()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"{machine}; preset {args.preset}; {args.envs} env(s) x {args.samples} samples x {args.horizon} blocks")
    for k in KINDS:
        print(f"{k:>7}: {counts[k] / 1e9:8.3f} GFLOP  {ms[k]:8.1f} ms per CEM iteration (median of {args.repeats})")
    print(f"banded: {counts['window'] / counts['banded']:.2f}x fewer FLOPs, {ms['window'] / ms['banded']:.2f}x faster")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "args": vars(args), "gflop": {
        k: counts[k] / 1e9 for k in KINDS}, "ms_per_iteration": ms, "times_s": times}, indent=2))


if __name__ == "__main__":
    main()
