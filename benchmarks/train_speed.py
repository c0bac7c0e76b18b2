"""Training samples/s of the world model (data loading excluded, as the paper's reference number).

One step = encode (B, history+1) frames, predict, pred_loss + lambda * SIGReg, backward,
clip, AdamW: exactly the trainer's step, on random uint8 frames already on the device.
bf16 autocast on CUDA as in training. Prints a table and writes JSON.
`--precisions` times fp32 and bf16 autocast alternating in one process (CPU or GPU) and names
the CPU's capability (AVX2, AVX512-BF16, AMX-BF16), the measurement `--precision auto` makes.

    python benchmarks/train_speed.py --presets paper small --batch-size 128 --out results/train_speed.json
    python benchmarks/train_speed.py --presets --checkpoints checkpoints/pusht   # a shipped architecture
    python benchmarks/train_speed.py --presets small --nproc 1 2                   # torchrun scaling
    python benchmarks/train_speed.py --presets paper --against reference          # beside the reference
    python benchmarks/train_speed.py --presets --checkpoints checkpoints/pusht --precisions  # fp32 vs bf16

`--against reference` times the public reference's training step (`pip install -e .[bench]`) on the
same batch and sizes, alternating steps with ours in one process, and prints the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from lewm_agent import ModelConfig, WorldModel, pred_loss, preset, sigreg
from lewm_agent.checkpoint import read_meta
from lewm_agent.device import resolve_device
from lewm_agent.distributed import Ranks, barrier, setup, teardown, wrap
from lewm_agent.precision import cpu_capability


def step_fn(net: torch.nn.Module, opt: torch.optim.Optimizer, device: torch.device, num_projections: int = 1024,
            bf16: bool | None = None):
    """The trainer's step; `net` is the WorldModel or its DistributedDataParallel wrapper.
    bf16: autocast; None = on CUDA only."""
    gen = torch.Generator(device=device).manual_seed(0)
    bf16 = device.type == "cuda" if bf16 is None else bf16

    def step(pixels: torch.Tensor, actions: torch.Tensor) -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            emb, pred = net(pixels, actions)
            loss = pred_loss(pred, emb[:, 1:]) + 0.09 * sigreg(emb.transpose(0, 1), num_projections, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    return step


def time_steps(cfg: ModelConfig, args: argparse.Namespace, device: torch.device,
               ranks: Ranks = Ranks()) -> dict:  # noqa: B008  (a frozen dataclass)
    """Median seconds of a training step on this rank's share of the global batch (all ranks step)."""
    torch.manual_seed(0)
    model = WorldModel(cfg).to(device).train()
    net = wrap(model, device, ranks)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=1e-3)
    step = step_fn(net, opt, device, args.num_projections)
    b, t, s = args.batch_size // ranks.world, cfg.history + 1, cfg.image_size
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
    return {"seconds": statistics.median(times), "params": model.num_parameters()["total"]}


def against_reference(cfg: ModelConfig, args: argparse.Namespace, device: torch.device) -> dict | None:
    """Median ms per step of ours and of the reference, alternating steps; None if it is not installed."""
    import reference
    why = reference.missing()
    if why:
        print(f"reference column skipped: {why}")
        return None
    torch.manual_seed(0)
    ours = WorldModel(cfg).to(device).train()
    ours_step = step_fn(ours, torch.optim.AdamW(ours.parameters(), lr=5e-5, weight_decay=1e-3), device,
                        args.num_projections)
    ref_step = reference.train_step_fn(reference.build_model(cfg), cfg, device, args.num_projections)
    b, t, s = args.batch_size, cfg.history + 1, cfg.image_size
    pixels = torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8, device=device)
    ref_pixels = pixels.permute(0, 1, 4, 2, 3).float() / 255.0
    actions = torch.randn(b, t, cfg.action_block_dim, device=device)
    sides = {"lewm_agent": lambda: ours_step(pixels, actions[:, :-1]),
             "reference": lambda: ref_step(ref_pixels, actions)}
    times: dict[str, list[float]] = {side: [] for side in sides}
    for i in range(args.warmup + args.steps):
        for side, step in sides.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                times[side].append(time.perf_counter() - t0)
    ms = {side: 1e3 * statistics.median(ts) for side, ts in times.items()}
    return {"ours_ms_per_step": ms["lewm_agent"], "reference_ms_per_step": ms["reference"],
            "ratio": ms["reference"] / ms["lewm_agent"]}


def against_precision(cfg: ModelConfig, args: argparse.Namespace, device: torch.device) -> dict:
    """Median ms per step in fp32 and in bf16 autocast, alternating steps on two copies of one model."""
    torch.manual_seed(0)
    sides = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        torch.manual_seed(0)
        model = WorldModel(cfg).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=1e-3)
        sides[name] = step_fn(model, opt, device, args.num_projections, bf16)
    b, t, s = args.batch_size, cfg.history + 1, cfg.image_size
    pixels = torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8, device=device)
    actions = torch.randn(b, cfg.history, cfg.action_block_dim, device=device)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(args.warmup + args.steps):
        for name, step in sides.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            step(pixels, actions)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    ms = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    return {"fp32_ms_per_step": ms["fp32"], "bf16_ms_per_step": ms["bf16"], "bf16_speedup": ms["fp32"] / ms["bf16"],
            "fp32_samples_per_s": 1e3 * b / ms["fp32"], "bf16_samples_per_s": 1e3 * b / ms["bf16"]}


def _rank_main(rank: int, world: int, port: int, threads: int, cfg: ModelConfig, args: argparse.Namespace,
               queue: Any) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    ranks, device = setup(args.device, timeout_s=600)
    try:
        result = time_steps(cfg, args, device, ranks)
        if ranks.main:
            queue.put(result)
        barrier(ranks)  # leave together: see lewm_agent.distributed.teardown
    finally:
        teardown()


def time_processes(cfg: ModelConfig, args: argparse.Namespace, device: torch.device, nproc: int) -> dict:
    """`time_steps` on `nproc` spawned processes (torchrun's layout), the machine's threads shared out."""
    threads = max(1, torch.get_num_threads() // nproc)
    if nproc == 1:
        return time_steps(cfg, args, device)
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [ctx.Process(target=_rank_main, args=(r, nproc, port, threads, cfg, args, queue)) for r in range(nproc)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a rank failed (exit codes {[p.exitcode for p in procs]})")
    return queue.get()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="*", default=["paper", "small"])
    p.add_argument("--model", default="{}", help="JSON overrides of the presets' ModelConfig fields")
    p.add_argument("--checkpoints", nargs="*", default=[], help="also time these checkpoints' architectures")
    p.add_argument("--num-projections", type=int, default=1024, help="SIGReg directions")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--nproc", type=int, nargs="+", default=[1],
                   help="also time N processes (DistributedDataParallel, gloo on CPU / NCCL on CUDA) on the same "
                        "global batch, the threads shared out; e.g. --nproc 1 2")
    p.add_argument("--against", choices=["reference"], default=None,
                   help="also time the public reference's step on the same batch, alternating (ViT presets)")
    p.add_argument("--precisions", action="store_true",
                   help="also time fp32 and bf16 autocast alternating in one process (1 process)")
    p.add_argument("--out", default="results/train_speed.json")
    args = p.parse_args()
    device = resolve_device(args.device)
    rows = []
    configs = [(name, preset(name, **json.loads(args.model))) for name in args.presets]
    configs += [(path, read_meta(path).model) for path in args.checkpoints]
    for name, cfg in configs:
        for nproc in args.nproc:
            r = time_processes(cfg, args, device, nproc)
            b = args.batch_size
            rows.append({"preset": str(name), "image_size": cfg.image_size, "params": r["params"], "batch_size": b,
                         "processes": nproc, "num_projections": args.num_projections,
                         "ms_per_step": 1e3 * r["seconds"], "samples_per_s": b / r["seconds"], "steps": args.steps})
        if args.precisions:
            rows[-1]["precisions"] = against_precision(cfg, args, device)
        if args.against and cfg.encoder == "vit":
            rows[-1]["reference"] = against_reference(cfg, args, device)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"{device.type} ({platform.machine()}, {cpu_capability()}, {torch.get_num_threads()} threads)",
            "torch": torch.__version__, "results": rows}
    print(f"device: {info['device']}")
    print(f"{'model':>8} {'px':>4} {'params':>11} {'batch':>6} {'procs':>5} {'ms/step':>9} {'samples/s':>10}")
    for r in rows:
        print(f"{r['preset']:>8.8} {r['image_size']:>4} {r['params']:>11,} {r['batch_size']:>6} {r['processes']:>5} "
              f"{r['ms_per_step']:>9.1f} {r['samples_per_s']:>10.1f}")
        if r.get("reference"):
            ref = r["reference"]
            print(f"{'':>8} alternating with the reference: ours {ref['ours_ms_per_step']:.1f} ms, reference "
                  f"{ref['reference_ms_per_step']:.1f} ms per step: lewm_agent is {ref['ratio']:.2f}x its speed")
        if r.get("precisions"):
            pr = r["precisions"]
            print(f"{'':>8} alternating fp32 / bf16 autocast: {pr['fp32_samples_per_s']:.1f} / "
                  f"{pr['bf16_samples_per_s']:.1f} samples/s: bf16 is {pr['bf16_speedup']:.2f}x fp32's speed")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
