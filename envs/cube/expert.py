"""Scripted Cube expert: OGBench's own pick-and-place oracles, a new target after each subtask.

oracle="markov": `CubeMarkovOracle` (closed loop: reach, grasp, lift, carry, place, release,
  retreat to a random pose) with Gaussian action noise as OGBench's "noisy" datasets: a level
  xi ~ U(0, noise) drawn per episode, per-dimension std (xi, xi, xi, 3 xi, 10 xi).
oracle="plan": `CubePlanOracle` (open-loop keyframe plan, OGBench's "play" datasets) with its own
  temporally correlated plan noise of level `noise` (smoothing 0.5).
When the oracle reports its pick-and-place done (or `max_subtask_steps` pass), the expert samples
a new target on the table and calls `env.set_goal_state`, so the goal image and desired_goal change
and one episode holds several subtasks (OGBench's collector does the same with set_new_target).

The oracles draw from numpy's global RNG; the expert runs them on a private RandomState seeded from
the generator it is given, so episodes are reproducible and global numpy state is left untouched.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle

ORACLES = ("markov", "plan")
_NOISE_SCALE = np.array([1.0, 1.0, 1.0, 3.0, 10.0])  # OGBench's per-dimension noise for the Markov oracle


@contextlib.contextmanager
def _private_global_rng(state: np.random.RandomState) -> Iterator[None]:
    """Run code that calls np.random.* on `state`, restoring the caller's global RNG afterwards."""
    saved = np.random.get_state()
    np.random.set_state(state.get_state())
    try:
        yield
    finally:
        state.set_state(np.random.get_state())
        np.random.set_state(saved)


class CubeExpert:
    collect_env_kwargs: ClassVar[dict[str, Any]] = {"terminate_on_success": False}

    def __init__(self, noise: float = 0.1, oracle: str = "markov", min_norm: float = 0.4,
                 max_subtask_steps: int = 150):
        if not (isinstance(noise, (int, float)) and np.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise: expected a finite float >= 0, got {noise!r}")
        if oracle not in ORACLES:
            raise ValueError(f"oracle: expected one of {list(ORACLES)}, got {oracle!r}")
        if not (isinstance(min_norm, (int, float)) and 0 <= min_norm <= 1):
            raise ValueError(f"min_norm: expected a float in [0, 1], got {min_norm!r}")
        if not (isinstance(max_subtask_steps, (int, np.integer)) and max_subtask_steps >= 1):
            raise ValueError(f"max_subtask_steps: expected an int >= 1, got {max_subtask_steps!r}")
        self.noise, self.oracle, self.min_norm = float(noise), oracle, float(min_norm)
        self.max_subtask_steps = int(max_subtask_steps)
        self._oracle: Any = None

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        self._rng = rng
        self._legacy_rng = np.random.RandomState(int(rng.integers(2 ** 32)))
        if self.oracle == "markov":
            self._oracle = CubeMarkovOracle(env=env.sim, min_norm=self.min_norm)
            self._xi = rng.uniform(0.0, self.noise)
        else:
            self._oracle = CubePlanOracle(env=env.sim, noise=self.noise, noise_smoothing=0.5)
        self._finished = self._completed = 0
        self._start_subtask(env)

    def _start_subtask(self, env: Any) -> None:
        with _private_global_rng(self._legacy_rng):
            self._oracle.reset(None, env.oracle_info())
        self._subtask_steps = 0

    def act(self, env: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self._oracle is None:
            raise RuntimeError("call expert.reset(env, rng) before act()")
        if self._oracle.done or self._subtask_steps >= self.max_subtask_steps:
            self._finished += 1
            self._completed += int(env.compute_reward(obs["achieved_goal"], obs["desired_goal"], None) == 0)
            env.set_goal_state(env.sample_goal_state())
            self._start_subtask(env)
        action = np.asarray(self._oracle.select_action(None, env.oracle_info()), dtype=np.float64)
        if self.oracle == "markov" and self._xi > 0:
            action = action + self._rng.normal(0.0, self._xi * _NOISE_SCALE)
        self._subtask_steps += 1
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def episode_info(self) -> dict[str, float]:
        """subtasks: pick-and-places that ended with the cube within 0.04 m of its target;
        subtasks_finished: those the oracle finished or gave up (the last, unfinished one is not
        counted); expert_success: subtasks / subtasks_finished (0 when none finished)."""
        return {"expert_success": self._completed / self._finished if self._finished else 0.0,
                "subtasks": float(self._completed), "subtasks_finished": float(self._finished)}
