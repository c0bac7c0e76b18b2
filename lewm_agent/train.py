"""Offline LeWM trainer: a visible loop from a rollout file to a checkpoint folder.

    loss = pred_loss(predict(z_1..z_h, a_1..a_h), z_2..z_{h+1}) + lambda * sigreg(z)

AdamW, linear warm-up then cosine decay, gradient clipping, bf16 autocast where it is
faster (on CUDA; on a CPU only where a short measurement at start shows it, see precision.py).
The output folder is at every moment a loadable checkpoint (`model.safetensors`,
`config.json`, `README.md`) plus `train_state.safetensors` (weights, optimizer moments,
RNG states and the step, in one file written atomically) and `log.jsonl`. Restarting
with the same arguments resumes from `train_state.safetensors`, losing at most one
checkpoint interval; log lines written after that checkpoint are dropped.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import safe_open

from .checkpoint import CheckpointMeta, atomic_write_bytes, save_checkpoint, save_tensors_atomic
from .config import PRESETS, ModelConfig, PlannerConfig, preset
from .data import (MemoryWindows, StreamWindows, WindowSpec, action_stats, check_actions, split_episodes,
                   window_starts)
from .distributed import Ranks, barrier, mean_over_ranks, setup, teardown, wrap
from .losses import embedding_stats, pred_loss, sigreg
from .lock import RunLock
from .plot import LOG_FILE, log_rows
from .precision import PrecisionChoice, check_precision, choose, close
from .progress import Progress
from .rollouts import RolloutFile
from .world_model import WorldModel

logger = logging.getLogger(__name__)
STATE_FILE = "train_state.safetensors"
# Fields that may change when a run is resumed; any other change is refused.
RESUMABLE = {"steps", "eval_interval", "ckpt_interval", "log_interval", "workers", "device", "data_mode",
             "progress", "dist_timeout"}


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    preset: str = "small"
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 1e-3
    warmup_steps: int = 500
    grad_clip: float = 1.0
    sigreg_weight: float | None = None   # lambda; None: `default_sigreg_weight` of the preset
    num_projections: int = 1024
    knots: int = 17
    val_fraction: float = 0.1
    val_windows: int = 512
    eval_interval: int = 500
    ckpt_interval: int = 500
    log_interval: int = 50
    seed: int = 0
    device: str = "auto"
    data_mode: str = "auto"              # "memory", "stream", or "auto" (memory if pixels fit in 4 GiB)
    workers: int = 4                     # DataLoader workers in stream mode
    bn_batches: int = 20                 # training batches that re-estimate BatchNorm statistics (0: off)
    weights_dtype: str = "float32"       # storage of the exported model.safetensors
    precision: str = "auto"              # autocast: "auto" (bf16 where measured faster), "fp32" or "bf16"
    sequence_frames: int | None = None   # frames per training window; None: see `sequence_frames`
    progress: bool = True
    dist_timeout: float = 600.0          # torchrun: seconds a rank waits for the others before failing

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.data_mode not in ("auto", "memory", "stream"):
            raise ValueError(f"data_mode: expected 'auto', 'memory' or 'stream', got {self.data_mode!r}")
        for name in ("steps", "batch_size", "eval_interval", "ckpt_interval", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        check_precision("precision", self.precision)
        if self.sigreg_weight is not None and not 0 <= self.sigreg_weight < math.inf:
            raise ValueError(f"sigreg_weight: expected a finite number >= 0, got {self.sigreg_weight}")
        if self.sequence_frames is not None and self.sequence_frames < 2:
            raise ValueError(f"sequence_frames: expected an int >= 2 (a frame and its successor), "
                             f"got {self.sequence_frames}")
        if self.bn_batches < 0:
            raise ValueError(f"bn_batches: must be >= 0, got {self.bn_batches}")
        if self.batch_size < 2:
            raise ValueError("batch_size: SIGReg needs at least 2 samples per batch")
        if not 0 < self.dist_timeout < math.inf:
            raise ValueError(f"dist_timeout: expected a positive number of seconds, got {self.dist_timeout}")


def sequence_frames(cfg: TrainConfig, model_cfg: ModelConfig) -> int:
    """Frames per training window. The window predictor sees `history` frames, so history + 1
    (each window's last prediction is the one a planner makes). The banded predictor sees further
    back with depth and rolls out past the context, so by default it trains on the planner's
    span: history context frames plus the default horizon of 5 predictions."""
    if cfg.sequence_frames is not None:
        return cfg.sequence_frames
    return model_cfg.history + (1 if model_cfg.predictor_attention == "window" else PlannerConfig().horizon)


def default_sigreg_weight(preset_name: str, latent_dim: int) -> float:
    """lambda when none is given. Our prediction loss sums over the D latent dimensions; the
    reference code averages over them, so its lambda = 0.09 is 0.09 * D here (17.3 for the paper's
    D = 192). The `paper` preset gets that: with 0.09 here it collapsed on one H200 (Push-T, 224 px,
    2021 steps: embedding std 0.15 at step 25 and 0.008 at the end, SIGReg stuck at 51, 4% success).
    The CPU presets keep 0.09, the value their Two-Room runs were measured with (0.09 * D there
    over-spread the latent and left CEM on a flat cost plateau)."""
    return 0.09 * latent_dim if preset_name == "paper" else 0.09


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    return torch.autocast(device.type, torch.bfloat16, enabled=bf16)


def train_precision(cfg: TrainConfig, model: WorldModel, source: MemoryWindows | StreamWindows,
                    device: torch.device, ranks: Ranks, resumed: dict[str, Any] | None = None) -> PrecisionChoice:
    """`cfg.precision`, with "auto" measured on a copy of the model (its BatchNorm statistics
    and gradients stay untouched) and one real batch: the step's forward and backward at both
    precisions. Every rank must find bf16 faster for the run to use it. A resumed "auto" run
    keeps the choice it started with (`resumed`), so its arithmetic is that of an unbroken run."""
    if cfg.precision == "auto" and resumed and resumed.get("precision") in ("fp32", "bf16"):
        return PrecisionChoice(resumed["precision"], f"kept from the run's start ({resumed.get('reason', '')})",
                               resumed.get("fp32_ms"), resumed.get("bf16_ms"))
    pixels, actions = (t.to(device) for t in source.batch(BN_BATCH_BASE))
    probe = copy.deepcopy(model).train()
    gen = torch.Generator(device=device)

    def work(bf16: bool) -> torch.Tensor:
        probe.zero_grad(set_to_none=True)
        gen.manual_seed(cfg.seed)
        with autocast(device, bf16):
            emb, pred = probe(pixels, actions)
            loss = pred_loss(pred, emb[:, 1:]) + cfg.sigreg_weight * sigreg(
                emb.transpose(0, 1), cfg.num_projections, cfg.knots, generator=gen)
        loss.backward()
        return loss.detach().reshape(1)

    key = ("train", repr(model.cfg), tuple(pixels.shape), cfg.num_projections)
    choice = choose(cfg.precision, device, key, work, close(0.05))
    if ranks.world > 1 and cfg.precision == "auto" and mean_over_ranks(ranks, [float(choice.bf16)])[0] < 1.0:
        choice = PrecisionChoice("fp32", "auto: not every rank measured bf16 faster", choice.fp32_ms, choice.bf16_ms)
    return choice


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to 0 at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------- state
def _save_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
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


def _recorded_precision(path: Path) -> dict[str, Any] | None:
    """The precision choice a saved run recorded (None for runs older than the record)."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata().get("meta", "{}"))
    return meta.get("training", {}).get("precision")


def _load_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig,
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


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone), and a last
    line cut short by a kill mid-write (`log_rows`)."""
    if not path.exists():
        return
    keep = [line for line, row in log_rows(path) if row["step"] <= step]
    atomic_write_bytes(path, "".join(line + "\n" for line in keep).encode())


BN_BATCH_BASE = 10**12  # batch indices of the BatchNorm recalibration: never drawn by training

# ------------------------------------------------------------------------ data
def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether the uint8 pixels may live on a CUDA device: gathering batches there avoids a host copy
    per step. Up to 40% of its free memory, leaving the rest to the model and activations."""
    return device.type == "cuda" and nbytes < 0.4 * torch.cuda.mem_get_info(device)[0]


def _batches(source: MemoryWindows | StreamWindows, start: int, cfg: TrainConfig,
             device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(source, MemoryWindows):
        for step in range(start, cfg.steps):
            yield source.batch(step)
        return
    loader = torch.utils.data.DataLoader(
        source, batch_size=None, shuffle=False, num_workers=cfg.workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if cfg.workers else None, persistent_workers=False)
    for pixels, actions in loader:
        yield pixels.to(device, non_blocking=True), actions.to(device, non_blocking=True)


@torch.no_grad()
def recalibrate_batchnorm(model: WorldModel, source: MemoryWindows | StreamWindows, cfg: TrainConfig,
                          device: torch.device, bf16: bool = False) -> None:
    """Replace the BatchNorm running statistics by exact averages over fixed training batches.

    Why: the running averages (momentum 0.1) lag the weights while the learning rate is high,
    and planning runs in eval mode. Measured on a `tiny` Two-Room run at step 3500 of 8000:
    validation pred_loss 5.0 with the running statistics, 0.10 after this recalibration.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or cfg.bn_batches == 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for i in range(cfg.bn_batches):
        pixels, actions = source.batch(BN_BATCH_BASE + i)  # the same batches every time, apart from training's
        pixels, actions = pixels.to(device), actions.to(device)
        with autocast(device, bf16):
            model.predict(model.encode(pixels)[:, :-1], actions)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.no_grad()
def evaluate(model: WorldModel, source: MemoryWindows | StreamWindows, starts: np.ndarray, cfg: TrainConfig,
             device: torch.device, bf16: bool = False) -> dict[str, float]:
    """Validation losses (fixed windows, fixed SIGReg directions) and collapse indicators."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    totals, embs = {"pred_loss": 0.0, "sigreg_loss": 0.0}, []
    chunks = [starts[i:i + cfg.batch_size] for i in range(0, len(starts), cfg.batch_size)]
    chunks = [c for c in chunks if len(c) >= 2]
    for chunk in chunks:
        pixels, actions = source.batch(0, chunk)
        pixels, actions = pixels.to(device), actions.to(device)
        with autocast(device, bf16):
            emb = model.encode(pixels)
            pred = model.predict(emb[:, :-1], actions)
        totals["pred_loss"] += float(pred_loss(pred, emb[:, 1:])) / len(chunks)
        g.manual_seed(cfg.seed)
        totals["sigreg_loss"] += float(sigreg(emb.transpose(0, 1), cfg.num_projections, cfg.knots,
                                              generator=g, reduce=False)) / len(chunks)
        embs.append(emb[:, 0].float())
    model.train()
    return {f"val/{k}": v for k, v in {**totals, **embedding_stats(torch.cat(embs))}.items()}


# ----------------------------------------------------------------------- train
def card_front_matter(env_id: str | None) -> str:
    """Model-card metadata in the YAML front matter that model hubs and card tools read."""
    tags = ["world-model", "jepa", "sigreg", "planning", "model-based-reinforcement-learning", "gymnasium"]
    if env_id:
        tags.append(env_id.split("/")[-1].lower())
    return ("---\nlicense: mit\nlibrary_name: lewm_agent\npipeline_tag: reinforcement-learning\ntags:\n"
            + "".join(f"- {t}\n" for t in tags)
            + "datasets:\n- scripted-expert-rollouts (lewm collect; recipe below)\nmetrics:\n- success_rate\n---\n\n")


def _model_card(meta: CheckpointMeta, cfg: TrainConfig, step: int, wall: float, params: dict, val: dict) -> str:
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in val.items())
    return (card_front_matter(meta.env_id) + f"# LeWM checkpoint: {meta.env_id or 'unknown env'}\n\n"
            f"- preset `{cfg.preset}`, {params['total']:,} parameters "
            f"(encoder {params['encoder']:,}, predictor {params['predictor']:,})\n"
            f"- trained {step} steps, batch {cfg.batch_size}, lr {cfg.lr}, seed {cfg.seed}; "
            f"wall time {wall / 60:.1f} min\n"
            f"- data: `{cfg.data}`, {meta.training.get('data_episodes')} episodes, "
            f"{meta.training.get('data_frames')} frames; env kwargs `{json.dumps(meta.env_kwargs)}`\n"
            f"- data recipe: `{json.dumps(meta.training.get('data_recipe', {}))}`\n"
            f"- command: `{meta.training.get('command', '')}`\n"
            f"- hardware: {meta.training.get('hardware', '')}; precision "
            f"{meta.training.get('precision', {}).get('precision', 'fp32')} "
            f"({meta.training.get('precision', {}).get('reason', '')})\n\n"
            f"| validation metric | value |\n|---|---|\n{rows}\n")


def _data_recipe(rf: RolloutFile) -> dict[str, Any]:
    """What made the training data (the file itself is not shipped): its collect command and summary."""
    return {k: rf.attr(k) for k in ("command", "seed", "collector", "expert_kwargs", "max_episode_steps", "summary")
            if rf.attr(k) is not None}


def _hardware(device: torch.device, ranks: Ranks) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type}, {os.cpu_count()} cores"
    return name + (f", {ranks.world} processes (torchrun)" if ranks.world > 1 else "")


def train(cfg: TrainConfig, model_overrides: dict[str, Any] | None = None, command: str | None = None,
          planner: dict[str, Any] | None = None) -> Path:
    """Train (or resume) into `cfg.out`; returns the checkpoint folder.

    model_overrides: ModelConfig fields replacing the preset's; command: recorded in the card;
    planner: PlannerConfig fields stored as the checkpoint's planning defaults. A second trainer
    on the same folder is refused (`RunLock`) while this one runs. Under torchrun every rank
    calls this; rank 0 holds the lock, logs, validates and writes (see distributed.py).
    """
    ranks, device = setup(cfg.device, cfg.dist_timeout)
    try:
        if cfg.batch_size % ranks.world:
            raise ValueError(f"batch_size: the global batch {cfg.batch_size} must split evenly over the "
                             f"{ranks.world} processes")
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        if not ranks.main:
            return _train(cfg, ranks, device, model_overrides, command, planner)
        with RunLock(cfg.out):
            return _train(cfg, ranks, device, model_overrides, command, planner)
    finally:
        teardown()


def _train(cfg: TrainConfig, ranks: Ranks, device: torch.device, model_overrides: dict[str, Any] | None,
           command: str | None, planner: dict[str, Any] | None) -> Path:
    planner_cfg = PlannerConfig.from_dict(planner or {})
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    rf = RolloutFile(cfg.data)
    model_cfg = preset(cfg.preset, action_dim=rf.action_dim, **(model_overrides or {}))
    if cfg.sigreg_weight is None:  # resolved here so that the checkpoint records the lambda used
        cfg = replace(cfg, sigreg_weight=default_sigreg_weight(cfg.preset, model_cfg.latent_dim))
    spec = WindowSpec(sequence_frames(cfg, model_cfg) - 1, model_cfg.frameskip, cfg.batch_size, cfg.seed,
                      ranks.rank, ranks.world)
    split = split_episodes(rf.num_episodes, cfg.val_fraction, cfg.seed)
    train_starts = window_starts(rf, split.train_episodes, spec.span)
    val_starts = window_starts(rf, split.val_episodes, spec.span)
    if len(train_starts) == 0:
        raise ValueError(f"{cfg.data}: no training window of {spec.span + 1} env steps (history {spec.history} x "
                         f"frameskip {spec.frameskip}); episodes are {int(rf.episode_lengths.max())} frames at most")
    val_starts = np.sort(np.random.default_rng(cfg.seed).permutation(val_starts)[:cfg.val_windows])
    actions = rf.column("action")[:rf.num_frames]
    low = rf.attr("action_low", [-1.0] * rf.action_dim)
    high = rf.attr("action_high", [1.0] * rf.action_dim)
    check_actions(actions, rf.episode_ends, low, high)
    train_rows = np.concatenate([np.arange(rf.episode_starts[e], rf.episode_ends[e]) for e in split.train_episodes])
    mean, std = action_stats(actions, train_rows)
    norm_actions = ((actions - mean) / std).astype(np.float32)
    training = {"command": command or "", "hardware": _hardware(device, ranks), "data_episodes": rf.num_episodes,
                "data_frames": rf.num_frames, "data_recipe": _data_recipe(rf), "train_config": dataclasses.asdict(cfg)}
    meta = CheckpointMeta(model_cfg, mean, std, low, high, planner_cfg, env_id=rf.env_id,
                          env_kwargs=rf.env_kwargs, training=training)

    mode = cfg.data_mode
    if mode == "auto":
        mode = "memory" if rf.column("pixels").nbytes <= 4 * 2**30 else "stream"
    if mode == "memory":
        pixels = rf.column("pixels")[:rf.num_frames]
        keep_on = device if _fits_on(device, pixels.nbytes) else torch.device("cpu")
        source: MemoryWindows | StreamWindows = MemoryWindows(pixels, norm_actions, train_starts, spec, keep_on)
        val_source: MemoryWindows | StreamWindows = MemoryWindows(source.pixels, norm_actions, val_starts, spec,
                                                                  keep_on)
    rf.close()

    model = WorldModel(model_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out.mkdir(parents=True, exist_ok=True)
    step, wall_before, resumed = 0, 0.0, None
    if (out / STATE_FILE).exists():
        step, wall_before = _load_state(out / STATE_FILE, model, opt, cfg, device)
        resumed = _recorded_precision(out / STATE_FILE)
        if ranks.main:
            _truncate_log(out / LOG_FILE, step)
            logger.info("resuming %s from step %d", out, step)
    net = wrap(model, device, ranks)  # after loading: DDP starts from the weights every rank holds
    if mode == "stream":
        source = StreamWindows(cfg.data, norm_actions, train_starts, spec, range(step, cfg.steps))
        val_source = StreamWindows(cfg.data, norm_actions, val_starts, spec, range(0))
    choice = train_precision(cfg, model, source, device, ranks, resumed)
    bf16 = choice.bf16
    meta = replace(meta, training={**meta.training, "precision": choice.to_dict()})
    if ranks.main:
        logger.info("precision %s: %s", choice.precision, choice.reason)

    model.train()
    log = open(out / LOG_FILE, "a") if ranks.main else None
    sig_gen = torch.Generator(device=device)
    t_start = time.perf_counter() - wall_before  # wall time counts across resumes
    t_last, step_last = time.perf_counter(), step
    val: dict[str, float] = {}
    bar = Progress(cfg.steps, "train", unit="step", initial=step, enabled=cfg.progress and ranks.main)

    def checkpoint(at: int) -> None:
        wall = time.perf_counter() - t_start
        done = replace(meta, training={**meta.training, "steps": at, "wall_seconds": round(wall, 1)})
        card = _model_card(done, cfg, at, wall, model.num_parameters(), val)
        # The exported model first: a failure between the two leaves the resumable state behind it,
        # never ahead (a run resumed from an older state redoes the steps and exports again).
        save_checkpoint(out, model, done, cfg.weights_dtype, card)
        _save_state(out / STATE_FILE, model, opt, at, cfg, meta, wall)

    try:
        for pixels, act in _batches(source, step, cfg, device):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            sig_gen.manual_seed(cfg.seed * 1_000_003 + step)  # fresh, reproducible directions each step
            with autocast(device, bf16):
                emb, pred = net(pixels, act)                     # (B, h+1, D), (B, h, D)
                p_loss = pred_loss(pred, emb[:, 1:])
                s_loss = sigreg(emb.transpose(0, 1), cfg.num_projections, cfg.knots, generator=sig_gen)
                loss = p_loss + cfg.sigreg_weight * s_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg.log_interval == 0 or step == cfg.steps:
                now = time.perf_counter()
                loss_v, pred_v, emb_std = mean_over_ranks(ranks, [float(loss.detach()), float(p_loss.detach()),
                                                                  float(emb.detach().float().std(0).mean())])
                row = {"step": step, "train/loss": loss_v, "train/pred_loss": pred_v,
                       "train/sigreg_loss": float(s_loss.detach()), "train/emb_std": emb_std,
                       "train/grad_norm": float(grad_norm), "lr": lr_at(step - 1, cfg),
                       "samples_per_s": (step - step_last) * cfg.batch_size / (now - t_last)}
                t_last, step_last = now, step
                if not math.isfinite(row["train/loss"]):
                    raise FloatingPointError(f"loss is {row['train/loss']} at step {step}; lower --lr")
                if log is not None:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                bar.set_postfix(pred=f"{row['train/pred_loss']:.4f}", sigreg=f"{row['train/sigreg_loss']:.3f}")
            validate = (step % cfg.eval_interval == 0 or step == cfg.steps) and len(val_starts) >= 2
            save = step % cfg.ckpt_interval == 0 or step == cfg.steps
            if validate or save:  # both see the model as the planner will: eval mode, fresh BN statistics
                recalibrate_batchnorm(model, source, cfg, device, bf16)  # every rank: global-batch statistics
            if validate and log is not None:
                val = evaluate(model, val_source, val_starts, cfg, device, bf16)
                log.write(json.dumps({"step": step, **val}) + "\n")
                log.flush()
            if save and ranks.main:
                checkpoint(step)
            if validate or save:
                barrier(ranks)  # the others wait while rank 0 validates and writes
    finally:
        bar.close()
        if log is not None:
            log.close()
    return out
