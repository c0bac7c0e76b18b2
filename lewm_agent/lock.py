"""One trainer per output folder: a lock file naming its holder, recovered when the holder is dead.

Two trainers on the same `--out` would both run and interleave their logs and checkpoints. The
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
    """`with RunLock(folder):` holds `folder/train.lock`; raises FileExistsError naming a live holder."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_FILE
        self.held = False

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
                        f"{self.path.parent}: another trainer holds it (pid {holder['pid']} on {holder.get('host')}, "
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
