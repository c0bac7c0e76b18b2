"""A cost probe: a linear map from the latent to the task's physical quantity, for the planner's cost.

The paper's planning cost is the squared latent distance to the goal image's embedding. Every
pixel of the image weighs in it, so where the part of the scene that decides success is small
(Cube: a 4 cm cube beside an arm that fills much of the frame) plans that move the arm towards
its pose in the goal image lower the cost as much as plans that carry the cube there. A cost
probe adds `probe_weight * |P (z - g)|^2`, with P a ridge probe from the embedding to the
quantity (e.g. the cube's xyz), fitted once on a rollout file's labelled frames. At run time it
needs nothing but the two images: P is a fixed (D, k) matrix in latent space.

P is fitted on standardized embeddings and its output divided by the quantity's pooled standard
deviation, so `|P (z - g)|^2` counts the predicted displacement in standard deviations of the
quantity, isotropically in the env's units (fitted in
`evaluation/cost_probe_fit.py`). The folder file records the weights' hash: a probe
beside weights it was not fitted to is refused where the planner weighs it in, ignored elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .tied import read_tied, save_tied

COST_PROBE = "cost_probe.safetensors"


def save_cost_probe(checkpoint: str | os.PathLike, matrix: np.ndarray, report: dict[str, Any]) -> Path:
    """Write P into the checkpoint folder (atomically), tied to its current weights."""
    return save_tied(checkpoint, COST_PROBE, {"matrix": torch.as_tensor(matrix, dtype=torch.float32)}, report)


def load_cost_probe(checkpoint: str | os.PathLike, strict: bool = True) -> tuple[torch.Tensor, dict[str, str]] | None:
    """(P (D, k), its recorded fit) of a checkpoint folder, or None where it has none.

    A probe fitted to other weights raises; with `strict=False` (a planner that does not use it)
    it is dropped with a warning, so the folder still loads.
    """
    found = read_tied(checkpoint, COST_PROBE, "cost probe", "was fitted to other weights",
                      f"refit it with `lewm probe --checkpoint {checkpoint} --data TRAINING_FILE "
                      "--cost-probe QUANTITY`", strict)
    if found is None:
        return None
    tensors, info, folder = found
    matrix = tensors.get("matrix", torch.empty(0))
    if matrix.dim() != 2 or not torch.isfinite(matrix).all():
        raise ValueError(f"checkpoint {folder}: {COST_PROBE}: expected a finite (latent_dim, k) matrix, "
                         f"got shape {tuple(matrix.shape)}")
    return matrix.float(), info
