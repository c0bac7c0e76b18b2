"""A run's resumable state: weights, optimizer moments, RNG states and the step in one file
(`train_state.safetensors`, written atomically), and resuming from it."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..checkpoint import CheckpointMeta, atomic_write_bytes, save_tensors_atomic
from ..runlog import LOG_FILE, log_rows
from .config import RESUMABLE, TrainConfig

logger = logging.getLogger("lewm_agent.training.train")  # the trainer's log, whichever file speaks
STATE_FILE = "train_state.safetensors"


def save_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                cfg: TrainConfig, meta: CheckpointMeta, wall: float) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.state_dict()["param_groups"]]
    metadata = {"step": str(step), "wall_seconds": str(wall), "train_config": json.dumps(dataclasses.asdict(cfg)),
                "meta": json.dumps(meta.to_dict()), "param_groups": json.dumps(groups)}
    save_tensors_atomic(path, tensors, metadata)


def recorded_precision(path: Path) -> dict[str, Any] | None:
    """The precision choice a saved run recorded (None for runs older than the record)."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata().get("meta", "{}"))
    return meta.get("training", {}).get("precision")


def load_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig,
                device: torch.device) -> tuple[int, float]:
    """Restore weights, optimizer and RNG; returns the step and the wall seconds trained so far."""
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    old = json.loads(md["train_config"])
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # fields newer than the run
    changed = sorted(k for k, v in dataclasses.asdict(cfg).items()
                     if k not in RESUMABLE and old.get(k, defaults[k]) != v)
    if changed:
        raise ValueError(f"{path.parent}: a run with different settings is there ({changed}: "
                         f"{ {k: old.get(k) for k in changed} }); use another --out or the same settings")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v.to(device) if name != "step" else v
    groups = json.loads(md["param_groups"])
    sd = opt.state_dict()
    for g, saved in zip(sd["param_groups"], groups):
        g.update(saved)
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(md["step"]), float(md.get("wall_seconds", 0.0))


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone), and a last
    line cut short by a kill mid-write (`log_rows`)."""
    if not path.exists():
        return
    keep = [line for line, row in log_rows(path) if row["step"] <= step]
    atomic_write_bytes(path, "".join(line + "\n" for line in keep).encode())


def resume(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, device: torch.device,
           main: bool) -> tuple[int, float, dict[str, Any] | None]:
    """(step, wall seconds so far, the recorded precision choice) of the run in `out`; (0, 0.0, None)
    for a fresh one. Rank 0 (`main`) also cuts the log back to the step resumed from."""
    if not (out / STATE_FILE).exists():
        return 0, 0.0, None
    step, wall_before = load_state(out / STATE_FILE, model, opt, cfg, device)
    resumed = recorded_precision(out / STATE_FILE)
    if main:
        truncate_log(out / LOG_FILE, step)
        logger.info("resuming %s from step %d", out, step)
    return step, wall_before, resumed
