"""The lewm/* env ids, registered with Gymnasium on import, and checks of env constructor arguments.

Entry points are strings, so registering imports no simulator.
"""
from __future__ import annotations

import inspect
import os
from typing import Any

import gymnasium as gym

# MuJoCo picks its GL backend when first imported; headless machines need EGL. Set it
# before anything can import mujoco (lewm_envs.cube.env repeats this and explains failures).
os.environ.setdefault("MUJOCO_GL", "egl")

ENV_IDS = {
    "lewm/PushT-v0": ("lewm_envs.pusht.env:PushTEnv", 300),
    "lewm/TwoRoom-v0": ("lewm_envs.two_room.env:TwoRoomEnv", 200),
    "lewm/Cube-v0": ("lewm_envs.cube.env:CubeEnv", 200),
}

for _id, (_entry, _steps) in ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry, max_episode_steps=_steps)


def env_class(env_id: str) -> type:
    """The class registered as `env_id` (imports its simulator)."""
    return gym.envs.registration.load_env_creator(gym.spec(env_id).entry_point)


def check_kwargs(what: str, cls: type, kwargs: Any) -> None:
    """ValueError naming `what` (e.g. "--env-kwargs") unless `kwargs` is a dict whose keys
    `cls(...)` accepts: one line instead of a TypeError from deep inside gym.make."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"{what}: expected a JSON object of keyword arguments, got {kwargs!r}")
    params = inspect.signature(cls.__init__).parameters
    known = sorted(n for n, p in params.items()
                   if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    unknown = sorted(set(kwargs) - set(known))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ValueError(f"{what}: unknown key(s) {unknown} for {cls.__name__}; known: {known}")


def _effective(env_id: str, kwargs: dict[str, Any], attr: str, fallback: tuple[str, ...]) -> dict[str, Any]:
    """The constructor arguments the class names in `attr`, as `kwargs` over the registered ones
    and the defaults would set them."""
    cls = env_class(env_id)
    params = inspect.signature(cls.__init__).parameters
    merged = {**gym.spec(env_id).kwargs, **kwargs}
    return {n: merged.get(n, params[n].default) for n in getattr(cls, attr, fallback)}


def pixel_settings(env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The effective constructor arguments of `env_id` that change its images (the class's
    `pixel_kwargs`: image size, and e.g. Cube's render quality and camera), defaults filled in."""
    return _effective(env_id, kwargs, "pixel_kwargs", ("image_size",))


def dynamics_settings(env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The effective constructor arguments of `env_id` that change how an action moves its state
    (the class's `dynamics_kwargs`, e.g. Push-T's physics), defaults filled in."""
    return _effective(env_id, kwargs, "dynamics_kwargs", ())


def _check_same(settings: Any, verb: str, env_id: str, data_kwargs: dict[str, Any],
                model_kwargs: dict[str, Any], what: str) -> None:
    data, model = settings(env_id, data_kwargs), settings(env_id, model_kwargs)
    diff = [f"{k}={data[k]!r} (the checkpoint's: {model[k]!r})" for k in data if data[k] != model[k]]
    if diff:
        raise ValueError(f"{what} {verb} {env_id} with {', '.join(diff)}; use data made with the "
                         "checkpoint's env kwargs")


def check_pixel_settings(env_id: str, data_kwargs: dict[str, Any], model_kwargs: dict[str, Any], what: str) -> None:
    """ValueError naming each setting where images made with `data_kwargs` (described by `what`)
    differ from those a model was trained on (`model_kwargs`): its latents would be meaningless."""
    _check_same(pixel_settings, "renders", env_id, data_kwargs, model_kwargs, what)


def check_dynamics_settings(env_id: str, data_kwargs: dict[str, Any], model_kwargs: dict[str, Any],
                            what: str) -> None:
    """ValueError naming each setting where `data_kwargs` (described by `what`) simulate other dynamics
    than the model was trained on: its episodes would not be the model's world, and results played or
    learned from them would measure the mismatch."""
    _check_same(dynamics_settings, "simulates", env_id, data_kwargs, model_kwargs, what)
