"""Fitting the goal-conditioned actor (planning/actor.py) with the world model frozen.

Two objectives. "bc": goal-conditioned behaviour cloning on hindsight goals (actor_data.py):
the recorded blocks that led from a frame to the frame k blocks later. "bc+imagine" adds the
planning cost of the actor's own plan, imagined through the frozen predictor from z_t towards
the same goal: the recorded actions are a noisy expert's, and the cost says what the planner
would prefer. The cost is divided by the start's distance to the goal, so its scale does not
depend on the model's latent scale or on how far the goal is.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..planning.actor import ActorConfig, GoalActor
from .actor_data import HindsightSet

# (z (B, D), plan (B, H, A), goal (B, D)) -> planning cost (B,) of the plan's imagined frames
CostFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
OBJECTIVES = ("bc", "bc+imagine")
VAL_EXAMPLES = 2048


@dataclass(frozen=True)
class FitSettings:
    objective: str = "bc"
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    hidden: int = 256
    depth: int = 2
    horizon: int = 5
    max_goal_blocks: int | None = None  # hindsight goals 1..K blocks ahead; None: the horizon (see __post_init__)
    imagine_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        # Goals no farther than a plan reaches: with goals up to 2H blocks ahead the actor also learns the
        # first H blocks of longer errands, which the planner never asks of it (worse on Cube and Push-T).
        if self.max_goal_blocks is None:
            object.__setattr__(self, "max_goal_blocks", self.horizon)


def imagined_cost(model: Any, cost: str = "final", probe: tuple[torch.Tensor, float] | None = None) -> CostFn:
    """The planner's cost (agent._imagined_cost) of a plan imagined from one context frame."""
    def fn(z: torch.Tensor, plan: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        pred = model.rollout(z[:, None], plan[:, None])[:, 0]                      # (B, H, D)
        if cost == "final":
            pred = pred[:, -1:]
        diff = pred.float() - goal[:, None]
        c = diff.pow(2).sum(-1)
        if probe is not None:
            c = c + probe[1] * (diff @ probe[0]).pow(2).sum(-1)
        return c.amin(-1)
    return fn


def bc_loss(plan: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared error per block (summed over its entries), averaged over the blocks before the goal."""
    per_block = (plan - target).pow(2).sum(-1)                                     # (B, H)
    return (per_block * mask).sum() / mask.sum().clamp_min(1.0)


def _tensors(batch: tuple[np.ndarray, ...], device: torch.device) -> list[torch.Tensor]:
    return [torch.as_tensor(x, dtype=torch.float32, device=device) for x in batch]


def fit_actor(train: HindsightSet, val: HindsightSet, s: FitSettings, low: torch.Tensor, high: torch.Tensor,
              cost_fn: CostFn | None = None, device: torch.device | str = "cpu",
              on_step: Callable[[int, float], None] | None = None) -> tuple[GoalActor, dict[str, Any]]:
    """Train an actor on `train`, score it on `val`; low / high: normalized block bounds (A,).

    cost_fn (`imagined_cost`): needed by "bc+imagine", and where given also scores the plans.
    """
    if s.objective not in OBJECTIVES:
        raise ValueError(f"--objective: expected one of {list(OBJECTIVES)}, got {s.objective!r}")
    if s.objective == "bc+imagine" and cost_fn is None:
        raise ValueError("--objective bc+imagine: needs the world model's imagined cost")
    device = torch.device(device)
    torch.manual_seed(s.seed)
    actor = GoalActor(ActorConfig(train.z.shape[1], s.horizon, train.actions.shape[1] * train.frameskip,
                                  s.hidden, s.depth)).to(device)
    z_all = torch.as_tensor(train.z, dtype=torch.float32)
    actor.set_latent_stats(z_all.mean(0), z_all.std(0))
    opt = torch.optim.AdamW(actor.parameters(), lr=s.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / s.steps)))
    rng = np.random.default_rng(s.seed)
    low, high = low.to(device), high.to(device)
    for step in range(s.steps):
        z, g, target, mask = _tensors(train.sample(rng, s.batch_size, s.horizon, s.max_goal_blocks), device)
        plan = actor(z, g)
        loss = bc_loss(plan, target, mask)
        if s.objective == "bc+imagine":
            start = (z - g).pow(2).sum(-1) + 1e-6
            loss = loss + s.imagine_weight * (cost_fn(z, plan.clamp(min=low, max=high), g) / start).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step + 1, float(loss.detach()))
    return actor.eval(), score_actor(actor, val, s, low, high, cost_fn, device)


@torch.no_grad()
def score_actor(actor: GoalActor, val: HindsightSet, s: FitSettings, low: torch.Tensor, high: torch.Tensor,
                cost_fn: CostFn | None, device: torch.device) -> dict[str, Any]:
    """Held-out block error against always the mean action (zeros), and the imagined goal distance
    (relative to the start's) of the actor's plan and of the mean-action plan, where a model is given."""
    rng = np.random.default_rng([s.seed, 1])
    z, g, target, mask = _tensors(val.sample(rng, VAL_EXAMPLES, s.horizon, s.max_goal_blocks), device)
    plan = actor(z, g).clamp(min=low, max=high)
    out = {"examples": VAL_EXAMPLES, "block_mse": float(bc_loss(plan, target, mask)),
           "block_mse_mean_action": float(bc_loss(torch.zeros_like(plan), target, mask))}
    if cost_fn is not None:
        start = (z - g).pow(2).sum(-1) + 1e-6
        out["imagined_cost_ratio"] = float((cost_fn(z, plan, g) / start).mean())
        out["imagined_cost_ratio_mean_action"] = float((cost_fn(z, torch.zeros_like(plan), g) / start).mean())
    return out
