"""Scripted noisy expert for lewm/TwoRoom-v0: through the door when needed, then to the goal.

Policy, from the simulator state (agent and goal positions):
  * goal in the same room: head straight for the goal (each room is a convex box);
  * goal in the other room: head for an approach point in front of the door on the agent's
    side; once level with the door (|y - door centre| <= `door_band`), or inside the
    doorway, head for the exit point in front of the door on the goal's side. Both legs
    are straight segments inside convex free regions, so noise-free they never touch the wall.
The heading is scaled so its largest component is 1 (full speed, direction kept) and
shrinks near the target so the agent lands on it rather than overshooting.
Noise for coverage: Gaussian N(0, noise^2) per action component, and with probability
`segment_prob` per step a random segment of `segment_steps` steps with one constant
uniform action (the agent wanders off and the expert recovers afterwards).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .env import DOOR_Y0, DOOR_Y1, SUCCESS_DIST, WALL_X0, WALL_X1

DOOR_Y = 0.5 * (DOOR_Y0 + DOOR_Y1)
WALL_X = 0.5 * (WALL_X0 + WALL_X1)
CLEARANCE = 12.0  # how far in front of the door the approach/exit points sit, arena px


class TwoRoomExpert:
    """Noisy door-then-goal expert. Args:
        noise: std of the Gaussian added to each action component (default 0.3).
        segment_prob: per-step probability of starting a random constant-action segment.
        segment_steps: (min, max) length of a random segment, inclusive.
        door_band: how close to the door's centre line (px) the agent must be to cross.
    """

    collect_env_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self, noise: float = 0.3, segment_prob: float = 0.03,
                 segment_steps: tuple[int, int] = (3, 10), door_band: float = 8.0):
        if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
            raise ValueError(f"noise: expected a finite number >= 0, got {noise!r}")
        if not isinstance(segment_prob, (int, float)) or not 0.0 <= segment_prob <= 1.0:
            raise ValueError(f"segment_prob: expected a probability in [0, 1], got {segment_prob!r}")
        steps = tuple(segment_steps) if isinstance(segment_steps, (tuple, list)) else ()
        if len(steps) != 2 or not all(isinstance(s, int) for s in steps) or not 1 <= steps[0] <= steps[1]:
            raise ValueError(f"segment_steps: expected (min, max) ints with 1 <= min <= max, got {segment_steps!r}")
        half_door = 0.5 * (DOOR_Y1 - DOOR_Y0)
        if not isinstance(door_band, (int, float)) or not 0 < door_band < half_door:
            raise ValueError(f"door_band: expected a number in (0, {half_door:g}), got {door_band!r}")
        self.noise = float(noise)
        self.segment_prob = float(segment_prob)
        self.segment_steps = (int(steps[0]), int(steps[1]))
        self.door_band = float(door_band)
        self._env: Any = None
        self._rng = np.random.default_rng(0)
        self._segment_left = 0
        self._segment_action = np.zeros(2, np.float32)
        self._steps = 0
        self._random_steps = 0
        self._reached = False

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        self._env, self._rng = env, rng
        self._segment_left, self._steps, self._random_steps = 0, 0, 0
        self._reached = self._at_goal(env)

    @staticmethod
    def _at_goal(env: Any) -> bool:
        return bool(np.linalg.norm(env.get_state()[:2] - env.goal_state[:2]) <= SUCCESS_DIST)

    def target(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The point the noise-free expert heads for next."""
        agent_left, goal_left = pos[0] < WALL_X, goal[0] < WALL_X
        in_doorway = WALL_X0 <= pos[0] <= WALL_X1
        if agent_left == goal_left and not in_doorway:
            return goal
        exit_x = WALL_X0 - CLEARANCE if goal_left else WALL_X1 + CLEARANCE
        if in_doorway or abs(pos[1] - DOOR_Y) <= self.door_band:
            return np.array([exit_x, DOOR_Y])
        approach_x = WALL_X0 - CLEARANCE if agent_left else WALL_X1 + CLEARANCE
        return np.array([approach_x, DOOR_Y])

    def act(self, env: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self._env is None:
            raise RuntimeError("call reset(env, rng) before act()")
        pos, goal = env.get_state()[:2], env.goal_state[:2]
        self._reached = self._reached or self._at_goal(env)
        self._steps += 1
        if self._segment_left == 0 and self._rng.random() < self.segment_prob:
            lo, hi = self.segment_steps
            self._segment_left = int(self._rng.integers(lo, hi + 1))
            self._segment_action = self._rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        if self._segment_left > 0:
            self._segment_left -= 1
            self._random_steps += 1
            return self._segment_action.copy()
        delta = self.target(pos, goal) - pos
        # Largest component -> 1 keeps the direction; below one step's reach it lands exactly.
        action = delta / max(float(np.abs(delta).max()), env.speed)
        action = action + self._rng.normal(0.0, self.noise, 2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def episode_info(self) -> dict[str, float]:
        """expert_success: the goal was reached at some step; random_fraction: share of random-segment steps."""
        if self._env is None:
            raise RuntimeError("call reset(env, rng) before episode_info()")
        reached = self._reached or self._at_goal(self._env)
        return {"expert_success": float(reached),
                "random_fraction": self._random_steps / max(self._steps, 1)}
