"""Render one start frame and its goal image per environment into docs/envs.png.

    python docs/render_envs.py        (needs the `cube` extra for lewm/Cube-v0)
"""
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image

import lewm_agent  # noqa: F401  registers the envs

SIZE, GAP = 128, 8
rows = []
for env_id in ("lewm/PushT-v0", "lewm/TwoRoom-v0", "lewm/Cube-v0"):
    env = gym.make(env_id, image_size=SIZE)
    obs, _ = env.reset(seed=3)
    gap = np.full((SIZE, GAP, 3), 255, np.uint8)
    rows.append(np.concatenate([obs["pixels"], gap, obs["goal"]], axis=1))
    env.close()
sheet = np.concatenate([np.concatenate([r, np.full((GAP, r.shape[1], 3), 255, np.uint8)]) for r in rows])[:-GAP]
out = Path(__file__).parent / "envs.png"
Image.fromarray(sheet).save(out)
print(f"wrote {out}: rows Push-T, Two-Room, Cube; left the start frame, right the goal image")
