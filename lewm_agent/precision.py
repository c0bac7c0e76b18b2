"""bf16 or fp32 autocast, chosen by timing the model's own work on this machine.

Why measure: on CPUs the answer depends on the day's instruction set and on the model's size.
With AMX a bf16 matrix product runs several times faster than fp32; with AVX512-BF16 alone bf16
autocast can make the same step many times slower; and small models lose to the casts even with
AMX. So `precision="auto"` on a CPU times a few alternating rounds of fp32 and bf16 and keeps bf16
only when it is clearly faster and its result agrees with fp32's. CUDA keeps bf16 where the GPU
has it (always faster there for these models); other devices run fp32.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16")
MIN_SPEEDUP = 1.15      # bf16 must beat fp32 by this factor: timing noise on a busy machine is ~10%
_CACHE: dict[Hashable, PrecisionChoice] = {}


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str                      # "bf16" or "fp32"
    reason: str                         # one line for logs, reports and repr
    fp32_ms: float | None = None        # median time of one unit of work, where measured
    bf16_ms: float | None = None

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def cpu_capability() -> str:
    """The CPU's widest bf16-relevant feature, named beside every CPU timing."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:                    # not Linux: torch's own view
        return torch.backends.cpu.get_cpu_capability()
    for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX512"),
                       ("avx2", "AVX2")):
        if flag in flags:
            return name
    return "no AVX2"


def check_precision(field: str, value: Any) -> str:
    if value not in PRECISIONS:
        raise ValueError(f"{field}: expected 'auto', 'fp32' or 'bf16', got {value!r}")
    return value


def choose(asked: str, device: torch.device, key: Hashable, work: Callable[[bool], torch.Tensor],
           agree: Callable[[torch.Tensor, torch.Tensor], bool], rounds: int = 3) -> PrecisionChoice:
    """The precision to run `work` in. `work(bf16)` does one unit of the real job (a training step's
    forward and backward, a few imagined rollouts) and returns a result whose fp32 and bf16 values
    `agree` compares. Measured once per process and `key` (the model's shapes)."""
    check_precision("precision", asked)
    if asked != "auto":
        return PrecisionChoice(asked, f"{asked} asked for")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", "auto: a CUDA GPU with bf16")
        return PrecisionChoice("fp32", "auto: this CUDA GPU has no bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"auto: bf16 is not measured on {device.type}")
    full_key = (device.type, key)
    if full_key not in _CACHE:
        _CACHE[full_key] = measure(work, agree, rounds)
    return _CACHE[full_key]


def _timed(work: Callable[[bool], torch.Tensor], bf16: bool) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = work(bf16)
    return time.perf_counter() - t0, out


def measure(work: Callable[[bool], torch.Tensor], agree: Callable[[torch.Tensor, torch.Tensor], bool],
            rounds: int = 3) -> PrecisionChoice:
    """Alternating rounds after one warm-up each (the first call pays for allocations and kernels)."""
    try:
        _, ref = _timed(work, False)
        _, low = _timed(work, True)
    except RuntimeError as e:          # an op without a CPU bf16 kernel in this torch build
        return PrecisionChoice("fp32", f"auto: bf16 failed here ({str(e).splitlines()[0][:80]})")
    if not agree(ref.float(), low.float()):
        return PrecisionChoice("fp32", "auto: bf16 results disagree with fp32 on this model")
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for bf16 in (False, True):
            times[bf16].append(_timed(work, bf16)[0])
        if min(times[True]) > 2.0 * max(times[False]):
            break                      # clearly slower: no need to spend more rounds on it
    fp32_ms, bf16_ms = (1e3 * statistics.median(times[b]) for b in (False, True))
    speedup = fp32_ms / bf16_ms
    if speedup >= MIN_SPEEDUP:
        return PrecisionChoice("bf16", f"auto: bf16 measured {speedup:.2f}x faster than fp32 here "
                                       f"({cpu_capability()})", fp32_ms, bf16_ms)
    return PrecisionChoice("fp32", f"auto: bf16 measured {speedup:.2f}x the speed of fp32 here (needs "
                                   f"{MIN_SPEEDUP}x; {cpu_capability()})", fp32_ms, bf16_ms)


def close(rtol: float) -> Callable[[torch.Tensor, torch.Tensor], bool]:
    """An `agree` test: every element within rtol of fp32's, relative to fp32's largest magnitude."""
    def agree(ref: torch.Tensor, low: torch.Tensor) -> bool:
        scale = float(ref.abs().max()) or 1.0
        return bool(torch.isfinite(low).all()) and float((ref - low).abs().max()) <= rtol * scale
    return agree
