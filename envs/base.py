"""Common base of the lewm/* environments: the goal-conditioned pixel contract.

Observation (a Dict, gymnasium-robotics GoalEnv conventions):
  pixels uint8 (S, S, 3)   current view        goal uint8 (S, S, 3)   view of the goal state
  observation float32 (O,) low-dim state       achieved_goal / desired_goal float32 (G,)
Actions: Box(-1, 1, float32); out-of-range values are clipped (documented per env);
NaN/inf or a wrong shape raise ValueError. Reward: `compute_reward` (vectorised,
0 on success and -1 otherwise, SB3 HER's convention). `info["is_success"]` every step;
`terminated` on success unless `terminate_on_success=False`.
`reset(seed=..., options={"state": s, "goal_state": g})` restores start and goal exactly
(either may be omitted and is then sampled); `get_state()` / `set_state()` expose the full
simulator state, the `state` column of the rollout file.

A subclass implements the simulator: `_sample_state`, `_sample_goal_state`, `get_state`,
`set_state`, `_apply_action`, `_render_current`, `_observation`, `_achieved_goal`,
`_goal_from_state`, `_success` (vectorised), plus the class attributes `state_dim`,
`obs_dim`, `goal_dim`, `action_dim`.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def _goal_steps(name: str, steps: Any) -> int | None:
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"{name}: expected None or an int >= 1, got {steps!r}")
    return None if steps is None else int(steps)


class GoalPixelEnv(gym.Env):
    """Goal-conditioned pixel env: observations hold the current image (`pixels`), the goal image
    (`goal`), a low-dimensional `observation` and the `achieved_goal` / `desired_goal` vectors;
    `info["is_success"]` every step; `get_state` / `set_state` for exact replay;
    `reset(options=...)` takes a `state`, a `goal_state` or `goal_steps` (a goal the env's expert
    reaches); the constructor's `goal_steps` is the default of every reset. Subclasses implement
    the simulator hooks listed in the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    pixel_kwargs: tuple[str, ...] = ("image_size",)  # constructor arguments that change the images
    dynamics_kwargs: tuple[str, ...] = ()             # ... and those that change how actions move the state
    env_id: str
    state_dim: int
    obs_dim: int
    goal_dim: int
    action_dim: int

    def __init__(self, image_size: int = 64, render_mode: str | None = None, terminate_on_success: bool = True,
                 render_size: int | None = 256, render_goal: str = "beside", goal_steps: int | None = None):
        if not isinstance(image_size, (int, np.integer)) or image_size < 8:
            raise ValueError(f"image_size: expected an int >= 8, got {image_size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        if render_size is not None and (not isinstance(render_size, (int, np.integer)) or render_size < 8):
            raise ValueError(f"render_size: expected None (the observation's size) or an int >= 8, "
                             f"got {render_size!r}")
        if render_goal not in RENDER_GOAL:
            raise ValueError(f"render_goal: expected one of {RENDER_GOAL}, got {render_goal!r}")
        # The goal of a reset without goal options: an arbitrary pose (None), or where the expert gets
        # in k steps. Vector envs (and SB3's) reset finished sub-envs without options, so this is how
        # every episode of `evaluate_policy` gets a reachable goal.
        self.goal_steps = _goal_steps("goal_steps", goal_steps)
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.render_size = self.image_size if render_size is None else int(render_size)
        self.render_goal = render_goal
        self.terminate_on_success = bool(terminate_on_success)
        img = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        goal = gym.spaces.Box(-np.inf, np.inf, (self.goal_dim,), np.float32)
        self.observation_space = gym.spaces.Dict({
            "pixels": img, "goal": img,
            "observation": gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32),
            "achieved_goal": goal, "desired_goal": goal})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self._goal_state: np.ndarray | None = None
        self._goal_pixels: np.ndarray | None = None

    # ------------------------------------------------------------ subclass API
    def _sample_state(self) -> np.ndarray: raise NotImplementedError            # uses self.np_random
    def _sample_goal_state(self, state: np.ndarray) -> np.ndarray: raise NotImplementedError
    def get_state(self) -> np.ndarray: raise NotImplementedError                # float64 (state_dim,)
    def set_state(self, state: np.ndarray) -> None: raise NotImplementedError
    def _apply_action(self, action: np.ndarray) -> None: raise NotImplementedError  # clipped float32
    def _render_current(self) -> np.ndarray: raise NotImplementedError          # uint8 (S, S, 3)
    def _observation(self) -> np.ndarray: raise NotImplementedError             # float32 (obs_dim,)
    def _achieved_goal(self) -> np.ndarray: raise NotImplementedError           # float32 (goal_dim,)
    def _goal_from_state(self, state: np.ndarray) -> np.ndarray: raise NotImplementedError
    def _success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray: raise NotImplementedError

    def _step_info(self) -> dict[str, Any]:
        """Extra per-step info (e.g. Push-T's coverage); is_success is added by the base."""
        return {}

    # ---------------------------------------------------------------- helpers
    def _check_state(self, name: str, state: Any) -> np.ndarray:
        expected = (f"options[{name!r}]: expected a finite float array of shape ({self.state_dim},) "
                    "as returned by env.get_state()")
        try:
            s = np.asarray(state, dtype=np.float64)
        except (TypeError, ValueError):  # a string, ragged lists, objects: name the option, not numpy's parse error
            raise ValueError(f"{expected}, got {type(state).__name__} {str(state)[:40]!r}") from None
        if s.shape != (self.state_dim,) or not np.isfinite(s).all():
            raise ValueError(f"{expected}, got shape {s.shape}")
        return s

    def render_state(self, state: np.ndarray) -> np.ndarray:
        """The image of an arbitrary state, leaving the current simulation untouched."""
        current = self.get_state()
        self.set_state(state)
        img = self._render_current()
        self.set_state(current)
        return img

    def _obs(self) -> dict[str, np.ndarray]:
        return {"pixels": self._render_current(), "goal": self._goal_pixels.copy(),
                "observation": self._observation().astype(np.float32),
                "achieved_goal": self._achieved_goal().astype(np.float32),
                "desired_goal": self._goal_from_state(self._goal_state).astype(np.float32)}

    @property
    def goal_state(self) -> np.ndarray:
        return self._goal_state.copy()

    def set_goal_state(self, goal_state: np.ndarray) -> None:
        """Change the goal mid-episode (a collector's new subtask); re-renders the goal image."""
        self._goal_state = self._check_state("goal_state", goal_state).copy()
        self._goal_pixels = self.render_state(self._goal_state)

    # ------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"options: expected a dict, got {type(options).__name__}")
        options = dict(options or {})
        unknown = sorted(set(options) - {"state", "goal_state", "goal_steps"})
        if unknown:
            raise ValueError(f"options: unknown key(s) {unknown}; expected 'state', 'goal_state' and/or "
                             "'goal_steps'")
        steps = _goal_steps("options['goal_steps']", options.get("goal_steps"))
        if steps is not None and options.get("goal_state") is not None:
            raise ValueError("options: give 'goal_state' or 'goal_steps', not both")
        if steps is None and options.get("goal_state") is None:
            steps = self.goal_steps
        state = (self._check_state("state", options["state"]) if options.get("state") is not None
                 else self._sample_state())
        if steps is not None:
            goal = self._expert_goal(state, int(steps))
        elif options.get("goal_state") is not None:
            goal = self._check_state("goal_state", options["goal_state"])
        else:
            goal = self._sample_goal_state(state)
        self._goal_state = goal.copy()
        self._goal_pixels = self.render_state(goal)
        self.set_state(state)
        obs = self._obs()
        return obs, {"is_success": bool(self._success(obs["achieved_goal"], obs["desired_goal"])),
                     **self._step_info()}

    def _expert_goal(self, start: np.ndarray, steps: int) -> np.ndarray:
        """A goal the env's scripted expert reaches from `start`: where it is after `steps` steps
        towards a sampled goal, or later (up to 4x `steps`) while that pose would already count
        as reached from `start` (e.g. the Push-T disc has not touched the block yet)."""
        from .experts import make_expert  # here: the env modules must not import the experts at load
        self._goal_state = self._sample_goal_state(start)
        self.set_state(start)
        start_goal = self._achieved_goal()
        for t, _ in enumerate(self._expert_steps(make_expert(self.env_id), self.np_random, 4 * steps)):
            if t + 1 >= steps and not self._success(start_goal, self._achieved_goal()):
                break
        return self.get_state()

    def expert_episode(self, expert: Any, rng: np.random.Generator, max_steps: int,
                       until_success: bool = True) -> np.ndarray:
        """The states (T+1, state_dim) of one episode of `expert` (e.g. `lewm_envs.make_expert(id,
        **kwargs)`) from the current state towards the current goal, as a collector records it: to
        the step that reaches the goal (`until_success`) or `max_steps`. Nothing renders but the goal
        images of an expert's new subtasks; the env is left at the end."""
        states = [self.get_state()]
        for success in self._expert_steps(expert, rng, max_steps):
            states.append(self.get_state())
            if success and until_success:
                break
        return np.stack(states)

    def _expert_steps(self, expert: Any, rng: np.random.Generator, max_steps: int):
        """Step `expert` from the current state towards `self._goal_state`, up to `max_steps`
        times; yields after each step whether that goal is reached."""
        expert.reset(self, rng)
        for _ in range(max_steps):
            goal = self._goal_from_state(self._goal_state)  # an expert may set subtask goals
            obs = {"observation": self._observation(), "achieved_goal": self._achieved_goal(),
                   "desired_goal": goal}  # no pixels: nothing renders
            self._apply_action(np.clip(np.asarray(expert.act(self, obs), np.float32), -1.0, 1.0))
            yield bool(self._success(self._achieved_goal(), goal))

    def simulate(self, state: np.ndarray, actions: np.ndarray, every: int) -> list[np.ndarray]:
        """Play env actions (T, action_dim) from `state` in the simulator alone (no episode, no
        frames); the states after each `every` steps. Restores the current state."""
        saved = self.get_state()
        self.set_state(state)
        out = []
        for t, a in enumerate(actions, 1):
            self._apply_action(np.clip(a, -1.0, 1.0).astype(np.float32))
            if t % every == 0:
                out.append(self.get_state())
        self.set_state(saved)
        return out

    def step(self, action: Any):
        if self._goal_state is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (self.action_dim,):
            raise ValueError(f"action: expected shape ({self.action_dim},), got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"action: contains NaN or inf: {a}")
        self._apply_action(np.clip(a, -1.0, 1.0))
        obs = self._obs()
        success = bool(self._success(obs["achieved_goal"], obs["desired_goal"]))
        info = {"is_success": success, **self._step_info()}
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], info))
        return obs, reward, success and self.terminate_on_success, False, info

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Vectorised sparse reward: 0 where the goal is reached, -1 elsewhere (HER convention)."""
        ok = self._success(np.asarray(achieved_goal), np.asarray(desired_goal))
        return np.asarray(ok, dtype=np.float32) - 1.0

    def render(self) -> np.ndarray | None:
        """With render_mode="rgb_array": the current view scaled to `render_size` px (nearest
        neighbour: what the agent sees, only larger, so videos stay readable whatever the
        observation size), with the goal image beside it (a white gap between), over it (blended
        at 40%), or not at all (`render_goal` "beside" | "over" | "none")."""
        if self.render_mode != "rgb_array":
            return None
        frame = _scaled(self._render_current(), self.render_size)
        if self.render_goal == "none" or self._goal_pixels is None:
            return frame
        goal = _scaled(self._goal_pixels, self.render_size)
        if self.render_goal == "over":
            return (0.6 * frame + 0.4 * goal).round().astype(np.uint8)
        gap = np.full((self.render_size, max(2, self.render_size // 32), 3), 255, np.uint8)
        return np.concatenate([frame, gap, goal], axis=1)


RENDER_GOAL = ("beside", "over", "none")


def _scaled(img: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a square uint8 image to (size, size, 3)."""
    if img.shape[0] == size:
        return img
    idx = (np.arange(size) * img.shape[0] // size).astype(np.intp)
    return img[idx][:, idx]
