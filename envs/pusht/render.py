"""Push-T geometry (the T block, signed distances, goal coverage) and a pure-numpy rasterizer.

Arena coordinates are pixels of the 512x512 arena, x to the right, y down (as in the image).
The T in its body frame: the origin is the middle of the bar's top edge, the bar spans
x in [-60, 60], y in [0, 30] and the stem x in [-15, 15], y in [30, 120]; a pose
(x, y, angle) places that origin at (x, y) and rotates by `angle` (radians, positive from +x
toward +y, i.e. clockwise on screen). Mass 1 spread uniformly, so the centre of gravity is
at (0, 40.714...) in the body frame.
Rendering: anti-aliased by analytic coverage, each pixel's opacity is a one-pixel linear ramp
of the exact Euclidean signed distance to the shape, so edges are smooth at any image size.
"""
from __future__ import annotations

import math

import numpy as np

ARENA = 512.0
WALL_LO, WALL_HI = 7.0, 505.0            # inner faces of the walls; the free interior is between
AGENT_RADIUS = 15.0
# Rectangles of the T in the body frame: (centre x, centre y, half width, half height).
T_RECTS = ((0.0, 15.0, 60.0, 15.0),      # bar 120 x 30
           (0.0, 75.0, 15.0, 45.0))      # stem 30 x 90
# The same union for signed distances, with the stem reaching up into the bar: with abutting
# rectangles the seam between them would read as an edge (distance ~0) and draw a light line.
SDF_RECTS = (T_RECTS[0], (0.0, 67.5, 15.0, 52.5))
T_AREA = 120.0 * 30.0 + 30.0 * 90.0
T_COG = (0.0, (15.0 * 3600.0 + 75.0 * 2700.0) / T_AREA)
# Outline of the T, clockwise on screen, for drawing and contact sampling.
T_OUTLINE = ((-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (15.0, 30.0), (15.0, 120.0),
             (-15.0, 120.0), (-15.0, 30.0), (-60.0, 30.0))

BACKGROUND = np.array([240.0, 240.0, 240.0], np.float32)
WALL_COLOR = np.array([120.0, 120.0, 120.0], np.float32)
BLOCK_COLOR = np.array([119.0, 136.0, 153.0], np.float32)   # slate grey
AGENT_COLOR = np.array([65.0, 105.0, 225.0], np.float32)    # royal blue


def wrap_angle(a):
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(a, dtype=np.float64) + math.pi) % (2.0 * math.pi) - math.pi


def to_local(points: np.ndarray, x: float, y: float, angle: float) -> np.ndarray:
    """World points (..., 2) into the body frame of a T at pose (x, y, angle)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = points[..., 0] - x, points[..., 1] - y
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)


def to_world(points: np.ndarray, x: float, y: float, angle: float) -> np.ndarray:
    """Body-frame points (..., 2) of a T at pose (x, y, angle) into the arena."""
    c, s = math.cos(angle), math.sin(angle)
    px, py = points[..., 0], points[..., 1]
    return np.stack([c * px - s * py + x, s * px + c * py + y], axis=-1)


def t_sdf_local(p: np.ndarray, with_grad: bool = False):
    """Signed distance (negative inside) from body-frame points (..., 2) to the T.

    The T is the union of two overlapping rectangles, so its distance is the smaller of the two
    rectangles' exact distances (exact outside, and inside near the outline). With `with_grad` the unit
    gradient (body frame) is returned too.
    """
    best, grad = None, None
    for cx, cy, hx, hy in SDF_RECTS:
        rx, ry = p[..., 0] - cx, p[..., 1] - cy
        qx, qy = np.abs(rx) - hx, np.abs(ry) - hy
        ox, oy = np.maximum(qx, 0.0), np.maximum(qy, 0.0)
        outside = np.sqrt(ox * ox + oy * oy)
        d = outside + np.minimum(np.maximum(qx, qy), 0.0)
        if with_grad:
            # Outside: along the offset from the nearest rectangle point; inside: the nearest face.
            inside_x = qx > qy
            gx = np.where(outside > 0, ox / np.maximum(outside, 1e-12), inside_x.astype(np.float64))
            gy = np.where(outside > 0, oy / np.maximum(outside, 1e-12), (~inside_x).astype(np.float64))
            g = np.stack([gx * np.sign(rx + 1e-300), gy * np.sign(ry + 1e-300)], axis=-1)
        if best is None:
            best = d
            grad = g if with_grad else None
        else:
            closer = d < best
            best = np.where(closer, d, best)
            if with_grad:
                grad = np.where(closer[..., None], g, grad)
    return (best, grad) if with_grad else best


def t_sdf(points: np.ndarray, x: float, y: float, angle: float, with_grad: bool = False):
    """Signed distance from world points (..., 2) to the T at pose (x, y, angle); gradient in world."""
    local = to_local(np.asarray(points, dtype=np.float64), x, y, angle)
    if not with_grad:
        return t_sdf_local(local)
    d, g = t_sdf_local(local, True)
    c, s = math.cos(angle), math.sin(angle)
    return d, np.stack([c * g[..., 0] - s * g[..., 1], s * g[..., 0] + c * g[..., 1]], axis=-1)


# --------------------------------------------------------------------------- coverage
def _rect_world(rect, x: float, y: float, angle: float) -> list[tuple[float, float]]:
    cx, cy, hx, hy = rect
    c, s = math.cos(angle), math.sin(angle)
    corners = ((cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy))
    return [(c * px - s * py + x, s * px + c * py + y) for px, py in corners]


def _clip(subject: list, clipper: list) -> list:
    """Sutherland-Hodgman: the part of convex `subject` inside convex `clipper` (same winding)."""
    out = subject
    n = len(clipper)
    for i in range(n):
        if not out:
            break
        ax, ay = clipper[i]
        bx, by = clipper[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        inp, out = out, []
        prev = inp[-1]
        prev_side = ex * (prev[1] - ay) - ey * (prev[0] - ax)
        for cur in inp:
            side = ex * (cur[1] - ay) - ey * (cur[0] - ax)
            if side >= 0.0:
                if prev_side < 0.0:
                    t = prev_side / (prev_side - side)
                    out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
                out.append(cur)
            elif prev_side >= 0.0:
                t = prev_side / (prev_side - side)
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            prev, prev_side = cur, side
    return out


def _area(poly: list) -> float:
    n = len(poly)
    return 0.5 * abs(sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1]
                         for i in range(n))) if n >= 3 else 0.0


def coverage(pose, goal_pose) -> float:
    """Area of the T at `pose` inside the T at `goal_pose`, over the T's area (1.0 = on the goal).

    Each T is two rectangles with disjoint interiors, so the overlap is the sum of the four
    convex rectangle-rectangle intersections (exact polygon clipping).
    """
    a = [_rect_world(r, *pose) for r in T_RECTS]
    b = [_rect_world(r, *goal_pose) for r in T_RECTS]
    inter = sum(_area(_clip(ra, rb)) for ra in a for rb in b)
    return min(inter / T_AREA, 1.0)


# --------------------------------------------------------------------------- rendering
def _rgb(color) -> np.ndarray:
    c = np.asarray(color, dtype=np.float64)
    if c.shape != (3,) or not np.isfinite(c).all() or (c < 0).any() or (c > 255).any():
        raise ValueError(f"block_color: expected 3 numbers (R, G, B) in [0, 255], got {color!r}")
    return c.astype(np.float32)


class PushTRenderer:
    """Draws Push-T states at `size` x `size` pixels: light floor, grey walls, slate T, blue disc."""

    def __init__(self, size: int):
        self.size = int(size)
        self.scale = self.size / ARENA                   # image px per arena px
        centres = (np.arange(self.size) + 0.5) / self.scale
        # Walls: everything outside the free interior, with the same one-pixel edge ramp.
        inside = np.minimum(centres - WALL_LO, WALL_HI - centres) * self.scale
        a1 = np.clip(inside + 0.5, 0.0, 1.0)
        floor = np.minimum(a1[:, None], a1[None, :])[..., None]
        self.background = (WALL_COLOR + floor * (BACKGROUND - WALL_COLOR) + 0.5).astype(np.uint8)
        self._centres = centres

    def _window(self, lo: float, hi: float) -> tuple[int, int]:
        """Pixel index range [i0, i1) whose centres may lie within [lo, hi] arena px (plus the ramp)."""
        pad = 1.0 / self.scale
        i0 = max(math.floor((lo - pad) * self.scale), 0)
        i1 = min(math.ceil((hi + pad) * self.scale) + 1, self.size)
        return i0, i1

    @staticmethod
    def _blend(img: np.ndarray, r0: int, c0: int, alpha: np.ndarray, color: np.ndarray) -> None:
        if alpha.size == 0:
            return
        patch = img[r0:r0 + alpha.shape[0], c0:c0 + alpha.shape[1]].astype(np.float32)
        a = alpha[..., None].astype(np.float32)
        img[r0:r0 + alpha.shape[0], c0:c0 + alpha.shape[1]] = (patch + a * (color - patch) + 0.5).astype(np.uint8)

    def render(self, agent_xy, block_pose, block_color=None) -> np.ndarray:
        """uint8 (size, size, 3) of the agent at `agent_xy` and the T at `block_pose` = (x, y, angle).

        `block_color`: RGB (3 numbers in [0, 255]) to paint the T with instead of the default
        slate grey (the surprise demo's purely visual perturbation).
        """
        color = BLOCK_COLOR if block_color is None else _rgb(block_color)
        img = self.background.copy()
        bx, by, ba = (float(v) for v in block_pose)
        corners = to_world(np.asarray(T_OUTLINE), bx, by, ba)
        c0, c1 = self._window(corners[:, 0].min(), corners[:, 0].max())
        r0, r1 = self._window(corners[:, 1].min(), corners[:, 1].max())
        if c1 > c0 and r1 > r0:
            xs, ys = self._centres[c0:c1], self._centres[r0:r1]
            grid = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1)
            d = t_sdf(grid, bx, by, ba) * self.scale
            self._blend(img, r0, c0, np.clip(0.5 - d, 0.0, 1.0), color)
        ax, ay = float(agent_xy[0]), float(agent_xy[1])
        c0, c1 = self._window(ax - AGENT_RADIUS, ax + AGENT_RADIUS)
        r0, r1 = self._window(ay - AGENT_RADIUS, ay + AGENT_RADIUS)
        if c1 > c0 and r1 > r0:
            dx, dy = self._centres[c0:c1] - ax, self._centres[r0:r1] - ay
            d = (np.sqrt(dx[None, :] ** 2 + dy[:, None] ** 2) - AGENT_RADIUS) * self.scale
            self._blend(img, r0, c0, np.clip(0.5 - d, 0.0, 1.0), AGENT_COLOR)
        return img
