"""Fitting a cost probe (planning/cost_probe.py): a ridge map from embeddings to a labelled quantity.

Fitted once, offline, on a training file's simulator labels with the linear-probe tools of
`lewm probe`; the agent only loads the matrix, so this module (rollout files, env classes)
stays out of the planner's imports.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..data.rollouts import RolloutFile
from ..data.windows import split_episodes
from ..device import resolve_device
from .probe import check_labelled_file, embed_rows, env_quantities, sample_rows, score


def ridge_matrix(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Closed-form ridge on standardized inputs, as a map of embedding differences.

    Returns (M (D, k), the offset for absolute predictions, the quantity's pooled std): the
    prediction for z is `z @ M * scale + offset`, and `(z - g) @ M` its change in pooled stds.
    """
    mu, sd = x.mean(0), x.std(0) + 1e-8
    a = (x - mu) / sd
    y_mu = y.mean(0)
    w = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]), a.T @ (y - y_mu))
    scale = float(np.sqrt(((y - y_mu) ** 2).mean(0).mean())) or 1.0
    m = w / sd[:, None] / scale
    return m, y_mu - (mu @ m) * scale, scale


def fit_cost_probe(checkpoint: str | os.PathLike, data: str | os.PathLike, quantity: str, frames: int = 20_000,
                   val_fraction: float = 0.2, ridge: float = 1e-2, seed: int = 0, offset: int = 25,
                   pairs: int = 500, device: str = "auto") -> tuple[np.ndarray, dict[str, Any]]:
    """Fit P for `quantity` on the frames of most episodes of `data`; score it on the others.

    Fit it on the training file (its labels are the simulator's, seen once, offline), never on
    a test file the agent is evaluated on. Also measured on held-out pairs `offset` frames apart
    (the evaluation's goal offset): how each cost term follows the quantity's displacement, and
    the weight at which the two terms' medians are equal. Returns (P (D, k) float32, a report).
    """
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, dev)
    with RolloutFile(data) as rf:
        check_labelled_file(rf, meta, str(data))  # the same refusals as `lewm probe`, render settings included
        split = split_episodes(rf.num_episodes, val_fraction, seed)
        if len(split.train_episodes) == 0 or len(split.val_episodes) == 0:
            raise ValueError(f"--data: {data} holds {rf.num_episodes} episodes; too few to fit and score a probe")
        n_val = max(1, round(frames * val_fraction))
        fit = _labelled(model, rf, sample_rows(rf, np.sort(split.train_episodes), frames - n_val), quantity, dev)
        held = _labelled(model, rf, sample_rows(rf, np.sort(split.val_episodes), n_val), quantity, dev)
        m, shift, scale = ridge_matrix(fit[0], fit[1], ridge)
        starts = _pair_starts(rf, np.sort(split.val_episodes), offset, pairs)
        balance = _cost_terms(m, _labelled(model, rf, starts, quantity, dev),
                              _labelled(model, rf, starts + offset, quantity, dev)) if len(starts) > 1 else None
    report = {"quantity": quantity, "unit": fit[2], "data": str(data), "fit_frames": len(fit[0]),
              "score_frames": len(held[0]), "ridge": ridge, "scale": scale,
              "held_out": score(held[1], held[0] @ m * scale + shift, fit[2]),
              "pairs": None if balance is None else {"offset": offset, **balance}}
    return m.astype(np.float32), report


def _labelled(model: torch.nn.Module, rf: Any, rows: np.ndarray, quantity: str,
              device: torch.device) -> tuple[np.ndarray, np.ndarray, str]:
    """(embeddings (N, D), the quantity's values (N, k), its unit) at sorted `rows`."""
    q = env_quantities(rf.env_id, rf.column("state")[rows], rf.column("observation")[rows])
    if quantity not in q:
        raise ValueError(f"--cost-probe: {rf.env_id} has no quantity {quantity!r}; expected one of {sorted(q)}")
    return embed_rows(model, rf, rows, device), q[quantity][0], q[quantity][1]


def _pair_starts(rf: Any, episodes: np.ndarray, offset: int, n: int) -> np.ndarray:
    """About n rows, evenly spread, whose frame `offset` later is in the same episode."""
    rows = np.concatenate([np.arange(rf.episode_starts[e], rf.episode_ends[e] - offset) for e in episodes])
    return np.unique(rows[np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(np.int64)]) \
        if len(rows) else rows


def _cost_terms(m: np.ndarray, start: tuple, goal: tuple) -> dict[str, float]:
    """Pearson r of each cost term with the quantity's displacement, and the balancing weight."""
    dz = start[0] - goal[0]
    latent, probed = (dz ** 2).sum(1), ((dz @ m) ** 2).sum(1)
    moved = np.linalg.norm(goal[1] - start[1], axis=1)

    def r(a: np.ndarray) -> float:
        return float(np.corrcoef(a, moved)[0, 1]) if a.std() > 0 and moved.std() > 0 else 0.0
    return {"pairs": len(dz), "r_latent_term": r(latent), "r_probe_term": r(probed),
            "median_displacement": float(np.median(moved)),
            "balancing_weight": float(np.median(latent) / max(np.median(probed), 1e-12))}
