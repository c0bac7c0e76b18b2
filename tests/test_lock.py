"""The run lock: one trainer per output folder; a stale lock is recovered."""
import json
import os
import socket
import subprocess
import sys

import pytest

from lewm_agent.lock import LOCK_FILE, RunLock


def test_a_second_trainer_is_refused_and_a_stale_lock_is_recovered(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(FileExistsError, match=f"another trainer holds it \\(pid {os.getpid()} on"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                  "started": "earlier"}))
    with RunLock(tmp_path) as lock:  # its holder is gone: taken over
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid() and lock.held
    (tmp_path / LOCK_FILE).write_text("")  # killed between creating and writing it
    with RunLock(tmp_path):
        pass
