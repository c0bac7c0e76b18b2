"""What every row of an evaluation plays: a policy over a batch of lockstep envs."""
from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

Policy = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]  # (batched obs, active) -> actions
# A baseline for the same table: (seed, action space) -> Policy, built once per seed.
PolicyFactory = Callable[[int, gym.spaces.Box], Policy]
