"""Observations from the checkpoint's env, not another: the vector entries its observation space declares.

The planner reads only the two images, and images of another env at the same size would pass
their checks and be planned on as nonsense. The env's vectors (proprioception and goals, whose
sizes differ between envs) give such a mix-up away: where an observation carries them, their
shapes must be the env's.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def vector_shapes(env_id: str | None) -> dict[str, tuple[int, ...]]:
    """The per-env shape of every vector entry `env_id`'s observations declare ({} if unknown)."""
    if env_id is None:
        return {}
    import gymnasium as gym

    import lewm_envs
    if env_id not in gym.registry:
        return {}
    cls = lewm_envs.env_class(env_id)
    obs_dim, goal_dim = getattr(cls, "obs_dim", None), getattr(cls, "goal_dim", None)
    shapes = {"observation": obs_dim, "achieved_goal": goal_dim, "desired_goal": goal_dim}
    return {k: (int(v),) for k, v in shapes.items() if v is not None}


def check_vectors(obs: Mapping, shapes: dict[str, tuple[int, ...]], env_id: str | None, batched: bool) -> None:
    """ValueError naming the first entry whose shape is not the env's (per env, or (N, ...) batched)."""
    for key, shape in shapes.items():
        if key not in obs:
            continue  # wrappers may keep the images only
        got = np.shape(obs[key])
        want = (got[0], *shape) if batched and got else shape
        if got != want:
            raise ValueError(f"obs[{key!r}]: shape {got}, but {env_id} observations have {want}; is this the "
                             "observation of another env?")
