"""Offline LeWM trainer: a visible loop from a rollout file to a checkpoint folder.

    loss = pred_loss(predict(z_1..z_h, a_1..a_h), z_2..z_{h+1}) + lambda * sigreg(z)
           [+ pred_loss(imagined z_{h+1..h+K}, z_{h+1..h+K}) with --open-loop-steps K]

AdamW, linear warm-up then cosine decay, gradient clipping, bf16 autocast where it is
faster (on CUDA; on a CPU only where a short measurement at start shows it, see precision.py).
The output folder is at every moment a loadable checkpoint (`model.safetensors`,
`config.json`, `README.md`) plus `train_state.safetensors` (weights, optimizer moments,
RNG states and the step, in one file written atomically) and `log.jsonl`. Restarting
with the same arguments resumes from `train_state.safetensors`, losing at most one
checkpoint interval; log lines written after that checkpoint are dropped.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import CheckpointMeta, save_checkpoint, shipped_planner
from ..config import PlannerConfig, default_sigreg_weight, preset, sequence_frames
from ..data.rollouts import RolloutFile
from ..data.sources import batches, data_mode, load_data, memory_sources, stream_sources
from ..data.windows import MemoryWindows, StreamWindows, WindowSpec
from ..distributed import Ranks, barrier, mean_over_ranks, setup, teardown, wrap
from ..lock import RunLock
from ..model.losses import embedding_stats, pred_loss, sigreg
from ..model.world_model import WorldModel
from ..precision import PrecisionChoice, choose, close
from ..progress import Progress
from ..runlog import LOG_FILE
from .card import hardware, model_card, training_meta
from .config import TrainConfig
from .state import STATE_FILE, resume, save_state

logger = logging.getLogger(__name__)
BN_BATCH_BASE = 10**12  # batch indices of the BatchNorm recalibration: never drawn by training


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite: the run stops; the last checkpoint is intact."""


def _diverged(out: Path, step: int, what: str, saved: int | None) -> TrainingDiverged:
    last = f"the last good checkpoint is {out} (step {saved})" if saved else f"no checkpoint yet in {out}"
    return TrainingDiverged(f"step {step}: {what}; {last} (try a lower --lr or --sigreg-weight, "
                            "or resume with --max-bad-steps)")


def _skip_update(out: Path, step: int, bad: int, allowed: int, saved: int | None) -> int:
    """The `bad`-th step without a finite gradient norm: it counts (its batch is spent) but changes
    nothing; past `allowed` such steps the run stops. Returns `bad`."""
    if bad > allowed:
        raise _diverged(out, step + 1, f"non-finite gradient norm ({bad} such steps, more than "
                        f"--max-bad-steps {allowed})", saved)
    logger.warning("step %d: non-finite gradient norm, update skipped (%d of %d allowed)", step + 1, bad, allowed)
    return bad


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    return torch.autocast(device.type, torch.bfloat16, enabled=bf16)


def objective(net: torch.nn.Module, pixels: torch.Tensor, actions: torch.Tensor, cfg: TrainConfig,
              gen: torch.Generator) -> dict[str, torch.Tensor]:
    """One batch's losses ("loss" is what is minimised) and its embeddings "emb" (B, T, D).

    The open-loop term (--open-loop-steps K) scores the predictor on its own outputs, as CEM
    uses it: teacher forcing hands it the encoder's fresh embedding of every frame, so an error
    in what it carries forward (e.g. the block's pose between pushes) costs one step only."""
    out = net(pixels, actions, cfg.open_loop_steps) if cfg.open_loop_steps else net(pixels, actions)
    emb, pred = out[0], out[1]
    terms = {"pred_loss": pred_loss(pred, emb[:, 1:]),
             "sigreg_loss": sigreg(emb.transpose(0, 1), cfg.num_projections, cfg.knots, generator=gen)}
    loss = terms["pred_loss"] + cfg.sigreg_weight * terms["sigreg_loss"]
    if cfg.open_loop_steps:
        h = getattr(net, "module", net).cfg.history  # the DDP wrapper keeps the model as .module
        terms["open_loop_loss"] = pred_loss(out[2], emb[:, h:h + cfg.open_loop_steps])
        loss = loss + terms["open_loop_loss"]
    return {"loss": loss, "emb": emb, **terms}


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
            loss = objective(probe, pixels, actions, cfg, gen)["loss"]
        loss.backward()
        return loss.detach().reshape(1)

    key = ("train", repr(model.cfg), tuple(pixels.shape), cfg.num_projections, cfg.open_loop_steps)
    choice = choose(cfg.precision, device, key, work, close(0.05))
    if ranks.world > 1 and cfg.precision == "auto" and mean_over_ranks(ranks, [float(choice.bf16)])[0] < 1.0:
        choice = PrecisionChoice("fp32", "auto: not every rank measured bf16 faster", choice.fp32_ms, choice.bf16_ms)
    return choice


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to 0 at `steps`."""
    warmup = cfg.run_warmup
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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
def validate(model: WorldModel, source: MemoryWindows | StreamWindows, starts: np.ndarray, cfg: TrainConfig,
             device: torch.device, bf16: bool = False) -> dict[str, float]:
    """Validation losses (fixed windows, fixed SIGReg directions) and collapse indicators."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    h, k = model.cfg.history, cfg.open_loop_steps
    totals, embs = {"pred_loss": 0.0, "sigreg_loss": 0.0, **({"open_loop_loss": 0.0} if k else {})}, []
    chunks = [starts[i:i + cfg.batch_size] for i in range(0, len(starts), cfg.batch_size)]
    chunks = [c for c in chunks if len(c) >= 2]
    for chunk in chunks:
        pixels, actions = source.batch(0, chunk)
        pixels, actions = pixels.to(device), actions.to(device)
        with autocast(device, bf16):
            emb = model.encode(pixels)
            pred = model.predict(emb[:, :-1], actions)
        totals["pred_loss"] += float(pred_loss(pred, emb[:, 1:])) / len(chunks)
        if k:
            totals["open_loop_loss"] += float(pred_loss(model.imagine_window(emb, actions, k),
                                                        emb[:, h:h + k])) / len(chunks)
        g.manual_seed(cfg.seed)
        totals["sigreg_loss"] += float(sigreg(emb.transpose(0, 1), cfg.num_projections, cfg.knots,
                                              generator=g, reduce=False)) / len(chunks)
        embs.append(emb[:, 0].float())
    model.train()
    return {f"val/{k}": v for k, v in {**totals, **embedding_stats(torch.cat(embs))}.items()}


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
        out, made = Path(cfg.out), not Path(cfg.out).exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            with RunLock(cfg.out) if ranks.main else contextlib.nullcontext():  # rank 0 holds the folder
                folder = _train(cfg, ranks, device, model_overrides, command, planner)
                barrier(ranks)  # leave together (distributed.py, teardown)
                return folder
        finally:
            if ranks.main and made and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # a run that failed before writing anything leaves no empty folder
    finally:
        teardown()


def _train(cfg: TrainConfig, ranks: Ranks, device: torch.device, model_overrides: dict[str, Any] | None,
           command: str | None, planner: dict[str, Any] | None) -> Path:
    """Setup (data, model, resume, precision, then the metadata of it all), then the loop."""
    if ranks.main:
        for note in cfg.fit_notes():
            logger.info("fitted to the run's length: %s", note)
    torch.manual_seed(cfg.seed)
    with RolloutFile(cfg.data) as rf:
        planner_cfg = PlannerConfig.from_dict({**shipped_planner(rf.env_id), **(planner or {})})
        model_cfg = preset(cfg.preset, action_dim=rf.action_dim, **(model_overrides or {}))
        if cfg.sigreg_weight is None:  # resolved here so that the checkpoint records the lambda used
            cfg = replace(cfg, sigreg_weight=default_sigreg_weight(cfg.preset, model_cfg.latent_dim))
        frames = sequence_frames(model_cfg, cfg.sequence_frames, cfg.open_loop_steps)
        spec = WindowSpec(frames - 1, model_cfg.frameskip, cfg.batch_size, cfg.seed, ranks.rank, ranks.world)
        data = load_data(rf, cfg.data, spec, cfg.val_fraction, cfg.val_windows)
        sources = memory_sources(rf, data, device) if data_mode(cfg.data_mode, rf) == "memory" else None

        model = WorldModel(model_cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step, wall_before, resumed = resume(Path(cfg.out), model, opt, cfg, device, ranks.main)
        net = wrap(model, device, ranks)  # after loading: DDP starts from the weights every rank holds
        source, val_source = sources or stream_sources(cfg.data, data, range(step, cfg.steps))
        choice = train_precision(cfg, model, source, device, ranks, resumed)
        if ranks.main:
            logger.info("precision %s: %s", choice.precision, choice.reason)
        meta = training_meta(rf, cfg, model_cfg, data, planner_cfg, command, hardware(device, ranks),
                             choice.to_dict())
    run = _Run(model, net, opt, source, val_source, data.val_starts, meta, choice.bf16)
    return _loop(cfg, ranks, device, run, step, wall_before)


@dataclass
class _Run:
    """What the loop trains and where it draws from."""
    model: WorldModel
    net: torch.nn.Module                # `model`, or its DDP wrapper under torchrun
    opt: torch.optim.Optimizer
    source: MemoryWindows | StreamWindows
    val_source: MemoryWindows | StreamWindows
    val_starts: np.ndarray
    meta: CheckpointMeta
    bf16: bool


def _loop(cfg: TrainConfig, ranks: Ranks, device: torch.device, run: _Run, step: int, wall_before: float) -> Path:
    out, model, opt, bf16 = Path(cfg.out), run.model, run.opt, run.bf16
    model.train()
    log = open(out / LOG_FILE, "a") if ranks.main else None
    sig_gen = torch.Generator(device=device)
    t_start = time.perf_counter() - wall_before  # wall time counts across resumes
    t_last, step_last = time.perf_counter(), step
    val: dict[str, float] = {}
    steps = batches(run.source, range(step, cfg.steps), cfg.workers, device)
    bar = Progress(cfg.steps, "train", unit="step", initial=step, enabled=cfg.progress and ranks.main)
    bad, saved = 0, (step or None)  # a resumed run's last checkpoint is its start

    try:
        for pixels, act in steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            sig_gen.manual_seed(cfg.seed * 1_000_003 + step)  # fresh, reproducible directions each step
            with autocast(device, bf16):
                terms = objective(run.net, pixels, act, cfg, sig_gen)
                loss = terms["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            # The same on every rank (the norm of the all-reduced gradients), so ranks agree to skip.
            if torch.isfinite(grad_norm):
                opt.step()
            else:
                bad = _skip_update(out, step, bad + 1, cfg.max_bad_steps, saved)
            step += 1
            if step % cfg.log_interval == 0 or step == cfg.steps:
                now = time.perf_counter()
                row = _train_row(ranks, step, opt.param_groups[0]["lr"], terms, grad_norm,
                                 (step - step_last) * cfg.batch_size / (now - t_last))
                t_last, step_last = now, step
                if ranks.main:
                    _write(log, row)
                bar.set_postfix(pred=f"{row['train/pred_loss']:.4f}", sigreg=f"{row['train/sigreg_loss']:.3f}")
            bar.update(1)  # after the postfix: a progress line shows this step's losses
            val_due = (step % cfg.run_eval_interval == 0 or step == cfg.steps) and len(run.val_starts) >= 2
            save_due = step % cfg.run_ckpt_interval == 0 or step == cfg.steps
            if val_due or save_due:  # both see the model as the planner will: eval mode, fresh BN statistics
                recalibrate_batchnorm(model, run.source, cfg, device, bf16)  # every rank: global-batch statistics
            if val_due and ranks.main:
                val = validate(model, run.val_source, run.val_starts, cfg, device, bf16)
                _write(log, {"step": step, **val})
            if save_due and not all(torch.isfinite(p).all() for p in model.parameters()):
                raise _diverged(out, step, "the weights are not finite (nothing saved)", saved)
            if save_due and ranks.main:
                _save_run(cfg, run, step, time.perf_counter() - t_start, val)
            saved = step if save_due else saved
            if val_due or save_due:
                barrier(ranks)  # the others wait while rank 0 validates and writes
    finally:
        bar.close()
        if log is not None:
            log.close()
    return out


def _save_run(cfg: TrainConfig, run: _Run, step: int, wall: float, val: dict[str, float]) -> None:
    """The run at `step`: its checkpoint (model, config.json, card), then its resumable state."""
    out = Path(cfg.out)
    done = replace(run.meta, training={**run.meta.training, "steps": step, "wall_seconds": round(wall, 1)})
    card = model_card(done, cfg, step, wall, run.model.num_parameters(), val)
    # The exported model first: a failure between the two leaves the resumable state behind it,
    # never ahead (a run resumed from an older state redoes the steps and exports again).
    save_checkpoint(out, run.model, done, cfg.weights_dtype, card)
    save_state(out / STATE_FILE, run.model, run.opt, step, cfg, run.meta, wall)


def _train_row(ranks: Ranks, step: int, lr: float, terms: dict[str, torch.Tensor], grad_norm: torch.Tensor,
               samples_per_s: float) -> dict:
    """The log row of a training step (losses averaged over the ranks: every rank calls this);
    `lr`: the rate the step was taken with."""
    averaged = [k for k in ("loss", "pred_loss", "open_loop_loss") if k in terms]
    values = mean_over_ranks(ranks, [float(terms[k].detach()) for k in averaged]
                             + [float(terms["emb"].detach().float().std(0).mean())])
    row = {"step": step, **{f"train/{k}": v for k, v in zip(averaged, values)},
           "train/sigreg_loss": float(terms["sigreg_loss"].detach()), "train/emb_std": values[-1],
           "train/grad_norm": float(grad_norm), "lr": lr, "samples_per_s": samples_per_s}
    return row  # a non-finite loss is handled where the update is (skipped, or the run stops)


def _write(log: Any, row: dict[str, Any]) -> None:
    log.write(json.dumps(row) + "\n")
    log.flush()
