"""One writer per output: a lock file naming its holder, recovered when the holder is dead.

Two trainers on the same `--out` would both run and interleave their logs and checkpoints; two
collectors on one rollout file (with --overwrite) would truncate each other's episodes. The
lock is a file created exclusively (O_EXCL) holding the holder's pid, host and start time; a
lock whose process no longer exists on this host (killed with SIGKILL, say) is stale and taken
over.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = "train.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunLock:
    """`with RunLock(folder):` holds `folder/train.lock` (or `folder/name`); raises FileExistsError
    naming a live holder, described as `role` ("another trainer holds it")."""

    def __init__(self, folder: str | os.PathLike, name: str = LOCK_FILE, role: str = "trainer"):
        self.path = Path(folder) / name
        self.target, self.role = Path(folder), role  # what the lock protects, for its message
        self.held = False

    @classmethod
    def beside(cls, file: str | os.PathLike, role: str) -> RunLock:
        """The lock of one output file: `<file>.lock` in the same folder."""
        file = Path(file)
        lock = cls(file.parent, file.name + ".lock", role)
        lock.target = file
        return lock

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
        except (OSError, ValueError):
            return None  # torn (killed between creating and writing it) or unreadable: stale

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and (holder.get("host") != me["host"] or _alive(holder["pid"])):
                    raise FileExistsError(
                        f"{self.target}: another {self.role} holds it (pid {holder['pid']} on {holder.get('host')}, "
                        f"since {holder.get('started')}); wait for it, pass another --out, or delete {self.path} "
                        f"if that process is gone") from None
                self.path.unlink(missing_ok=True)  # stale: its holder is dead
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise FileExistsError(f"{self.path}: could not take the lock (another process keeps recreating it)")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
