"""The rows of an evaluation table: each makes a policy for a seed's pairs, and every row plays the
same pairs. LeWM's row also counts its planning time and env steps; the others are baselines."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from ..planning.agent import LeWMAgent
from .diagnostics import GapRecorder
from .pairs import Pair
from .policy import Policy, PolicyFactory
from .work import PairSteps


@dataclass
class Row:
    """A row of the table: `policy_for(seed, pairs)` is the policy that plays a seed's pairs."""
    name: str
    policy_for: Callable[[int, list[Pair]], Policy]
    films: bool = False                  # --video records this row's first pairs of each seed
    progress: PairSteps | None = None    # counts this row's pair-steps (the eval bar)

    def played(self) -> None:
        """Called after each seed's pairs are played."""


def factory_row(name: str, factory: PolicyFactory, space: gym.spaces.Box) -> Row:
    """A baseline built once per seed from (seed, action space): random, or any extra policy."""
    return Row(name, lambda seed, pairs: factory(seed, space))


def replay_row(action_dim: int) -> Row:
    """The recorded actions from start to goal: the reachable upper bound (dataset mode)."""
    return Row("replay", lambda seed, pairs: replay_policy(pairs, action_dim))


class LeWMRow(Row):
    """The agent: re-seeded per seed; collects its solve times and the env steps it acted for."""

    def __init__(self, agent: LeWMAgent, gap: GapRecorder | None, progress: PairSteps):
        super().__init__("lewm", self._policy, films=True, progress=progress)
        self.agent, self.gap = agent, gap
        self.plan_times: list[float] = []
        self.steps = 0

    def _policy(self, seed: int, pairs: list[Pair]) -> Policy:
        self.agent.reset()
        self.agent.planner.seed(seed)
        self._solves_before = len(self.agent.solve_seconds)
        self._counter = _Counter(lambda obs, active: self.agent.act(obs, active=active))
        return self.gap.watch(self._counter) if self.gap is not None else self._counter

    def played(self) -> None:
        self.plan_times += list(self.agent.solve_seconds)[self._solves_before:]
        self.steps += self._counter.steps


def replay_policy(pairs: list[Pair], action_dim: int) -> Policy:
    step = np.zeros(len(pairs), int)

    def policy(obs: dict, active: np.ndarray) -> np.ndarray:
        out = np.zeros((len(pairs), action_dim), np.float32)  # after the recording: stand still
        for i, p in enumerate(pairs):
            if step[i] < len(p.actions):
                out[i] = p.actions[step[i]]
            step[i] += 1
        return out
    return policy


def random_policy(seed: int, space: gym.spaces.Box) -> Policy:
    rng = np.random.default_rng([seed, 104729])
    return lambda obs, active: rng.uniform(space.low, space.high, (len(active), space.shape[0])).astype(np.float32)


class _Counter:
    """Wraps a policy and counts the env steps it acts for (for planning time per env step)."""

    def __init__(self, policy: Policy):
        self.policy, self.steps = policy, 0

    def __call__(self, obs: dict, active: np.ndarray) -> np.ndarray:
        self.steps += int(active.sum())
        return self.policy(obs, active)
