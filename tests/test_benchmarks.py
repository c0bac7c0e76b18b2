"""The benchmark scripts run end to end on tiny settings and write the JSON they promise."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script, *args, tmp_path):
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def test_act_latency_reports_calls_and_solves(tmp_path):
    info, stdout = run("act_latency.py", "--checkpoints", "two_room", "--envs", "1", "2", "--steps", "6",
                       "--threads", "1", tmp_path=tmp_path)
    one, two = info["results"]
    assert (one["envs"], two["envs"]) == (1, 2) and one["act_calls"] == 6
    # replanning every block of 5 env steps: 6 calls hold 2 solves; the other calls return plan actions
    assert one["solves"] == 2 and one["act_ms_p50"] < one["solve_ms_p50"] <= one["act_ms_p95"] * 1.5
    assert "two_room" in stdout and "600 x 30" in stdout


def test_train_and_plan_speed_run_on_the_tiny_preset(tmp_path):
    info, _ = run("train_speed.py", "--presets", "tiny", "--steps", "2", "--warmup", "1", "--batch-size", "8",
                  "--nproc", "1", "2", tmp_path=tmp_path)
    assert [r["processes"] for r in info["results"]] == [1, 2]
    assert all(r["preset"] == "tiny" and r["samples_per_s"] > 0 for r in info["results"])
    info, stdout = run("train_speed.py", "--presets", "tiny", "--steps", "2", "--warmup", "1", "--batch-size", "8",
                       "--precisions", tmp_path=tmp_path)
    pr = info["results"][0]["precisions"]
    assert pr["bf16_speedup"] == pytest.approx(pr["fp32_ms_per_step"] / pr["bf16_ms_per_step"])
    assert "bf16 is" in stdout and any(c in info["device"] for c in ("AVX", "AMX"))
    info, _ = run("plan_speed.py", "--preset", "tiny", "--envs", "1", "--repeats", "1", "--samples", "16",
                  "--iterations", "2", "--elites", "4", "--threads", "1", tmp_path=tmp_path)
    assert info["results"][0]["envs"] == 1 and info["results"][0]["ms_per_solve"] > 0


def test_collect_speed_compares_env_settings_in_alternating_rounds(tmp_path):
    info, stdout = run("collect_speed.py", "--env", "lewm/TwoRoom-v0", "--variants", '{"image_size": 16}',
                       '{"image_size": 32}', "--episodes", "1", "--rounds", "2", tmp_path=tmp_path)
    fast, other = info["results"]
    assert fast["speedup"] == 1.0 and other["env_steps"] > 0 and other["env_steps_per_s"] > 0
    assert "image_size" in stdout and info["rounds"] == 2


TINY_VIT = '{"encoder": "vit", "patch_size": 8, "encoder_depth": 1, "encoder_heads": 2}'


def test_against_reference_times_both_sides_or_says_why_not(tmp_path):
    """With the bench extra installed, both sides are timed in alternating rounds and the ratio is
    theirs; without it, the script says which package is missing and still writes its JSON."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import reference
    missing = reference.missing()
    info, stdout = run("plan_speed.py", "--preset", "tiny", "--model", TINY_VIT, "--against", "reference",
                       "--samples", "16", "--iterations", "2", "--elites", "4", "--repeats", "2",
                       "--precisions", "fp32", "--threads", "1", tmp_path=tmp_path)
    if missing:
        assert info["skipped"] == missing and "reference column skipped" in stdout
    else:
        ours, ref = (next(r for r in info["results"] if r["side"] == s) for s in ("lewm_agent", "reference"))
        assert ours["repeats"] == ref["repeats"] == 2 and ours["precision"] == ref["precision"] == "fp32"
        ratio = info["ratios"][0]
        assert ratio["fp32"] == pytest.approx(ref["ms_per_solve"] / ours["ms_per_solve"]) == ratio["best"]
        assert "the reference's speed" in stdout
    info, stdout = run("train_speed.py", "--presets", "tiny", "--model", TINY_VIT, "--against", "reference",
                       "--steps", "2", "--warmup", "1", "--batch-size", "4", tmp_path=tmp_path)
    row = info["results"][0]
    if missing:
        assert row["reference"] is None and "reference column skipped" in stdout
    else:
        ref = row["reference"]
        assert ref["ratio"] == pytest.approx(ref["reference_ms_per_step"] / ref["ours_ms_per_step"])


def test_reference_missing_names_the_package(monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import importlib.util

    import reference
    # Only loguru is missing here, whatever this machine has installed.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "loguru" else object())
    for name in ("stable_worldmodel", "transformers", "einops", "loguru"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert reference.missing() == "the reference needs 'loguru': pip install -e .[bench]"


def test_predictor_cost_counts_fewer_flops_for_the_banded_predictor(tmp_path):
    info, stdout = run("predictor_cost.py", "--preset", "tiny", "--samples", "16", "--repeats", "1",
                       "--threads", "1", tmp_path=tmp_path)
    # history 3, horizon 5: the window predictor runs up to 3 tokens per step through every layer,
    # the banded one a single token, so it must count clearly fewer FLOPs at the same sizes
    assert info["gflop"]["banded"] < 0.8 * info["gflop"]["window"]
    assert set(info["ms_per_iteration"]) == {"window", "banded"} and "fewer FLOPs" in stdout


def test_encoder_capacity_learns_what_the_frames_show(two_room_data, tmp_path):
    info, stdout = run("encoder_capacity.py", "--data", str(two_room_data), "--models", '{"image_size": 32}',
                       '{"image_size": 32, "cnn_residual": true}', "--steps", "400", "--frames", "600",
                       tmp_path=tmp_path)
    plain, residual = info["results"]
    assert residual["model"] == {"image_size": 32, "cnn_residual": True}
    assert residual["encoder_params"] > plain["encoder_params"]
    for row in info["results"]:  # the agent's position is plain to see: supervised, it is learnt
        assert row["quantities"]["agent_xy"]["r"] > 0.6, row
    assert "agent_xy r / median error" in stdout
    script = str(ROOT / "benchmarks" / "encoder_capacity.py")
    bad = subprocess.run([sys.executable, script, "--data", str(two_room_data), "--quantities", "angle", "--steps", "1",
                          "--frames", "50", "--out", str(tmp_path / "x.json")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "--quantities: unknown ['angle']" in bad.stderr
