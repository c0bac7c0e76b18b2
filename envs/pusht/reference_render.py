"""Push-T frames drawn like the public reference's (stable-worldmodel's `swm/PushT-v1`), in numpy.

A model trained on the reference's data only knows its pictures, so this reproduces them pixel for
pixel rather than in spirit. What the reference draws, on a 512 x 512 canvas in arena pixels
(pygame, through pymunk's debug drawing, no anti-aliasing), then shrinks with OpenCV's bilinear
`cv2.resize` (no area averaging, so thin lines alias):
  - a white floor; a fixed light-green T (its goal region, by default at (256, 256) turned pi/4,
    the same on every frame, whatever the episode's goal);
  - each of the block's two rectangles filled with a lighter shade (1.2 x its colour, rounded) and
    outlined with 4 px "fat segments" in its colour (so the bar/stem seam shows as a dark line);
  - the agent as a royal-blue disc of radius 15 with a lighter disc of radius 11 inside;
  - the walls as light-grey fat segments around (5, 5)-(506, 506), drawn last.
Vertices are rounded to integer pixels first (Python's round, half to even) as pygame is given them.
The rasterization rules (scanline polygon fill with truncated intersections, Bresenham thick lines,
midpoint discs of 2r pixels centred on a pixel corner) follow pygame 2.6; tests compare the result
with frames the reference rendered (tests/fixtures/reference_pusht).
Not drawn: pymunk's red collision-point ticks, which the reference adds where bodies touch.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .render import T_RECTS, _rgb

CANVAS = 512
WHITE = (255, 255, 255)
GOAL_GREEN = (144, 238, 144)      # LightGreen
WALL_GREY = (211, 211, 211)       # LightGray
BLOCK_SLATE = (119, 136, 153)     # LightSlateGray
AGENT_BLUE = (65, 105, 225)       # RoyalBlue
GOAL_POSE = (256.0, 256.0, math.pi / 4)
AGENT_RADIUS, AGENT_INNER = 15, 11
OUTLINE = 2                       # half-width of the fat segments
WALL_SEGMENTS = (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))
# Body-frame corners of the T's rectangles, in the order pymunk keeps them (its convex hull order):
# the first one is repeated at the end of each polygon the reference fills, which can add one pixel.
T_QUADS = tuple(tuple((cx + sx * hx, cy + sy * hy) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)))
                for cx, cy, hx, hy in T_RECTS)


def lighter(color) -> tuple[int, int, int]:
    """The reference's fill shade: 1.2 x the colour in float32, capped at 255, rounded."""
    c = np.minimum(np.float32(1.2) * np.asarray(color, np.float32), np.float32(255.0))
    return tuple(int(round(float(v))) for v in c)


def _pixel(p) -> tuple[int, int]:
    return round(float(p[0])), round(float(p[1]))


Spans = tuple[np.ndarray, np.ndarray, np.ndarray]   # (rows, first x, last x) of horizontal runs


def _spans(rows, x0s, x1s) -> Spans:
    return tuple(np.asarray(v, np.int64).reshape(-1) for v in (rows, x0s, x1s))


def paint(img: np.ndarray, spans: list[Spans], color) -> None:
    """Fill every run (x0..x1 inclusive, either order) of `spans` with `color`, clipped to the image,
    in one indexed write (the primitives below only collect runs: one write per colour is faster)."""
    rows, lo, hi = (np.concatenate(v) for v in zip(*spans))
    lo, hi = np.maximum(np.minimum(lo, hi), 0), np.minimum(np.maximum(lo, hi), img.shape[1] - 1)
    keep = (rows >= 0) & (rows < img.shape[0]) & (lo <= hi)
    if not keep.any():
        return
    rows, lo, hi = rows[keep], lo[keep], hi[keep]
    length = hi - lo + 1
    starts = rows * img.shape[1] + lo                     # flat index of each run's first pixel
    first = np.cumsum(length) - length
    pixels = np.repeat(starts - first, length) + np.arange(length.sum())
    img.reshape(-1, img.shape[-1])[pixels] = color


def fill_polygon(points) -> Spans:
    """pygame's filled polygon of integer `points`: rows from the top vertex to the bottom one; on
    each, edges count from their upper end (the bottom row counts both ends), crossings round
    down, are sorted and filled in pairs; horizontal edges strictly inside are drawn too."""
    px = np.array([p[0] for p in points], np.int64)
    py = np.array([p[1] for p in points], np.int64)
    top, bottom = int(py.min()), int(py.max())
    if top == bottom:
        return _spans([top], [px.min()], [px.max()])
    prev = np.roll(np.arange(len(px)), 1)
    ys = np.arange(top, bottom + 1)[:, None]
    up = py[prev] < py                                    # each edge from its upper to its lower end
    x1, y1 = np.where(up, px[prev], px), np.where(up, py[prev], py)
    x2, y2 = np.where(up, px, px[prev]), np.where(up, py, py[prev])
    sloped = y1 != y2
    hit = sloped & (((ys >= y1) & (ys < y2)) | ((ys == bottom) & (y2 == bottom)))
    num, den = (ys - y1) * (x2 - x1), np.where(sloped, y2 - y1, 1)
    cross = np.sort(np.where(hit, num // den + x1, np.iinfo(np.int64).max), axis=1)
    count = hit.sum(axis=1)
    rows, a, b = [], [], []
    for k in range(0, len(px) - 1, 2):
        ok = count > k + 1
        rows.append(ys[ok, 0]), a.append(cross[ok, k]), b.append(cross[ok, k + 1])
    flat = (top < py) & (py < bottom) & (py[prev] == py)
    rows.append(py[flat]), a.append(px[flat]), b.append(px[prev][flat])
    return _spans(np.concatenate(rows), np.concatenate(a), np.concatenate(b))


def thick_line(p1, p2, width: int) -> Spans:
    """pygame's line of `width` px: the Bresenham pixels from p1 to p2 (both included), each widened
    to a run of `width` pixels across the line's minor axis ((width - 1) // 2 before the centre).
    Bresenham's walk in closed form: step k along the major axis moves (k * minor + (major - 1) // 2)
    // major along the other (checked equal to pygame's loop for all lengths up to 300)."""
    (xa, ya), (xb, yb) = p1, p2
    dx, dy = abs(xb - xa), abs(yb - ya)
    sx, sy = (1 if xa < xb else -1), (1 if ya < yb else -1)
    major = max(dx, dy)
    k = np.arange(major + 1)
    walk = (k * min(dx, dy) + (major - 1) // 2) // max(major, 1)
    xs, ys = (xa + sx * k, ya + sy * walk) if dx > dy else (xa + sx * walk, ya + sy * k)
    before, after = (width - 1) // 2, width // 2
    if dx <= dy:                                          # steep lines widen along x
        return _spans(ys, xs - before, xs + after)
    across = np.arange(-before, after + 1)                # flat ones along y: one-pixel runs
    return _spans(ys[:, None] + across, np.repeat(xs[:, None], len(across), 1), np.repeat(xs[:, None], len(across), 1))


@functools.cache
def _disc_rows(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of pygame's filled circle, as (row offsets, half-widths): row y0 + o spans x0 - w .. x0 + w - 1
    (2r pixels across, centred on the corner of pixel (x0, y0)); from its midpoint walk."""
    half: dict[int, int] = {}
    f, ddf_y, x, y = 1 - radius, -2 * radius, 0, radius
    while x < y:
        if f >= 0:
            y -= 1
            ddf_y += 2
            f += ddf_y
        x += 1
        f += 2 * x + 1
        for o, w in (((y - 1, x), (-y, x)) if f >= 0 else ()) + ((x - 1, y), (-x, y)):
            half[o] = max(half.get(o, 0), w)
    offsets = np.array(sorted(half), np.int64)
    return offsets, np.array([half[o] for o in offsets], np.int64)


def disc(centre, radius: int) -> Spans:
    x0, y0 = centre
    offsets, half = _disc_rows(int(radius))
    return _spans(y0 + offsets, x0 - half, x0 + half - 1)


def fat_segment(a, b, radius: float) -> list[Spans]:
    """pymunk's pygame segment of half-width `radius`: a thick line, a quad offset by the rounded
    (|dy|, |dx|) * radius / length (the absolute values skew it off the normal on some slopes, as
    in the reference), and discs on both rounded ends."""
    p1, p2 = _pixel(a), _pixel(b)
    w = round(max(1.0, radius * 2))
    parts = [thick_line(p1, p2, w)]
    ox, oy = abs(p2[1] - p1[1]), abs(p2[0] - p1[0])
    if w <= 2 or (ox == 0 and oy == 0):
        return parts
    k = radius / math.hypot(ox, oy)
    ox, oy = round(ox * k), round(oy * k)
    quad = [(p1[0] - ox, p1[1] - oy), (p1[0] + ox, p1[1] + oy), (p2[0] + ox, p2[1] + oy), (p2[0] - ox, p2[1] - oy)]
    return parts + [fill_polygon(quad), disc(p1, round(radius)), disc(p2, round(radius))]


def _resize_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's bilinear taps for `src` -> `dst` samples along one axis: the left source index, the
    right one and the left weight in 1/2048ths (its fixed-point uint8 path), edges clamped."""
    scale = src / dst
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    frac = f - i0
    low = i0 < 0
    frac[low], i0[low] = 0.0, 0
    high = i0 >= src - 1
    frac[high], i0[high] = 0.0, src - 1
    w1 = np.rint(frac * 2048).astype(np.int32)
    return i0, np.minimum(i0 + 1, src - 1), 2048 - w1


class ReferencePushTRenderer:
    """Push-T states drawn as the reference draws them (see the module docstring), at `size` px."""

    def __init__(self, size: int):
        self.size = int(size)
        base = np.empty((CANVAS, CANVAS, 3), np.uint8)
        base[:] = WHITE
        for quad in T_QUADS:
            paint(base, [fill_polygon(_polygon(quad, GOAL_POSE))], GOAL_GREEN)
        self.base = base
        walls = np.zeros((CANVAS, CANVAS, 3), np.uint8)
        paint(walls, [s for a, b in WALL_SEGMENTS for s in fat_segment(a, b, OUTLINE)], (1, 1, 1))
        self.walls = np.flatnonzero(walls[..., 0])   # drawn after the bodies: repainted on top
        self.taps = _resize_taps(CANVAS, self.size)

    def canvas(self, agent_xy, block_pose, block_color=None) -> np.ndarray:
        """The full 512 x 512 picture, before the reference shrinks it."""
        color = BLOCK_SLATE if block_color is None else tuple(int(round(float(v))) for v in _rgb(block_color))
        img = self.base.copy()
        for quad in T_QUADS:                          # the bar, then the stem, each filled then outlined
            paint(img, [fill_polygon(_polygon(quad, block_pose))], lighter(color))
            world = _polygon(quad, block_pose, rounded=False)
            paint(img, [s for k in range(4) for s in fat_segment(world[k], world[(k + 1) % 4], OUTLINE)], color)
        centre = _pixel(agent_xy)
        paint(img, [disc(centre, AGENT_RADIUS)], AGENT_BLUE)
        paint(img, [disc(centre, AGENT_INNER)], lighter(AGENT_BLUE))
        img.reshape(-1, 3)[self.walls] = WALL_GREY
        return img

    def render(self, agent_xy, block_pose, block_color=None) -> np.ndarray:
        """uint8 (size, size, 3) of the agent at `agent_xy` and the T at `block_pose` = (x, y, angle)."""
        return resize_like_opencv(self.canvas(agent_xy, block_pose, block_color), self.taps)


def _polygon(quad, pose, rounded: bool = True) -> list:
    """World corners of a body-frame quad at `pose`, rounded to pixels as pygame receives them (the
    first repeated at the end, as the reference passes them) unless `rounded` is False."""
    x, y, angle = (float(v) for v in pose)
    c, s = math.cos(angle), math.sin(angle)
    world = [(c * qx - s * qy + x, s * qx + c * qy + y) for qx, qy in quad]
    return [_pixel(p) for p in world + world[:1]] if rounded else world


def resize_like_opencv(img: np.ndarray, taps) -> np.ndarray:
    """`cv2.resize(img, (size, size))` (INTER_LINEAR) of a uint8 image, as OpenCV's fixed-point path
    computes it: a horizontal pass in 1/2048 weights, then a vertical one on values shifted down by
    4 bits, rounded (bit-identical to OpenCV 5.1 on x86 in the tests). Only the sampled rows are read."""
    i0, i1, w0 = taps
    w1 = 2048 - w0

    def across(rows: np.ndarray) -> np.ndarray:
        left, right = rows[:, i0].astype(np.int32), rows[:, i1].astype(np.int32)
        return (left * w0[None, :, None] + right * w1[None, :, None]) >> 4

    v = ((w0[:, None, None] * across(img[i0])) >> 16) + ((w1[:, None, None] * across(img[i1])) >> 16)
    return ((v + 2) >> 2).astype(np.uint8)
