"""Gymnasium environments of lewm_agent, registered on import:

  lewm/PushT-v0    Push-T on pymunk 7 (lewm_envs.pusht.env)
  lewm/TwoRoom-v0  point agent, two rooms and a door, pure numpy (lewm_envs.two_room.env)
  lewm/Cube-v0     OGBench single-cube manipulation, MuJoCo (lewm_envs.cube.env)

Entry points are strings, so importing this package imports no simulator.
"""
from .experts import make_expert
from .registry import (
    ENV_IDS,
    check_dynamics_settings,
    check_kwargs,
    check_pixel_settings,
    dynamics_settings,
    env_class,
    pixel_settings,
)

__all__ = ["ENV_IDS", "check_dynamics_settings", "check_kwargs", "check_pixel_settings", "dynamics_settings",
           "env_class", "make_expert", "pixel_settings"]
