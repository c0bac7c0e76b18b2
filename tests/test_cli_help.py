"""`lewm [SUBCOMMAND] --help` stays exactly what it was (tests/snapshots/help_*.txt, at 100 columns):
options, defaults and help text are the CLI's contract, whatever builds the parser."""
from __future__ import annotations

from pathlib import Path

import pytest

from lewm_agent.cli import main

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("command", ["top", "collect", "train", "train-policy", "eval", "probe", "plot", "demo",
                                     "import"])
def test_help_matches_the_snapshot(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr("sys.argv", ["lewm"])
    with pytest.raises(SystemExit) as e:
        main(([] if command == "top" else [command]) + ["--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out == (SNAPSHOTS / f"help_{command}.txt").read_text()


@pytest.mark.parametrize("argv, message", [
    (["eval", "--checkpoint", "pusht", "--data", "x.h5", "--card-name", "hard"],
     "--card-name: only means something with --card"),
    (["eval", "--checkpoint", "pusht", "--data", "x.h5", "--video-episodes", "4"],
     "--video-episodes: only means something with --video"),
    (["eval", "--checkpoint", "pusht", "--data", "x.h5", "--oracle-samples", "8"],
     "--oracle-samples: only means something with --diagnose"),
    (["demo", "--train", "--checkpoint", "pusht"], "--train and --checkpoint cannot be combined"),
    (["demo", "--train", "--planner-kind", "policy"], "--train and --planner-kind cannot be combined"),
    (["demo", "--steps", "100"], "--steps: only means something with --train"),
    (["probe", "--checkpoint", "pusht", "--data", "x.h5", "--cost-probe", "block_xy", "--card"],
     "--cost-probe and --card cannot be combined"),
])
def test_a_dangling_or_conflicting_flag_is_refused_in_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lewm {argv[0]}: error: {err.split(': error: ', 1)[1]}" and message in err and "\n" not in err
