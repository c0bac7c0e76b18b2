"""`lewm train-policy`: an actor for a checkpoint, from a rollout file of its env, saved beside its weights.

The world model stays frozen: its encoder embeds the file's episodes once (actor_data.py), the
actor is fitted on those latents (actor_fit.py), and the result goes into the checkpoint folder
(or a copy of it, --out) as `actor.safetensors`, tied to the weights' hash, with a card section
saying how it was trained and how it scores on held-out episodes.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lewm_envs import check_dynamics_settings, check_pixel_settings

from ..checkpoint import (
    CONFIG,
    WEIGHTS,
    CheckpointMeta,
    check_card_write,
    load_checkpoint,
    resolve_checkpoint,
    weights_sha256,
    write_card_section,
)
from ..data.rollouts import RolloutFile
from ..data.windows import split_episodes
from ..device import resolve_device
from ..distributed import Ranks
from ..flags import CHECKPOINT_HELP, check_ranges, option
from ..lock import LOCK_FILE
from ..planning.actor import save_actor
from ..planning.cost_probe import load_cost_probe
from ..progress import Progress
from .actor_data import embed_episodes, episodes_within
from .actor_fit import OBJECTIVES, FitSettings, fit_actor, imagined_cost
from .card import hardware


@dataclass(frozen=True)
class PolicyTrainConfig:
    checkpoint: str = option(help=CHECKPOINT_HELP)
    data: str = option(help="rollout file of the checkpoint's env (its training file): the recorded actions and "
                            "frames are the actor's targets and hindsight goals")
    out: str | None = option(None, "write a copy of the checkpoint holding the actor here (default: into "
                                   "--checkpoint itself)", metavar="DIR")
    objective: str = option("bc", "bc: goal-conditioned behaviour cloning on hindsight goals; bc+imagine: plus the "
                                  "planning cost of the actor's plan imagined by the frozen predictor",
                            choices=list(OBJECTIVES))
    steps: int = option(3000, "optimizer steps", low=1)
    batch_size: int = option(256, low=1)
    lr: float = option(1e-3, above=0)
    hidden: int = option(256, "actor MLP width", low=1)
    max_goal_blocks: int | None = option(None, "hindsight goals 1..K action blocks ahead (default: the planning "
                                               "horizon)", metavar="K", low=1)
    imagine_weight: float = option(1.0, "with bc+imagine: weight of the imagined cost (relative to the start's "
                                        "distance to the goal)", low=0)
    frames: int = option(100_000, "embed at most about this many frames (whole episodes, evenly chosen)", low=10)
    val_fraction: float = option(0.1, "share of episodes the actor is scored on", above=0, below=1)
    seed: int = option(0, "seed of the episode split, the sampled examples and the actor's initial weights", low=0)
    device: str = option("auto")
    progress: bool = option(True, "no progress bar or progress lines", flag="--no-progress")
    force: bool = option(False, "write into a shipped checkpoint (default: refused; or use --out)")

    def __post_init__(self) -> None:
        check_ranges(self)


def check_rollout_env(rf: RolloutFile, meta: CheckpointMeta, data: str) -> None:
    """Refuse a file of another env (or other pixels, dynamics or action size) than the checkpoint's."""
    env = rf.env_id or meta.env_id  # a reference-layout file names no env: the checkpoint's
    if env != meta.env_id:
        raise ValueError(f"--data: {data} holds {rf.env_id!r} episodes, the checkpoint is for {meta.env_id!r}")
    if meta.env_id in gym.registry:
        kwargs = rf.env_kwargs if rf.env_id else meta.env_kwargs
        check_pixel_settings(meta.env_id, kwargs, meta.env_kwargs, f"--data: {data}")
        # the actor imitates the file's actions; under other dynamics they do not do what the model predicts
        check_dynamics_settings(meta.env_id, kwargs, meta.env_kwargs, f"--data: {data}")
    if rf.action_dim != meta.model.action_dim:
        raise ValueError(f"--data: {data} has {rf.action_dim}-dimensional actions, the checkpoint "
                         f"{meta.model.action_dim}")


def destination(cfg: PolicyTrainConfig) -> Path:
    """The folder the actor goes into: the checkpoint (not a shipped one without --force), or --out,
    which must be empty or hold these same weights."""
    src = resolve_checkpoint(cfg.checkpoint)
    if cfg.out is None or Path(cfg.out).resolve() == src.resolve():
        check_card_write(src, "actor", cfg.force)
        return src
    out = Path(cfg.out)
    if (out / CONFIG).is_file() and (not (out / WEIGHTS).is_file() or weights_sha256(out) != weights_sha256(src)):
        raise ValueError(f"--out: {out} holds a checkpoint of other weights; choose another folder")
    return out


def copy_checkpoint(src: Path, out: Path) -> None:
    """The checkpoint's files (weights, config, card, cost probe, reports) into `out`, unless already there."""
    if out.resolve() != src.resolve() and not (out / CONFIG).is_file():
        shutil.copytree(src, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.lock", LOCK_FILE, "*.partial"))


def train_policy(cfg: PolicyTrainConfig, command: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Fit and save the actor; returns (the folder written, the report)."""
    t0 = time.perf_counter()
    folder = destination(cfg)  # its refusals (a shipped folder, other weights at --out) before any work
    dev = resolve_device(cfg.device)
    model, meta = load_checkpoint(cfg.checkpoint, dev)  # before any copy: a bad checkpoint writes nothing
    model.requires_grad_(False)
    with RolloutFile(cfg.data) as rf:
        check_rollout_env(rf, meta, cfg.data)
        split = split_episodes(rf.num_episodes, cfg.val_fraction, cfg.seed)
        if len(split.train_episodes) == 0 or len(split.val_episodes) == 0:
            raise ValueError(f"--data: {cfg.data} holds {rf.num_episodes} episode(s); too few to fit and score")
        n_val = max(1, round(cfg.frames * cfg.val_fraction))
        lengths = rf.episode_lengths
        fit_eps = episodes_within(lengths, split.train_episodes, cfg.frames - n_val)
        val_eps = episodes_within(lengths, split.val_episodes, n_val)
        with Progress(len(fit_eps) + len(val_eps), "embed", unit="episode", enabled=cfg.progress) as bar:
            train = embed_episodes(model, rf, meta, fit_eps, dev, bar)
            val = embed_episodes(model, rf, meta, val_eps, dev, bar)
    horizon = meta.planner.horizon
    s = FitSettings(cfg.objective, cfg.steps, cfg.batch_size, cfg.lr, cfg.hidden, horizon=horizon,
                    max_goal_blocks=cfg.max_goal_blocks, imagine_weight=cfg.imagine_weight,
                    seed=cfg.seed)
    cost_fn = imagined_cost(model, meta.planner.cost, _probe(cfg.checkpoint, meta, dev))
    low, high = _bounds(meta)
    with Progress(cfg.steps, "train-policy", unit="step", enabled=cfg.progress) as bar:
        actor, held = fit_actor(train, val, s, low, high, cost_fn, dev, on_step=lambda step, loss: bar.update(1))
    report = {"objective": cfg.objective, "data": cfg.data, "command": command or "",
              "settings": dataclasses.asdict(s), "train_frames": len(train.z), "train_episodes": len(train.ends),
              "val_frames": len(val.z), "val_episodes": len(val.ends), "held_out": held,
              "wall_s": time.perf_counter() - t0, "hardware": hardware(dev, Ranks())}
    copy_checkpoint(resolve_checkpoint(cfg.checkpoint), folder)  # only now: a refused run leaves nothing behind
    save_actor(folder, actor.cpu(), report)
    write_card_section(folder, "actor", actor_card(report))
    return folder, report


def _probe(checkpoint: str, meta: CheckpointMeta, dev: torch.device) -> tuple[torch.Tensor, float] | None:
    """The planner's cost probe term, where its settings weigh one in (as the planner's cost does)."""
    if meta.planner.probe_weight <= 0:
        return None
    matrix, _ = load_cost_probe(checkpoint)  # strict: the planner would refuse a stale probe too
    return matrix.to(dev), meta.planner.probe_weight


def _bounds(meta: CheckpointMeta) -> tuple[torch.Tensor, torch.Tensor]:
    """The action space in normalized block coordinates (as the agent clips its plans)."""
    mean, std = np.asarray(meta.action_mean), np.asarray(meta.action_std)
    fs = meta.model.frameskip
    return tuple(torch.tensor(np.tile((np.asarray(b) - mean) / std, fs), dtype=torch.float32)
                 for b in (meta.action_low, meta.action_high))  # type: ignore[return-value]


def actor_card(r: dict[str, Any]) -> str:
    """The model card's section on the actor: how it was trained and what it scores held out."""
    s, h = r["settings"], r["held_out"]
    how = ("goal-conditioned behaviour cloning" if r["objective"] == "bc" else
           f"goal-conditioned behaviour cloning plus the imagined planning cost (weight {s['imagine_weight']:g})")
    lines = ["## Actor (goal-conditioned policy)", "", f"`{r['command']}`", "",
             f"Objective `{r['objective']}`: {how}, with the world model frozen; hindsight goals 1-"
             f"{s['max_goal_blocks']} action blocks ahead; an MLP of {s['depth']} x {s['hidden']} proposing "
             f"{s['horizon']} blocks; {s['steps']} steps, batch {s['batch_size']}, lr {s['lr']:g}, seed {s['seed']}; "
             f"{r['train_frames']} frames of {r['train_episodes']} episodes of `{r['data']}`; "
             f"{_duration(r['wall_s'])} on {r['hardware']}.", "",
             f"Held out ({r['val_episodes']} other episodes, {h['examples']} examples): action-block squared error "
             f"(normalized units, blocks before the goal) {h['block_mse']:.3g}, against "
             f"{h['block_mse_mean_action']:.3g} for always the mean action."]
    if "imagined_cost_ratio" in h:
        lines[-1] += (" Imagined goal distance after the plan, relative to the start's: "
                      f"{h['imagined_cost_ratio']:.3g} "
                      f"(the mean-action plan: {h['imagined_cost_ratio_mean_action']:.3g}).")
    lines += ["", "Plan with it: `LeWMAgent.from_pretrained(folder, planner_kind=\"policy\")` (or \"policy+cem\"), "
                  "`lewm eval --planner-kind policy`."]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def report_line(folder: Path, r: dict[str, Any]) -> str:
    h = r["held_out"]
    return (f"wrote {folder / 'actor.safetensors'}: {r['objective']} on {r['train_frames']} frames; held out "
            f"block error {h['block_mse']:.3g} (mean action {h['block_mse_mean_action']:.3g})"
            + (f", imagined goal distance ratio {h['imagined_cost_ratio']:.3g} (mean action "
               f"{h['imagined_cost_ratio_mean_action']:.3g})" if "imagined_cost_ratio" in h else "")
            + f"; {r['wall_s']:.0f} s")
