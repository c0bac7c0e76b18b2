"""lewm/TwoRoom-v0: the Gymnasium contract, the swept wall, success, rendering and the expert."""
from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import lewm_envs  # noqa: F401  (registers the ids)
from lewm_envs import make_expert
from lewm_envs.two_room.env import (
    AGENT_COLOR,
    ARENA,
    DOOR_Y0,
    DOOR_Y1,
    WALL_X0,
    WALL_X1,
    TwoRoomEnv,
    in_solid,
    swept_path,
)
from lewm_envs.two_room.expert import TwoRoomExpert

WALL_MID = 0.5 * (WALL_X0 + WALL_X1)


def strictly_in_wall(x: float, y: float) -> bool:
    return WALL_X0 < x < WALL_X1 and not DOOR_Y0 <= y <= DOOR_Y1


def rollout(env, seed, n, rng_seed=1):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(rng_seed)
    out = [obs]
    for _ in range(n):
        obs, *_ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        out.append(obs)
    return out


# ---------------------------------------------------------------- contract
def test_check_env_and_registration():
    check_env(gym.make("lewm/TwoRoom-v0", render_mode="rgb_array").unwrapped, skip_render_check=False)
    env = gym.make("lewm/TwoRoom-v0", image_size=96, render_mode="rgb_array")
    assert env.spec.max_episode_steps == 200
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == obs["goal"].shape == (96, 96, 3) and obs["pixels"].dtype == np.uint8
    assert obs["observation"].dtype == obs["desired_goal"].dtype == np.float32
    assert env.render().shape == (256, 256 + 8 + 256, 3) and "is_success" in info  # view | goal, 256 px


def test_determinism_same_seed_same_observations():
    a = rollout(TwoRoomEnv(terminate_on_success=False), 7, 50)
    b = rollout(TwoRoomEnv(terminate_on_success=False), 7, 50)
    for oa, ob in zip(a, b):
        for k in oa:
            np.testing.assert_array_equal(oa[k], ob[k])
    c = rollout(TwoRoomEnv(terminate_on_success=False), 8, 0)
    assert not np.array_equal(a[0]["observation"], c[0]["observation"])


def test_state_save_restore_replays_exactly():
    env = TwoRoomEnv(terminate_on_success=False, speed=40.0)  # fast, so many steps hit walls
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.step(rng.uniform(-1, 1, 2).astype(np.float32))
    start, goal = env.get_state(), env.goal_state
    assert start.dtype == np.float64 and start.shape == (2,)
    actions = rng.uniform(-1.5, 1.5, (60, 2)).astype(np.float32)
    first = [env.step(a)[0] for a in actions]
    states_first = [o["observation"] for o in first]
    env2 = TwoRoomEnv(terminate_on_success=False, speed=40.0)
    env2.reset(seed=99, options={"state": start, "goal_state": goal})
    second = [env2.step(a)[0] for a in actions]
    for o1, o2 in zip(first, second):
        np.testing.assert_array_equal(o1["pixels"], o2["pixels"])
        np.testing.assert_array_equal(o1["observation"], o2["observation"])
    env.set_state(start)
    np.testing.assert_array_equal([env.step(a)[0]["observation"] for a in actions], states_first)


def test_goal_image_is_rendering_of_goal_state():
    env = TwoRoomEnv(image_size=64)
    obs, _ = env.reset(seed=5)
    np.testing.assert_array_equal(obs["goal"], env.render_state(env.goal_state))
    np.testing.assert_array_equal(obs["desired_goal"], env.goal_state.astype(np.float32))
    before = env.get_state()
    env.set_goal_state(np.array([30.0, 40.0]))
    np.testing.assert_array_equal(env.step(np.zeros(2, np.float32))[0]["goal"],
                                  env.render_state(np.array([30.0, 40.0])))
    np.testing.assert_array_equal(env.get_state(), before)


def test_bad_input_raises_value_error():
    env = TwoRoomEnv()
    env.reset(seed=0)
    for bad in ([np.nan, 0.0], [np.inf, 0.0], [0.0], [[0.0, 0.0]]):
        with pytest.raises(ValueError, match="action"):
            env.step(np.array(bad, np.float32))
    for options in ({"start": [1, 2]}, {"state": [1.0, 2.0, 3.0]}, {"goal_state": [np.nan, 2.0]},
                    {"state": [112.0, 150.0]}, {"state": [-5.0, 10.0]}, {"goal_state": [110.0, 10.0]}):
        with pytest.raises(ValueError, match="state|options"):
            env.reset(seed=0, options=options)
    with pytest.raises(ValueError, match="state"):
        env.set_state(np.array([250.0, 10.0]))
    for kwargs in ({"speed": 0}, {"speed": float("nan")}, {"image_size": 4}, {"render_mode": "human"}):
        with pytest.raises(ValueError):
            TwoRoomEnv(**kwargs)


def test_out_of_range_actions_are_clipped():
    env = TwoRoomEnv(terminate_on_success=False)
    env.reset(seed=0, options={"state": [50.0, 150.0], "goal_state": [200.0, 200.0]})
    obs = env.step(np.array([7.0, -3.0], np.float32))[0]
    np.testing.assert_allclose(obs["observation"], [55.0, 145.0])


# ---------------------------------------------------------------- the swept wall
def test_wall_blocks_at_any_speed():
    for speed in (5.0, 50.0, 500.0, 1e5):
        env = TwoRoomEnv(terminate_on_success=False, speed=speed)
        env.reset(seed=0, options={"state": [60.0, 150.0], "goal_state": [200.0, 150.0]})
        for _ in range(40):
            obs = env.step(np.array([1.0, 0.0], np.float32))[0]
        np.testing.assert_array_equal(obs["observation"], [WALL_X0, 150.0])
        # Diagonal: the straight segment would jump the wall below the door; it must slide instead.
        env.reset(seed=0, options={"state": [200.0, 200.0], "goal_state": [20.0, 200.0]})
        for _ in range(10):
            assert env.step(np.array([-1.0, -0.02], np.float32))[0]["observation"][0] >= WALL_X1


def test_random_walks_never_enter_the_wall_nor_cross_outside_the_door():
    rng = np.random.default_rng(0)
    crossings = 0
    for speed in (5.0, 37.0, 400.0, 1e6):
        env = TwoRoomEnv(terminate_on_success=False, speed=speed)
        env.reset(seed=int(rng.integers(1 << 30)))
        for _ in range(1500):
            x0, y0 = env.get_state()
            a = rng.uniform(-1.3, 1.3, 2).astype(np.float32)
            path = swept_path(x0, y0, *(np.clip(a, -1, 1).astype(np.float64) * speed))
            x1, y1 = env.step(a)[0]["observation"]
            assert np.allclose(path[-1], (x1, y1), atol=1e-4)
            assert not strictly_in_wall(x1, y1) and 0 <= x1 <= ARENA and 0 <= y1 <= ARENA
            for (ax, ay), (bx, by) in itertools.pairwise(path):
                if (ax < WALL_MID) != (bx < WALL_MID):  # this leg changes room: at the door only
                    crossings += 1
                    y_cross = ay + (by - ay) * (WALL_MID - ax) / (bx - ax)
                    assert DOOR_Y0 <= y_cross <= DOOR_Y1
                for t in np.linspace(0, 1, 33):  # no point of a leg is inside a solid
                    assert not in_solid(ax + t * (bx - ax), ay + t * (by - ay))
    assert crossings > 20  # the walks do pass the door, so the check above is exercised


def test_path_legs_around_corners_and_edges():
    # Sliding along the face past the door opening keeps the agent on its side.
    assert swept_path(100.0, 30.0, 1000.0, 100.0)[-1] == (WALL_X0, 130.0)
    # Grazing the door's corners exactly and starting on faces are handled without crossing.
    for start, d in [((WALL_X0, DOOR_Y0), (5.0, -5.0)), ((WALL_X0, DOOR_Y1), (5.0, 5.0)),
                     ((100.0, 28.0), (7.0, 7.0)), ((WALL_X0, 100.0), (3.0, -80.0)),
                     ((WALL_X1, DOOR_Y0), (-1e9, -1e9)), ((0.0, 0.0), (-5.0, -5.0))]:
        end = swept_path(*start, *d)[-1]
        assert not in_solid(*end)
        assert not strictly_in_wall(*end)


def test_door_passage_works_both_ways():
    env = TwoRoomEnv(terminate_on_success=False)
    env.reset(seed=0, options={"state": [60.0, 49.0], "goal_state": [200.0, 200.0]})
    for _ in range(20):
        obs = env.step(np.array([1.0, 0.0], np.float32))[0]
    assert obs["observation"][0] == pytest.approx(160.0) and obs["observation"][1] == 49.0
    for _ in range(20):
        obs = env.step(np.array([-1.0, 0.0], np.float32))[0]
    assert obs["observation"][0] == pytest.approx(60.0)


# ---------------------------------------------------------------- success and rendering
def test_success_within_16_px():
    env = TwoRoomEnv()
    _, info = env.reset(seed=0, options={"state": [50.0, 100.0], "goal_state": [66.0, 100.0]})
    assert info["is_success"]
    _, info = env.reset(seed=0, options={"state": [50.0, 100.0], "goal_state": [71.0, 100.0]})
    assert not info["is_success"]
    _, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], np.float32))
    assert info["is_success"] and terminated and not truncated and reward == 0.0
    env = TwoRoomEnv(terminate_on_success=False)
    env.reset(seed=0, options={"state": [50.0, 100.0], "goal_state": [71.0, 100.0]})
    assert not env.step(np.array([1.0, 0.0], np.float32))[2]
    achieved = np.array([[0.0, 0.0], [16.0, 0.0], [16.01, 0.0], [11.0, 11.0], [12.0, 11.0]])
    np.testing.assert_array_equal(env.compute_reward(achieved, np.zeros((5, 2)), {}), [0, 0, -1, 0, -1])


def test_sampled_start_and_goal_are_free_and_apart():
    env = TwoRoomEnv()
    other_room = 0
    for seed in range(300):
        obs, info = env.reset(seed=seed)
        s, g = obs["observation"], obs["desired_goal"]
        for p in (s, g):
            assert not (WALL_X0 <= p[0] <= WALL_X1) and 0 < p[1] < ARENA
        assert np.linalg.norm(s - g) > 16 and not info["is_success"]
        other_room += (s[0] < WALL_MID) != (g[0] < WALL_MID)
    assert 100 < other_room < 200  # both rooms equally likely


def test_rendering_disc_wall_and_background():
    for size in (64, 96, 224):
        env = TwoRoomEnv(image_size=size)
        obs, _ = env.reset(seed=0, options={"state": [50.0, 150.0], "goal_state": [180.0, 60.0]})
        img, k = obs["pixels"], size / ARENA
        np.testing.assert_array_equal(img[int(150 * k), int(50 * k)], AGENT_COLOR.astype(np.uint8))
        assert (img[int(150 * k), int(112 * k)] == 0).all()    # wall below the door: black
        assert (img[int(49 * k), int(112 * k)] == 255).all()   # doorway: white
        assert (img[int(200 * k), int(200 * k)] == 255).all()  # empty floor: white
        red = (img[..., 0] > 128) & (img[..., 1] < 128)
        assert abs(red.sum() - np.pi * (7 * k) ** 2) < 0.5 * np.pi * (7 * k) ** 2 + 2
        assert not np.array_equal(img, obs["goal"])


# ---------------------------------------------------------------- expert
def run_expert(env, expert, seed, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    expert.reset(env.unwrapped, np.random.default_rng(seed))
    steps, done = 0, False
    while not done:
        action = expert.act(env.unwrapped, obs)
        assert action.shape == (2,) and action.dtype == np.float32 and np.abs(action).max() <= 1
        obs, _, terminated, truncated, info = env.step(action)
        steps, done = steps + 1, terminated or truncated
    return expert.episode_info(), info["is_success"], steps


@pytest.mark.parametrize("start,goal", [((30.0, 200.0), (200.0, 210.0)), ((200.0, 20.0), (20.0, 210.0)),
                                        ((30.0, 200.0), (90.0, 20.0)), ((210.0, 210.0), (130.0, 150.0))])
def test_expert_reaches_goal_other_and_same_room(start, goal):
    env = gym.make("lewm/TwoRoom-v0")
    expert = make_expert("lewm/TwoRoom-v0", noise=0.3)
    assert isinstance(expert, TwoRoomExpert) and expert.collect_env_kwargs == {}
    for seed in range(3):
        info, success, steps = run_expert(env, expert, seed, {"state": start, "goal_state": goal})
        assert info["expert_success"] == 1.0 and success and steps < 200


def test_expert_success_rate_and_seeding():
    env = gym.make("lewm/TwoRoom-v0")
    expert = TwoRoomExpert(noise=0.3)
    results = [run_expert(env, expert, seed) for seed in range(40)]
    assert np.mean([r[0]["expert_success"] for r in results]) >= 0.9
    assert all(r[0]["expert_success"] == float(r[1]) for r in results)
    assert 0 < np.mean([r[0]["random_fraction"] for r in results]) < 0.5
    assert run_expert(env, expert, 11)[2] == results[11][2]  # same seed, same episode
    failing = TwoRoomExpert(noise=0.0, segment_prob=1.0, segment_steps=(300, 300))
    env_slow = gym.make("lewm/TwoRoom-v0", speed=0.01)
    info, success, steps = run_expert(env_slow, failing, 0, {"state": [20.0, 20.0], "goal_state": [200.0, 200.0]})
    assert info["expert_success"] == 0.0 and not success and steps == 200


def test_expert_bad_arguments():
    for kwargs in ({"noise": -1.0}, {"segment_prob": 2.0}, {"segment_steps": (0, 3)},
                   {"segment_steps": (5, 2)}, {"door_band": 20.0}):
        with pytest.raises(ValueError):
            TwoRoomExpert(**kwargs)
    with pytest.raises(RuntimeError):
        TwoRoomExpert().act(TwoRoomEnv(), {})


def test_goal_steps_poses_a_goal_the_expert_reaches():
    env = gym.make("lewm/TwoRoom-v0", image_size=32)
    obs, info = env.reset(seed=3, options={"goal_steps": 10})
    start, goal = env.unwrapped.get_state(), env.unwrapped.goal_state
    assert not info["is_success"] and 0 < np.linalg.norm(goal - start) <= 10 * 5.0 * 1.5  # 10 steps of <= 5 px
    np.testing.assert_array_equal(obs["goal"], env.unwrapped.render_state(goal))
    again, _ = env.reset(seed=3, options={"goal_steps": 10})
    np.testing.assert_array_equal(again["goal"], obs["goal"])  # reproducible from the seed
    for bad, match in (({"goal_steps": 0}, "goal_steps"), ({"goal_steps": 2.5}, "goal_steps"),
                       ({"goal_steps": 3, "goal_state": goal}, "not both"), ({"goal": 1}, "unknown key")):
        with pytest.raises(ValueError, match=match):
            env.reset(seed=0, options=bad)
