"""The env a checkpoint was trained for, built with that checkpoint's own settings."""
from __future__ import annotations

import os
from typing import Any

import gymnasium as gym

from ..checkpoint import read_meta


def make_env(checkpoint: str | os.PathLike, **overrides: Any) -> gym.Env:
    """`gym.make` of the checkpoint's env id with the env kwargs it was trained on (image size,
    render settings), then `overrides` (e.g. `render_mode="rgb_array"`, `max_episode_steps=100`).

    `checkpoint`: a folder or a shipped name ("pusht", "two_room", "cube").
    """
    meta = read_meta(checkpoint)
    return gym.make(meta.env_id, **{**meta.env_kwargs, **overrides})
