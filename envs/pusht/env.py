"""Push-T on pymunk 7: push a T-shaped block into a goal pose with a disc.

Physics (the standard task): a 512x512 arena with walls (free interior [7, 505]^2), no
gravity; a kinematic disc agent (radius 15, friction 1) and a T block (bar 120x30 over a
30x90 stem, mass 1, friction 1). The space's damping is 0, so the block keeps no velocity of
its own between physics substeps: it moves only while pushed (quasi-static pushing). One
env step = 10 substeps of 0.01 s (10 Hz control); before each substep the agent's velocity
follows the PD law  v += (kp (target - p) - kd v) dt  with kp = 100, kd = 20.
Action: Box(-1, 1, float32) of shape (2,), the target's displacement from the agent:
target = agent_xy + 100 * clip(a, -1, 1) arena px, then clipped to the box [22, 490]^2 that
keeps the disc inside the walls (the kinematic agent is not stopped by walls itself).
State (float64, 10): [agent_x, agent_y, block_x, block_y, block_angle, agent_vx, agent_vy,
block_vx, block_vy, block_angular_velocity]; block xy is the T's origin (middle of the bar's
top edge), its velocity that of the centre of gravity, the angle is wrapped to [-pi, pi).
Every step builds a fresh pymunk space from this vector, so a step is a pure function of
(state, action): set_state() then the same actions replay bit-exactly (pymunk's cached
contacts and bias velocities never leak across steps).
observation = achieved_goal = desired_goal layout = state[:5] (float32).
Success (LeWM evaluation): ||(agent_xy, block_xy) - (goal_agent_xy, goal_block_xy)|| < 20 and
|wrap(block_angle - goal_angle)| < pi/9. info["coverage"]: area of the block inside the
goal-pose block over the T's area; info["contact"]: the disc touches the block after the step.
Reset samples the block pose uniformly with the whole T at least 10 px off the walls and the
agent uniformly anywhere it does not touch the block (>= 5 px clearance); then the goal: the
block moved by `goal_shift` px (uniform in the range, random direction) and rotated by up to
+-`goal_rotation` rad, kept 35 px off the walls (so the disc fits all round it), with the
goal's agent 8-40 px from the goal block; a goal that is already a success is redrawn.
Pictures: `render_style="lewm"` (default; what this package's data and checkpoints use) draws
anti-aliased shapes (render.py); "reference" draws the frames of the public reference's Push-T
(stable-worldmodel's swm/PushT-v1) for the same state, for models trained on its data
(reference_render.py; the state layout, action scale and success test are already the same).
Physics: `physics="lewm"` (default; this package's data and checkpoints) is the above; "reference"
steps the state as that reference's env does (its T's centre of gravity and moment, no friction,
its walls, no target clipping, float32 PD arithmetic, one pymunk space kept through the episode),
for models trained on its data; reference_physics.py lists each difference. With "reference",
set_state() to another state than the current one starts a fresh space: a replay from a recorded
mid-episode state then lacks the contact warm-start the recording had (see that module).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pymunk

from ..base import GoalPixelEnv
from .reference_physics import ReferencePhysics
from .reference_render import ReferencePushTRenderer
from .render import (
    AGENT_RADIUS,
    T_AREA,
    T_COG,
    T_RECTS,
    WALL_HI,
    WALL_LO,
    PushTRenderer,
    coverage,
    t_sdf,
    to_world,
    wrap_angle,
)

DT, SUBSTEPS, KP, KD = 0.01, 10, 100.0, 20.0
ACTION_SCALE = 100.0
AGENT_LO, AGENT_HI = WALL_LO + AGENT_RADIUS, WALL_HI - AGENT_RADIUS
SUCCESS_DIST, SUCCESS_ANGLE = 20.0, math.pi / 9
CONTACT_TOL = 1.0          # px beyond the radius still counted as touching (pymunk allows slop)
_WALL_THICK = 100.0        # thick static walls: a squeezed block cannot tunnel through them
GOAL_MARGIN = 35.0         # goal block this far off the walls: the disc fits round it on every side
ARENA_BOX = 600.0          # half-size of the start agent's sampling box: the whole arena
RENDERERS = {"lewm": PushTRenderer, "reference": ReferencePushTRenderer}
PHYSICS = ("lewm", "reference")


def t_corners(x: float, y: float, angle: float) -> np.ndarray:
    """World corners (8, 2) of both rectangles of a T at the pose."""
    local = np.array([[cx + sx * hx, cy + sy * hy] for cx, cy, hx, hy in T_RECTS
                      for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    return to_world(local, x, y, angle)


def _number_pair(name: str, value: Any) -> tuple[float, float]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair) \
            or not 0 <= pair[0] <= pair[1]:
        raise ValueError(f"{name}: expected (min, max) finite numbers with 0 <= min <= max, got {value!r}")
    return float(pair[0]), float(pair[1])


class PushTEnv(GoalPixelEnv):
    """Push-T; see the module docstring for the full contract.

    Args:
        image_size: side of the square `pixels`/`goal` images (default 96).
        render_mode: None or "rgb_array".
        terminate_on_success: end the episode when the goal is reached (default True).
        goal_shift: (min, max) distance in px between the start and goal block positions
            (default (30, 120)).
        goal_rotation: largest |rotation| in rad between the start and goal block angles
            (default pi/2).
        render_size, render_goal: what `render()` returns (default: 256 px, the goal beside);
            see `GoalPixelEnv.render`.
        render_style: "lewm" (default) or "reference": the public reference's pictures (white
            floor, outlined T, its fixed green goal T, OpenCV-resized from 512 px), for its models.
        physics: "lewm" (default) or "reference": step as the public reference's Push-T does, for
            models trained on its data (reference_physics.py).
    """

    env_id = "lewm/PushT-v0"  # its registered id: `reset(options={"goal_steps": k})` asks its expert
    pixel_kwargs = ("image_size", "render_style")
    dynamics_kwargs = ("physics",)
    state_dim = 10
    obs_dim = 5
    goal_dim = 5
    action_dim = 2

    def __init__(self, image_size: int = 96, render_mode: str | None = None, terminate_on_success: bool = True,
                 goal_shift: tuple[float, float] = (30.0, 120.0), goal_rotation: float = math.pi / 2,
                 render_size: int | None = 256, render_goal: str = "beside", goal_steps: int | None = None,
                 render_style: str = "lewm", physics: str = "lewm"):
        if render_style not in RENDERERS:
            raise ValueError(f"render_style: expected one of {list(RENDERERS)}, got {render_style!r}")
        if physics not in PHYSICS:
            raise ValueError(f"physics: expected one of {list(PHYSICS)}, got {physics!r}")
        super().__init__(image_size=image_size, render_mode=render_mode,
                         terminate_on_success=terminate_on_success, render_size=render_size,
                         render_goal=render_goal, goal_steps=goal_steps)
        self.goal_shift = _number_pair("goal_shift", goal_shift)
        if self.goal_shift[1] > 300:
            raise ValueError(f"goal_shift: max must be <= 300 px to fit the arena, got {goal_shift!r}")
        if isinstance(goal_rotation, bool) or not isinstance(goal_rotation, (int, float)) \
                or not 0 <= goal_rotation <= math.pi:
            raise ValueError(f"goal_rotation: expected a number in [0, pi] (radians), got {goal_rotation!r}")
        self.goal_rotation = float(goal_rotation)
        self.render_style = render_style
        self._renderer = RENDERERS[render_style](self.image_size)
        self.physics = physics
        self._reference = ReferencePhysics() if physics == "reference" else None
        self._state = np.array([256.0, 400.0, 256.0, 200.0, 0.0, 0, 0, 0, 0, 0])  # replaced by reset

    # ------------------------------------------------------------ sampling
    @staticmethod
    def _block_inside(x: float, y: float, angle: float, margin: float = 10.0) -> bool:
        c = t_corners(x, y, angle)
        return bool((c >= WALL_LO + margin).all() and (c <= WALL_HI - margin).all())

    def _free_agent(self, pose, lo_clear: float, hi_clear: float, box: float) -> np.ndarray:
        """A uniform agent position whose clearance from the T at `pose` lies in [lo, hi] px."""
        rng = self.np_random
        cx, cy = (float(v) for v in to_world(np.array(T_COG), *pose))
        for _ in range(10000):
            p = np.array([rng.uniform(max(AGENT_LO, cx - box), min(AGENT_HI, cx + box)),
                          rng.uniform(max(AGENT_LO, cy - box), min(AGENT_HI, cy + box))])
            clear = float(t_sdf(p, *pose)) - AGENT_RADIUS
            if lo_clear <= clear <= hi_clear:
                return p
        raise RuntimeError(f"no agent position with clearance in [{lo_clear}, {hi_clear}] px near the T at {pose}")

    def _sample_state(self) -> np.ndarray:
        rng = self.np_random
        while True:
            pose = (rng.uniform(WALL_LO, WALL_HI), rng.uniform(WALL_LO, WALL_HI), rng.uniform(-math.pi, math.pi))
            if self._block_inside(*pose):
                break
        agent = self._free_agent(pose, 5.0, math.inf, ARENA_BOX)
        return np.array([agent[0], agent[1], *pose, 0.0, 0.0, 0.0, 0.0, 0.0])

    def _sample_goal_state(self, state: np.ndarray) -> np.ndarray:
        rng = self.np_random
        lo, hi = self.goal_shift
        for _ in range(10000):
            r, phi = rng.uniform(lo, hi), rng.uniform(-math.pi, math.pi)
            pose = (state[2] + r * math.cos(phi), state[3] + r * math.sin(phi),
                    float(wrap_angle(state[4] + rng.uniform(-self.goal_rotation, self.goal_rotation))))
            if not self._block_inside(*pose, margin=GOAL_MARGIN):
                continue
            agent = self._free_agent(pose, 8.0, 40.0, 140.0)
            goal = np.array([agent[0], agent[1], *pose, 0.0, 0.0, 0.0, 0.0, 0.0])
            if not self._success(state[:5], goal[:5]):
                return goal
        raise RuntimeError(f"could not sample a goal pose within goal_shift={self.goal_shift} of {state[2:5]}")

    # ------------------------------------------------------------ state
    def get_state(self) -> np.ndarray:
        return self._state.copy()

    def set_state(self, state: np.ndarray) -> None:
        s = np.asarray(state, dtype=np.float64)
        if s.shape != (self.state_dim,) or not np.isfinite(s).all():
            raise ValueError("state: expected a finite float array of shape (10,) [agent_x, agent_y, block_x, "
                             "block_y, block_angle, agent_vx, agent_vy, block_vx, block_vy, block_angular_velocity]"
                             f", got shape {s.shape}")
        self._state = s.copy()
        self._state[4] = float(wrap_angle(s[4]))

    # ------------------------------------------------------------ dynamics
    def _build_space(self):
        """A fresh pymunk space holding the current state (see the module docstring for why)."""
        ax, ay, bx, by, ba, avx, avy, bvx, bvy, bw = (float(v) for v in self._state)
        space = pymunk.Space()
        space.damping = 0.0
        lo, hi, t = WALL_LO, WALL_HI, _WALL_THICK
        for x0, y0, x1, y1 in ((lo - t, lo - t, lo, hi + t), (hi, lo - t, hi + t, hi + t),
                               (lo, lo - t, hi, lo), (lo, hi, hi, hi + t)):
            space.add(pymunk.Poly(space.static_body, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]))
        agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        disc = pymunk.Circle(agent, AGENT_RADIUS)
        disc.friction = 1.0
        block = pymunk.Body()
        shapes = []
        for cx, cy, hx, hy in T_RECTS:
            shape = pymunk.Poly(block, [(cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)])
            shape.density = 1.0 / T_AREA  # uniform mass 1: pymunk derives the centre of gravity and moment
            shape.friction = 1.0
            shapes.append(shape)
        agent.position, agent.velocity = (ax, ay), (avx, avy)
        space.add(agent, disc, block, *shapes)
        block.angle = ba            # angle before position: pymunk rotates about the centre of gravity
        block.position = (bx, by)
        block.velocity, block.angular_velocity = (bvx, bvy), bw
        return space, agent, block

    def _apply_action(self, action: np.ndarray) -> None:
        if self._reference is not None:
            self._state = self._reference.step(self._state, action)
            return
        space, agent, block = self._build_space()
        ax, ay = agent.position
        tx = min(max(ax + ACTION_SCALE * float(action[0]), AGENT_LO), AGENT_HI)
        ty = min(max(ay + ACTION_SCALE * float(action[1]), AGENT_LO), AGENT_HI)
        for _ in range(SUBSTEPS):
            (px, py), (vx, vy) = agent.position, agent.velocity
            agent.velocity = (vx + (KP * (tx - px) - KD * vx) * DT, vy + (KP * (ty - py) - KD * vy) * DT)
            space.step(DT)
        (ax, ay), (avx, avy) = agent.position, agent.velocity
        (bx, by), (bvx, bvy) = block.position, block.velocity
        self._state = np.array([ax, ay, bx, by, float(wrap_angle(block.angle)), avx, avy, bvx, bvy,
                                block.angular_velocity], dtype=np.float64)

    def simulate(self, state: np.ndarray, actions: np.ndarray, every: int) -> list[np.ndarray]:
        if self._reference is None:
            return super().simulate(state, actions, every)
        # A space of its own: the episode's (with its contact warm-start) is still there afterwards.
        kept, self._reference = self._reference, ReferencePhysics()
        try:
            return super().simulate(state, actions, every)
        finally:
            self._reference = kept

    # ------------------------------------------------------------ rendering and goals
    def _render_current(self) -> np.ndarray:
        return self._renderer.render(self._state[:2], self._state[2:5])

    def _observation(self) -> np.ndarray:
        return self._state[:5].astype(np.float32)

    def _achieved_goal(self) -> np.ndarray:
        return self._state[:5].astype(np.float32)

    def _goal_from_state(self, state: np.ndarray) -> np.ndarray:
        return np.asarray(state, dtype=np.float64)[:5].astype(np.float32)

    def _success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        a = np.asarray(achieved, dtype=np.float64)
        d = np.asarray(desired, dtype=np.float64)
        dist = np.linalg.norm(a[..., :4] - d[..., :4], axis=-1)
        return (dist < SUCCESS_DIST) & (np.abs(wrap_angle(a[..., 4] - d[..., 4])) < SUCCESS_ANGLE)

    @staticmethod
    def probe_quantities(state: np.ndarray, observation: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """Physical quantities a representation should hold, from rows of `state` (N, 10).

        The T has no rotational symmetry (only a mirror one, which a rotation cannot
        produce), so its angle is unique on the circle: (sin, cos) removes the wrap at +-pi.
        """
        s = np.asarray(state, dtype=np.float64)
        return {"agent_xy": (s[:, 0:2], "px"), "block_xy": (s[:, 2:4], "px"),
                "block_angle": (np.stack([np.sin(s[:, 4]), np.cos(s[:, 4])], 1), "angle")}

    @staticmethod
    def pair_difficulty(start_states: np.ndarray, goal_states: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """What each start/goal pair asks, from rows of `state` (N, 10): the disc's and the
        block's straight-line travel in px and the block's rotation in degrees."""
        s, g = (np.asarray(x, dtype=np.float64).reshape(-1, 10) for x in (start_states, goal_states))
        return {"agent_travel": (np.linalg.norm(g[:, 0:2] - s[:, 0:2], axis=1), "px"),
                "block_travel": (np.linalg.norm(g[:, 2:4] - s[:, 2:4], axis=1), "px"),
                "rotation": (np.degrees(np.abs(wrap_angle(g[:, 4] - s[:, 4]))), "deg")}

    def contact(self, state: np.ndarray | None = None) -> bool:
        """Whether the disc touches the block in `state` (default: the current state)."""
        s = self._state if state is None else np.asarray(state, dtype=np.float64)
        return bool(float(t_sdf(s[:2], s[2], s[3], s[4])) <= AGENT_RADIUS + CONTACT_TOL)

    def _step_info(self) -> dict[str, Any]:
        g = self._goal_state
        return {"coverage": float(coverage(self._state[2:5], g[2:5])), "contact": self.contact()}

