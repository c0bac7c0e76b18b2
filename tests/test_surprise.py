"""examples/surprise.py: the Push-T perturbations, the paired permutation test, and a smoke run."""
import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import lewm_agent  # noqa: F401  (registers the envs)
from lewm_agent.checkpoint import CheckpointMeta, save_checkpoint
from lewm_agent.config import preset
from lewm_agent.data.rollouts import RolloutFile, RolloutWriter
from lewm_agent.model.world_model import WorldModel
from lewm_envs.pusht.env import t_corners
from lewm_envs.pusht.render import AGENT_RADIUS, WALL_HI, WALL_LO, PushTRenderer, t_sdf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SIZE, LENGTH, FS = 32, 36, 5


def _load():
    spec = importlib.util.spec_from_file_location("example_surprise", EXAMPLES / "surprise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


S = _load()


def _env():
    return gym.make("lewm/PushT-v0", image_size=SIZE, terminate_on_success=False).unwrapped


def _episode(env, seed: int):
    """A pushing episode: the disc heads for the block's centre with noise, so the block moves."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    pixels, states, observation, actions = [obs["pixels"]], [env.get_state()], [obs["observation"]], []
    for _ in range(LENGTH - 1):
        s = env.get_state()
        a = np.clip((s[2:4] + [0, 40] - s[:2]) / 100 + rng.normal(0, 0.3, 2), -1, 1).astype(np.float32)
        obs, *_ = env.step(a)
        actions.append(a)
        pixels.append(obs["pixels"])
        states.append(env.get_state())
        observation.append(obs["observation"])
    return np.stack(pixels), np.stack(actions), np.stack(observation), np.stack(states)


@pytest.fixture(scope="module")
def pusht_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pusht") / "pusht.h5"
    env = _env()
    with RolloutWriter(path, {"env_id": "lewm/PushT-v0", "env_kwargs": {"image_size": SIZE}}) as w:
        for i in range(4):
            w.add_episode(*_episode(env, i))
    return path


def _checkpoint(path, env_id="lewm/PushT-v0"):
    model = WorldModel(preset("tiny", image_size=SIZE, frameskip=FS, action_dim=2))
    meta = CheckpointMeta(model.cfg, (0.0, 0.0), (0.5, 0.5), (-1.0, -1.0), (1.0, 1.0), env_id=env_id,
                          env_kwargs={"image_size": SIZE})
    return save_checkpoint(path, model, meta)


def _recorded(path, ep=0):
    with RolloutFile(path) as rf:
        return rf.episode(ep, ("pixels", "action", "state"))


def test_teleport_pose_is_legal_and_moved():
    state = _env_state(3)
    pose = S.teleport_pose(state, 80.0, 0.5, np.random.default_rng(0))
    assert pose is not None
    corners = t_corners(*pose)
    assert (corners >= WALL_LO + 10).all() and (corners <= WALL_HI - 10).all()
    assert float(t_sdf(state[:2], *pose)) - AGENT_RADIUS >= 5
    assert abs(abs(S.wrap_angle(pose[2] - state[4])) - 0.5) < 1e-9
    assert np.linalg.norm(pose[:2] - state[2:4]) > 40  # origin moves too (cog shift 80 px plus the turn)
    # Nowhere to go: a shift larger than the arena.
    assert S.teleport_pose(state, 2000.0, 0.0, np.random.default_rng(0)) is None


def _env_state(seed):
    env = _env()
    env.reset(seed=seed)
    return env.get_state()


def test_resimulation_reproduces_the_recording(pusht_file):
    rec = _recorded(pusht_file)
    env = _env()
    # "Teleporting" the block to where it already is must give back the recorded states:
    # the re-simulation uses the right actions at the right rows.
    same = S.teleport_states(env, rec["state"], rec["action"], 10, rec["state"][10, 2:5], 30)
    np.testing.assert_allclose(same[:, :5], rec["state"][:, :5], atol=1e-6)


def test_teleport_changes_only_later_frames(pusht_file):
    rec = _recorded(pusht_file, 1)
    env, renderer = _env(), PushTRenderer(SIZE)
    rows, row = FS * np.arange(0, 7), FS * 3
    pose = S.teleport_pose(rec["state"][row], 80.0, 0.5, np.random.default_rng(1))
    versions = S.conditions(env, renderer, rec["state"], rec["action"], rows, row, pose, (220, 60, 60))
    moved, px = versions["teleport"]
    normal_px = versions["normal"][1]
    np.testing.assert_array_equal(moved[:row], rec["state"][:row])
    np.testing.assert_array_equal(moved[rows[-1] + 1:], rec["state"][rows[-1] + 1:])  # untouched past the window
    np.testing.assert_allclose(moved[row, 2:5], pose)
    assert (np.linalg.norm(moved[row:rows[-1] + 1, 2:4] - rec["state"][row:rows[-1] + 1, 2:4], axis=1) > 30).all()
    np.testing.assert_array_equal(normal_px, rec["pixels"][rows])  # the renderer is the env's
    np.testing.assert_array_equal(px[:3], normal_px[:3])
    assert all((px[i] != normal_px[i]).any() for i in range(3, 7))


def test_colour_change_keeps_states_and_changes_pixels(pusht_file):
    rec = _recorded(pusht_file, 2)
    env, renderer = _env(), PushTRenderer(SIZE)
    rows, row = FS * np.arange(1, 7), FS * 4
    pose = S.teleport_pose(rec["state"][row], 80.0, 0.5, np.random.default_rng(1))
    versions = S.conditions(env, renderer, rec["state"], rec["action"], rows, row, pose, (220, 60, 60))
    states, px = versions["colour"]
    np.testing.assert_array_equal(states, rec["state"])
    normal = versions["normal"][1]
    np.testing.assert_array_equal(px[:3], normal[:3])
    for i in range(3, 6):
        diff = (px[i] != normal[i]).any(-1)
        assert diff.sum() > 20  # the block's area at 32 px
        # Only the block is repainted: red grows where the T is, the background is untouched.
        assert (px[i][diff][:, 0].astype(int) >= normal[i][diff][:, 0]).all()
    assert PushTRenderer(SIZE).render([100, 100], [300, 300, 0.0], None).tobytes() == \
        renderer.render([100, 100], [300, 300, 0.0]).tobytes()  # default colour unchanged
    with pytest.raises(ValueError, match="block_color"):
        renderer.render([100, 100], [300, 300, 0.0], (300, 0, 0))


def test_action_blocks_layout():
    actions = np.arange(40, dtype=np.float32).reshape(20, 2)
    blocks = S.action_blocks(actions, np.array([0, 5, 10]), (1.0, 2.0), (2.0, 4.0))
    assert blocks.shape == (2, 10)
    np.testing.assert_allclose(blocks[1], ((actions[5:10] - [1, 2]) / [2, 4]).reshape(-1))


def test_sign_flip_test_detects_a_shift_not_a_null():
    rng = np.random.default_rng(0)
    y = rng.normal(size=20)
    t = S.sign_flip_test(y + 0.5 + rng.normal(0, 0.3, 20), y)
    assert t["n"] == 20 and t["p"] < 0.001 and 0.3 < t["mean_diff"] < 0.7
    # Exact for small n: 3 positive differences, two-sided -> 2 of the 8 labellings as extreme.
    assert S.sign_flip_test([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])["p"] == pytest.approx(0.25)
    # Under the null the test rejects at about its level (exact enumeration and Monte Carlo).
    for n, n_perm in ((10, 2000), (25, 1000)):
        p = np.array([S.sign_flip_test(rng.normal(size=n), rng.normal(size=n), n_perm=n_perm, seed=i)["p"]
                      for i in range(200)])
        assert 0.01 <= (p < 0.05).mean() <= 0.10
    with pytest.raises(ValueError, match="x, y"):
        S.sign_flip_test([1.0, 2.0], [1.0])


def test_main_smoke(pusht_file, tmp_path, capsys):
    ck = _checkpoint(tmp_path / "ck")
    out = tmp_path / "out"
    rc = S.main(["--checkpoint", str(ck), "--data", str(pusht_file), "--episodes", "3", "--out", str(out),
                 "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert (out / "surprise.png").stat().st_size > 1000
    report = json.loads((out / "surprise.json").read_text())
    assert len(report["windows"]) == 3 and report["render_max_abs_diff"] == 0
    for c in ("normal", "teleport", "colour"):
        s = np.asarray(report["surprise"][c])
        assert s.shape == (3, 6) and np.isfinite(s).all()
    step = report["offsets"].index(0)
    s = {c: np.asarray(report["surprise"][c]) for c in ("normal", "teleport", "colour")}
    # Before the perturbation the three inputs are identical, so is the surprise.
    np.testing.assert_allclose(s["teleport"][:, :step], s["normal"][:, :step], rtol=1e-5)
    assert not np.allclose(s["teleport"][:, step], s["normal"][:, step])
    assert "teleport_vs_normal" in text and "p=" in text and "n=3" in text


def test_main_bad_input(pusht_file, tmp_path, capsys):
    ck = _checkpoint(tmp_path / "ck", env_id="lewm/TwoRoom-v0")
    assert S.main(["--checkpoint", str(ck), "--data", str(pusht_file), "--out", str(tmp_path)]) == 2
    assert "trained on lewm/TwoRoom-v0" in capsys.readouterr().err
    ck = _checkpoint(tmp_path / "ck2")
    assert S.main(["--checkpoint", str(ck), "--data", str(pusht_file), "--color", "1,2"]) == 2
    assert "--color" in capsys.readouterr().err
    assert S.main(["--checkpoint", str(ck), "--data", str(pusht_file), "--after", "9"]) == 2
    assert "no episode" in capsys.readouterr().err
