"""Training on several processes with torchrun: PyTorch's own engine, the single-process objective.

    torchrun --nproc_per_node 2 -m lewm_agent train --data ... --out ...

One process per device (gloo on CPU, NCCL on CUDA, chosen from the device); torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) names the ranks. The global
batch of each step is drawn as in a single process and each rank takes its slice, so that with
DistributedDataParallel averaging the gradients, SIGReg reducing its characteristic function over
ranks (`losses.sigreg`) and `GlobalBatchNorm1d` normalising by global-batch statistics, a step on
N ranks is the step of one process on the whole batch (up to float summation order).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .device import resolve_device


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The rank that logs, validates and writes checkpoints."""
        return self.rank == 0

    def shard(self, batch: int) -> slice:
        """This rank's rows of a global batch of `batch` rows."""
        per = batch // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected an int set by torchrun, got {value!r}") from None


def setup(device: str, timeout_s: float) -> tuple[Ranks, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1; returns the ranks and this rank's device.

    A collective that waits longer than `timeout_s` (a rank died or hangs) raises instead of
    hanging; torchrun itself stops the other ranks when one exits with an error.
    """
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") == 1:
        return Ranks(), resolve_device(device)
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)  # one process per GPU
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    return Ranks(rank, world), dev


def teardown() -> None:
    """Destroy the process group, after the DistributedDataParallel wrapper and its gradients are
    gone (return from the function that held them, then `barrier` on a normal exit, then this): with
    them still alive a gloo rank aborted at exit with std::terminate ("terminate called without an
    active exception", SIGABRT) in about one run in ten; the test's helper now runs 24 of 24."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


def mean_over_ranks(ranks: Ranks, values: list[float]) -> list[float]:
    """Average of per-rank numbers (for the log: every rank must call it at the same step)."""
    if ranks.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return (t / ranks.world).tolist()


def active() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: every rank's input feeds every rank's output, so the
    gradient of an input is the sum over ranks of the output gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of `x` over the ranks (x itself outside a process group)."""
    return _SumOverRanks.apply(x) if active() else x


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch over all ranks.

    Unlike torch.nn.SyncBatchNorm it runs on CPU (gloo) as well as CUDA. The sums are
    all-reduced differentiably (mean first, then the centred squares, for accuracy), so the
    gradients are those of one process normalising the whole batch. Outside a process group,
    or in eval mode, it is exactly BatchNorm1d; its state_dict is BatchNorm1d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        x32 = x.float()
        n = torch.tensor([float(x.shape[0])], device=x.device)
        dist.all_reduce(n)
        mean = sum_over_ranks(x32.sum(0)) / n
        var = sum_over_ranks((x32 - mean).square().sum(0)) / n  # biased, as BatchNorm normalises
        y = (x32 - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(f * mean.detach())
                self.running_var.mul_(1 - f).add_(f * var.detach() * n / (n - 1))  # unbiased, as BatchNorm
        return y.to(x.dtype)


def wrap(model: nn.Module, device: torch.device, ranks: Ranks) -> nn.Module:
    """What a training step calls: `model` itself in one process, else its BatchNorms made global
    and the model wrapped in DistributedDataParallel (after any weights are loaded)."""
    if ranks.world == 1:
        return model
    use_global_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def use_global_batchnorm(model: nn.Module) -> nn.Module:
    """Make every BatchNorm1d of `model` a GlobalBatchNorm1d in place (same parameters and buffers)."""
    for m in model.modules():
        if type(m) is nn.BatchNorm1d:
            m.__class__ = GlobalBatchNorm1d
    return model


__all__ = ["GlobalBatchNorm1d", "Ranks", "active", "barrier", "mean_over_ranks", "setup", "sum_over_ranks", "teardown",
           "use_global_batchnorm", "wrap"]
