"""Shared fixtures: a moving-dot world (pixels driven by 2-D actions) as data and as a Gymnasium env."""
from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)  # small models on 2 busy cores slow down many-fold from thread contention

SPEED = 0.04  # fraction of the arena the dot moves per unit action and env step


def render_dot(pos: np.ndarray, size: int) -> np.ndarray:
    """uint8 (size, size, 3): a soft white disc at pos in [0, 1]^2 on black."""
    grid = (np.arange(size) + 0.5) / size
    d2 = (grid[None, :] - pos[0]) ** 2 + (grid[:, None] - pos[1]) ** 2
    img = np.exp(-d2 / (2 * 0.06 ** 2))
    return np.repeat((img * 255).astype(np.uint8)[..., None], 3, axis=-1)


def dot_episode(rng: np.random.Generator, length: int, size: int):
    """One episode of smoothly varying random actions: (pixels, actions, observation, state)."""
    pos = rng.uniform(0.15, 0.85, 2)
    actions = np.zeros((length - 1, 2), np.float32)
    a = rng.uniform(-1, 1, 2)
    states = [pos.copy()]
    for t in range(length - 1):
        a = np.clip(0.8 * a + 0.5 * rng.normal(size=2), -1, 1)
        actions[t] = a
        pos = np.clip(pos + SPEED * a, 0.05, 0.95)
        states.append(pos.copy())
    states = np.asarray(states)
    pixels = np.stack([render_dot(p, size) for p in states])
    return pixels, actions, states.astype(np.float32), states


def write_dot_dataset(path, episodes: int = 24, length: int = 40, size: int = 32, seed: int = 0):
    from lewm_agent.data.rollouts import RolloutWriter
    rng = np.random.default_rng(seed)
    with RolloutWriter(path, {"env_id": "test/Dot-v0", "env_kwargs": {"image_size": size}, "seed": seed,
                              "collector": "tests.dot_episode"}) as w:
        for _ in range(episodes):
            w.add_episode(*dot_episode(rng, length, size))
    return path


class DotEnv(gym.Env):
    """Goal-conditioned moving dot following the package's env contract (pixels, goal, ...)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, image_size: int = 32, max_steps: int = 50, terminate_on_success: bool = True):
        self.size, self.max_steps, self.terminate = image_size, max_steps, terminate_on_success
        img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        vec = gym.spaces.Box(0, 1, (2,), np.float32)
        self.observation_space = gym.spaces.Dict(
            {"pixels": img, "goal": img, "observation": vec, "achieved_goal": vec, "desired_goal": vec})
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def _obs(self):
        return {"pixels": render_dot(self.pos, self.size), "goal": render_dot(self.goal, self.size),
                "observation": self.pos.astype(np.float32), "achieved_goal": self.pos.astype(np.float32),
                "desired_goal": self.goal.astype(np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(0.15, 0.85, 2)
        self.goal = self.np_random.uniform(0.15, 0.85, 2)
        self.t = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.pos = np.clip(self.pos + SPEED * np.clip(action, -1, 1), 0.05, 0.95)
        self.t += 1
        success = bool(np.linalg.norm(self.pos - self.goal) < 0.08)
        truncated = self.t >= self.max_steps
        return self._obs(), float(success), success and self.terminate, truncated, {"is_success": success}


@pytest.fixture(scope="session")
def dot_dataset(tmp_path_factory):
    return write_dot_dataset(tmp_path_factory.mktemp("data") / "dot.h5")


@pytest.fixture(scope="session")
def trained_checkpoint(dot_dataset, tmp_path_factory):
    """A tiny world model trained 200 steps on the dot dataset (~5 s on one core)."""
    from lewm_agent.training.train import TrainConfig, train
    out = tmp_path_factory.mktemp("run") / "ck"
    train(TrainConfig(data=str(dot_dataset), out=str(out), preset="tiny", steps=200, batch_size=32, lr=3e-3,
                      warmup_steps=10, eval_interval=100, ckpt_interval=100, log_interval=10, val_windows=64,
                      num_projections=128, progress=False))
    return out


@pytest.fixture(scope="session")
def two_room_data(tmp_path_factory):
    """40 noisy-expert Two-Room episodes at 32 px: shared by the evaluation, video and SB3 tests."""
    from lewm_agent.data.collect import CollectConfig, collect
    out = tmp_path_factory.mktemp("tr") / "tr.h5"
    collect(CollectConfig("lewm/TwoRoom-v0", 40, str(out), env_kwargs={"image_size": 32},
                          expert_kwargs={"noise": 1.0}, progress=False))
    return out


@pytest.fixture(scope="session")
def two_room_ck(two_room_data, tmp_path_factory):
    """A `tiny` checkpoint trained for 30 steps on `two_room_data` (the tests need its plumbing, not skill)."""
    from lewm_agent.training.train import TrainConfig, train
    out = tmp_path_factory.mktemp("ck") / "ck"
    train(TrainConfig(data=str(two_room_data), out=str(out), preset="tiny", steps=30, batch_size=16, lr=3e-3,
                      warmup_steps=5, eval_interval=30, ckpt_interval=30, log_interval=10, val_fraction=0.3,
                      val_windows=32, num_projections=64, progress=False))
    return out
