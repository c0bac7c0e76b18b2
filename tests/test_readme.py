"""The README's Python snippets run as written, on the shipped Two-Room checkpoint."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet(name: str) -> str:
    found = re.search(rf"<!-- snippet:{name} -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert found, f"README has no snippet {name!r}"
    return found.group(1)


def run(name: str, tmp_path, monkeypatch, capsys) -> tuple[dict, str]:
    monkeypatch.chdir(tmp_path)  # where a snippet writes (videos/)
    scope: dict = {}
    exec(compile(snippet(name), f"README.md:{name}", "exec"), scope)
    return scope, capsys.readouterr().out


def test_the_act_snippet_reaches_its_goal(tmp_path, monkeypatch, capsys):
    _, out = run("act", tmp_path, monkeypatch, capsys)
    assert out.strip() == "True"


def test_the_evaluate_policy_snippet_counts_reachable_episodes(tmp_path, monkeypatch, capsys):
    pytest.importorskip("stable_baselines3")
    scope, out = run("evaluate_policy", tmp_path, monkeypatch, capsys)
    assert len(scope["successes"]) == 6 and "episodes reached their goal" in out
    assert sum(scope["successes"]) >= 4  # goals 10 expert steps away: the shipped model reaches most


def test_the_record_video_snippet_writes_an_mp4(tmp_path, monkeypatch, capsys):
    pytest.importorskip("moviepy")
    run("record_video", tmp_path, monkeypatch, capsys)
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["rl-video-episode-0.mp4"] and videos[0].stat().st_size > 1000
