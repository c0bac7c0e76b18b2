"""The public reference's HDF5 dataset layout (stable-worldmodel's HDF5Writer), read in place.

Its layout: one dataset per column over all frames, episode-major (`pixels` uint8 (N, H, W, 3),
`action` (N, A), `state`, `proprio`, ... one column per info key the recorder saw), and two
per-episode columns, `ep_len` (E,) and `ep_offset` (E,) (first row of each episode). Row t of
`action` is the action taken from frame t (the recorder rotates the reset's action to the end).
Its frameskip is ours: frames every `frameskip` rows, the action block of a frame the `frameskip`
action rows from it, flattened (its `action.reshape(num_steps, -1)`), so windows cut the same way.

`ReferenceRollouts` gives such a file the interface of `RolloutFile` (which returns one for a
file it detects in this layout), reading columns lazily from the file: train, eval and probe
stream it as they stream ours. Our `observation` column is the reference's `proprio`. The file
has no attributes: no env id (eval uses the checkpoint's), no action bounds (train assumes
[-1, 1] unless the file says otherwise).
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from .view import EpisodeView

LEDGER = ("ep_len", "ep_offset")
ALIASES = {"observation": "proprio"}  # our column name -> the reference's


def is_reference(path: str | os.PathLike) -> bool:
    """True for an HDF5 file in the reference's layout (its episode ledger, not our format attribute)."""
    try:
        with h5py.File(path, "r") as f:
            return all(k in f for k in LEDGER) and "format_version" not in f.attrs
    except OSError:
        return False  # not HDF5 (or still being written): RolloutFile reports it


class ReferenceRollouts(EpisodeView):
    """Read-only view of a reference dataset file, with RolloutFile's properties and methods."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file = h5py.File(self.path, "r")
        try:
            self._validate()
        except Exception:
            self.file.close()
            raise

    def _validate(self) -> None:
        f, p = self.file, self.path
        for c in ("pixels", "action"):
            if c not in f:
                raise ValueError(f"{p}: reference layout without column {c!r} (columns: {sorted(f)})")
        pix = f["pixels"]
        if pix.dtype != np.uint8 or pix.ndim != 4 or pix.shape[-1] != 3:
            raise ValueError(f"{p}: column 'pixels' must be uint8 (N, H, W, 3), got {pix.dtype} {pix.shape}")
        if f["action"].ndim != 2:
            raise ValueError(f"{p}: column 'action' must be (N, A), got {f['action'].shape}")
        lengths, starts = f["ep_len"][:].astype(np.int64), f["ep_offset"][:].astype(np.int64)
        if len(lengths) == 0 or len(lengths) != len(starts):
            raise ValueError(f"{p}: ep_len ({len(lengths)}) and ep_offset ({len(starts)}) must list the same, "
                             f"non-zero number of episodes")
        ends = starts + lengths
        if lengths.min() < 1 or starts[0] < 0 or np.any(starts[1:] < ends[:-1]):
            raise ValueError(f"{p}: ep_offset/ep_len: expected episodes in row order, not overlapping, each "
                             f"with at least one row")
        n = int(ends[-1])
        short = [c for c in f if c not in LEDGER and isinstance(f[c], h5py.Dataset) and f[c].shape[0] < n]
        if short:
            raise ValueError(f"{p}: column {short[0]!r} has {f[short[0]].shape[0]} rows, episodes need {n}")
        self.episode_starts, self.episode_ends = starts, ends

    def column(self, name: str) -> h5py.Dataset:
        key = name if name in self.file else ALIASES.get(name, name)
        if key not in self.file:
            raise KeyError(f"{self.path}: no column {name!r} (reference layout; columns: {sorted(self.file)})")
        return self.file[key]


__all__ = ["ReferenceRollouts", "is_reference"]
