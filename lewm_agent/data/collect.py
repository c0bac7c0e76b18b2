"""`lewm collect`: run an env's scripted expert in worker processes, write a rollout file.

Episode i is played with seed SeedSequence([seed, i]) whatever the number of workers,
and episodes are written in index order, so the same seed reproduces the same file.
Workers only simulate and render; the parent writes. Ctrl-C / SIGTERM stop cleanly and
the file keeps its complete episodes; a killed parent leaves a readable file too (see
`rollouts.py`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import resource  # POSIX only: the file-size limit (RLIMIT_FSIZE)
except ImportError:  # pragma: no cover - Windows
    resource = None

import gymnasium as gym
import numpy as np

import lewm_envs
from lewm_envs.experts import EXPERTS, expert_class

from ..config import fields_from_dict
from ..flags import check_ranges, option
from ..lock import RunLock
from ..progress import Progress
from .rollouts import RolloutWriter

COMPRESSION = {"gzip": ("gzip", 4), "lzf": ("lzf", None), "none": (None, None)}  # h5py filter, level


@dataclass(frozen=True)
class CollectConfig:
    env_id: str = option(help="lewm/PushT-v0 | lewm/TwoRoom-v0 | lewm/Cube-v0", flag="--env")
    episodes: int = option(low=1)
    out: str = option(help="new .h5 rollout file")
    workers: int = option(1, "simulation processes", low=1)
    seed: int = option(0, low=0)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    expert_kwargs: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = option(None, "episode length (default: the env's limit)",  # None: its max_episode_steps
                                   low=1)
    overwrite: bool = option(False)
    progress: bool = option(True, flag="--no-progress")
    command: str = ""                     # recorded in the file: the data recipe travels with the data
    # Pixel compression. gzip files are far smaller but cost CPU time per frame to write and read
    # (README, Speed), which bounds collection and loading; "none" for fast local disks.
    compression: str = option("gzip", "pixel compression (default gzip: smallest; none: fastest to write and read)",
                              choices=["gzip", "lzf", "none"])

    from_dict = classmethod(fields_from_dict)  # the JSON reader of every config (config.py)

    def __post_init__(self) -> None:
        if self.env_id not in EXPERTS:
            raise ValueError(f"--env: unknown {self.env_id!r}; collectable envs: {sorted(EXPERTS)}")
        if self.episodes < 1:
            raise ValueError(f"--episodes: must be >= 1, got {self.episodes}")
        if self.workers < 1:
            raise ValueError(f"--workers: must be >= 1, got {self.workers}")
        if self.compression not in COMPRESSION:
            raise ValueError(f"--compression: expected one of {sorted(COMPRESSION)}, got {self.compression!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps: must be >= 1, got {self.max_steps}")
        lewm_envs.check_kwargs("--env-kwargs", lewm_envs.env_class(self.env_id), self.env_kwargs)
        lewm_envs.check_kwargs("--expert-kwargs", expert_class(self.env_id), self.expert_kwargs)
        check_ranges(self)  # every declared range (flags.py), after the checks above


# ------------------------------------------------------------------ worker side
_WORKER: dict[str, Any] = {}


def _init_worker(cfg: CollectConfig, in_parent: bool = False) -> None:
    if not in_parent:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes the file
    expert = lewm_envs.make_expert(cfg.env_id, **cfg.expert_kwargs)
    kwargs = {**expert.collect_env_kwargs, **cfg.env_kwargs}
    extra = {} if cfg.max_steps is None else {"max_episode_steps": cfg.max_steps}
    _WORKER.update(cfg=cfg, expert=expert, env=gym.make(cfg.env_id, **kwargs, **extra))


def _episode(index: int) -> dict[str, Any]:
    cfg, env, expert = _WORKER["cfg"], _WORKER["env"], _WORKER["expert"]
    seq = np.random.SeedSequence([cfg.seed, index])
    env_seed, expert_seed = (int(s) for s in seq.generate_state(2))
    u = env.unwrapped
    obs, info = env.reset(seed=env_seed)
    expert.reset(u, np.random.default_rng(expert_seed))
    pixels, observation, state, goal_state = [obs["pixels"]], [obs["observation"]], [u.get_state()], [u.goal_state]
    success, actions = [info["is_success"]], []
    t0 = time.perf_counter()
    while True:
        action = np.clip(np.asarray(expert.act(u, obs), np.float32), -1.0, 1.0)  # what the env executes
        obs, _, terminated, truncated, info = env.step(action)
        actions.append(action)
        pixels.append(obs["pixels"])
        observation.append(obs["observation"])
        state.append(u.get_state())
        goal_state.append(u.goal_state)
        success.append(info["is_success"])
        if terminated or truncated:
            break
    return {"pixels": np.stack(pixels), "actions": np.stack(actions), "observation": np.stack(observation),
            "state": np.stack(state), "extra": {"goal_state": np.stack(goal_state),
                                                 "is_success": np.asarray(success, np.uint8)},
            "episode_info": expert.episode_info(), "seconds": time.perf_counter() - t0}


def _episodes(cfg: CollectConfig) -> Iterator[dict[str, Any]]:
    if cfg.workers == 1:
        _init_worker(cfg, in_parent=True)
        for i in range(cfg.episodes):
            yield _episode(i)
        return
    # spawn: MuJoCo/EGL contexts and HDF5 handles must not be inherited through fork
    with mp.get_context("spawn").Pool(cfg.workers, _init_worker, (cfg,)) as pool:
        yield from pool.imap(_episode, range(cfg.episodes), chunksize=1)  # ordered: reproducible file


# ------------------------------------------------------------------ parent side
def _file_attrs(cfg: CollectConfig) -> dict[str, Any]:
    expert = lewm_envs.make_expert(cfg.env_id, **cfg.expert_kwargs)
    env_kwargs = {**expert.collect_env_kwargs, **cfg.env_kwargs}
    env = gym.make(cfg.env_id, **env_kwargs)
    spec_steps = cfg.max_steps or env.spec.max_episode_steps
    attrs = {"env_id": cfg.env_id, "env_kwargs": env_kwargs, "seed": cfg.seed,
             "collector": f"lewm_agent.collect/{type(expert).__name__}", "expert_kwargs": cfg.expert_kwargs,
             "max_episode_steps": spec_steps, "action_low": env.action_space.low.tolist(),
             "action_high": env.action_space.high.tolist(),
             "image_size": getattr(env.unwrapped, "image_size", None), "command": cfg.command}
    env.close()
    return attrs


class _Stop:
    """SIGINT/SIGTERM handler: finish the episode being written, then stop; a second signal stops now.

    Raising from the first signal is unsafe: it can land inside an h5py/HDF5 callback, which
    swallows the exception, and the collector would then run on forever.
    """

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


ROOM_MARGIN = 1 << 20  # bytes kept free for HDF5's own metadata when the file is closed


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def room_left(path: Path, size: int) -> tuple[int, str]:
    """Bytes the rollout file (now `size` bytes) may still grow by, and what limits it: the free
    disk space or the process's file-size limit (RLIMIT_FSIZE, e.g. `ulimit -f`)."""
    room, why = shutil.disk_usage(path.parent if path.parent.exists() else ".").free, "disk full"
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource else -1
    if resource and soft != resource.RLIM_INFINITY and soft - size < room:
        room, why = soft - size, "file-size limit (ulimit -f)"
    return max(room, 0), why


_FALLOC_FL_KEEP_SIZE = 1


def _libc_fallocate() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return fn


_FALLOCATE = _libc_fallocate()


def reserve(path: str, nbytes: int) -> bool:
    """Reserve disk blocks for the next `nbytes` the file grows by (Linux fallocate with
    FALLOC_FL_KEEP_SIZE: the visible size is unchanged), so that another process filling the disk
    after `room_left`'s check cannot make an HDF5 write fail halfway, which leaves the file
    unreadable. False: the disk has no room; True also where reserving is unsupported."""
    if _FALLOCATE is None or not os.path.exists(path):
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        if _FALLOCATE(fd, _FALLOC_FL_KEEP_SIZE, os.fstat(fd).st_size, nbytes) == 0:
            return True
        return ctypes.get_errno() not in (errno.ENOSPC, errno.EDQUOT)
    finally:
        os.close(fd)


def collect(cfg: CollectConfig) -> dict[str, Any]:
    """Write `cfg.episodes` episodes to `cfg.out`; returns the summary (also stored as attributes).

    One collector per output file (a lock beside it). A run that stops before its first episode
    completes writes nothing: no file, or an existing one (--overwrite) left as it was; the
    summary's `written` says which."""
    out = Path(cfg.out)
    made = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock.beside(out, "collector"):
            summary = _collect(cfg)
    finally:
        if made and not any(out.parent.iterdir()):
            out.parent.rmdir()  # nothing written: leave no empty folder behind
    return summary


def _collect(cfg: CollectConfig) -> dict[str, Any]:
    attrs = _file_attrs(cfg)
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    infos: list[dict[str, float]] = []
    frames, busy, t0 = 0, 0.0, time.perf_counter()
    codec, level = COMPRESSION[cfg.compression]
    writer = RolloutWriter(cfg.out, attrs, compression=codec, compression_opts=level, overwrite=cfg.overwrite)
    bar = Progress(cfg.episodes, f"collect {cfg.env_id}", unit="ep", enabled=cfg.progress)
    stopped, growth = None, 0
    try:
        for ep in _episodes(cfg):
            # A write that fails inside HDF5 (disk full, file-size limit) can leave the file
            # unreadable; stop before it while the file still holds only complete episodes.
            need = (2 * growth if growth else ep["pixels"].nbytes) + ROOM_MARGIN  # first: uncompressed size
            size = _size(cfg.out)
            room, why = room_left(Path(cfg.out), size)
            if room < need:
                stopped = f"{why}: {room / 2**20:.1f} MiB left, an episode needs up to {need / 2**20:.1f} MiB"
                break
            if not reserve(cfg.out, need):
                stopped = f"disk full: could not reserve the {need / 2**20:.1f} MiB an episode needs"
                break
            writer.add_episode(ep["pixels"], ep["actions"], ep["observation"], ep["state"], ep["extra"],
                               ep["episode_info"])
            growth = max(growth, _size(cfg.out) - size)
            infos.append(ep["episode_info"])
            frames += len(ep["pixels"])
            busy += ep["seconds"]
            bar.update(1)
            bar.set_postfix(steps_s=f"{(frames - len(infos)) / (time.perf_counter() - t0):.0f}")
            if stop.requested:
                break
    except KeyboardInterrupt:
        pass
    finally:
        interrupted = stop.requested or len(infos) < cfg.episodes
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wall = time.perf_counter() - t0
        steps = frames - len(infos)
        summary = {"episodes": len(infos), "frames": frames, "env_steps": steps, "wall_seconds": round(wall, 2),
                   "env_steps_per_s": round(steps / wall, 1) if wall > 0 else 0.0,
                   "env_steps_per_s_per_worker": round(steps / busy, 1) if busy > 0 else 0.0,
                   "workers": cfg.workers, "interrupted": interrupted, "stopped": stopped, "written": bool(infos)}
        for key in sorted({k for info in infos for k in info}):
            summary[f"mean_{key}"] = round(float(np.mean([info[key] for info in infos if key in info])), 4)
        writer.close({"summary": summary})
    return summary


def print_summary(summary: dict[str, Any], out: str) -> None:
    """The summary line of a run that wrote episodes, else one line saying that nothing was."""
    if summary["written"]:
        print(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in summary.items()), file=sys.stdout)
        return
    why = summary["stopped"] or "interrupted"
    left = f"{out} from before is unchanged" if os.path.exists(out) else f"no file at {out}"
    print(f"lewm collect: nothing written: stopped before the first episode completed ({why}); {left}",
          file=sys.stderr)
