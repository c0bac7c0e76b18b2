"""Scripted data-collection experts, one per environment, behind one protocol.

An expert drives an *unwrapped* lewm env from its simulator state:

    expert = make_expert("lewm/TwoRoom-v0", noise=0.3)
    obs, info = env.reset(seed=s); expert.reset(env.unwrapped, np.random.default_rng(s))
    while not done: action = expert.act(env.unwrapped, obs)
    expert.episode_info()   # {"expert_success": 1.0, ...}: per-episode numbers for the dataset

`act` may change the env's goal mid-episode (Cube samples a new target after each
pick-and-place) through `env.set_goal_state`. `collect_env_kwargs` are the env kwargs a
collector should use (e.g. no termination on success for multi-subtask episodes).
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from .registry import check_kwargs

EXPERTS = {
    "lewm/PushT-v0": "lewm_envs.pusht.expert:PushTExpert",
    "lewm/TwoRoom-v0": "lewm_envs.two_room.expert:TwoRoomExpert",
    "lewm/Cube-v0": "lewm_envs.cube.expert:CubeExpert",
}


class Expert(Protocol):
    collect_env_kwargs: dict[str, Any]

    def reset(self, env: Any, rng: np.random.Generator) -> None: ...
    def act(self, env: Any, obs: dict[str, np.ndarray]) -> np.ndarray: ...
    def episode_info(self) -> dict[str, float]: ...


def expert_class(env_id: str) -> type:
    if env_id not in EXPERTS:
        raise ValueError(f"no scripted expert for {env_id!r}; experts exist for {sorted(EXPERTS)}")
    module, name = EXPERTS[env_id].split(":")
    return getattr(importlib.import_module(module), name)


def make_expert(env_id: str, **kwargs: Any) -> Expert:
    cls = expert_class(env_id)
    check_kwargs("expert kwargs", cls, kwargs)
    return cls(**kwargs)
