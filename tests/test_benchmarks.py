"""The benchmark scripts run end to end on tiny settings and write the JSON they promise."""
import json
import os
import subprocess
import sys
from pathlib import Path

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
    info, _ = run("plan_speed.py", "--preset", "tiny", "--envs", "1", "--repeats", "1", "--samples", "16",
                  "--iterations", "2", "--elites", "4", "--threads", "1", tmp_path=tmp_path)
    assert info["results"][0]["envs"] == 1 and info["results"][0]["ms_per_solve"] > 0


def test_collect_speed_compares_env_settings_in_alternating_rounds(tmp_path):
    info, stdout = run("collect_speed.py", "--env", "lewm/TwoRoom-v0", "--variants", '{"image_size": 16}',
                       '{"image_size": 32}', "--episodes", "1", "--rounds", "2", tmp_path=tmp_path)
    fast, other = info["results"]
    assert fast["speedup"] == 1.0 and other["env_steps"] > 0 and other["env_steps_per_s"] > 0
    assert "image_size" in stdout and info["rounds"] == 2
