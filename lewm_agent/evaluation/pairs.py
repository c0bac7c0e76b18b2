"""Start/goal pairs: drawn from held-out episodes of a rollout file (or from the env's own seeded
reset), and played in lockstep by a policy."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from ..checkpoint import CheckpointMeta
from ..data.damage import reading
from ..data.rollouts import RolloutFile
from ..data.windows import split_episodes
from .policy import Policy
from .work import PairSteps


@dataclass(frozen=True)
class Pair:
    state: np.ndarray
    goal_state: np.ndarray
    actions: np.ndarray | None = None    # recorded actions from start to goal (dataset mode)
    episode: int = -1
    start: int = -1


def held_out_episodes(rf: RolloutFile, meta: CheckpointMeta) -> tuple[np.ndarray, str]:
    """The checkpoint's validation episodes if `rf` is its training file, else every episode."""
    t = meta.training
    seed = t.get("data_recipe", {}).get("seed", rf.attr("seed"))  # older checkpoints did not record it
    same = (t.get("data_episodes") == rf.num_episodes and t.get("data_frames") == rf.num_frames
            and seed == rf.attr("seed") and "train_config" in t)
    if same:
        tc = t["train_config"]
        val = split_episodes(rf.num_episodes, tc["val_fraction"], tc["seed"]).val_episodes
        return val, "validation split of the training file"
    return np.arange(rf.num_episodes), "every episode (this file was not the training file)"


def sample_pairs(rf: RolloutFile, episodes: np.ndarray, n: int, offset: int, seed: int,
                 solved: Callable[[Pair], bool]) -> tuple[list[Pair], int]:
    """`n` seeded (start, start+offset) pairs from `episodes`; starts already solved are skipped."""
    lengths = rf.episode_lengths[episodes]
    eligible = episodes[lengths > offset]
    if len(eligible) == 0:
        raise ValueError(f"--goal-offset {offset}: no held-out episode is longer than {offset} steps "
                         f"(longest: {int(lengths.max()) if len(lengths) else 0})")
    rng = np.random.default_rng([seed, 7919])
    states, actions = rf.column("state"), rf.column("action")
    pairs: list[Pair] = []
    skipped, seen = 0, set()
    capacity = int((rf.episode_lengths[eligible] - offset).sum())
    while len(pairs) < n:
        if len(seen) >= capacity:
            raise ValueError(f"only {len(pairs)} usable start/goal pairs in {len(eligible)} held-out episodes "
                             f"({skipped} skipped as already solved); asked for {n}: collect more data or "
                             "lower --episodes")
        ep = int(rng.choice(eligible))
        t = int(rng.integers(0, rf.episode_lengths[ep] - offset))
        if (ep, t) in seen:
            continue
        seen.add((ep, t))
        row = int(rf.episode_starts[ep]) + t
        with reading(rf, "state", row, row + offset + 1):
            pair = Pair(states[row], states[row + offset], actions[row:row + offset], ep, t)
        if solved(pair):
            skipped += 1
            continue
        pairs.append(pair)
    return pairs, skipped


def env_pairs(env: gym.Env, n: int, seed: int, goal_steps: int, expert_kwargs: dict | None = None,
              max_steps: int | None = None) -> tuple[list[Pair], int]:
    """Start/goal pairs without a dataset, posed as a file the env's expert collected would pose them
    (`sample_pairs`): an episode of the expert (`expert_kwargs`, e.g. the checkpoint's data recipe)
    from a seeded reset towards the env's own goal, up to `max_steps` (default the env's limit), a
    start drawn uniformly along it and the goal `goal_steps` env steps later. Episodes shorter than
    that are passed over (as `--data` passes short episodes over); solved starts are skipped.
    Starts only at resets would under-ask: on Two-Room 20% of such pairs crossed the door, 50% of
    the test file's."""
    from lewm_envs import make_expert  # the eval imports without the envs; --env needs them anyway

    u = env.unwrapped
    expert = make_expert(u.env_id, **(expert_kwargs or {}))
    until_success = expert.collect_env_kwargs.get("terminate_on_success", True)
    max_steps = max_steps or gym.spec(u.env_id).max_episode_steps
    if goal_steps >= max_steps:
        raise ValueError(f"--goal-steps {goal_steps}: the expert's episodes end by {max_steps} steps; give fewer")
    pairs, skipped, k = [], 0, 0
    while len(pairs) < n:
        if k >= 100 * n:  # the expert reaches its goals sooner than that almost always
            raise ValueError(f"--goal-steps {goal_steps}: {k} expert episodes gave {len(pairs)} pairs; give fewer")
        env_seed, expert_seed, pick = np.random.SeedSequence([seed, k]).generate_state(3)
        k += 1
        env.reset(seed=int(env_seed))
        states = u.expert_episode(expert, np.random.default_rng(expert_seed), max_steps, until_success)
        if len(states) <= goal_steps:
            continue
        t = int(np.random.default_rng(pick).integers(0, len(states) - goal_steps))
        pair = Pair(states[t], states[t + goal_steps], episode=k - 1, start=t)
        if env.reset(options={"state": pair.state, "goal_state": pair.goal_state})[1]["is_success"]:
            skipped += 1
            continue
        pairs.append(pair)
    return pairs, skipped


def recipe_expert(meta: CheckpointMeta, env_id: str) -> tuple[dict, int | None]:
    """The expert kwargs and episode limit of the checkpoint's training data, where that data was
    collected by `env_id`'s expert (else the expert's defaults and the env's limit)."""
    from lewm_envs.experts import expert_class

    recipe = meta.training.get("data_recipe", {})
    if recipe.get("collector") != f"lewm_agent.collect/{expert_class(env_id).__name__}":
        return {}, None
    return dict(recipe.get("expert_kwargs", {})), recipe.get("max_episode_steps")


def run_pairs(policy: Policy, pairs: list[Pair], envs: list[gym.Env], budget: int,
              record: dict[int, list] | None = None, progress: PairSteps | None = None) -> np.ndarray:
    """Play every pair for `budget` steps in lockstep; returns success flags.

    `record[i]` (for the pair indices given as keys) receives a `video.Snapshot` after the
    reset and after each of pair i's steps; it ends at its first success. `progress` counts
    the pairs played at each lockstep step (work.py: what a step costs), not steps never played.
    """
    obs = [env.reset(options={"state": p.state, "goal_state": p.goal_state})[0] for env, p in zip(envs, pairs)]
    success = np.zeros(len(pairs), bool)
    if record:
        from .video import Snapshot

        def snap(i: int, t: int) -> None:
            record[i].append(Snapshot(obs[i]["pixels"].copy(), obs[i]["goal"].copy(), t, bool(success[i])))
        for i in record:
            snap(i, 0)
    for t in range(1, budget + 1):
        active = ~success
        batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}  # every key: baselines may use low-dim ones
        actions = policy(batch, active)
        for i in np.flatnonzero(active):
            obs[i], _, _, _, info = envs[i].step(actions[i])
            success[i] = bool(info["is_success"])
            if record and i in record:
                snap(i, t)
        if progress is not None:
            progress.step(int(active.sum()), int((~success).sum()))
        if success.all():
            break
    return success
