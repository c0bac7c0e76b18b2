"""`lewm [SUBCOMMAND] --help` stays exactly what it was (tests/snapshots/help_*.txt, at 100 columns):
options, defaults and help text are the CLI's contract, whatever builds the parser."""
from __future__ import annotations

from pathlib import Path

import pytest

from lewm_agent.cli import main

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("command", ["top", "collect", "train", "eval", "probe", "plot", "demo", "import"])
def test_help_matches_the_snapshot(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr("sys.argv", ["lewm"])
    with pytest.raises(SystemExit) as e:
        main(([] if command == "top" else [command]) + ["--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out == (SNAPSHOTS / f"help_{command}.txt").read_text()
