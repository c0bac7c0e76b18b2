"""`lewm probe`: ridge/MLP probes from embeddings to an env's physical quantities, and the CLI."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

import lewm_envs  # noqa: F401  (registers the lewm/ ids)
from lewm_agent.cli import main
from lewm_agent.data.collect import CollectConfig, collect
from lewm_agent.evaluation.probe import ProbeConfig, env_quantities, fit_mlp, fit_ridge, score
from lewm_envs.pusht.env import PushTEnv
from lewm_envs.two_room.env import TwoRoomEnv


# ------------------------------------------------------------------ probes on synthetic embeddings
def latents(n: int, d: int = 16, seed: int = 0):
    """Embeddings x = z @ M (a random invertible mixing of latent coordinates z ~ U(-pi, pi))."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-np.pi, np.pi, (n, d))
    m = rng.normal(size=(d, d))
    return z, z @ m


def test_ridge_recovers_a_linear_quantity_and_not_noise():
    z, x = latents(800)
    y = np.stack([2.0 * z[:, 0] - z[:, 3] + 5.0, 0.5 * z[:, 7]], 1)   # linear in z, hence in x
    pred = fit_ridge(x[:600], y[:600], x[600:], alpha=1e-4)
    s = score(y[600:], pred, "px")
    assert s["r"] > 0.99 and s["r2"] > 0.98 and s["unit"] == "px"
    assert s["median_error"] < 0.1 * np.linalg.norm(y[600:] - y[600:].mean(0), axis=1).mean()
    noise = np.random.default_rng(1).normal(size=(800, 2))
    s = score(noise[600:], fit_ridge(x[:600], noise[:600], x[600:], alpha=1e-2), "px")
    assert abs(s["r"]) < 0.15 and s["r2"] < 0.05


def test_score_r_r2_and_errors_on_known_predictions():
    y = np.random.default_rng(0).normal(size=(200, 2))
    perfect = score(y, y.copy(), "units")
    assert perfect["r"] == pytest.approx(1.0) and perfect["r2"] == pytest.approx(1.0) and perfect["median_error"] == 0
    shifted = score(y, y + np.array([3.0, 4.0]), "units")     # correlation ignores a shift, R² and error do not
    assert shifted["r"] == pytest.approx(1.0) and shifted["r2"] < 0 and shifted["median_error"] == pytest.approx(5.0)
    const = score(y, np.zeros_like(y), "units")                # a constant prediction: r defined as 0
    assert const["r"] == 0.0 and const["r2"] < 0.1


def test_mlp_recovers_a_nonlinear_quantity_ridge_cannot():
    z, x = latents(1000, d=8)
    y = np.sin(z[:, :1] + np.pi / 2)                            # a bump over z0 in [-pi, pi]: no linear trend
    lin = score(y[800:], fit_ridge(x[:800], y[:800], x[800:], alpha=1e-3), "units")
    mlp = score(y[800:], fit_mlp(x[:800], y[:800], x[800:], hidden=64, steps=400, seed=0), "units")
    assert lin["r2"] < 0.1
    assert mlp["r2"] > 0.9 and mlp["r"] > 0.95 and mlp["r2"] > lin["r2"] + 0.7
    again = fit_mlp(x[:800], y[:800], x[800:], hidden=64, steps=20, seed=0)   # seeded: same call, same numbers
    np.testing.assert_array_equal(again, fit_mlp(x[:800], y[:800], x[800:], hidden=64, steps=20, seed=0))


def test_angle_unit_reports_degrees_on_the_circle():
    th = np.linspace(-np.pi, np.pi, 361)                       # includes the wrap at +-pi
    y = np.stack([np.sin(th), np.cos(th)], 1)
    s = score(y, 0.5 * y, "angle")                              # any radius: only the direction counts
    assert s["unit"] == "deg" and s["median_error"] == pytest.approx(0.0, abs=1e-6)
    off = np.radians(10.0)
    s = score(y, np.stack([np.sin(th + off), np.cos(th + off)], 1), "angle")
    assert s["median_error"] == pytest.approx(10.0, abs=1e-6)   # 10 deg, never 350 across the wrap
    s = score(y, np.stack([np.sin(th - off), np.cos(th - off)], 1), "angle")
    assert s["median_error"] == pytest.approx(10.0, abs=1e-6)


def test_config_rejects_bad_values():
    for kw, field in (({"frames": 5}, "--frames"), ({"val_fraction": 1.0}, "--val-fraction"),
                      ({"ridge": 0.0}, "--ridge"), ({"mlp_steps": -1}, "--mlp-steps")):
        with pytest.raises(ValueError, match=field):
            ProbeConfig(checkpoint="ck", data="d.h5", **kw)


# ------------------------------------------------------------------ env quantities
def test_pusht_probe_quantities_for_a_known_state():
    state = np.array([[150.0, 320.0, 256.0, 200.0, 0.5, 1, 2, 3, 4, 5],
                      [100.0, 110.0, 300.0, 310.0, -np.pi / 2, 0, 0, 0, 0, 0]])
    q = PushTEnv.probe_quantities(state, np.zeros((2, 5)))
    assert set(q) == {"agent_xy", "block_xy", "block_angle"}
    np.testing.assert_allclose(q["agent_xy"][0], [[150, 320], [100, 110]])
    np.testing.assert_allclose(q["block_xy"][0], [[256, 200], [300, 310]])
    np.testing.assert_allclose(q["block_angle"][0], [[np.sin(0.5), np.cos(0.5)], [-1.0, 0.0]], atol=1e-12)
    assert (q["agent_xy"][1], q["block_xy"][1], q["block_angle"][1]) == ("px", "px", "angle")
    # The same through the env id, from a real simulator state.
    env = PushTEnv(image_size=32)
    env.reset(seed=3)
    s = env.get_state()[None]
    q = env_quantities("lewm/PushT-v0", s, np.zeros((1, 5)))
    np.testing.assert_allclose(q["block_xy"][0], s[:, 2:4])
    assert np.arctan2(*q["block_angle"][0][0]) == pytest.approx(np.arctan2(np.sin(s[0, 4]), np.cos(s[0, 4])))


def test_two_room_probe_quantities_and_unknown_env():
    state = np.array([[10.0, 20.0], [150.0, 30.0]])
    q = TwoRoomEnv.probe_quantities(state, state.astype(np.float32))
    assert set(q) == {"agent_xy"} and q["agent_xy"][1] == "units"
    np.testing.assert_allclose(q["agent_xy"][0], state)
    assert set(env_quantities("lewm/TwoRoom-v0", state, state)) == {"agent_xy"}
    with pytest.raises(ValueError, match="test/Nope-v0"):
        env_quantities("test/Nope-v0", state, state)


# ------------------------------------------------------------------ CLI
def probe_cli(ck, data, *extra):
    return main(["probe", "--checkpoint", str(ck), "--data", str(data), "--frames", "200", "--mlp-steps", "20",
                 "--device", "cpu", *extra])


def test_cli_prints_table_and_writes_json(two_room_ck, two_room_data, tmp_path, capsys):
    out = tmp_path / "probe"
    assert probe_cli(two_room_ck, two_room_data, "--out", str(out)) == 0
    table = capsys.readouterr().out
    assert "| agent_xy |" in table and "linear r" in table and "MLP R²" in table
    report = json.loads((out / "probe.json").read_text())
    assert report["env_id"] == "lewm/TwoRoom-v0" and set(report["quantities"]) == {"agent_xy"}
    assert report["fit_frames"] + report["score_frames"] == 200 and report["score_frames"] == 40
    assert report["fit_episodes"] + report["score_episodes"] == 40 and report["score_episodes"] == 8
    assert {"emb_std", "emb_rank", "latent_dim"} <= set(report)
    for kind in ("linear", "mlp"):
        s = report["quantities"]["agent_xy"][kind]
        assert set(s) == {"r", "r2", "median_error", "unit"} and s["unit"] == "units"
        assert -1.0 <= s["r"] <= 1.0 and np.isfinite(s["r2"]) and s["median_error"] >= 0
    assert (out / "probe.md").read_text() == table.rstrip("\n") + "\n"
    assert not (two_room_ck / "probe.json").exists()           # no --card: the checkpoint is untouched


def test_cli_probes_the_encoder_output_before_the_projector(two_room_ck, two_room_data, tmp_path, capsys):
    out = tmp_path / "probe"
    assert probe_cli(two_room_ck, two_room_data, "--out", str(out), "--features", "encoder") == 0
    assert "encoder output (before the projector) effective rank" in capsys.readouterr().out
    report = json.loads((out / "probe.json").read_text())
    assert report["features"] == "encoder" and report["latent_dim"] == 64  # tiny: encoder width 64, latent 32
    assert probe_cli(two_room_ck, two_room_data, "--features", "encoder", "--cost-probe", "agent_xy") == 2
    assert "--features encoder: a cost probe reads the latent" in capsys.readouterr().err


def test_cli_card_writes_a_probes_section_into_the_checkpoint(two_room_ck, two_room_data, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copytree(two_room_ck, ck)
    before = (ck / "README.md").read_text() if (ck / "README.md").is_file() else ""
    assert probe_cli(ck, two_room_data, "--card") == 0
    card = (ck / "README.md").read_text()
    assert card.startswith(before.rstrip()) and "## Probes" in card and "| agent_xy |" in card
    assert "lewm probe --checkpoint" in card                    # the command that made the numbers
    assert json.loads((ck / "probe.json").read_text())["quantities"]["agent_xy"]
    capsys.readouterr()
    assert probe_cli(ck, two_room_data, "--card") == 0          # a rerun replaces its section
    assert (ck / "README.md").read_text().count("## Probes") == 1
    assert not (two_room_ck / "probe.json").exists()


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("lewm probe: error: ")
    return err[0]


def test_cli_refuses_data_of_another_env(two_room_ck, tmp_path, capsys):
    pusht = tmp_path / "pusht.h5"
    assert main(["collect", "--env", "lewm/PushT-v0", "--episodes", "2", "--image-size", "32", "--max-steps", "10",
                 "--out", str(pusht), "--no-progress"]) == 0
    capsys.readouterr()
    assert probe_cli(two_room_ck, pusht) == 2
    line = error_line(capsys)
    assert "lewm/PushT-v0" in line and "lewm/TwoRoom-v0" in line


def test_cli_refuses_one_episode_frames_and_no_state(two_room_ck, two_room_data, tmp_path, capsys):
    one = tmp_path / "one.h5"
    collect(CollectConfig("lewm/TwoRoom-v0", 1, str(one), env_kwargs={"image_size": 32}, progress=False))
    assert probe_cli(two_room_ck, one) == 2
    line = error_line(capsys)
    assert "1 episode" in line and ">= 2" in line

    assert main(["probe", "--checkpoint", str(two_room_ck), "--data", str(two_room_data), "--frames", "5"]) == 2
    assert "--frames" in error_line(capsys)

    no_state = tmp_path / "no_state.h5"
    shutil.copy(two_room_data, no_state)
    with h5py.File(no_state, "a") as f:
        del f["state"]
    assert probe_cli(two_room_ck, no_state) == 2
    assert "'state'" in error_line(capsys)

    assert probe_cli(two_room_ck, tmp_path / "missing.h5") == 2
    assert "missing.h5" in error_line(capsys)


def test_cli_untrained_probes_fresh_weights_of_the_same_architecture(two_room_ck, two_room_data, tmp_path, capsys):
    def run(name, *extra):
        assert probe_cli(two_room_ck, two_room_data, "--out", str(tmp_path / name), *extra) == 0
        return json.loads((tmp_path / name / "probe.json").read_text())

    trained, fresh, again = run("t"), run("u", "--untrained"), run("u2", "--untrained")
    assert "untrained (seed 0) latent effective rank" in capsys.readouterr().out
    assert fresh["untrained"] and not trained["untrained"] and fresh["latent_dim"] == trained["latent_dim"]
    assert fresh["quantities"] == again["quantities"]              # seeded: the same fresh weights
    assert fresh["quantities"] != trained["quantities"]            # not the checkpoint's weights
    assert run("u1", "--untrained", "--seed", "1")["emb_rank"] != fresh["emb_rank"]
    for flag in ("--card", "--cost-probe"):
        args = [flag] + (["agent_xy"] if flag == "--cost-probe" else [])
        assert probe_cli(two_room_ck, two_room_data, "--untrained", *args) == 2
        assert f"--untrained: probes fresh weights, not the checkpoint's; drop {flag}" in capsys.readouterr().err
    assert not (two_room_ck / "probe.json").exists()
