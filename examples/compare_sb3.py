"""Train stable-baselines3 baselines on the checkpoint's env and compare them with LeWM.

    python examples/compare_sb3.py --checkpoint runs/two_room --data data/two_room.h5 \
        --timesteps 20000 --episodes 50 --seeds 0 1 2 --out runs/two_room/compare

Baselines (one model trained per evaluation seed, with that seed, so the spread over seeds
includes training variance):
- `sac_her`: SAC + `HerReplayBuffer` ("future" relabelling) on the low-dimensional GoalEnv
  keys (`lewm_agent.planning.wrappers.LowDimGoalObs`), observations normalised with `VecNormalize`.
- `ppo_pixels`: PPO `CnnPolicy` on the current and goal images stacked as 6 channels
  (`lewm_agent.planning.wrappers.PixelGoalObs`) through `SmallCNN` (NatureCNN needs >= 36 px).
Both learn online in the env, from its own `reset` start/goal distribution and its sparse
reward (0 on success, -1 otherwise); LeWM learned offline from the recorded data. All three
are then evaluated by `lewm_agent.evaluation.evaluate.evaluate` on the SAME held-out start/goal pairs,
budget and seeds, beside the random and replay rows. Where the checkpoint holds an actor
(`lewm train-policy`), the row `lewm_policy` (the actor alone: one forward pass per action block)
joins them, and with `--planner-kinds policy policy+cem` also `lewm_policy+cem` (CEM seeded by
the actor). Wall time per episode is the evaluation's; training time is reported apart.
Needs `pip install stable-baselines3`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO, SAC, HerReplayBuffer
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from torch import nn

from lewm_agent.checkpoint import read_meta, resolve_checkpoint
from lewm_agent.data.rollouts import RolloutFile
from lewm_agent.evaluation.evaluate import EvalConfig, eval_markdown, evaluate
from lewm_agent.evaluation.policy import Policy, PolicyFactory
from lewm_agent.planning.actor import ACTOR
from lewm_agent.planning.agent import LeWMAgent
from lewm_agent.planning.wrappers import GOAL_KEYS, LowDimGoalObs, PixelGoalObs

PLANNER_FLAGS = ("num_samples", "num_iterations", "num_elites", "horizon", "receding_horizon")
ACTOR_KINDS = ("policy", "policy+cem")


@dataclass(frozen=True)
class CompareConfig:
    checkpoint: str
    data: str | None = None             # held-out pairs (as `lewm eval --data`) ...
    env_id: str | None = None           # ... or pairs along the env's expert episodes (`--env`)
    timesteps: int = 20_000             # env steps of training per baseline and seed
    episodes: int = 50
    seeds: tuple[int, ...] = (0, 1, 2)
    goal_offset: int | None = None      # --data: goal frame this many steps on (default 25)
    goal_steps: int | None = None       # --env: goal K expert steps after the start (default 25)
    budget: int = 50
    train_episode_steps: int = 100      # time limit of the training episodes
    baselines: tuple[str, ...] = ("sac_her", "ppo_pixels")
    planner_kinds: tuple[str, ...] | None = None  # actor rows; None: ("policy",) where the checkpoint has an actor
    device: str = "auto"                # LeWM and SB3
    planner: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("timesteps", "train_episode_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        unknown = sorted(set(self.baselines) - set(TRAINERS))
        if unknown:
            raise ValueError(f"--baselines: unknown {unknown}; choose from {sorted(TRAINERS)}")
        unknown = sorted(set(self.planner_kinds or ()) - set(ACTOR_KINDS))
        if unknown:
            raise ValueError(f"--planner-kinds: unknown {unknown}; choose from {list(ACTOR_KINDS)}")

    def actor_kinds(self) -> tuple[str, ...]:
        if self.planner_kinds is not None:
            return self.planner_kinds
        return ("policy",) if (resolve_checkpoint(self.checkpoint) / ACTOR).is_file() else ()


class SmallCNN(BaseFeaturesExtractor):
    """Three stride-2 3x3 convolutions, pooled to at most 8x8: accepts images from 8 px up."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128):
        super().__init__(observation_space, features_dim)
        c, h, w = observation_space.shape
        if min(h, w) < 8:
            raise ValueError(f"SmallCNN: images must be at least 8x8, got {h}x{w}")
        self.cnn = nn.Sequential(nn.Conv2d(c, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                                 nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU())
        side = min(8, (min(h, w) + 7) // 8)  # spatial side after three stride-2 convs, capped at 8
        self.pool = nn.AdaptiveAvgPool2d(side)  # keeps the linear layer small at 224 px
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, features_dim), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) in [0, 1] -> (B, features_dim)
        return self.head(self.pool(self.cnn(obs)))


def env_spec(cfg: CompareConfig) -> tuple[str, dict[str, Any]]:
    """The env and kwargs the evaluation will use (the data file's, else the checkpoint's)."""
    if cfg.data:
        with RolloutFile(cfg.data) as rf:
            env_id, kwargs = rf.env_id, dict(rf.env_kwargs)
    else:
        env_id, kwargs = cfg.env_id, dict(read_meta(cfg.checkpoint).env_kwargs)
    kwargs.pop("terminate_on_success", None)  # training episodes end on success (the env default)
    return env_id, kwargs


def _env_fn(env_id: str, kwargs: dict[str, Any], steps: int, wrapper: type[gym.Wrapper]) -> Callable[[], gym.Env]:
    return lambda: wrapper(gym.make(env_id, **kwargs, max_episode_steps=steps))


def train_sac_her(env_id: str, kwargs: dict[str, Any], cfg: CompareConfig, seed: int) -> Policy:
    venv = VecNormalize(DummyVecEnv([_env_fn(env_id, kwargs, cfg.train_episode_steps, LowDimGoalObs)]),
                        norm_obs=True, norm_reward=False, norm_obs_keys=list(GOAL_KEYS))
    # HER samples only finished episodes: learning starts after the first full-length one.
    model = SAC("MultiInputPolicy", venv, replay_buffer_class=HerReplayBuffer,
                replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                learning_starts=cfg.train_episode_steps, buffer_size=max(cfg.timesteps, 1000), batch_size=256,
                learning_rate=1e-3, gamma=0.95, tau=0.05, policy_kwargs={"net_arch": [256, 256]},
                seed=seed, device=cfg.device, verbose=0)
    model.learn(cfg.timesteps, progress_bar=False)
    venv.training = False  # freeze the normalisation statistics for evaluation

    def policy(obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        x = venv.normalize_obs(LowDimGoalObs.transform(obs))
        return model.predict(x, deterministic=True)[0].astype(np.float32)
    return policy


def train_ppo_pixels(env_id: str, kwargs: dict[str, Any], cfg: CompareConfig, seed: int) -> Policy:
    n_envs = 4
    venv = DummyVecEnv([_env_fn(env_id, kwargs, cfg.train_episode_steps, PixelGoalObs)] * n_envs)
    # Rollouts of at most 256 steps per env, fewer for a short --timesteps (a multiple of 16).
    n_steps = int(np.clip(cfg.timesteps // n_envs // 16 * 16, 16, 256))
    policy_kwargs = {"features_extractor_class": SmallCNN, "features_extractor_kwargs": {"features_dim": 128},
                     "net_arch": {"pi": [64], "vf": [64]}}
    model = PPO("CnnPolicy", venv, n_steps=n_steps, batch_size=64, n_epochs=4, learning_rate=3e-4, ent_coef=0.01,
                policy_kwargs=policy_kwargs, seed=seed, device=cfg.device, verbose=0)
    model.learn(cfg.timesteps, progress_bar=False)
    return lambda obs, active: model.predict(PixelGoalObs.transform(obs), deterministic=True)[0].astype(np.float32)


TRAINERS: dict[str, tuple[Callable[..., Policy], str]] = {
    "sac_her": (train_sac_her, "SAC + HER, MultiInputPolicy on observation/achieved_goal/desired_goal"),
    "ppo_pixels": (train_ppo_pixels, "PPO, CnnPolicy (SmallCNN) on pixels + goal image, 6 channels"),
}


def baseline_factory(name: str, env_id: str, kwargs: dict[str, Any], cfg: CompareConfig,
                     seconds: dict[int, float]) -> PolicyFactory:
    """Trains `name` with the evaluation seed when the protocol asks for that seed's policy."""
    trainer = TRAINERS[name][0]

    def factory(seed: int, space: gym.spaces.Box) -> Policy:
        t0 = time.perf_counter()
        policy = trainer(env_id, kwargs, cfg, seed)
        seconds[seed] = time.perf_counter() - t0
        if cfg.progress:
            print(f"trained {name} (seed {seed}): {cfg.timesteps} steps in {seconds[seed]:.0f} s", file=sys.stderr)
        return policy
    return factory


def actor_factory(cfg: CompareConfig, kind: str) -> PolicyFactory:
    """The checkpoint's actor as a row (loaded now, so a checkpoint without one fails before any
    training); re-seeded per seed as LeWM's own row is."""
    agent = LeWMAgent.from_pretrained(cfg.checkpoint, cfg.device, planner_kind=kind, **cfg.planner)

    def factory(seed: int, space: gym.spaces.Box) -> Policy:
        agent.reset()
        agent.planner.seed(seed)
        return lambda obs, active: agent.act(obs, active=active)
    return factory


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """Train the baselines and evaluate everything under one protocol; returns the report."""
    env_id, kwargs = env_spec(cfg)
    seconds: dict[str, dict[int, float]] = {name: {} for name in cfg.baselines}
    extra = {f"lewm_{kind}": actor_factory(cfg, kind) for kind in cfg.actor_kinds()}
    extra.update({name: baseline_factory(name, env_id, kwargs, cfg, seconds[name]) for name in cfg.baselines})
    ecfg = EvalConfig(checkpoint=cfg.checkpoint, data=cfg.data, env_id=cfg.env_id, episodes=cfg.episodes,
                      seeds=cfg.seeds, goal_offset=cfg.goal_offset, goal_steps=cfg.goal_steps, budget=cfg.budget,
                      device=cfg.device,
                      planner=cfg.planner)
    on_seed = (lambda row, seed, rate: print(f"seed {seed}: {row} {100 * rate:.0f}%", file=sys.stderr)) \
        if cfg.progress else None
    report = evaluate(ecfg, on_seed=on_seed, extra=extra)
    report["training"] = {name: {"algorithm": TRAINERS[name][1], "timesteps_per_seed": cfg.timesteps,
                                 "episode_steps": cfg.train_episode_steps, "env_kwargs": kwargs,
                                 "seconds_per_seed": seconds[name], "seconds": sum(seconds[name].values())}
                          for name in cfg.baselines}
    return report


def comparison_table(report: dict[str, Any]) -> str:
    """One table: success, evaluation wall time per episode, training time."""
    lines = ["| policy | success (mean ± std over seeds) | pooled [95% Wilson] | s/episode (eval) | training |",
             "|---|---|---|---|---|"]
    for name, r in report["rows"].items():
        t = report.get("training", {}).get(name)
        if t:
            train = f"{t['seconds']:.0f} s ({t['timesteps_per_seed']} env steps x {len(t['seconds_per_seed'])} seeds)"
        elif name == "lewm":
            train = "offline, from the data (see the checkpoint's model card)"
        elif name.startswith("lewm_"):
            train = "offline, in the world model's latent (see the card's actor section)"
        else:
            train = "none"
        lines.append(f"| {name} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f}% | {100 * r['success']:.1f}% "
                     f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] | {r['seconds_per_episode']:.3f} | "
                     f"{train} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="rollout file: start/goal pairs from its held-out episodes")
    src.add_argument("--env", dest="env_id", help="no dataset: pairs along episodes of the env's expert")
    p.add_argument("--timesteps", type=int, default=20_000, help="training env steps per baseline and seed")
    p.add_argument("--episodes", type=int, default=50, help="pairs per seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--goal-offset", type=int, default=None, help="with --data: goal frame K steps on (default 25)")
    p.add_argument("--goal-steps", type=int, default=None,
                   help="with --env: goal K steps on along the env's expert episode (default 25)")
    p.add_argument("--budget", type=int, default=50)
    p.add_argument("--train-episode-steps", type=int, default=100, help="time limit of training episodes")
    p.add_argument("--baselines", nargs="+", default=list(TRAINERS), help=f"subset of {list(TRAINERS)}")
    p.add_argument("--planner-kinds", nargs="*", default=None,
                   help=f"actor rows, a subset of {list(ACTOR_KINDS)} (default: policy where the checkpoint has an "
                        "actor; none given: no actor row)")
    p.add_argument("--device", default="auto")
    for name in PLANNER_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None, help="planner (default: checkpoint's)")
    p.add_argument("--out", default=None, help="folder for compare.json and compare.md")
    a = p.parse_args(argv)
    try:
        planner = {k: getattr(a, k) for k in PLANNER_FLAGS if getattr(a, k) is not None}
        cfg = CompareConfig(checkpoint=a.checkpoint, data=a.data, env_id=a.env_id, timesteps=a.timesteps,
                            episodes=a.episodes, seeds=tuple(a.seeds), goal_offset=a.goal_offset,
                            goal_steps=a.goal_steps, budget=a.budget,
                            train_episode_steps=a.train_episode_steps, baselines=tuple(a.baselines),
                            planner_kinds=None if a.planner_kinds is None else tuple(a.planner_kinds),
                            device=a.device, planner=planner)
        report = compare(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"compare_sb3.py: error: {e}", file=sys.stderr)
        return 2
    text = comparison_table(report) + "\n" + eval_markdown(report)
    print(text)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (out / "compare.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
