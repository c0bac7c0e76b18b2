"""What every read-only rollout file offers once its episode ledger is known (ours and the
reference's layout alike): sizes, attributes, episodes, named reads of damaged data, closing.

A subclass opens `self.file` (h5py) and sets `self.path`, `self.episode_starts` and
`self.episode_ends`; it may override `column` (the reference layout renames some columns).
"""
from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

from .damage import damaged, read_rows


class EpisodeView:
    file: h5py.File
    episode_starts: np.ndarray
    episode_ends: np.ndarray

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def num_frames(self) -> int:
        return int(self.episode_ends[-1])

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts

    @property
    def action_dim(self) -> int:
        return int(self.file["action"].shape[1])

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.file["pixels"].shape[1:3])  # type: ignore[return-value]

    def attr(self, key: str, default: Any = None) -> Any:
        """A file attribute, JSON-decoded where it was stored as JSON."""
        if key not in self.file.attrs:
            return default
        v = self.file.attrs[key]
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, str):
            try:
                return json.loads(v)
            except json.JSONDecodeError:
                return v
        return v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v  # plain Python: JSON-able

    @property
    def env_id(self) -> str | None:
        return self.attr("env_id")

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return self.attr("env_kwargs", {}) or {}

    def column(self, name: str) -> h5py.Dataset:
        if name not in self.file:
            raise KeyError(f"{self.path}: no column {name!r} (columns: {sorted(self.file)})")
        return self.file[name]

    def episode(self, i: int, columns: tuple[str, ...] = ("pixels", "action", "observation", "state")) -> dict:
        if not 0 <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range [0, {self.num_episodes})")
        a, b = int(self.episode_starts[i]), int(self.episode_ends[i])
        return {c: self.read(c, a, b) for c in columns}

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows start..stop of a column; damaged data is named (file, column, episode): see damage.py."""
        return read_rows(self, name, start, stop)

    def damaged(self, name: str, start: int, stop: int, error: Exception) -> ValueError:
        return damaged(self, name, start, stop, error)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
