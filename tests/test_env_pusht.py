"""lewm/PushT-v0: gym contract, exact replay, success criterion, coverage, physics, expert."""
from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import lewm_envs  # noqa: F401  (registers the ids)
from lewm_envs.pusht.env import AGENT_HI, AGENT_LO, PushTEnv
from lewm_envs.pusht.expert import PushTExpert
from lewm_envs.pusht.render import AGENT_RADIUS, coverage, t_sdf

# Block at the centre, bar horizontal on top, stem pointing down (+y): the stem spans
# x in [241, 271], y in [286, 376]; the agent starts left of the stem, at rest.
PUSH_STATE = np.array([150.0, 320.0, 256.0, 256.0, 0.0, 0, 0, 0, 0, 0])


def make(**kw) -> PushTEnv:
    return PushTEnv(**kw)


def expert_episode(seed: int, steps: int, **env_kw):
    env = make(**env_kw)
    expert = PushTExpert()
    obs, _ = env.reset(seed=seed)
    expert.reset(env, np.random.default_rng(seed))
    states, actions, pixels = [env.get_state()], [], [obs["pixels"]]
    for _ in range(steps):
        a = expert.act(env, obs)
        obs, _, term, _, _ = env.step(a)
        actions.append(a)
        states.append(env.get_state())
        pixels.append(obs["pixels"])
        if term:
            break
    return env, states, actions, pixels


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_check_env(render_mode):
    env = gym.make("lewm/PushT-v0", render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds of the low-dim parts are intended
        check_env(env.unwrapped, skip_render_check=False)


def test_spaces_and_render():
    env = gym.make("lewm/PushT-v0", render_mode="rgb_array", render_size=None, render_goal="none")
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == obs["goal"].shape == (96, 96, 3) and obs["pixels"].dtype == np.uint8
    assert obs["observation"].shape == obs["achieved_goal"].shape == obs["desired_goal"].shape == (5,)
    assert env.unwrapped.get_state().shape == (10,) and env.unwrapped.get_state().dtype == np.float64
    assert {"is_success", "coverage", "contact"} <= set(info)
    assert np.array_equal(env.render(), obs["pixels"])
    assert make(image_size=64).reset(seed=0)[0]["pixels"].shape == (64, 64, 3)
    assert make().render() is None


def test_determinism_same_seed():
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (25, 2)).astype(np.float32)
    runs = []
    for _ in range(2):
        env = make(terminate_on_success=False)
        obs, _ = env.reset(seed=123)
        seq = [obs]
        seq += [env.step(a)[0] for a in acts]
        runs.append(seq)
    for o1, o2 in zip(*runs):
        for k in o1:
            assert np.array_equal(o1[k], o2[k]), k
    other, _ = make().reset(seed=124)
    assert not np.array_equal(other["observation"], runs[0][0]["observation"])


def test_replay_from_recorded_state_is_exact():
    env, states, actions, pixels = expert_episode(seed=5, steps=50)
    assert any(env.contact(s) for s in states), "the episode should contain pushes"
    fresh = make()
    fresh.reset(seed=99)
    for a in np.full((5, 2), 0.7, np.float32):        # unrelated history first
        fresh.step(a)
    k = 10
    fresh.reset(options={"state": states[k], "goal_state": env.goal_state})
    for t in range(k, len(actions)):
        obs, *_ = fresh.step(actions[t])
        assert np.array_equal(fresh.get_state(), states[t + 1]), t
        assert np.array_equal(obs["pixels"], pixels[t + 1]), t
    # set_state(get_state()) in the same env is a no-op for what follows.
    env.set_state(states[20])
    a = np.array([0.3, -0.2], np.float32)
    env.step(a)
    s1 = env.get_state()
    env.set_state(states[20])
    env.set_state(env.get_state())
    env.step(a)
    assert np.array_equal(env.get_state(), s1)


def test_goal_image_is_rendering_of_goal_state():
    env = make()
    obs, _ = env.reset(seed=3)
    assert np.array_equal(obs["goal"], env.render_state(env.goal_state))
    assert np.array_equal(obs["desired_goal"], env.goal_state[:5].astype(np.float32))
    g = env.goal_state.copy()
    g[2] += 5.0
    env.set_goal_state(g)
    assert np.array_equal(env.step(np.zeros(2, np.float32))[0]["goal"], env.render_state(g))


def test_bad_input_raises():
    env = make()
    env.reset(seed=0)
    for bad in ([np.nan, 0.0], [0.0, np.inf]):
        with pytest.raises(ValueError, match="NaN or inf"):
            env.step(np.array(bad, np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="unknown key"):
        env.reset(options={"start": np.zeros(10)})
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        env.reset(options={"state": np.zeros(5)})
    with pytest.raises(ValueError, match="finite"):
        env.reset(options={"goal_state": np.full(10, np.nan)})
    with pytest.raises(ValueError, match="state"):
        env.set_state(np.zeros(4))
    for kw in ({"image_size": 4}, {"goal_shift": (50, 10)}, {"goal_shift": 5}, {"goal_rotation": 4.0}):
        with pytest.raises(ValueError):
            make(**kw)
    with pytest.raises(ValueError):
        PushTExpert(noise=-1.0)
    with pytest.raises(RuntimeError):
        PushTExpert().act(env, {})


def test_out_of_range_actions_are_clipped():
    env = make()
    s0 = PUSH_STATE.copy()
    env.reset(options={"state": s0, "goal_state": s0 + [0, 0, 100, 0, 0, 0, 0, 0, 0, 0]})
    env.step(np.array([5.0, -7.0], np.float32))
    big = env.get_state()
    env.reset(options={"state": s0, "goal_state": s0 + [0, 0, 100, 0, 0, 0, 0, 0, 0, 0]})
    env.step(np.array([1.0, -1.0], np.float32))
    assert np.array_equal(env.get_state(), big)


# ------------------------------------------------------------------ task
def test_success_criterion_and_angle_wrap():
    env = make()
    g = np.array([200.0, 200.0, 300.0, 300.0, math.pi - 0.01])
    ok = env._success
    assert ok(g, g)
    # Joint distance over (agent xy, block xy): 12 and 16 px apart -> 20 px, just outside.
    assert not ok(g + [12, 0, 0, 16, 0], g)
    assert ok(g + [12, 0, 0, 15.9, 0], g)
    assert not ok(g + [0, 0, 20.5, 0, 0], g)
    # Angles wrap: pi - 0.01 and -pi + 0.01 are 0.02 rad apart.
    wrapped = g.copy()
    wrapped[4] = -math.pi + 0.01
    assert ok(wrapped, g) and ok(g, wrapped)
    assert ok(g + [0, 0, 0, 0, math.pi / 9 - 0.01], g)
    assert not ok(g + [0, 0, 0, 0, math.pi / 9 + 0.01], g)
    assert not ok(g + [0, 0, 0, 0, math.pi], g)        # the T has no rotational symmetry
    # Vectorised, as HER's relabelling calls it.
    batch = np.stack([g, wrapped, g + [30, 0, 0, 0, 0]])
    assert env.compute_reward(batch, np.broadcast_to(g, batch.shape), {}).tolist() == [0.0, 0.0, -1.0]
    # Through reset: a start equal to the goal up to the angle's wrap is a success.
    s = np.array([200.0, 200.0, 300.0, 300.0, -math.pi + 0.01, 0, 0, 0, 0, 0])
    goal = s.copy()
    goal[4] = math.pi - 0.01
    _, info = env.reset(options={"state": s, "goal_state": goal})
    assert info["is_success"]


def test_coverage():
    goal = (256.0, 200.0, 0.7)
    assert coverage(goal, goal) == pytest.approx(1.0, abs=1e-9)
    # Shifted 10 px along the bar: bar overlap 110x30, stem overlap 20x90 (angle 0: exact areas).
    assert coverage((266.0, 200.0, 0.0), (256.0, 200.0, 0.0)) == pytest.approx((3300 + 1800) / 6300, abs=1e-9)
    assert coverage((400.0, 400.0, 0.7), goal) == 0.0
    assert 0.0 < coverage((256.0, 200.0, 1.0), goal) < 1.0
    env = make(terminate_on_success=False)
    s = np.array([100.0, 100.0, *goal, 0, 0, 0, 0, 0])
    _, info = env.reset(options={"state": s, "goal_state": s})
    assert info["coverage"] == pytest.approx(1.0, abs=1e-9)
    far = s.copy()
    far[2] += 40.0
    _, info = env.reset(options={"state": far, "goal_state": s})
    assert info["coverage"] < 0.7


def test_pd_controller_moves_agent_to_target():
    env = make(terminate_on_success=False)
    s = np.array([100.0, 420.0, 350.0, 100.0, 0.0, 0, 0, 0, 0, 0])   # far from the block
    env.reset(options={"state": s, "goal_state": s + [0, 0, 50, 0, 0, 0, 0, 0, 0, 0]})
    env.step(np.array([0.5, 0.0], np.float32))
    p = env.get_state()
    assert 8.0 < p[0] - 100.0 < 20.0 and abs(p[1] - 420.0) < 1e-9 and p[5] > 0   # ~26% of 50 px in 0.1 s
    target = np.array([180.0, 380.0])
    for _ in range(12):                                  # hold a fixed target: critically damped approach
        st = env.get_state()
        env.step(((target - st[:2]) / 100.0).astype(np.float32))
    assert np.linalg.norm(env.get_state()[:2] - target) < 1.0
    for _ in range(10):                                  # targets are clipped inside the walls
        env.step(np.array([-1.0, 1.0], np.float32))
    x, y = env.get_state()[:2]
    assert AGENT_LO - 2.0 <= x <= AGENT_HI + 2.0 and AGENT_LO - 2.0 <= y <= AGENT_HI + 2.0


def test_block_moves_only_when_pushed():
    env = make(terminate_on_success=False)
    goal = PUSH_STATE + [0, 0, 100, 0, 0, 0, 0, 0, 0, 0]
    env.reset(options={"state": PUSH_STATE, "goal_state": goal})
    contacts, poses = [], []
    for _ in range(12):
        contacts.append(env.step(np.array([0.4, 0.0], np.float32))[4]["contact"])
        poses.append(env.get_state()[2:5])
    first = contacts.index(True)
    assert all(np.array_equal(p, PUSH_STATE[2:5]) for p in poses[:first])   # untouched until contact
    s = env.get_state()
    assert s[2] - 256.0 > 20.0                               # pushed right
    assert float(t_sdf(s[:2], *s[2:5])) > AGENT_RADIUS - 3.0  # the disc does not pass through the block
    # Take the disc away: the block keeps no momentum (damping 0) and stops within one step.
    away = s.copy()
    away[[0, 1, 5, 6]] = [60.0, 460.0, 0.0, 0.0]
    env.set_state(away)
    env.step(np.zeros(2, np.float32))
    resting = env.get_state()
    assert np.array_equal(resting[7:], np.zeros(3))
    env.step(np.zeros(2, np.float32))
    assert np.array_equal(env.get_state()[2:5], resting[2:5])


def test_reset_sampling_is_valid():
    env = make()
    for seed in range(20):
        _, info = env.reset(seed=seed)
        s, g = env.get_state(), env.goal_state
        assert not info["is_success"]
        for state in (s, g):
            assert float(t_sdf(state[:2], *state[2:5])) > AGENT_RADIUS
            assert env._block_inside(*state[2:5])
        assert 30.0 <= np.linalg.norm(g[2:4] - s[2:4]) <= 120.0
    env.set_state(np.array([100.0, 100.0, 256.0, 256.0, 3 * math.pi, 0, 0, 0, 0, 0]))
    assert env.get_state()[4] == pytest.approx(-math.pi)


def test_expert_reaches_goals_with_contact():
    results = []
    for seed in range(3):
        env, states, _, _ = expert_episode(seed=seed, steps=300)
        results.append(env.compute_reward(states[-1][:5], env.goal_state[:5], {}) == 0.0)
    assert sum(results) >= 2
    env = make()
    expert = PushTExpert()
    obs, _ = env.reset(seed=1)
    expert.reset(env, np.random.default_rng(1))
    for _ in range(30):
        obs, *_ = env.step(expert.act(env, obs))
    info = expert.episode_info()
    assert set(info) == {"expert_success", "contact_fraction", "detour_fraction"}
    assert 0.0 < info["contact_fraction"] <= 1.0 and info["detour_fraction"] == 0.0


def test_render_is_readable_whatever_the_observation_size():
    env = gym.make("lewm/PushT-v0", image_size=64, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()  # default: 256 px view, a white gap, the 256 px goal
    assert frame.shape == (256, 256 + 8 + 256, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame[::4, :256:4], obs["pixels"]) and np.array_equal(frame[::4, 264::4], obs["goal"])
    assert (frame[:, 256:264] == 255).all()
    over = gym.make("lewm/PushT-v0", image_size=64, render_mode="rgb_array", render_goal="over")
    over.reset(seed=0)
    assert over.render().shape == (256, 256, 3)
    for bad in ({"render_goal": "under"}, {"render_size": 4}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            gym.make("lewm/PushT-v0", **bad)
