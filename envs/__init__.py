"""Gymnasium environments of lewm_agent, registered on import:

  lewm/PushT-v0    Push-T on pymunk 7 (lewm_envs.pusht)
  lewm/TwoRoom-v0  point agent, two rooms and a door, pure numpy (lewm_envs.two_room)
  lewm/Cube-v0     OGBench single-cube manipulation, MuJoCo (lewm_envs.cube)

Entry points are strings, so importing this package imports no simulator.
"""
from __future__ import annotations

import os

import gymnasium as gym

# MuJoCo picks its GL backend when first imported; headless machines need EGL. Set it
# before anything can import mujoco (lewm_envs.cube repeats this and explains failures).
os.environ.setdefault("MUJOCO_GL", "egl")

ENV_IDS = {
    "lewm/PushT-v0": ("lewm_envs.pusht:PushTEnv", 300),
    "lewm/TwoRoom-v0": ("lewm_envs.two_room:TwoRoomEnv", 200),
    "lewm/Cube-v0": ("lewm_envs.cube:CubeEnv", 200),
}

for _id, (_entry, _steps) in ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry, max_episode_steps=_steps)

from .experts import make_expert  # noqa: E402

__all__ = ["ENV_IDS", "make_expert"]
