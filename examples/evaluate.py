"""Run a LeWM checkpoint in a plain Gymnasium loop, then in a vector env with batched plans.

    python examples/evaluate.py --checkpoint runs/demo/model --episodes 10 --seed 0 --num-envs 4

Start and goal come from the env's own seeded `reset` (the env renders the goal image), so
no dataset is needed; `lewm eval` runs the full protocol on held-out pairs instead.

1. Plain loop, one env: `agent.act(obs)` on one observation dict (the loop of the README's "Use the agent").
2. `gymnasium.vector.SyncVectorEnv` of N sub-envs: `agent.act(obs, episode_start=...)` on the
   batch, one batched CEM solve per step for every sub-env that needs a plan. The vector env
   resets a finished sub-env in the same step (`AutoresetMode.SAME_STEP`, SB3's convention),
   so the observation after a done is already the next episode's first one and
   `episode_start` is just the previous step's done flags: it clears that sub-env's plan
   and history. The final step's info is in `info["final_info"]`.
"""
from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym
import numpy as np

import lewm_agent

PLANNER_FLAGS = ("num_samples", "num_iterations", "num_elites", "horizon", "receding_horizon")


def agent_env(agent: lewm_agent.LeWMAgent, env_id: str | None, max_steps: int | None) -> gym.Env:
    """The env the checkpoint was trained on, with its image size."""
    env_id = env_id or agent.meta.env_id
    if env_id is None:
        raise ValueError("--env: the checkpoint records no env id; give one, e.g. --env lewm/TwoRoom-v0")
    if env_id not in gym.registry:
        raise ValueError(f"--env: unknown env id {env_id!r}")
    # A collector may record terminate_on_success=False; here an episode ends on success (the default).
    kwargs = {k: v for k, v in agent.meta.env_kwargs.items() if k != "terminate_on_success"}
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    return gym.make(env_id, **kwargs)


def run_single(agent: lewm_agent.LeWMAgent, env: gym.Env, episodes: int, seed: int) -> list[bool]:
    """The plain Gymnasium loop; episode k uses reset seed `seed + k`."""
    successes = []
    for k in range(episodes):
        obs, info = env.reset(seed=seed + k)
        agent.reset()
        while True:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs))
            if terminated or truncated:  # the env terminates on success
                break
        successes.append(bool(info["is_success"]))
    return successes


def run_vector(agent: lewm_agent.LeWMAgent, envs: gym.vector.VectorEnv, episodes: int, seed: int) -> list[bool]:
    """`episodes` split evenly over the sub-envs (as SB3's evaluate_policy does, so short
    episodes are not over-represented); sub-env i is seeded `seed + i` by the vector env."""
    n = envs.num_envs
    quota = np.array([(episodes + i) // n for i in range(n)])
    done_count = np.zeros(n, int)
    successes: list[bool] = []
    obs, _ = envs.reset(seed=seed)
    agent.reset()
    episode_start = np.ones(n, bool)
    while (done_count < quota).any():
        # Sub-envs past their quota keep running in the vector env; the agent need not plan for them.
        actions = agent.act(obs, episode_start=episode_start, active=done_count < quota)
        obs, _, terminated, truncated, info = envs.step(actions)
        episode_start = terminated | truncated
        for i in np.flatnonzero(episode_start):
            if done_count[i] < quota[i]:
                successes.append(bool(info["final_info"]["is_success"][i]))
                done_count[i] += 1
    return successes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    p.add_argument("--env", default=None, help="env id (default: the checkpoint's)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=4, help="sub-envs of the vector env (0: skip it)")
    p.add_argument("--max-steps", type=int, default=None, help="episode length (default: the env's limit)")
    p.add_argument("--device", default="auto")
    for name in PLANNER_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None, help="planner (default: checkpoint's)")
    a = p.parse_args(argv)
    try:
        for flag in ("episodes", "num_envs", "max_steps"):
            value = getattr(a, flag)
            if value is not None and value < (0 if flag == "num_envs" else 1):
                raise ValueError(f"--{flag.replace('_', '-')}: must be >= {0 if flag == 'num_envs' else 1}, "
                                 f"got {value}")
        planner = {k: getattr(a, k) for k in PLANNER_FLAGS if getattr(a, k) is not None}
        agent = lewm_agent.LeWMAgent.from_pretrained(a.checkpoint, a.device, seed=a.seed, **planner)
        env = agent_env(agent, a.env, a.max_steps)
        t0 = time.perf_counter()
        single = run_single(agent, env, a.episodes, a.seed)
        report("single env", single, time.perf_counter() - t0)
        env.close()
        if a.num_envs:
            envs = gym.vector.SyncVectorEnv([lambda: agent_env(agent, a.env, a.max_steps)] * a.num_envs,
                                            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
            solves = len(agent.solve_seconds)
            t0 = time.perf_counter()
            vector = run_vector(agent, envs, a.episodes, a.seed)
            report(f"vector env ({a.num_envs} sub-envs, {len(agent.solve_seconds) - solves} batched solves)",
                   vector, time.perf_counter() - t0)
            envs.close()
    except (ValueError, FileNotFoundError) as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    return 0


def report(name: str, successes: list[bool], seconds: float) -> None:
    n = len(successes)
    print(f"{name}: success {sum(successes)}/{n} = {100 * sum(successes) / n:.0f}%, "
          f"{seconds / n:.2f} s per episode")


if __name__ == "__main__":
    sys.exit(main())
