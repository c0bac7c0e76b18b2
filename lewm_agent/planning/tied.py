"""Files in a checkpoint folder that belong to its weights (the cost probe, the actor).

Each records the hash of the weights it was fitted to. Beside other weights (a retrained run, a
copied file, a save killed between the weights and the file) it is refused where the planner
uses it and dropped with a warning elsewhere, so the folder still loads.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..checkpoint import resolve_checkpoint, save_tensors_atomic, weights_sha256


def save_tied(checkpoint: str | os.PathLike, name: str, tensors: dict[str, torch.Tensor],
              report: dict[str, Any]) -> Path:
    """Write `name` into the folder (atomically), its report as metadata, tied to the current weights."""
    folder = resolve_checkpoint(checkpoint)
    meta = {**{k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in report.items()
               if k != "weights_sha256"}, "weights_sha256": weights_sha256(folder)}
    path = folder / name
    save_tensors_atomic(path, tensors, meta)
    return path


def read_tied(checkpoint: str | os.PathLike, name: str, what: str, stale: str, fix: str,
              strict: bool) -> tuple[dict[str, torch.Tensor], dict[str, str], Path] | None:
    """(tensors, metadata, folder) of `name`, None where the folder has none (or, not strict, a stale one).

    Messages name the file as `what` ("cost probe"), say `stale` ("was fitted to other weights")
    of one beside other weights, and `fix` ("refit it with ...") where it is refused.
    """
    folder = resolve_checkpoint(checkpoint)
    path = folder / name
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            info = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001  safetensors raises its own error type for a torn or foreign file
        raise ValueError(f"checkpoint {folder}: {name} is not a readable {what} ({type(e).__name__}: {e})") from None
    if info.get("weights_sha256") != weights_sha256(folder):
        if not strict:
            warnings.warn(f"checkpoint {folder}: {name} {stale}; ignored", stacklevel=3)
            return None
        raise ValueError(f"checkpoint {folder}: {name} {stale}; {fix}")
    return tensors, info, folder
