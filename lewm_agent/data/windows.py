"""Training windows cut from a rollout file.

A window is `history + 1` frames spaced `frameskip` env steps apart, with the action
block (the `frameskip` env actions) taken from each of its first `history` frames.
Episodes are split into train/validation as wholes, action statistics come from the
training split only, and batches are drawn by a stateless rule (batch k depends only
on the seed and k), so a resumed run sees exactly the batches it would have seen.

Two sources share one interface, `batch(step) -> (pixels uint8 (B, h+1, H, W, 3),
actions float32 (B, h, A))`: `MemoryWindows` gathers from arrays in RAM (or on the
GPU), `StreamWindows` reads the HDF5 file lazily (one handle per DataLoader worker),
so datasets larger than RAM train too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .rollouts import RolloutFile


@dataclass(frozen=True)
class Split:
    train_episodes: np.ndarray
    val_episodes: np.ndarray


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> Split:
    """Seeded split of whole episodes; at least one episode on each side when possible."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(num_episodes)
    n_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_episodes >= 2:
        n_val = min(max(n_val, 1), num_episodes - 1)
    return Split(np.sort(perm[n_val:]), np.sort(perm[:n_val]))


def window_starts(rf: RolloutFile, episodes: np.ndarray, span: int) -> np.ndarray:
    """Global start rows t of every window inside the given episodes (t + span stays in the episode)."""
    starts = rf.episode_starts[episodes]
    counts = np.maximum(rf.episode_lengths[episodes] - span, 0)  # valid local t: 0 .. L-1-span
    if counts.sum() == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([s + np.arange(c) for s, c in zip(starts, counts)]).astype(np.int64)


def check_actions(actions: np.ndarray, episode_ends: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
    """Refuse a dataset whose actions are non-finite (except each episode's last row, which has
    no action by the file format) or far outside the action space (over 100x its bound): either
    would silently become zeros or an infinite normalization."""
    a = np.asarray(actions, dtype=np.float64)
    finite = np.isfinite(a).all(1)
    finite[np.asarray(episode_ends, dtype=np.int64) - 1] = True
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"action: row {row} is {a[row].tolist()}; expected finite actions (only the last row "
                         f"of each episode may be NaN)")
    bound = 100.0 * np.maximum(np.abs(np.asarray(low, np.float64)), np.abs(np.asarray(high, np.float64)))
    far = (np.abs(np.nan_to_num(a)) > bound).any(1)
    if far.any():
        row = int(np.flatnonzero(far)[0])
        raise ValueError(f"action: row {row} is {a[row].tolist()}, over 100x the action bounds "
                         f"[{np.asarray(low).tolist()}, {np.asarray(high).tolist()}]")


def action_stats(actions: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the finite action rows among `rows` (std floored at 1e-6)."""
    a = actions[rows]
    a = a[np.isfinite(a).all(1)]
    if len(a) == 0:
        raise ValueError("action: the training split has no finite action rows")
    return a.mean(0).astype(np.float32), np.maximum(a.std(0), 1e-6).astype(np.float32)


@dataclass(frozen=True)
class WindowSpec:
    history: int
    frameskip: int
    batch_size: int                 # the global batch: with `world` ranks each draws batch_size / world
    seed: int
    rank: int = 0
    world: int = 1

    @property
    def span(self) -> int:  # rows from the first to the last frame of a window
        return self.history * self.frameskip

    def frame_rows(self, starts: np.ndarray) -> np.ndarray:
        return starts[:, None] + self.frameskip * np.arange(self.history + 1)  # (B, h+1)

    def action_rows(self, starts: np.ndarray) -> np.ndarray:
        return starts[:, None] + np.arange(self.span)  # (B, h*fs): rows of the h action blocks

    def draw(self, starts: np.ndarray, step: int) -> np.ndarray:
        """The window starts of batch `step`: uniform with replacement, seeded by (seed, step); under
        torchrun, this rank's disjoint slice of that global batch (so ranks need no sampler state)."""
        rng = np.random.default_rng([self.seed, step])
        batch = np.sort(starts[rng.integers(0, len(starts), self.batch_size)])
        per = self.batch_size // self.world
        return batch[self.rank * per:(self.rank + 1) * per]


def _blocks(norm_actions: np.ndarray, rows: np.ndarray, spec: WindowSpec) -> np.ndarray:
    a = norm_actions[rows.reshape(-1)]                                    # (B*h*fs, action_dim)
    return a.reshape(len(rows), spec.history, -1).astype(np.float32)     # (B, h, fs*action_dim)


class MemoryWindows:
    """Windows gathered from the whole (normalized) dataset held in memory, optionally on a device."""

    def __init__(self, pixels: np.ndarray | torch.Tensor, norm_actions: np.ndarray, starts: np.ndarray,
                 spec: WindowSpec, device: torch.device | str = "cpu"):
        self.spec, self.starts = spec, starts
        self.device = torch.device(device)
        self.pixels = torch.as_tensor(pixels).to(self.device)  # a tensor already there is shared, not copied
        self.actions = torch.from_numpy(np.nan_to_num(norm_actions)).to(self.device)

    def batch(self, step: int, starts: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.spec.draw(self.starts, step) if starts is None else starts
        f = torch.from_numpy(self.spec.frame_rows(s)).to(self.device)
        a = torch.from_numpy(self.spec.action_rows(s)).to(self.device)
        pixels = self.pixels[f]                                              # (B, h+1, H, W, 3)
        actions = self.actions[a].reshape(len(s), self.spec.history, -1)   # (B, h, A)
        return pixels, actions


class StreamWindows(torch.utils.data.Dataset):
    """Windows read from the HDF5 file on demand; item k is batch k (use with a DataLoader)."""

    def __init__(self, path: str | Path, norm_actions: np.ndarray, starts: np.ndarray, spec: WindowSpec,
                 steps: range):
        self.path, self.spec, self.starts, self.steps = Path(path), spec, starts, steps
        self.norm_actions = np.nan_to_num(norm_actions)
        self._rf: RolloutFile | None = None  # opened lazily: one handle per worker process

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch(self.steps[k])

    def batch(self, step: int, starts: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self._rf is None:
            self._rf = RolloutFile(self.path)
        s = self.spec.draw(self.starts, step) if starts is None else starts
        rows = self.spec.frame_rows(s)                                       # (B, h+1)
        column = self._rf.column("pixels")
        # One read per frame: h5py's fancy/strided selections are far slower than plain reads (README, Speed).
        frames = np.empty((rows.size, *column.shape[1:]), np.uint8)
        for i, r in enumerate(rows.reshape(-1)):
            try:
                frames[i] = column[int(r)]
            except OSError as e:
                raise self._rf.damaged("pixels", int(r), int(r) + 1, e) from None
        pixels = torch.from_numpy(frames.reshape(*rows.shape, *column.shape[1:]))  # (B, h+1, H, W, 3)
        actions = torch.from_numpy(_blocks(self.norm_actions, self.spec.action_rows(s), self.spec))
        return pixels, actions
