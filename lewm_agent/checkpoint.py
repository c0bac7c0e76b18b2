"""Checkpoint folder: `model.safetensors` + `config.json` (+ `README.md` model card).

No pickle anywhere. `config.json` holds everything needed to rebuild and run the agent
(architecture, action normalization and bounds, planner defaults, env id); the same
JSON is embedded in the safetensors metadata so a folder whose two files come from
different saves is detected. Weights may be stored in float16/bfloat16 to keep shipped
folders small; they are de-quantized to float32 at load. Every file is written to a
temporary name and renamed, so a crash never leaves a half-written file behind.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ModelConfig, PlannerConfig
from .lock import LOCK_FILE
from .model.world_model import WorldModel
from .runlog import LOG_FILE

CHECKPOINT_FORMAT = 1
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
NEXT_CONFIG = CONFIG + ".next"  # the config of a save in progress (see save_checkpoint)
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything beside the weights. Per-dimension lists have the env's action_dim entries."""
    model: ModelConfig
    action_mean: tuple[float, ...]
    action_std: tuple[float, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    planner: PlannerConfig = PlannerConfig()
    env_id: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # data recipe, command, wall time, ...

    def __post_init__(self) -> None:
        n = self.model.action_dim
        for name in ("action_mean", "action_std", "action_low", "action_high"):
            raw = getattr(self, name)
            if (isinstance(raw, (str, bytes)) or not hasattr(raw, "__len__") or len(raw) != n
                    or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                               and math.isfinite(v) for v in raw)):
                raise ValueError(f"{name}: expected {n} finite numbers (model action_dim), got {raw!r}")
            object.__setattr__(self, name, tuple(float(v) for v in raw))
        if self.env_id is not None and not isinstance(self.env_id, str):
            raise ValueError(f"env_id: expected a string or null, got {self.env_id!r}")
        for name in ("env_kwargs", "training"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}: expected an object, got {getattr(self, name)!r}")
        if min(self.action_std) <= 0:
            raise ValueError(f"action_std: must be > 0, got {self.action_std}")
        if any(lo > hi for lo, hi in zip(self.action_low, self.action_high)):
            raise ValueError(f"action_low {self.action_low} exceeds action_high {self.action_high}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update(format_version=CHECKPOINT_FORMAT, model=self.model.to_dict(), planner=self.planner.to_dict())
        for name in ("action_mean", "action_std", "action_low", "action_high"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointMeta:
        d = dict(d)
        version = d.pop("format_version", None)
        if version != CHECKPOINT_FORMAT:
            raise ValueError(f"config.json: format_version {version!r} is not supported (expected {CHECKPOINT_FORMAT})")
        d.pop("weights_dtype", None)
        known = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(k for k in ("model", "action_mean", "action_std", "action_low", "action_high") if k not in d)
        if missing:
            raise ValueError(f"config.json: missing field(s) {missing}")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"config.json: unknown field(s) {unknown}")
        for name in ("model", "planner"):
            if not isinstance(d.get(name, {}), dict):
                raise ValueError(f"config.json: {name}: expected an object, got {d[name]!r}")
        try:
            d["model"] = ModelConfig.from_dict(d["model"])
            d["planner"] = PlannerConfig.from_dict(d.get("planner", {}))
            return cls(**d)
        except ValueError as e:
            raise ValueError(f"config.json: {e}") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # safetensors creates 0600 files; weights are meant to be shared
    os.replace(tmp, path)


def save_checkpoint(path: str | os.PathLike, model: WorldModel, meta: CheckpointMeta,
                    weights_dtype: str = "float32", card: str | None = None) -> Path:
    """Write a checkpoint folder; returns its path. `card` is the model card (README.md) text."""
    if weights_dtype not in _DTYPES:
        raise ValueError(f"weights_dtype: expected one of {sorted(_DTYPES)}, got {weights_dtype!r}")
    if meta.model != model.cfg:
        raise ValueError("meta.model does not match the model's own config")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = json.dumps({**meta.to_dict(), "weights_dtype": weights_dtype}, indent=2, sort_keys=True)
    dtype = _DTYPES[weights_dtype]
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    # Crash safety across the two files: the new config goes to config.json.next first, then the
    # weights replace theirs, then the config is renamed into place. A kill between the last two
    # steps leaves new weights beside the old config; `load_checkpoint` rolls forward from .next.
    atomic_write_bytes(folder / NEXT_CONFIG, (config + "\n").encode())
    save_tensors_atomic(folder / WEIGHTS, tensors, {"config": config})
    os.replace(folder / NEXT_CONFIG, folder / CONFIG)
    if card is not None:
        atomic_write_bytes(folder / CARD, card.encode())
    return folder


def shipped_checkpoints() -> dict[str, Path]:
    """Name -> folder of the checkpoints installed with the package (`lewm_checkpoints`)."""
    try:
        root = Path(str(importlib.resources.files("lewm_checkpoints")))
    except ModuleNotFoundError:  # running from a source tree that was never installed
        root = Path(__file__).resolve().parent.parent / "checkpoints"
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG).is_file()}


def shipped_planner(env_id: str | None) -> dict[str, Any]:
    """The planner settings of the shipped checkpoint for `env_id` ({} if none is shipped).

    A model trained on that env's data starts from the settings measured best there, not from
    the untuned PlannerConfig defaults. The cost probe's weight is left out: it needs a probe
    fitted to the new weights.
    """
    for folder in shipped_checkpoints().values():
        meta = read_meta(folder)
        if env_id is not None and meta.env_id == env_id:
            return {k: v for k, v in meta.planner.to_dict().items() if k != "probe_weight"}
    return {}


def is_shipped(folder: str | os.PathLike) -> bool:
    """Whether `folder` is one of the checkpoints installed with the package."""
    here = Path(folder).resolve()
    return any(here == p.resolve() for p in shipped_checkpoints().values())


def check_card_write(folder: str | os.PathLike, section: str, force: bool, pairs: int | None = None,
                     seeds: int | None = None) -> None:
    """Refuse a --card write that would quietly replace a measured card: into a shipped checkpoint
    (a test or a quick look would overwrite its published numbers), or with fewer pairs or seeds
    than the section's JSON holds. `force` (--force) allows both."""
    if force:
        return
    if is_shipped(folder):
        raise ValueError(f"--card: {folder} is a shipped checkpoint, installed with the package; its card "
                         "changes only with --force (or evaluate a copy)")
    old = Path(folder) / f"{section}.json"
    if pairs is None or not old.is_file():
        return
    try:
        had = json.loads(old.read_text())
        had_pairs, had_seeds = int(had["episodes_per_seed"]), len(had["seeds"])
    except (ValueError, KeyError, TypeError):
        return  # not an evaluation report of ours: nothing to compare with
    if pairs < had_pairs or (seeds or 0) < had_seeds:
        raise ValueError(f"--card: {old} holds {had_pairs} pairs x {had_seeds} seeds; this run has {pairs} x "
                         f"{seeds}, fewer, so it would replace a larger measurement; pass --force to do so")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder from a path, or from a shipped name ("pusht", "two_room", "cube").

    An existing path wins, so a local folder named like a shipped checkpoint is used as given.
    """
    folder = Path(path)
    if folder.exists():
        return folder
    shipped = shipped_checkpoints()
    if str(path) in shipped:
        return shipped[str(path)]
    raise FileNotFoundError(f"checkpoint {str(path)!r}: no such folder, and not a shipped checkpoint name "
                            f"(shipped: {', '.join(shipped) or 'none installed'})")


def _roll_forward(folder: Path) -> None:
    """Finish a save that was killed after its weights and before its config (see save_checkpoint)."""
    nxt = folder / NEXT_CONFIG
    if not (nxt.is_file() and (folder / WEIGHTS).is_file()):
        return
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:
            embedded = (f.metadata() or {}).get("config")
        if embedded is not None and json.loads(embedded) == json.loads(nxt.read_text()):
            os.replace(nxt, folder / CONFIG)
    except Exception:  # noqa: BLE001  unreadable or read-only: load_checkpoint reports what is wrong
        return


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
    folder = resolve_checkpoint(path)
    _roll_forward(folder)
    if not (folder / CONFIG).is_file():
        if (folder / LOG_FILE).is_file() or (folder / LOCK_FILE).is_file():  # a run started here
            raise FileNotFoundError(f"checkpoint {folder}: no checkpoint yet; the training run there has not "
                                    f"saved its first one (it saves every --ckpt-interval steps)")
        raise FileNotFoundError(f"checkpoint {folder}: no {CONFIG} (expected a folder with {WEIGHTS} and {CONFIG})")
    try:
        return CheckpointMeta.from_dict(json.loads((folder / CONFIG).read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"checkpoint {folder}: {CONFIG} is not valid JSON ({e})") from None


def make_env(checkpoint: str | os.PathLike, **overrides: Any) -> gym.Env:
    """`gym.make` of the checkpoint's env id with the env kwargs it was trained on (image size,
    render settings), then `overrides` (e.g. `render_mode="rgb_array"`, `max_episode_steps=100`).

    `checkpoint`: a folder or a shipped name ("pusht", "two_room", "cube").
    """
    meta = read_meta(checkpoint)
    return gym.make(meta.env_id, **{**meta.env_kwargs, **overrides})


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[WorldModel, CheckpointMeta]:
    """Rebuild the model (eval mode, float32, on `device`) and its metadata; validates everything.
    `path`: a checkpoint folder or a shipped name (`shipped_checkpoints()`)."""
    folder = resolve_checkpoint(path)
    meta = read_meta(folder)
    if not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"checkpoint {folder}: no {WEIGHTS}")
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:
            embedded = (f.metadata() or {}).get("config")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001  safetensors raises its own error type for a torn or foreign file
        raise ValueError(f"checkpoint {folder}: {WEIGHTS} is not a readable safetensors file "
                         f"({type(e).__name__}: {e})") from None
    if embedded is None or json.loads(embedded) != json.loads((folder / CONFIG).read_text()):
        raise ValueError(f"checkpoint {folder}: {CONFIG} does not match the config embedded in {WEIGHTS} "
                         "(the two files come from different saves)")
    model = WorldModel(meta.model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs config {tuple(v.shape)}"
             for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {folder}: weights do not match config.json: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                         f"shape mismatch {wrong[:5]}")
    bad = [k for k in expected if tensors[k].is_floating_point() and not torch.isfinite(tensors[k]).all()]
    if bad:
        raise ValueError(f"checkpoint {folder}: {WEIGHTS} holds NaN or inf in {bad[:5]}"
                         f"{'...' if len(bad) > 5 else ''}; expected finite weights (a diverged run?)")
    model.load_state_dict({k: tensors[k].to(v.dtype) for k, v in expected.items()})
    return model.to(device).eval(), meta


def weights_sha256(path: str | os.PathLike) -> str:
    """Hash of the weights file: ties a reported result to exactly the files it was measured on."""
    digest = hashlib.sha256()
    with open(resolve_checkpoint(path) / WEIGHTS, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_card_section(path: str | os.PathLike, name: str, text: str) -> Path:
    """Put `text` into the model card as section `name`, replacing that section from an earlier run.

    The section sits between HTML comment markers, so a rerun (e.g. of `lewm eval --card`)
    rewrites its own numbers and leaves the rest of the card as it was.
    """
    card = resolve_checkpoint(path) / CARD
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    old = card.read_text() if card.is_file() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + ("\n\n" if old else "") + block + "\n"
    atomic_write_bytes(card, new.encode())
    return card
