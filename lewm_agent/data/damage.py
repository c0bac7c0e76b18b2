"""Damaged rollout data, named: which file, column and episode cannot be read.

HDF5 raises a bare OSError when a chunk does not decode (a truncated or overwritten file) or
fails its Fletcher-32 checksum (files written since the writer turned checksums on); a run
that hits one should stop with the place to collect again, not a traceback from h5py.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def reading(rf: Any, name: str, start: int, stop: int) -> Iterator[None]:
    """Reads of `name` rows start..stop inside the block: an OSError becomes the named ValueError."""
    try:
        yield
    except OSError as e:
        raise damaged(rf, name, start, stop, e) from None


def read_rows(rf: Any, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows start..stop of `rf`'s column `name` (a RolloutFile or a reference-layout file)."""
    stop = rf.num_frames if stop is None else stop
    try:
        return rf.column(name)[start:stop]
    except OSError as e:
        raise damaged(rf, name, start, stop, e) from None


def damaged(rf: Any, name: str, start: int, stop: int, error: Exception) -> ValueError:
    """The error naming the first episode among rows start..stop whose `name` rows cannot be read."""
    ends, starts = rf.episode_ends, rf.episode_starts
    first = int(np.searchsorted(ends, start, side="right"))
    last = min(int(np.searchsorted(ends, max(stop - 1, start), side="right")), len(ends) - 1)
    why = str(error).splitlines()[0] if str(error) else type(error).__name__
    for i in range(first, last + 1):
        a, b = max(int(starts[i]), start), min(int(ends[i]), stop)
        try:
            rf.column(name)[a:b]
        except OSError:
            return ValueError(f"{rf.path}: column {name!r}, episode {i} (rows {a}-{b - 1}): damaged data that "
                              f"cannot be read ({why}); collect it again")
    return ValueError(f"{rf.path}: column {name!r}, rows {start}-{stop - 1}: cannot be read ({why})")
