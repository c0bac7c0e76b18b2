"""Two-Room: a point agent in a 224x224 arena split by a wall with one door (pure numpy).

Geometry (arena pixels, x to the right, y down, as in the image):
  arena [0, 224]^2; dividing wall x in [107, 117], except the door y in [35, 63].
Action: Box(-1, 1, float32) of shape (2,); the agent moves by `speed * clip(a, -1, 1)`
per axis per step (speed 5 px by default), so a diagonal step is up to 5*sqrt(2) px.
Collision is swept: each step's straight path is cut where it first enters a solid
(the wall or the outside of the arena); the agent stops on that face and slides along
it with the remaining displacement. It can therefore never cross the wall except through
the door, at any speed. The agent is a point for collision (its drawn disc, radius 7,
may overlap the wall or the border): the reference task collides a point, and the door
(28 px) stays as wide as it is drawn.
State: [agent_x, agent_y] float64. observation = achieved_goal = agent xy, desired_goal =
goal xy (float32). Success: agent within 16 px of the goal position.
Start and goal are uniform over the two rooms, kept a disc radius (7 px) away from the
border and the wall so the disc is fully visible; the goal is farther than 16 px from
the start.
Rendering: white background, black wall, red soft-edged disc of radius 7 arena px,
at `image_size` pixels (the static background is drawn once, the disc on a small patch).
"""
from __future__ import annotations

import math

import numpy as np

from ..base import GoalPixelEnv

ARENA = 224.0
WALL_X0, WALL_X1 = 107.0, 117.0
DOOR_Y0, DOOR_Y1 = 35.0, 63.0
AGENT_RADIUS = 7.0
SUCCESS_DIST = 16.0
AGENT_COLOR = np.array([220.0, 40.0, 40.0], np.float32)

_BIG = 1e6  # "infinite" extent of the solids beyond the arena, finite to keep the arithmetic plain
# Solid axis-aligned boxes (x0, y0, x1, y1). Their interiors are forbidden; faces are free.
# The wall boxes run past the arena so that no gap exists at the border.
SOLIDS = (
    (WALL_X0, -_BIG, WALL_X1, DOOR_Y0),   # wall above the door
    (WALL_X0, DOOR_Y1, WALL_X1, _BIG),    # wall below the door
    (-_BIG, -_BIG, 0.0, _BIG),            # outside, left
    (ARENA, -_BIG, _BIG, _BIG),           # outside, right
    (-_BIG, -_BIG, _BIG, 0.0),            # outside, top
    (-_BIG, ARENA, _BIG, _BIG),           # outside, bottom
)


def in_solid(x: float, y: float) -> bool:
    """True when (x, y) lies strictly inside the wall or outside the arena."""
    return any(x0 < x < x1 and y0 < y < y1 for x0, y0, x1, y1 in SOLIDS)


def _slab(p: float, d: float, lo: float, hi: float) -> tuple[float, float]:
    """The open interval of times t with lo < p + t*d < hi (empty as (inf, -inf))."""
    if d == 0.0:
        return (-math.inf, math.inf) if lo < p < hi else (math.inf, -math.inf)
    t0, t1 = (lo - p) / d, (hi - p) / d
    return (t0, t1) if t0 < t1 else (t1, t0)


def swept_path(x: float, y: float, dx: float, dy: float) -> list[tuple[float, float]]:
    """Waypoints of moving a free point by (dx, dy) with stop-and-slide on the solids.

    Each leg runs until the first time the straight segment would enter a solid's
    interior; the point is put exactly on that face and the displacement component
    along the face normal is dropped. Every leg removes one axis, so at most three
    legs exist. The legs never enter a solid, which is what makes the wall uncrossable.
    """
    start = (x, y)
    path = [start]
    for _ in range(3):
        if dx == 0.0 and dy == 0.0:
            break
        t_hit, axis, face = 1.0, -1, 0.0
        for x0, y0, x1, y1 in SOLIDS:
            ex, lx = _slab(x, dx, x0, x1)
            ey, ly = _slab(y, dy, y0, y1)
            enter, leave = max(ex, ey), min(lx, ly)
            if enter < leave and leave > 0.0 and enter < t_hit:
                t_hit = max(enter, 0.0)
                # The slab entered last is the face that was hit (x wins an exact corner tie).
                if ex >= ey:
                    axis, face = 0, (x0 if dx > 0 else x1)
                else:
                    axis, face = 1, (y0 if dy > 0 else y1)
        if axis < 0:
            x, y = x + dx, y + dy
            path.append((x, y))
            break
        # Snap the blocked coordinate onto the face exactly, so the next leg starts on the
        # face (not a rounding error inside it) and slides freely along it.
        x, y = (face, y + t_hit * dy) if axis == 0 else (x + t_hit * dx, face)
        rest = 1.0 - t_hit
        dx, dy = (0.0, dy * rest) if axis == 0 else (dx * rest, 0.0)
        path.append((x, y))
    if in_solid(*path[-1]):
        # Only reachable through rounding at an exact corner graze; the start was free.
        return [start]
    return path


def _wall_background(size: int, supersample: int = 4) -> np.ndarray:
    """uint8 (size, size, 3): white arena with the black wall, anti-aliased by supersampling."""
    n = size * supersample
    c = (np.arange(n) + 0.5) * (ARENA / n)            # sub-pixel centres in arena px
    in_x = (c >= WALL_X0) & (c <= WALL_X1)
    in_y = (c < DOOR_Y0) | (c > DOOR_Y1)              # wall rows: outside the door
    wall = in_y[:, None] & in_x[None, :]              # (rows=y, cols=x)
    cover = wall.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    grey = np.round(255.0 * (1.0 - cover)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


class TwoRoomEnv(GoalPixelEnv):
    """Point agent, two rooms and a door; see the module docstring for the full contract.

    Args:
        image_size: side of the square `pixels`/`goal` images (default 64).
        render_mode: None or "rgb_array".
        terminate_on_success: end the episode when the goal is reached (default True).
        speed: arena px moved per unit action per step (default 5.0, the task's value;
            larger values exist to test the swept collision).
        render_size, render_goal: what `render()` returns (default: 256 px, the goal beside);
            see `GoalPixelEnv.render`.
    """

    env_id = "lewm/TwoRoom-v0"  # its registered id: `reset(options={"goal_steps": k})` asks its expert
    state_dim = 2
    obs_dim = 2
    goal_dim = 2
    action_dim = 2

    def __init__(self, image_size: int = 64, render_mode: str | None = None,
                 terminate_on_success: bool = True, speed: float = 5.0, render_size: int | None = 256,
                 render_goal: str = "beside", goal_steps: int | None = None):
        super().__init__(image_size=image_size, render_mode=render_mode,
                         terminate_on_success=terminate_on_success, render_size=render_size,
                         render_goal=render_goal, goal_steps=goal_steps)
        if isinstance(speed, bool) or not isinstance(speed, (int, float, np.integer, np.floating)) \
                or not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed: expected a finite number > 0 (arena px per step), got {speed!r}")
        self.speed = float(speed)
        self._scale = self.image_size / ARENA          # image px per arena px
        self._background = _wall_background(self.image_size)
        self._radius_px = AGENT_RADIUS * self._scale
        self._edge_px = max(1.0, 2.0 * self._scale)    # width of the disc's soft edge
        self._pos = np.array([ARENA / 4, ARENA / 2])   # overwritten by reset

    # ------------------------------------------------------------ sampling
    def _sample_free_point(self) -> np.ndarray:
        m = AGENT_RADIUS
        rooms = ((m, WALL_X0 - m), (WALL_X1 + m, ARENA - m))  # equal widths: pick a room, then a point
        lo, hi = rooms[int(self.np_random.integers(2))]
        return np.array([self.np_random.uniform(lo, hi), self.np_random.uniform(m, ARENA - m)])

    def _sample_state(self) -> np.ndarray:
        return self._sample_free_point()

    def _sample_goal_state(self, state: np.ndarray) -> np.ndarray:
        while True:  # rejection: about 2% of draws land within the success distance
            goal = self._sample_free_point()
            if np.linalg.norm(goal - state[:2]) > SUCCESS_DIST:
                return goal

    # ------------------------------------------------------------ state
    @staticmethod
    def probe_quantities(state: np.ndarray, observation: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """Physical quantities a representation should hold, from rows of `state` (N, 2)."""
        return {"agent_xy": (np.asarray(state, dtype=np.float64)[:, 0:2], "units")}

    @staticmethod
    def pair_difficulty(start_states: np.ndarray, goal_states: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """What each start/goal pair asks, from rows of `state` (N, 2): the straight-line
        distance in arena px (a pair across the wall needs more: the path goes through the door)."""
        s, g = (np.asarray(x, dtype=np.float64).reshape(-1, 2) for x in (start_states, goal_states))
        return {"distance": (np.linalg.norm(g - s, axis=1), "px")}

    def get_state(self) -> np.ndarray:
        return self._pos.copy()

    def set_state(self, state: np.ndarray) -> None:
        s = np.asarray(state, dtype=np.float64)
        if s.shape != (self.state_dim,) or not np.isfinite(s).all():
            raise ValueError(f"state: expected a finite float array [agent_x, agent_y] of shape (2,), "
                             f"got shape {s.shape}")
        if in_solid(float(s[0]), float(s[1])):
            raise ValueError(f"state: agent position {s.tolist()} is inside the wall or outside the "
                             f"arena; expected a point of [0, {ARENA:g}]^2 off the wall x in "
                             f"[{WALL_X0:g}, {WALL_X1:g}] (door y in [{DOOR_Y0:g}, {DOOR_Y1:g}])")
        self._pos = s.copy()

    # ------------------------------------------------------------ dynamics
    def _apply_action(self, action: np.ndarray) -> None:
        dx, dy = (float(v) * self.speed for v in action)
        x, y = swept_path(float(self._pos[0]), float(self._pos[1]), dx, dy)[-1]
        self._pos = np.array([x, y])

    # ------------------------------------------------------------ rendering
    def _render_current(self) -> np.ndarray:
        img = self._background.copy()
        cx, cy = self._pos * self._scale
        reach = self._radius_px + self._edge_px
        s = self.image_size
        c0, c1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, s)
        r0, r1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, s)
        xs = np.arange(c0, c1, dtype=np.float32) + (0.5 - cx)
        ys = np.arange(r0, r1, dtype=np.float32) + (0.5 - cy)
        dist = np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2)
        # Linear ramp over the edge width: 1 inside, 0.5 on the radius, 0 outside.
        alpha = np.clip((self._radius_px - dist) / self._edge_px + 0.5, 0.0, 1.0)[..., None]
        patch = img[r0:r1, c0:c1].astype(np.float32)
        img[r0:r1, c0:c1] = (patch + alpha * (AGENT_COLOR - patch) + 0.5).astype(np.uint8)
        return img

    # ------------------------------------------------------------ goals
    def _observation(self) -> np.ndarray:
        return self._pos.astype(np.float32)

    def _achieved_goal(self) -> np.ndarray:
        return self._pos.astype(np.float32)

    def _goal_from_state(self, state: np.ndarray) -> np.ndarray:
        return np.asarray(state, dtype=np.float64)[:2].astype(np.float32)

    def _success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        diff = np.asarray(achieved, dtype=np.float64) - np.asarray(desired, dtype=np.float64)
        return np.linalg.norm(diff, axis=-1) <= SUCCESS_DIST
