"""CPU threads for the `lewm` commands on a shared machine.

A small model's matrix products are short, so torch's intra-op threads wait for each other at
every one of them; when other processes hold the cores, each product waits for a descheduled
thread, and a 2-thread CEM solve runs several times slower than a 1-thread one (see the README's
Speed section). The commands therefore use only the cores that other work leaves free, measured
at start over a quarter of a second, unless the user chose (OMP_NUM_THREADS, which torchrun also
sets for its ranks).
"""
from __future__ import annotations

import logging
import os
import time

import torch

log = logging.getLogger(__name__)
SAMPLE_SECONDS = 0.25


def threads_for(busy_cores: float, cores: int, current: int) -> int:
    """Threads to use: the free cores, rounded, at least 1 and never more than torch's current count."""
    return max(1, min(current, round(cores - busy_cores)))


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is none (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(cores: int) -> float:
    """Cores other processes keep busy now: /proc/stat over SAMPLE_SECONDS, else the 1-minute load."""
    before = _cpu_times()
    if before is None:
        return min(float(cores), os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0.0
    time.sleep(SAMPLE_SECONDS)  # this process sleeps meanwhile, so it does not count itself
    after = _cpu_times()
    total = after[1] - before[1]
    return cores * (after[0] - before[0]) / total if total > 0 else 0.0


def fit_threads() -> int | None:
    """Lower torch's CPU threads to the free cores; the new count, or None when left as it was."""
    if os.environ.get("OMP_NUM_THREADS") or not hasattr(os, "sched_getaffinity"):
        return None
    cores = len(os.sched_getaffinity(0))
    current = torch.get_num_threads()
    if current <= 1:
        return None
    busy = busy_cores(cores)
    n = threads_for(busy, cores, current)
    if n >= current:
        return None
    torch.set_num_threads(n)
    log.info("threads: %d of %d (other work keeps %.1f of %d cores busy; OMP_NUM_THREADS=N chooses)",
             n, current, busy, cores)
    return n
