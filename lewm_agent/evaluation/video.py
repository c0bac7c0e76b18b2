"""MP4 videos of goal-conditioned episodes: the current view beside the goal view.

Each frame shows both views upscaled (nearest neighbour, so the pixels the model sees stay
visible) with a header naming the run, the step count and whether the goal was reached.

- `compose_frame(pixels, goal, step, success, label)` -> one uint8 RGB frame.
- `write_video(path, frames, fps)` encodes frames to H.264 MP4 through imageio-ffmpeg (its
  wheel ships an ffmpeg binary), atomically: a temp file in the same folder is renamed at
  the end, so a crash never leaves a truncated video under the final name.
- `GoalVideo(env, folder)` is a Gymnasium wrapper writing one MP4 per episode of a lewm/*
  env (obs["pixels"], obs["goal"], info["is_success"]). Gymnasium's own `RecordVideo` films
  `env.render()` only and needs moviepy; this one needs imageio-ffmpeg and Pillow.

Episodes are buffered as raw observations (a few KiB per step at env resolution) and
composed while encoding, so long episodes do not hold hundreds of large frames in memory.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

VIDEO_INSTALL = "pip install 'lewm-agent[video]' (imageio, imageio-ffmpeg, pillow)"
BLOCK = 16          # H.264 players want frame sides divisible by the 16 px macroblock
MARGIN = 8
HEADER = 52
FOOTER = 24
BACKGROUND = (24, 24, 28)
GREEN, RED, GREY, WHITE = (60, 200, 90), (220, 70, 60), (150, 150, 150), (235, 235, 235)


class Snapshot(NamedTuple):
    """What one frame of an episode shows (raw: composed only when the video is written)."""
    pixels: np.ndarray    # uint8 (H, W, 3) current view
    goal: np.ndarray      # uint8 (H, W, 3) goal view
    step: int             # env steps taken so far (0 after reset)
    success: bool         # goal reached at this or an earlier step


def require() -> None:
    """Fail early (before a long evaluation) when the video dependencies are missing."""
    _modules()


@functools.lru_cache(maxsize=1)
def _modules() -> tuple[Any, Any, Any, Any]:
    try:
        import imageio.v2 as iio
        import imageio_ffmpeg  # noqa: F401  imageio's FFMPEG plugin needs it for the binary
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as e:
        raise ValueError(f"videos need {e.name}: {VIDEO_INSTALL}") from None
    return iio, Image, ImageDraw, ImageFont


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    _, _, _, font = _modules()
    return font.load_default(size=size)  # Pillow >= 10.1: scalable DejaVu when FreeType is present


def _image(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name}: expected a uint8 (H, W, 3) image, got {a.dtype} {a.shape}")
    return a


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def compose_frame(pixels: np.ndarray, goal: np.ndarray, step: int, success: bool, label: str = "",
                  total_steps: int | None = None, done: bool = False, min_size: int = 256) -> np.ndarray:
    """One video frame: current view | goal view, each upscaled to >= `min_size` px.

    The header reads `label`, `step N/total` and the status: SUCCESS once the goal has been
    reached, FAILED on the last frame (`done`) of an episode that never reached it. The
    current view's border turns green on success. Returns uint8 (Hf, Wf, 3), sides
    multiples of 16.
    """
    _, Image, ImageDraw, _ = _modules()
    pixels, goal = _image("pixels", pixels), _image("goal", goal)
    if pixels.shape != goal.shape:
        raise ValueError(f"goal: shape {goal.shape} differs from pixels shape {pixels.shape}")
    h, w, _ = pixels.shape
    k = max(1, math.ceil(min_size / max(h, w)))          # integer factor: no interpolation blur
    ph, pw = h * k, w * k
    height = _round_up(HEADER + ph + FOOTER + MARGIN, BLOCK)
    width = _round_up(3 * MARGIN + 2 * pw, BLOCK)
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    border = GREEN if success else (RED if done else GREY)
    for col, (view, colour) in enumerate(((pixels, border), (goal, GREY))):
        x0 = MARGIN + col * (pw + MARGIN)
        canvas[HEADER - 3:HEADER + ph + 3, x0 - 3:x0 + pw + 3] = colour
        canvas[HEADER:HEADER + ph, x0:x0 + pw] = view.repeat(k, axis=0).repeat(k, axis=1)  # (ph, pw, 3)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    big, small = _font(18), _font(14)
    counter = f"step {step}" + (f"/{total_steps}" if total_steps is not None else "")
    draw.text((MARGIN, 6), label, fill=WHITE, font=small)
    draw.text((MARGIN, 26), counter, fill=WHITE, font=big)
    status, colour = ("SUCCESS", GREEN) if success else (("FAILED", RED) if done else ("goal not reached", GREY))
    right = width - MARGIN - draw.textlength(status, font=big)
    draw.text((right, 26), status, fill=colour, font=big)
    for col, caption in enumerate(("current view", "goal view")):
        draw.text((MARGIN + col * (pw + MARGIN), HEADER + ph + 6), caption, fill=GREY, font=small)
    return np.asarray(img)


def episode_frames(snapshots: Iterable[Snapshot], label: str = "", total_steps: int | None = None,
                   min_size: int = 256) -> Iterator[np.ndarray]:
    """Composed frames of an episode; the last one is marked done (FAILED if never successful)."""
    items = list(snapshots)
    for i, s in enumerate(items):
        yield compose_frame(s.pixels, s.goal, s.step, s.success, label, total_steps,
                            done=i == len(items) - 1, min_size=min_size)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 10) -> Path:
    """Encode uint8 (H, W, 3) frames (all the same size) to an H.264 MP4, atomically.

    Frames whose sides are not multiples of 16 are padded (black, bottom and right) rather
    than rescaled. Returns the path written; an existing file there is replaced.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video path: expected a .mp4 file name, got {str(path)!r}")
    if not fps > 0:
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    iio = _modules()[0]
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"frames: no frames to write to {path}")
    shape = _image("frames[0]", first).shape
    pad = ((0, _round_up(shape[0], BLOCK) - shape[0]), (0, _round_up(shape[1], BLOCK) - shape[1]), (0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.mp4")  # ffmpeg picks the format by extension
    try:
        writer = iio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                                macro_block_size=1, ffmpeg_log_level="error")
        # Not `with`: imageio's writer skips close() on an exception, and ffmpeg would then
        # create the temp file later, at garbage collection, after we have removed it.
        try:
            for i, frame in enumerate(_chain(first, it)):
                f = _image(f"frames[{i}]", frame)
                if f.shape != shape:
                    raise ValueError(f"frames[{i}]: shape {f.shape} differs from the first frame's {shape}")
                writer.append_data(np.pad(f, pad) if any(p[1] for p in pad) else f)
        finally:
            writer.close()  # waits for ffmpeg to finish the file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def write_episode(path: str | os.PathLike, snapshots: Iterable[Snapshot], label: str = "",
                  total_steps: int | None = None, fps: float = 10, min_size: int = 256) -> Path:
    """One MP4 of an episode's snapshots (see `episode_frames`)."""
    return write_video(path, episode_frames(snapshots, label, total_steps, min_size), fps)


class GoalVideo(gym.Wrapper):
    """Records episodes of a goal-conditioned pixel env to `folder`, one MP4 per episode.

    Files are `<name_prefix>-<episode>_<status>.mp4`, status `success` (the env reported
    `is_success` at some step), `fail`, or `unfinished` (reset or closed mid-episode after at
    least one step). `episode_trigger(episode_index) -> bool` selects episodes (default: all).
    The written paths accumulate in `self.paths`.
    """

    def __init__(self, env: gym.Env, folder: str | os.PathLike, name_prefix: str = "episode",
                 episode_trigger: Callable[[int], bool] | None = None, fps: float | None = None,
                 label: str | None = None, min_size: int = 256):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict) or not {"pixels", "goal"} <= set(space.spaces):
            raise ValueError("GoalVideo: expected a Dict observation space with 'pixels' and 'goal' images, "
                             f"got {space}")
        require()
        self.folder = Path(folder)
        self.name_prefix = name_prefix
        self.episode_trigger = episode_trigger or (lambda episode: True)
        self.fps = fps or env.metadata.get("render_fps") or 10
        spec = env.spec
        self.label = label if label is not None else (spec.id if spec else type(env.unwrapped).__name__)
        self.total_steps = spec.max_episode_steps if spec else None
        self.min_size = min_size
        self.paths: list[Path] = []
        self.episode = -1
        self._snaps: list[Snapshot] | None = None
        self._step, self._success = 0, False

    def _record(self, obs: dict[str, np.ndarray]) -> None:
        if self._snaps is not None:
            self._snaps.append(Snapshot(np.array(obs["pixels"]), np.array(obs["goal"]), self._step, self._success))

    def _flush(self, status: str) -> None:
        snaps, self._snaps = self._snaps, None
        if not snaps or (status == "unfinished" and len(snaps) < 2):
            return  # nothing happened in this episode
        name = f"{self.name_prefix}-{self.episode}_{'success' if self._success else status}.mp4"
        label = f"{self.label} | episode {self.episode}"
        self.paths.append(write_episode(self.folder / name, snaps, label, self.total_steps, self.fps, self.min_size))

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._flush("unfinished")
        obs, info = self.env.reset(**kwargs)
        self.episode += 1
        self._step, self._success = 0, bool(info.get("is_success", False))
        self._snaps = [] if self.episode_trigger(self.episode) else None
        self._record(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step += 1
        self._success = self._success or bool(info.get("is_success", False))
        self._record(obs)
        if terminated or truncated:
            self._flush("fail")
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._flush("unfinished")
        super().close()
