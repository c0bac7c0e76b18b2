"""Oracle planners: the agent's CEM with the real simulator in place of the predictor.

Each candidate action sequence is played in the env itself from the current state
(`GoalPixelEnv.simulate`: the simulator alone, then the state is restored), so the
only model left is the cost: the encoder's latent distance of the rendered frame to the
goal image, or the env's true state distance. Sampling, bounds, horizon and the "final"
or "min" cost follow the agent's planner, so the rows differ from LeWM only in what
predicts the future. Replanning happens every block (receding horizon 1).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..planning.agent import LeWMAgent
from ..planning.planner import CEMPlanner

# Push-T's true cost weighs 60 px of travel like one radian of rotation; rotation is declared in degrees.
DEG_WEIGHT = 60.0 * np.pi / 180.0
CHEAP_SIMULATORS = ("PushTEnv", "TwoRoomEnv")  # Cube's MuJoCo steps are too slow for thousands of candidates


def true_cost(env: gym.Env, states: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
    """The env's distance of state rows (N, S) to the goal: the sum of its declared pair difficulty."""
    d = type(env.unwrapped).pair_difficulty(states, np.broadcast_to(goal_state, states.shape))
    return sum(v * (DEG_WEIGHT if unit == "deg" else 1.0) for v, unit in d.values())


def _simulate(env: gym.Env, state: np.ndarray, steps: np.ndarray, every: int) -> list[np.ndarray]:
    """Play env actions (T, action_dim) from `state`; the states after each `every` steps. Restores the env."""
    return env.unwrapped.simulate(state, steps, every)


def _frame(env: gym.Env, state: np.ndarray) -> np.ndarray:
    return env.unwrapped.render_state(state)


class _OracleCost:
    """cost_fn for CEMPlanner over the active envs: simulate every candidate, score its states."""

    def __init__(self, agent: LeWMAgent, envs: list[gym.Env], goals: list[np.ndarray], latent: bool):
        self.agent, self.envs, self.goals, self.latent = agent, envs, goals, latent
        self.z_goal = None
        if latent:
            self.z_goal = agent.encode_frames(np.stack([_frame(e, g) for e, g in zip(envs, goals)]))
        fs = agent.cfg.frameskip
        self.every = fs if agent.planner_cfg.cost == "min" else None  # "final": only the last state counts
        self.states: list[np.ndarray] = []
        self.active: list[int] = []

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:      # (n, S, H, A) -> (n, S)
        acts = actions.cpu().numpy()
        n, s, h, _ = acts.shape
        cost = np.empty((n, s))
        for j, i in enumerate(self.active):
            env, ends = self.envs[i], []
            for k in range(s):
                steps = np.concatenate([self.agent.denormalize(b) for b in acts[j, k]])  # (H*fs, action_dim)
                ends.append(_simulate(env, self.states[j], steps, self.every or len(steps)))
            cost[j] = self._score(i, np.asarray(ends)).reshape(s, -1).min(1)
        return torch.from_numpy(cost)

    def _score(self, i: int, ends: np.ndarray) -> np.ndarray:    # ends (S, T', state_dim) -> (S*T',)
        flat = ends.reshape(-1, ends.shape[-1])
        if not self.latent:
            return true_cost(self.envs[i], flat, self.goals[i])
        z = self.agent.encode_frames(np.stack([_frame(self.envs[i], st) for st in flat]))
        return np.square(z - self.z_goal[i]).sum(-1)


def oracle_success(agent: LeWMAgent, envs: list[gym.Env], pairs: list, budget: int, samples: int,
                   iterations: int, latent: bool, seed: int) -> np.ndarray:
    """Success flags of CEM through the simulator on `pairs` (played in lockstep in `envs`)."""
    pc = agent.planner_cfg
    elites = max(1, round(samples * pc.num_elites / pc.num_samples))
    cfg = replace(pc, num_samples=samples, num_iterations=iterations, num_elites=elites, receding_horizon=1,
                  warm_start=False)
    planner = CEMPlanner(agent.cfg.action_block_dim, cfg, "cpu", seed, step_dim=agent.cfg.action_dim)
    low, high = agent.normalized_low.cpu(), agent.normalized_high.cpu()
    for env, p in zip(envs, pairs):
        env.reset(options={"state": p.state, "goal_state": p.goal_state})
    cost = _OracleCost(agent, envs, [p.goal_state for p in pairs], latent)
    success = np.zeros(len(pairs), bool)
    t = 0
    while t < budget and not success.all():
        cost.active = [int(i) for i in np.flatnonzero(~success)]
        cost.states = [envs[i].unwrapped.get_state() for i in cost.active]
        plan = planner.plan(cost, len(cost.active), None, low, high).numpy()   # (n, H, A)
        block = [agent.denormalize(p[0]) for p in plan]                        # (fs, action_dim) each
        for k in range(min(agent.cfg.frameskip, budget - t)):
            for j, i in enumerate(cost.active):
                if not success[i]:
                    success[i] = bool(envs[i].step(block[j][k])[4]["is_success"])
        t += agent.cfg.frameskip
    return success


def oracle_rows(agent: LeWMAgent, envs: list[gym.Env], pairs: list, lewm_success: np.ndarray, budget: int,
                samples: int, iterations: int, seed: int) -> dict[str, Any]:
    """Success of simulator + latent cost and simulator + true cost, beside LeWM's, on `pairs` (one env each)."""
    name = type(envs[0].unwrapped).__name__
    if name not in CHEAP_SIMULATORS:
        return {"skipped": f"{name}: the simulator is too slow to roll out CEM candidates"}
    rates = {key: float(oracle_success(agent, envs, pairs, budget, samples, iterations, key == "sim_latent",
                                       seed).mean()) for key in ("sim_latent", "sim_true")}
    return {"pairs": len(pairs), "samples": samples, "iterations": iterations,
            "horizon_blocks": agent.planner_cfg.horizon, **rates, "lewm": float(np.mean(lewm_success))}
