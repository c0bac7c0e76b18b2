"""Training data from a rollout file: the episode split, its windows, the action checks and
statistics, and the window sources (in memory, or streamed from the file) that batches are drawn
from. It takes the few settings it needs, not the trainer's config: data sits below training."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .rollouts import RolloutFile
from .windows import (
    MemoryWindows,
    StreamWindows,
    WindowSpec,
    action_stats,
    check_actions,
    split_episodes,
    window_starts,
)

Sources = tuple[MemoryWindows | StreamWindows, MemoryWindows | StreamWindows]  # (training, validation)


@dataclass(frozen=True)
class TrainingData:
    spec: WindowSpec
    train_starts: np.ndarray
    val_starts: np.ndarray          # a fixed, seeded subset of the validation windows
    norm_actions: np.ndarray        # every frame's action, normalized with the training statistics
    mean: np.ndarray
    std: np.ndarray
    low: list[float]
    high: list[float]


def load_data(rf: RolloutFile, name: str, spec: WindowSpec, val_fraction: float, val_windows: int) -> TrainingData:
    """Split episodes (seeded by `spec.seed`), find their windows, keep `val_windows` of the
    validation ones, refuse bad action rows, and normalize the actions with the training
    episodes' statistics. `name`: the file as the user gave it, for the error."""
    split = split_episodes(rf.num_episodes, val_fraction, spec.seed)
    train_starts = window_starts(rf, split.train_episodes, spec.span)
    val_starts = window_starts(rf, split.val_episodes, spec.span)
    if len(train_starts) == 0:
        raise ValueError(f"{name}: no training window of {spec.span + 1} env steps (history {spec.history} x "
                         f"frameskip {spec.frameskip}); episodes are {int(rf.episode_lengths.max())} frames at most")
    val_starts = np.sort(np.random.default_rng(spec.seed).permutation(val_starts)[:val_windows])
    actions = rf.read("action")
    low = rf.attr("action_low", [-1.0] * rf.action_dim)
    high = rf.attr("action_high", [1.0] * rf.action_dim)
    check_actions(actions, rf.episode_ends, low, high)
    train_rows = np.concatenate([np.arange(rf.episode_starts[e], rf.episode_ends[e]) for e in split.train_episodes])
    mean, std = action_stats(actions, train_rows)
    norm_actions = ((actions - mean) / std).astype(np.float32)
    return TrainingData(spec, train_starts, val_starts, norm_actions, mean, std, low, high)


def data_mode(asked: str, rf: RolloutFile) -> str:
    """"memory" or "stream": "auto" keeps the pixels in memory if they fit in 4 GiB."""
    if asked != "auto":
        return asked
    return "memory" if rf.column("pixels").nbytes <= 4 * 2**30 else "stream"


def memory_sources(rf: RolloutFile, data: TrainingData, device: torch.device) -> Sources:
    """Windows over the file's pixels read once into memory (onto the GPU where they fit)."""
    pixels = rf.read("pixels")
    keep_on = device if _fits_on(device, pixels.nbytes) else torch.device("cpu")
    source = MemoryWindows(pixels, data.norm_actions, data.train_starts, data.spec, keep_on)
    return source, MemoryWindows(source.pixels, data.norm_actions, data.val_starts, data.spec, keep_on)


def stream_sources(path: str, data: TrainingData, steps: range) -> Sources:
    """Windows read from the file as batches are drawn, for the training steps `steps`."""
    return (StreamWindows(path, data.norm_actions, data.train_starts, data.spec, steps),
            StreamWindows(path, data.norm_actions, data.val_starts, data.spec, range(0)))


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether the uint8 pixels may live on a CUDA device: gathering batches there avoids a host copy
    per step. Up to 40% of its free memory, leaving the rest to the model and activations."""
    return device.type == "cuda" and nbytes < 0.4 * torch.cuda.mem_get_info(device)[0]


def batches(source: MemoryWindows | StreamWindows, steps: range, workers: int,
            device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of training steps `steps` (a streamed source knows its steps; `workers` read it)."""
    if isinstance(source, MemoryWindows):
        for step in steps:
            yield source.batch(step)
        return
    loader = torch.utils.data.DataLoader(
        source, batch_size=None, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, persistent_workers=False)
    try:
        for pixels, actions in loader:
            yield pixels.to(device, non_blocking=True), actions.to(device, non_blocking=True)
    except ValueError as e:  # a worker's (e.g. damaged data): torch adds its traceback; keep the one line
        raise ValueError(str(e).strip().splitlines()[-1].removeprefix("ValueError: ")) from None
