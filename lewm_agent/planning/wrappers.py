"""Observation wrappers that give RL baselines (e.g. stable-baselines3) the view they expect.

The lewm/* envs return a Dict of `pixels`, `goal`, `observation`, `achieved_goal` and
`desired_goal`. A baseline trained on a subset must see the same subset when it is evaluated
under the protocol of `lewm_agent.evaluation.evaluate`, which hands policies a batch of every key. So each
wrapper's mapping is a static `transform` that accepts one observation or a batch, and the
wrapper itself only applies it.

- `LowDimGoalObs`: the three GoalEnv keys, for SAC/TD3 with SB3's `HerReplayBuffer` and
  `MultiInputPolicy` (the env's vectorised `compute_reward` stays reachable through the wrapper).
- `PixelGoalObs`: current view and goal view stacked as 6 channels, channels-first uint8
  (6, H, W), for a `CnnPolicy` (SB3 then needs no `VecTransposeImage`).

No stable-baselines3 import here: the wrappers are plain Gymnasium.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


def _require(space: gym.Space, keys: tuple[str, ...], wrapper: str) -> gym.spaces.Dict:
    if not isinstance(space, gym.spaces.Dict):
        raise ValueError(f"{wrapper}: expected a Dict observation space with keys {list(keys)}, "
                         f"got {type(space).__name__}")
    missing = [k for k in keys if k not in space.spaces]
    if missing:
        raise ValueError(f"{wrapper}: observation space lacks key(s) {missing}; "
                         f"expected {list(keys)} (present: {sorted(space.spaces)})")
    return space


class LowDimGoalObs(gym.ObservationWrapper):
    """Drops the images: Dict(observation, achieved_goal, desired_goal), as HER expects."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = _require(env.observation_space, GOAL_KEYS, "LowDimGoalObs")
        self.observation_space = gym.spaces.Dict({k: space.spaces[k] for k in GOAL_KEYS})

    @staticmethod
    def transform(obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One observation or a batch (leading axis N): only the GoalEnv keys."""
        missing = [k for k in GOAL_KEYS if k not in obs]
        if missing:
            raise ValueError(f"obs: missing key(s) {missing}; expected {list(GOAL_KEYS)}")
        return {k: np.asarray(obs[k], np.float32) for k in GOAL_KEYS}

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.transform(observation)

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        # Explicit so HER finds it whatever wrappers sit between (Gymnasium 1.x does not forward).
        return self.env.unwrapped.compute_reward(achieved_goal, desired_goal, info)


class PixelGoalObs(gym.ObservationWrapper):
    """Current and goal image stacked on channels: Box uint8 (6, H, W), channels first."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = _require(env.observation_space, ("pixels", "goal"), "PixelGoalObs")
        h, w, c = space.spaces["pixels"].shape
        if space.spaces["goal"].shape != (h, w, c) or c != 3:
            raise ValueError(f"PixelGoalObs: expected 'pixels' and 'goal' of the same shape (H, W, 3), got "
                             f"{space.spaces['pixels'].shape} and {space.spaces['goal'].shape}")
        self.observation_space = gym.spaces.Box(0, 255, (2 * c, h, w), np.uint8)

    @staticmethod
    def transform(obs: Mapping[str, Any]) -> np.ndarray:
        """(H, W, 3) or (N, H, W, 3) pixels and goal -> (6, H, W) or (N, 6, H, W) uint8."""
        for k in ("pixels", "goal"):
            if k not in obs:
                raise ValueError(f"obs[{k!r}]: missing; expected a uint8 image (H, W, 3) or batch (N, H, W, 3)")
        pixels, goal = np.asarray(obs["pixels"]), np.asarray(obs["goal"])
        if pixels.shape != goal.shape or pixels.ndim not in (3, 4) or pixels.shape[-1] != 3:
            raise ValueError(f"obs['pixels'], obs['goal']: expected the same shape (H, W, 3) or (N, H, W, 3), "
                             f"got {pixels.shape} and {goal.shape}")
        stacked = np.concatenate([pixels, goal], axis=-1)   # (..., H, W, 6)
        return np.ascontiguousarray(np.moveaxis(stacked, -1, -3), dtype=np.uint8)  # (..., 6, H, W)

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return self.transform(observation)
