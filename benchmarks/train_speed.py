"""Training samples/s of the world model (data loading excluded, as the paper's reference number).

One step = encode (B, history+1) frames, predict, pred_loss + lambda * SIGReg, backward,
clip, AdamW: exactly the trainer's step, on random uint8 frames already on the device.
bf16 autocast on CUDA as in training. Prints a table and writes JSON.

    python benchmarks/train_speed.py --presets paper small --batch-size 128 --out results/train_speed.json
    python benchmarks/train_speed.py --presets --checkpoints checkpoints/pusht   # a shipped architecture
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from lewm_agent import WorldModel, preset, pred_loss, sigreg
from lewm_agent.device import resolve_device
from lewm_agent.checkpoint import read_meta


def step_fn(model: WorldModel, opt: torch.optim.Optimizer, device: torch.device, num_projections: int = 1024):
    gen = torch.Generator(device=device).manual_seed(0)

    def step(pixels: torch.Tensor, actions: torch.Tensor) -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            emb = model.encode(pixels)
            p_loss = pred_loss(model.predict(emb[:, :-1], actions), emb[:, 1:])
            loss = p_loss + 0.09 * sigreg(emb.transpose(0, 1), num_projections, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="*", default=["paper", "small"])
    p.add_argument("--checkpoints", nargs="*", default=[], help="also time these checkpoints' architectures")
    p.add_argument("--num-projections", type=int, default=1024, help="SIGReg directions")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="results/train_speed.json")
    args = p.parse_args()
    device = resolve_device(args.device)
    rows = []
    configs = [(name, preset(name)) for name in args.presets]
    configs += [(path, read_meta(path).model) for path in args.checkpoints]
    for name, cfg in configs:
        torch.manual_seed(0)
        model = WorldModel(cfg).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=1e-3)
        step = step_fn(model, opt, device, args.num_projections)
        b, t, s = args.batch_size, cfg.history + 1, cfg.image_size
        pixels = torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8, device=device)
        actions = torch.randn(b, cfg.history, cfg.action_block_dim, device=device)
        times = []
        for i in range(args.warmup + args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            step(pixels, actions)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"preset": str(name), "image_size": s, "params": model.num_parameters()["total"],
                     "batch_size": b, "num_projections": args.num_projections, "ms_per_step": 1e3 * med,
                     "samples_per_s": b / med, "steps": args.steps})
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"{device.type} ({platform.machine()}, {torch.get_num_threads()} threads)",
            "torch": torch.__version__, "results": rows}
    print(f"device: {info['device']}")
    print(f"{'model':>8} {'px':>4} {'params':>11} {'batch':>6} {'ms/step':>9} {'samples/s':>10}")
    for r in rows:
        print(f"{r['preset']:>8.8} {r['image_size']:>4} {r['params']:>11,} {r['batch_size']:>6} "
              f"{r['ms_per_step']:>9.1f} {r['samples_per_s']:>10.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
