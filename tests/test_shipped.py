"""The checkpoints shipped in checkpoints/: size limits, they load, match their env, and plan on CPU."""
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import lewm_envs  # noqa: F401  (registers the lewm/ ids)
from lewm_agent.checkpoint import read_meta, weights_sha256
from lewm_agent.planning.agent import LeWMAgent

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for p in (ROOT / "checkpoints").glob("*/") if (p / "config.json").is_file())
MIB = 1 << 20


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_checkpoint_folder_is_within_12_mib_and_complete(folder):
    assert folder_bytes(folder) <= 12 * MIB, f"{folder.name}: {folder_bytes(folder) / MIB:.1f} MiB > 12 MiB"
    assert {"model.safetensors", "config.json", "README.md", "eval.json"} <= {f.name for f in folder.iterdir()}


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_reported_numbers_were_measured_on_exactly_these_weights(folder):
    report = json.loads((folder / "eval.json").read_text())
    assert report["weights_sha256"] == weights_sha256(folder), "eval.json is stale: rerun `lewm eval ... --card`"
    assert report["env_id"] == read_meta(folder).env_id
    assert len(report["seeds"]) >= 3 and report["episodes_per_seed"] >= 50
    card = (folder / "README.md").read_text()
    lewm = report["rows"]["lewm"]
    assert f"| lewm | {100 * lewm['mean']:.1f} ± {100 * lewm['std']:.1f}%" in card, "model card and eval.json differ"


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_loads_matches_its_env_and_plans_one_step_on_cpu(folder):
    meta = read_meta(folder)
    if meta.env_id == "lewm/Cube-v0":
        pytest.importorskip("ogbench")
    env = gym.make(meta.env_id, **meta.env_kwargs)
    assert env.observation_space["pixels"].shape[:2] == (meta.model.image_size,) * 2
    assert env.action_space.shape == (meta.model.action_dim,)
    agent = LeWMAgent.from_pretrained(folder, device="cpu", num_samples=16, num_iterations=2, num_elites=4)
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
    assert action.dtype == np.float32 and env.action_space.contains(action)
    env.close()


def test_repository_stays_within_48_mib():
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    total = sum((ROOT / f).stat().st_size for f in files.decode().split("\0") if f and (ROOT / f).is_file())
    assert total <= 48 * MIB, f"tracked files weigh {total / MIB:.1f} MiB > 48 MiB"


def test_the_readme_demo_default_is_a_shipped_push_t_checkpoint():
    from lewm_agent.cli import DEMO_CHECKPOINT
    assert read_meta(DEMO_CHECKPOINT).env_id == "lewm/PushT-v0"  # a shipped name, resolved anywhere


@pytest.mark.skipif(not (ROOT / "checkpoints" / "two_room").is_dir(), reason="no shipped Two-Room checkpoint")
def test_demo_plans_with_the_shipped_model_on_unseen_episodes(tmp_path, capsys):
    from lewm_agent.cli import main
    args = ["demo", "--out", str(tmp_path), "--checkpoint", str(ROOT / "checkpoints" / "two_room"),
            "--episodes", "12", "--eval-episodes", "2", "--video-episodes", "0"]
    assert main(args) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["held_out"].startswith("every episode") and report["episodes_per_seed"] == 2
    assert report["rows"]["replay"]["success"] == 1.0 and "| lewm |" in capsys.readouterr().out
    assert main(args + ["--planner-kind", "policy"]) == 0                    # the shipped actor plans instead
    assert json.loads((tmp_path / "eval.json").read_text())["planner_kind"] == "policy"
    assert "the checkpoint's actor alone" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path), "--checkpoint", str(tmp_path / "none")]) == 2
    assert "not a shipped checkpoint name" in capsys.readouterr().err


def test_shipped_names_resolve_from_any_directory_and_no_top_level_envs_is_installed(tmp_path):
    code = ("import lewm_agent as la; a = la.LeWMAgent.from_pretrained('two_room'); "
            "e = la.make_env('two_room'); o, _ = e.reset(seed=0); print(a.act(o).shape, "
            "sorted(la.shipped_checkpoints()), e.unwrapped.image_size)\n"
            "try:\n    import envs\nexcept ModuleNotFoundError:\n    print('no envs')")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["(2,) ['cube', 'pusht', 'two_room'] 64", "no envs"]
    bad = subprocess.run([sys.executable, "-m", "lewm_agent", "eval", "--checkpoint", "nope", "--env",
                          "lewm/TwoRoom-v0"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a shipped checkpoint name (shipped: cube, pusht, two_room)" in bad.stderr
