"""Resumable evaluation: each finished seed's results, kept in a JSON file written atomically.

A seed's pairs are drawn from the seed alone and every policy is re-seeded per seed, so a seed
played after an interruption gives what it would have given in one run: the same command picks
up after the last finished seed and ends with the same numbers. The file belongs to one
evaluation (its key: weights, data, pairs, planner, rows and the precision used); another
evaluation's leftovers are ignored and replaced. It is removed once the report is written.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write_bytes


class SeedLog:
    def __init__(self, path: str | Path | None, key: dict[str, Any]):
        self.path, self.key = (Path(path) if path else None), json.loads(json.dumps(key))
        self.seeds: dict[int, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
            except ValueError:
                saved = {}  # torn by a crash mid-write elsewhere: start over
            if saved.get("key") == self.key:
                self.seeds = {int(s): v for s, v in saved.get("seeds", {}).items()}

    @staticmethod
    def precision_of(path: str | Path | None) -> str | None:
        """The precision a partial evaluation used, so that its remaining seeds use it too."""
        try:
            return json.loads(Path(path).read_text())["key"]["precision"] if path else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def get(self, seed: int) -> dict[str, Any] | None:
        return self.seeds.get(seed)

    def put(self, seed: int, record: dict[str, Any]) -> None:
        self.seeds[seed] = record
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            body = {"key": self.key, "seeds": {str(s): v for s, v in sorted(self.seeds.items())}}
            atomic_write_bytes(self.path, (json.dumps(body) + "\n").encode())

    def finish(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
