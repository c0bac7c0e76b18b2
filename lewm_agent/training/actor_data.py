"""Hindsight goals for the actor: every recorded frame is a goal the actions before it reached.

From a rollout file the frozen encoder embeds whole episodes once; a training example is then
(z_t, z_{t+k*fs}, the recorded blocks from t), with k drawn uniformly from 1..K blocks. Blocks
at or after block k went beyond the goal (the expert heading for its own next target), so they
are masked out of the loss. All later sampling works on these arrays alone, so training costs
no further encoder pass, and a test can build a set from a synthetic latent directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checkpoint import CheckpointMeta
from ..data.rollouts import RolloutFile
from ..progress import Progress

ENCODE_BATCH = 256  # frames per encoder call


@dataclass
class HindsightSet:
    """Latents (N, D) and normalized actions (N, action_dim) of whole episodes, episode-major.

    ends[e] is the row after episode e; each episode's last action row is NaN (none taken there).
    """
    z: np.ndarray
    actions: np.ndarray
    ends: np.ndarray
    frameskip: int

    def __post_init__(self) -> None:
        self.starts = np.concatenate([[0], self.ends[:-1]]).astype(np.int64)
        self.actions = np.nan_to_num(self.actions).astype(np.float32)  # masked rows only; never targets

    def sample(self, rng: np.random.Generator, n: int, horizon: int, max_blocks: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(z_t (n, D), goals (n, D), target blocks (n, H, A), mask (n, H)) for uniform k in 1..max_blocks.

        Starts are uniform over the frames that have a goal k blocks ahead in their episode.
        """
        fs = self.frameskip
        k = rng.integers(1, max_blocks + 1, n)
        lengths = self.ends - self.starts
        room = np.maximum(lengths[None, :] - 1 - k[:, None] * fs, -1) + 1       # (n, E) valid starts per episode
        if (room.sum(1) == 0).any():
            raise ValueError(f"no episode is longer than {max_blocks} blocks of {fs} steps; lower the goal range")
        # A start uniform over all valid (episode, t): pick the episode by its count, then t within it.
        cum = room.cumsum(1)
        pick = (rng.random(n) * cum[:, -1]).astype(np.int64)
        ep = (cum <= pick[:, None]).sum(1)
        t = self.starts[ep] + pick - np.where(ep > 0, cum[np.arange(n), ep - 1], 0)
        goal = t + k * fs
        j = np.arange(horizon)
        rows = np.minimum(t[:, None, None] + j[None, :, None] * fs + np.arange(fs), self.ends[ep][:, None, None] - 1)
        blocks = self.actions[rows].reshape(n, horizon, -1)                       # (n, H, fs * action_dim)
        mask = (j[None, :] < np.minimum(k, horizon)[:, None]).astype(np.float32)  # blocks before the goal
        return self.z[t], self.z[goal], blocks, mask


def episodes_within(lengths: np.ndarray, episodes: np.ndarray, frames: int) -> np.ndarray:
    """Whole episodes, evenly spread over `episodes`, holding at most about `frames` frames (at least one)."""
    if lengths[episodes].sum() <= frames:
        return episodes
    keep = max(1, int(len(episodes) * frames / lengths[episodes].sum()))
    return episodes[np.linspace(0, len(episodes) - 1, keep).round().astype(np.int64)]


@torch.no_grad()
def embed_episodes(model: torch.nn.Module, rf: RolloutFile, meta: CheckpointMeta, episodes: np.ndarray,
                   device: torch.device, progress: Progress | None = None) -> HindsightSet:
    """The hindsight set of `episodes` of `rf`: every frame embedded, actions normalized as the model's."""
    zs, acts, ends = [], [], []
    mean, std = np.asarray(meta.action_mean, np.float32), np.asarray(meta.action_std, np.float32)
    for e in episodes:
        if progress is not None:
            progress.update(1)
        a, b = int(rf.episode_starts[e]), int(rf.episode_ends[e])
        pixels = rf.read("pixels", a, b)
        for i in range(0, len(pixels), ENCODE_BATCH):
            frames = torch.from_numpy(pixels[i:i + ENCODE_BATCH]).to(device)
            zs.append(model.encode(frames[:, None])[:, 0].float().cpu().numpy())
        acts.append((rf.read("action", a, b) - mean) / std)
        ends.append(b - a)
    return HindsightSet(np.concatenate(zs), np.concatenate(acts), np.cumsum(ends).astype(np.int64),
                        model.cfg.frameskip)
