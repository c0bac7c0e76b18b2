"""The HDF5 rollout file, both ways: `RolloutWriter` appends episodes, `RolloutFile` reads.

Layout (format version 1), flat columns over all frames, episode-major:
  pixels uint8 (N, H, W, 3)   action float32 (N, A)   observation float32 (N, O)
  state float64 (N, S)        episode_index int64 (N,)  step_index int64 (N,)
  + any extra per-frame column, + per-episode columns `episode_<name>` (E,)
  episode_ends int64 (E,): row after each complete episode (the completeness ledger)
Row t of `action` is the action taken from frame t; each episode's last row is NaN.
File attributes: format_version, env_id, env_kwargs (JSON), image_size, collector,
seed, action_low, action_high, plus any summary the collector adds at the end.

Crash safety: the writer works in HDF5's single-writer/multiple-reader mode, so the
file's metadata is consistent at every moment; `episode_ends` grows only after an
episode's rows are flushed. A killed writer therefore leaves a file that opens and
holds exactly its complete episodes (rows past `episode_ends[-1]` are ignored).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .view import EpisodeView

ROLLOUT_FORMAT = 1
COLUMNS = {"pixels": np.uint8, "action": np.float32, "observation": np.float32, "state": np.float64}
INDEX_COLUMNS = ("episode_index", "step_index")
EPISODE_PREFIX = "episode_"


def _as_2d(name: str, x: Any, rows: int, dtype: Any) -> np.ndarray:
    x = np.asarray(x, dtype=dtype)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim < 2 or len(x) != rows:
        raise ValueError(f"{name}: expected {rows} rows, got shape {x.shape}")
    return x


class RolloutWriter:
    """Append complete episodes to a new rollout file. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, attrs: dict[str, Any], frames_per_chunk: int = 1,
                 compression: str = "gzip", compression_opts: int | None = 4, overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; refusing to overwrite a dataset (pass overwrite=True)")
        for key in ("env_id",):
            if key not in attrs:
                raise ValueError(f"attrs: missing {key!r}")
        self.attrs = dict(attrs)
        self.frames_per_chunk = frames_per_chunk
        self.compression, self.compression_opts = compression, compression_opts
        self._file: h5py.File | None = None
        self._schema: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.num_frames = 0
        self.num_episodes = 0

    # -------------------------------------------------------------- writing
    def add_episode(self, pixels: np.ndarray, actions: np.ndarray, observation: np.ndarray, state: np.ndarray,
                    extra: dict[str, np.ndarray] | None = None, episode_info: dict[str, float] | None = None) -> None:
        """One complete episode: L frames, L-1 actions (the NaN last row is added here)."""
        cols = self._validate(pixels, actions, observation, state, extra or {})
        info = {EPISODE_PREFIX + k: np.asarray([v], dtype=np.float64) for k, v in (episode_info or {}).items()}
        if self._file is None:
            self._create(cols, info)
        elif set(cols) != set(self._schema) or set(info) != set(self._episode_cols):
            raise ValueError(f"episode columns {sorted(cols) + sorted(info)} differ from the file's "
                             f"{sorted(self._schema) + sorted(self._episode_cols)}")
        n0, n1 = self.num_frames, self.num_frames + len(pixels)
        f = self._file
        for name, arr in cols.items():
            if arr.shape[1:] != self._schema[name][0]:
                raise ValueError(f"{name}: row shape {arr.shape[1:]} differs from the file's {self._schema[name][0]}")
            f[name].resize(n1, axis=0)
            f[name][n0:n1] = arr
        for name in cols:
            f[name].flush()
        e = self.num_episodes
        for name, arr in info.items():
            f[name].resize(e + 1, axis=0)
            f[name][e] = arr[0]
            f[name].flush()
        f["episode_ends"].resize(e + 1, axis=0)  # last: this makes the episode count
        f["episode_ends"][e] = n1
        f["episode_ends"].flush()
        self.num_frames, self.num_episodes = n1, e + 1

    def _validate(self, pixels, actions, observation, state, extra) -> dict[str, np.ndarray]:
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels: expected uint8 (L, H, W, 3), got {pixels.dtype} {pixels.shape}")
        n = len(pixels)
        if n < 2:
            raise ValueError(f"pixels: an episode needs at least 2 frames, got {n}")
        actions = _as_2d("actions", actions, n - 1, np.float32)
        if not np.isfinite(actions).all():
            raise ValueError("actions: contains NaN or inf (only the file's padding row may be NaN)")
        actions = np.concatenate([actions, np.full((1, actions.shape[1]), np.nan, np.float32)])
        cols = {"pixels": pixels, "action": actions,
                "observation": _as_2d("observation", observation, n, np.float32),
                "state": _as_2d("state", state, n, np.float64),
                "episode_index": np.full(n, self.num_episodes, np.int64),
                "step_index": np.arange(n, dtype=np.int64)}
        for name, arr in extra.items():
            if name in cols or name.startswith(EPISODE_PREFIX) or name == "episode_ends":
                raise ValueError(f"extra column {name!r} clashes with a reserved name")
            arr = np.asarray(arr)
            if len(arr) != n:
                raise ValueError(f"extra column {name!r}: expected {n} rows, got {len(arr)}")
            cols[name] = arr
        return cols

    def _create(self, cols: dict[str, np.ndarray], info: dict[str, np.ndarray]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(self.path, "w", libver="latest")
        for name, arr in cols.items():
            tail = arr.shape[1:]
            rows = self.frames_per_chunk if name == "pixels" else max(1, 65536 // max(1, arr[0].nbytes))
            f.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=arr.dtype,
                             chunks=(rows, *tail), compression=self.compression,
                             compression_opts=self.compression_opts, track_times=False,
                             fletcher32=True)  # a checksum per chunk: damage is found on read, not passed on
            self._schema[name] = (tail, arr.dtype)
        self._episode_cols = list(info)
        for name in [*info, "episode_ends"]:
            f.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(1024,),
                             dtype=np.int64 if name == "episode_ends" else np.float64, track_times=False)
        pix = cols["pixels"]
        attrs = {"format_version": ROLLOUT_FORMAT, "image_size": list(pix.shape[1:3]),
                 "action_low": [-1.0] * cols["action"].shape[1], "action_high": [1.0] * cols["action"].shape[1],
                 **self.attrs}
        for k, v in attrs.items():
            f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list, tuple)) and k != "image_size" else v
        f.flush()
        f.swmr_mode = True  # from here on the file is consistent after any crash
        self._file = f

    # ------------------------------------------------------------- closing
    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Close; drop rows of an unfinished episode and record `summary` as attributes."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        with h5py.File(self.path, "r+", libver="latest") as f:
            for name in self._schema:  # rows of an episode interrupted mid-write
                if f[name].shape[0] != self.num_frames:
                    f[name].resize(self.num_frames, axis=0)
            f.attrs["num_episodes"] = self.num_episodes
            f.attrs["num_frames"] = self.num_frames
            for k, v in (summary or {}).items():
                f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list, tuple)) else v

    def __enter__(self) -> RolloutWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        if "open for write" in str(e):  # a collector still running, or killed: SWMR read is safe
            return h5py.File(path, "r", swmr=True)
        raise ValueError(f"{path}: not a readable HDF5 rollout file ({e})") from None


class RolloutFile(EpisodeView):
    """Read-only view of a rollout file, validated against the contract on open."""

    def __new__(cls, path: str | os.PathLike) -> Any:
        # A file in the public reference's layout is read in place, through the same interface.
        from .reference import ReferenceRollouts, is_reference
        if cls is RolloutFile and Path(path).is_file() and is_reference(path):
            return ReferenceRollouts(path)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such dataset file")
        self.file = _open(self.path)
        try:
            self._validate()
        except Exception:
            self.file.close()
            raise

    def _validate(self) -> None:
        f, p = self.file, self.path
        version = f.attrs.get("format_version")
        if version != ROLLOUT_FORMAT:
            raise ValueError(f"{p}: attribute format_version={version!r}, expected {ROLLOUT_FORMAT}")
        missing = [c for c in (*COLUMNS, *INDEX_COLUMNS) if c not in f]
        if missing:
            raise ValueError(f"{p}: missing column(s) {missing}; a rollout file needs "
                             f"{list(COLUMNS) + list(INDEX_COLUMNS)}")
        pix = f["pixels"]
        if pix.dtype != np.uint8 or pix.ndim != 4 or pix.shape[-1] != 3:
            raise ValueError(f"{p}: column 'pixels' must be uint8 (N, H, W, 3), got {pix.dtype} {pix.shape}")
        if "episode_ends" in f:
            ends = f["episode_ends"][:].astype(np.int64)
            ends = ends[ends > 0]  # an entry whose value never reached the disk
        else:  # a contract file from another writer: derive the ledger from episode_index
            idx = f["episode_index"][:]
            ends = np.append(np.flatnonzero(np.diff(idx)) + 1, len(idx)).astype(np.int64) if len(idx) else idx
        if len(ends) == 0:
            raise ValueError(f"{p}: the dataset holds no complete episode")
        if np.any(np.diff(ends) <= 0):
            raise ValueError(f"{p}: episode_ends is not strictly increasing")
        n = int(ends[-1])
        for c in (*COLUMNS, *INDEX_COLUMNS):
            if f[c].shape[0] < n:
                raise ValueError(f"{p}: column {c!r} has {f[c].shape[0]} rows, episodes need {n}")
        if f["action"].ndim != 2:
            raise ValueError(f"{p}: column 'action' must be (N, A), got {f['action'].shape}")
        self.episode_ends = ends
        self.episode_starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
