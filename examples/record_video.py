"""Film a LeWM agent: one MP4 per episode, current view beside the goal view.

    python examples/record_video.py --checkpoint runs/demo/model --episodes 3 --out videos

Needs the `video` extra (`pip install 'lewm-agent[video]'`: imageio, imageio-ffmpeg, Pillow).
The env is the one the checkpoint was trained on (id and image size from its config);
`GoalVideo` wraps it and writes `<env>-<episode>_success.mp4` or `_fail.mp4` when an episode
ends. Start and goal come from the env's own seeded `reset`; episode k uses seed `seed + k`.
`lewm eval --video DIR` films the protocol's held-out pairs instead.
"""
from __future__ import annotations

import argparse
import sys

import gymnasium as gym

import lewm_agent
from lewm_agent.evaluation.video import GoalVideo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    p.add_argument("--out", default="videos", help="folder for the MP4s")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="episode length (default: the env's limit)")
    p.add_argument("--device", default="auto")
    p.add_argument("--num-samples", type=int, default=None, help="CEM samples (default: checkpoint's)")
    p.add_argument("--num-iterations", type=int, default=None, help="CEM iterations (default: checkpoint's)")
    a = p.parse_args(argv)
    try:
        if a.episodes < 1:
            raise ValueError(f"--episodes: must be >= 1, got {a.episodes}")
        planner = {k: v for k, v in (("num_samples", a.num_samples), ("num_iterations", a.num_iterations))
                   if v is not None}
        agent = lewm_agent.LeWMAgent.from_pretrained(a.checkpoint, a.device, seed=a.seed, **planner)
        env_id = agent.meta.env_id
        if env_id is None:
            raise ValueError(f"--checkpoint: {a.checkpoint} records no env id to film")
        limit = {} if a.max_steps is None else {"max_episode_steps": a.max_steps}
        env = GoalVideo(gym.make(env_id, **agent.meta.env_kwargs, **limit), a.out,
                        name_prefix=env_id.split("/")[-1])
        for k in range(a.episodes):
            obs, info = env.reset(seed=a.seed + k)
            agent.reset()
            while True:
                obs, _, terminated, truncated, info = env.step(agent.act(obs))
                if terminated or truncated:  # the video is written here, when the episode ends
                    break
            print(f"episode {k}: {'success' if info['is_success'] else 'fail'} -> {env.paths[-1]}")
        env.close()
    except (ValueError, FileNotFoundError) as e:
        print(f"record_video.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
