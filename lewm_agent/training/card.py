"""What a checkpoint says about its training: the metadata in config.json and the model card."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import torch

from ..checkpoint import CheckpointMeta
from ..config import ModelConfig, PlannerConfig
from ..data.rollouts import RolloutFile
from ..data.sources import TrainingData
from ..distributed import Ranks
from .config import TrainConfig


def training_meta(rf: RolloutFile, cfg: TrainConfig, model_cfg: ModelConfig, data: TrainingData,
                  planner_cfg: PlannerConfig, command: str | None, hardware: str,
                  precision: dict[str, Any]) -> CheckpointMeta:
    """The checkpoint's metadata: architecture, action statistics and bounds, planner defaults, env,
    and the run's record (command, hardware, data and its recipe, the full TrainConfig, the precision chosen)."""
    training = {"command": command or "", "hardware": hardware, "data_episodes": rf.num_episodes,
                "data_frames": rf.num_frames, "data_recipe": data_recipe(rf), "train_config": dataclasses.asdict(cfg),
                "precision": precision}
    return CheckpointMeta(model_cfg, data.mean, data.std, data.low, data.high, planner_cfg, env_id=rf.env_id,
                          env_kwargs=rf.env_kwargs, training=training)


def card_front_matter(env_id: str | None) -> str:
    """Model-card metadata in the YAML front matter that model hubs and card tools read."""
    tags = ["world-model", "jepa", "sigreg", "planning", "model-based-reinforcement-learning", "gymnasium"]
    if env_id:
        tags.append(env_id.split("/")[-1].lower())
    return ("---\nlicense: mit\nlibrary_name: lewm_agent\npipeline_tag: reinforcement-learning\ntags:\n"
            + "".join(f"- {t}\n" for t in tags)
            + "datasets:\n- scripted-expert-rollouts (lewm collect; recipe below)\nmetrics:\n- success_rate\n---\n\n")


def model_card(meta: CheckpointMeta, cfg: TrainConfig, step: int, wall: float, params: dict, val: dict) -> str:
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


def data_recipe(rf: RolloutFile) -> dict[str, Any]:
    """What made the training data (the file itself is not shipped): its collect command and summary."""
    return {k: rf.attr(k) for k in ("command", "seed", "collector", "expert_kwargs", "max_episode_steps", "summary")
            if rf.attr(k) is not None}


def hardware(device: torch.device, ranks: Ranks) -> str:
    # the thread count matters as much as the cores: a run beside other work gets fewer (lewm_agent/threads.py)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{device.type}, {os.cpu_count()} cores, {torch.get_num_threads()} thread(s)"
    return name + (f", {ranks.world} processes (torchrun)" if ranks.world > 1 else "")
