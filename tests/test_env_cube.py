"""lewm/Cube-v0: OGBench single cube in MuJoCo (a few rendered steps only: ~25 ms each with software EGL)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

# find_spec, not importorskip: importing mujoco here would fix its GL backend before lewm_envs.cube.env sets
# MUJOCO_GL=egl.
_missing = [m for m in ("mujoco", "ogbench") if importlib.util.find_spec(m) is None]
if _missing:
    pytest.skip(f"lewm/Cube-v0 needs {_missing} (pip install ogbench)", allow_module_level=True)

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

import lewm_envs  # noqa: F401  (registers lewm/*)
from lewm_envs.cube import env as cube
from lewm_envs.cube.env import CubeEnv
from lewm_envs.cube.expert import CubeExpert

ACTIONS = np.array([[0.5, -0.3, -1.0, 0.2, 1.0], [-0.4, 0.8, 0.3, -1.0, -1.0], [2.0, 0.0, -0.5, 0.0, 0.5]],
                   dtype=np.float32)  # the last one is out of range: clipped


@pytest.fixture(scope="module")
def env():
    e = CubeEnv(render_mode="rgb_array", render_size=None, render_goal="none")  # render() = the current view
    yield e
    e.close()


def test_check_env_and_layout(env):
    check_env(env, skip_render_check=False)
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == obs["goal"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
    assert obs["observation"].shape == (28,) and obs["achieved_goal"].shape == (3,)
    assert env.get_state().shape == (CubeEnv.state_dim,) and env.get_state().dtype == np.float64
    np.testing.assert_allclose(obs["achieved_goal"], env.get_state()[15:18], rtol=1e-6)  # cube xyz
    assert not info["is_success"]  # a sampled target is never already reached
    np.testing.assert_allclose(env.get_state()[69:72], obs["desired_goal"], rtol=1e-6)  # target slot
    assert env.render().shape == (64, 64, 3)


def test_registered_make():
    e = gym.make("lewm/Cube-v0", image_size=32)
    assert e.spec.max_episode_steps == 200 and e.unwrapped.render_quality == "fast"
    obs, _ = e.reset(seed=1)
    assert obs["pixels"].shape == (32, 32, 3)
    e.close()


def test_same_seed_same_episode(env):
    first = [env.reset(seed=7)[0]] + [env.step(a)[0] for a in ACTIONS]
    second = [env.reset(seed=7)[0]] + [env.step(a)[0] for a in ACTIONS]
    for a, b in zip(first, second):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    other = env.reset(seed=8)[0]
    assert not np.array_equal(other["achieved_goal"], first[0]["achieved_goal"])


def test_state_restore_replays_exactly(env):
    obs, _ = env.reset(seed=3)
    start, goal = env.get_state(), env.goal_state
    states, pixels = [], []
    for a in ACTIONS:
        obs = env.step(a)[0]
        states.append(env.get_state())
        pixels.append(obs["pixels"])
    assert np.linalg.norm(states[-1][1:7] - start[1:7]) > 0.01  # the arm moved
    env.reset(seed=99, options={"state": start, "goal_state": goal})
    np.testing.assert_array_equal(env.get_state(), start)
    for a, s, p in zip(ACTIONS, states, pixels):
        obs = env.step(a)[0]
        np.testing.assert_array_equal(env.get_state(), s)
        np.testing.assert_array_equal(obs["pixels"], p)
    # set_state(get_state()) in mid-episode changes nothing either
    mid = env.get_state()
    env.set_state(mid)
    np.testing.assert_array_equal(env.get_state(), mid)


def test_goal_image_and_target(env):
    obs, _ = env.reset(seed=5)
    np.testing.assert_array_equal(obs["goal"], env.render_state(env.goal_state))
    np.testing.assert_allclose(obs["desired_goal"], env.goal_state[15:18], rtol=1e-6)
    # a new goal mid-episode: new goal image and desired goal, the current view is unchanged
    # (the target marker is invisible, so pixels never leak the goal)
    before = env.render()
    new_goal = env.sample_goal_state()
    env.set_goal_state(new_goal)
    np.testing.assert_array_equal(env.render(), before)
    obs = env.step(np.zeros(5, np.float32))[0]
    np.testing.assert_array_equal(obs["goal"], env.render_state(new_goal))
    np.testing.assert_allclose(obs["desired_goal"], new_goal[15:18], rtol=1e-6)
    np.testing.assert_allclose(env.get_state()[69:72], new_goal[15:18])  # OGBench's target follows


@pytest.mark.parametrize("offset, success", [(0.03, True), (0.039, True), (0.05, False), (0.2, False)])
def test_success_within_4cm(env, offset, success):
    env.reset(seed=11)
    cube_xyz = env.get_state()[15:18]
    target = cube_xyz + np.array([offset, 0.0, 0.0])
    _, info = env.reset(options={"state": env.get_state(), "goal_state": env.make_goal_state(target)})
    assert info["is_success"] is success
    ach, des = np.tile(cube_xyz, (2, 1)), np.stack([target, cube_xyz])
    np.testing.assert_array_equal(env.compute_reward(ach, des, None), [0.0 if success else -1.0, 0.0])


def test_terminates_on_success_only_when_asked():
    e = CubeEnv(image_size=16, terminate_on_success=False)
    e.reset(seed=2)
    s = e.get_state()
    e.reset(options={"state": s, "goal_state": e.make_goal_state(s[15:18])})
    _, reward, terminated, _, info = e.step(np.zeros(5, np.float32))
    assert info["is_success"] and reward == 0.0 and not terminated
    e.terminate_on_success = True
    assert e.step(np.zeros(5, np.float32))[2]
    e.close()


def test_bad_input(env):
    env.reset(seed=0)
    for bad in (np.full(5, np.nan, np.float32), np.array([np.inf, 0, 0, 0, 0]), np.zeros(4), np.zeros((1, 5))):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    with pytest.raises(ValueError, match="unknown key"):
        env.reset(options={"goal": np.zeros(3)})
    with pytest.raises(ValueError, match=r"\(76,\)"):
        env.reset(options={"state": np.zeros(21)})
    with pytest.raises(ValueError, match="state"):
        env.set_state(np.full(76, np.nan))
    with pytest.raises(ValueError, match="target_pos"):
        env.make_goal_state(np.zeros(2))
    with pytest.raises(ValueError, match="render_quality"):
        CubeEnv(render_quality="ultra")
    with pytest.raises(ValueError, match="camera"):
        CubeEnv(camera="top")
    with pytest.raises(ValueError, match="oracle"):
        CubeExpert(oracle="random")
    with pytest.raises(ValueError, match="noise"):
        CubeExpert(noise=-1.0)


def test_missing_gl_backend_is_actionable(env, monkeypatch):
    def no_gl(*args, **kwargs):
        raise ImportError("Failed to import OpenGL backend (MUJOCO_GL='egl'): libEGL.so.1 not found")
    monkeypatch.setattr(cube.mujoco, "Renderer", no_gl)
    with pytest.raises(RuntimeError, match="MUJOCO_GL=osmesa"):
        cube._make_renderer(env.sim.model, 64, "fast")


def test_invalid_mujoco_gl_at_import_is_actionable():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", "import lewm_envs.cube.env"], cwd=root, capture_output=True, text=True,
                         check=False, env={**os.environ, "MUJOCO_GL": "no-such-backend"}, timeout=60)
    assert run.returncode != 0
    assert "RuntimeError" in run.stderr and "apt-get install libegl1" in run.stderr


@pytest.mark.parametrize("oracle", ["plan", "markov"])
def test_expert_samples_new_targets(oracle, monkeypatch):
    e = CubeEnv(image_size=16, terminate_on_success=False)
    monkeypatch.setattr(e, "_render_current", lambda: np.zeros((16, 16, 3), np.uint8))  # physics only
    expert = CubeExpert(noise=0.0, oracle=oracle)
    global_rng = np.random.get_state()[1].copy()
    runs = []
    for _ in range(2):  # same seeds, same episode
        obs, _ = e.reset(seed=0)
        expert.reset(e, np.random.default_rng(0))
        goals, actions = [obs["desired_goal"]], []
        for _ in range(130):  # one pick-and-place takes ~70 (markov) to ~90 (plan) steps
            actions.append(expert.act(e, obs))
            obs, *_ = e.step(actions[-1])
            if not np.array_equal(obs["desired_goal"], goals[-1]):
                goals.append(obs["desired_goal"])
        runs.append(np.array(actions))
    np.testing.assert_array_equal(runs[0], runs[1])
    info = expert.episode_info()
    assert len(goals) == 2 and info["subtasks"] == info["subtasks_finished"] == 1.0
    assert info["expert_success"] == 1.0
    np.testing.assert_array_equal(np.random.get_state()[1], global_rng)  # global RNG untouched
    assert CubeExpert.collect_env_kwargs == {"terminate_on_success": False}
    e.close()


def _play(envs, steps=len(ACTIONS)):  # noqa: B008
    """Reset each env with its own seed, then step them in turn (interleaved): every output."""
    out = [o[k] for i, e in enumerate(envs) for o in [e.reset(seed=20 + i)[0]] for k in ("pixels", "goal")]
    for a in ACTIONS[:steps]:
        for e in envs:
            o = e.step(a)[0]
            out += [o["pixels"], o["observation"], e.get_state(), e.render_state(e.goal_state)]
    return out


def test_shared_simulator_is_bit_identical_to_private_ones():
    private = [CubeEnv(share_sim=False) for _ in range(2)]
    shared = [CubeEnv() for _ in range(2)]
    assert private[0]._backend is not private[1]._backend and shared[0]._backend is shared[1]._backend
    for a, b in zip(_play(private), _play(shared)):
        np.testing.assert_array_equal(a, b)
    # an env handed another one's state and goal mid-episode continues exactly as that one would
    shared[0].reset(options={"state": shared[1].get_state(), "goal_state": shared[1].goal_state})
    np.testing.assert_array_equal(shared[0].step(ACTIONS[0])[0]["pixels"], shared[1].step(ACTIONS[0])[0]["pixels"])
    shared[0].close()
    shared[1].step(ACTIONS[1])  # closing one leaves the other working
    with pytest.raises(RuntimeError, match="closed"):
        shared[0].get_state()
    backend = shared[1]._backend
    for e in private + shared:
        e.close()
    assert not any(e in backend.envs for e in shared)
    assert ("cube" in cube._SHARED) == bool(backend.envs)  # the last env to close frees the simulator


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc for resident memory")
def test_many_envs_cost_little_memory():
    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    first = CubeEnv()
    first.reset(seed=0)
    before = rss_mb()
    more = [CubeEnv() for _ in range(6)]
    for i, e in enumerate(more):
        e.reset(seed=i)
        e.step(ACTIONS[0])
    per_env = (rss_mb() - before) / len(more)
    assert per_env < 20, f"{per_env:.0f} MB per extra env (a private simulator and renderer cost ~300 MB)"
    for e in [first] + more:
        e.close()


def test_lite_quality_draws_fewer_faces_and_the_same_picture(env):
    from lewm_envs.cube.mesh_lod import simplified_render_model
    model = env.sim.model
    faces = int(model.mesh_facenum.sum())
    coarse = simplified_render_model(model, 0.01)
    assert int(coarse.mesh_facenum.sum()) < faces / 5 and int(model.mesh_facenum.sum()) == faces  # a copy
    assert (coarse.mesh_facenum > 0).all()
    with pytest.raises(ValueError, match="cell"):
        simplified_render_model(model, 0.0)
    fast, lite = CubeEnv(share_sim=False), CubeEnv(render_quality="lite", share_sim=False)
    a, b = fast.reset(seed=4)[0], lite.reset(seed=4)[0]
    np.testing.assert_array_equal(a["observation"], b["observation"])  # the physics is the same
    diff = np.abs(a["pixels"].astype(int) - b["pixels"].astype(int))
    assert 0 < diff.mean() < 2 and (diff.max(-1) > 32).mean() < 0.03
    fast.close()
    lite.close()


def test_pixel_settings_of_a_checkpoint_and_its_data_must_agree():
    assert lewm_envs.pixel_settings("lewm/Cube-v0", {}) == {"image_size": 64, "render_quality": "fast",
                                                           "camera": "front_pixels"}
    lewm_envs.check_pixel_settings("lewm/Cube-v0", {"render_quality": "fast"}, {}, "data")  # defaults filled in
    with pytest.raises(ValueError, match=r"render_quality='lite' \(the checkpoint's: 'fast'\)"):
        lewm_envs.check_pixel_settings("lewm/Cube-v0", {"render_quality": "lite"}, {}, "--data: x.h5")
