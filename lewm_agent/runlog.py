"""The trainer's run log: one JSON object per line in `log.jsonl`, each with an integer "step".

Read by the trainer (to cut a resumed run's log back to its checkpoint), by `lewm plot`, and by
the checkpoint loader (a folder with a log but no weights is a run that has not saved yet).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LOG_FILE = "log.jsonl"


def log_rows(path: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """(line, parsed row) of each non-blank line of a trainer log. A last line cut short (the
    trainer killed mid-write) is dropped; any other malformed line is an error naming it."""
    path = Path(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    out = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):
                break
            raise ValueError(f"{path}: line {n} is not JSON ({e})") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise ValueError(f"{path}: line {n}: expected a JSON object with an integer 'step', got {line[:80]!r}")
        out.append((line, row))
    return out
