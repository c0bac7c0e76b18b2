"""A goal-conditioned actor: pi(z, z_goal) -> the H normalized action blocks of a plan.

CEM spends hundreds of imagined rollouts per plan; the actor proposes one in a single forward
pass of a small MLP on the two embeddings the planner computes anyway. It is trained with the
world model frozen (`lewm train-policy`, training/actor_fit.py) and used alone or as CEM's
starting point (`LeWMAgent(planner_kind=...)`). Its inputs are standardized with the latent
statistics of its training frames, stored with it, so the same MLP fits any model's scale.

The folder file records the weights' hash, as the cost probe does: an actor beside weights it
was not trained on is refused where the planner uses it and ignored (with a warning) elsewhere.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .tied import read_tied, save_tied

ACTOR = "actor.safetensors"


@dataclass(frozen=True)
class ActorConfig:
    latent_dim: int
    horizon: int          # action blocks proposed
    block_dim: int        # A: one normalized action block (frameskip * action_dim)
    hidden: int = 256
    depth: int = 2        # hidden layers

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ActorConfig.{f.name}: expected an int >= 1, got {v!r}")


class GoalActor(nn.Module):
    """MLP on (z, g, g - z), standardized; outputs (N, horizon, block_dim)."""

    def __init__(self, cfg: ActorConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.latent_dim
        self.register_buffer("z_mean", torch.zeros(d))
        self.register_buffer("z_std", torch.ones(d))
        layers: list[nn.Module] = []
        width = 3 * d  # the difference is given explicitly: "which way to the goal" is what decides the action
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU()]
            width = cfg.hidden
        layers.append(nn.Linear(width, cfg.horizon * cfg.block_dim))
        self.net = nn.Sequential(*layers)

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.z_mean.copy_(mean.float())
        self.z_std.copy_(std.float().clamp_min(1e-6))

    def forward(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        zn, gn = (z.float() - self.z_mean) / self.z_std, (goal.float() - self.z_mean) / self.z_std
        out = self.net(torch.cat([zn, gn, gn - zn], -1))
        return out.view(*z.shape[:-1], self.cfg.horizon, self.cfg.block_dim)


def fit_horizon(plan: torch.Tensor, horizon: int) -> torch.Tensor:
    """A (N, H', A) plan as H blocks: cut, or padded with zeros (the mean action, as CEM's default
    start) when the planner looks further than the actor was trained to."""
    h = plan.shape[1]
    if h >= horizon:
        return plan[:, :horizon]
    return torch.cat([plan, plan.new_zeros(plan.shape[0], horizon - h, plan.shape[2])], 1)


def save_actor(checkpoint: str | os.PathLike, actor: GoalActor, report: dict[str, Any]) -> Path:
    """Write the actor into the checkpoint folder (atomically), tied to its current weights."""
    report = {**{k: v for k, v in report.items() if k != "actor_config"},
              "actor_config": json.dumps(dataclasses.asdict(actor.cfg))}
    return save_tied(checkpoint, ACTOR, dict(actor.state_dict()), report)


def load_actor(checkpoint: str | os.PathLike, strict: bool = True,
               device: torch.device | str = "cpu") -> tuple[GoalActor, dict[str, str]] | None:
    """(the actor in eval mode, its training record) of a checkpoint folder, or None where it has none.

    An actor trained on other weights (a retrained model, a copied file) raises; with
    `strict=False` (a planner that does not use it) it is dropped with a warning.
    """
    found = read_tied(checkpoint, ACTOR, "actor", "was trained on other weights",
                      f"retrain it with `lewm train-policy --checkpoint {checkpoint} --data TRAINING_FILE`", strict)
    if found is None:
        return None
    tensors, info, folder = found
    try:
        actor = GoalActor(ActorConfig(**json.loads(info["actor_config"])))
        actor.load_state_dict(tensors)
    except Exception as e:  # noqa: BLE001  a foreign or mis-shaped file: one line naming it
        raise ValueError(f"checkpoint {folder}: {ACTOR} is not a readable actor ({type(e).__name__}: {e})") from None
    return actor.to(device).eval(), info
