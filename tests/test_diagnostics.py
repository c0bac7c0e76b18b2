import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from lewm_agent.cli import main
from lewm_agent.evaluation.diagnostics import GapRecorder, gap_stats, open_loop_stats, pair_difficulty
from lewm_agent.evaluation.oracle import _simulate, oracle_success, true_cost
from lewm_agent.evaluation.pairs import Pair, run_pairs
from lewm_agent.planning.agent import LeWMAgent

FAST = dict(num_samples=8, num_iterations=2, num_elites=2)


def pusht_state(agent, block, angle):
    return np.array([*agent, *block, angle, 0, 0, 0, 0, 0], np.float64)


def test_pair_difficulty_gives_the_hand_computed_numbers():
    pusht = gym.make("lewm/PushT-v0", image_size=32)
    starts = np.stack([pusht_state((100, 100), (200, 200), 3.0), pusht_state((0, 0), (0, 0), 0.0)])
    goals = np.stack([pusht_state((103, 104), (200, 212), -3.0), pusht_state((30, 40), (0, 0), 0.5)])
    d = pair_difficulty(pusht, starts, goals)
    assert set(d) == {"agent_travel", "block_travel", "rotation"}
    assert d["agent_travel"]["median"] == pytest.approx(27.5) and d["agent_travel"]["unit"] == "px"  # 5 and 50
    assert d["agent_travel"]["p90"] == pytest.approx(5 + 0.9 * 45)
    assert d["block_travel"]["median"] == pytest.approx(6.0)                                          # 12 and 0
    wrapped = math.degrees(2 * math.pi - 6.0)  # 3.0 -> -3.0 rad is a short turn across +-pi
    assert d["rotation"]["median"] == pytest.approx((wrapped + math.degrees(0.5)) / 2)
    assert d["rotation"]["unit"] == "deg"
    room = gym.make("lewm/TwoRoom-v0", image_size=32)
    d = pair_difficulty(room, np.array([[10.0, 10.0], [50.0, 50.0]]), np.array([[13.0, 14.0], [56.0, 58.0]]))
    assert d == {"distance": {"median": 7.5, "p90": pytest.approx(9.5), "unit": "px"}}


def test_cube_difficulty_reads_the_cube_where_the_env_does():
    pytest.importorskip("ogbench")
    env = gym.make("lewm/Cube-v0", image_size=16)
    u = env.unwrapped
    env.reset(seed=0)
    start = u.get_state()
    goal = u.goal_state
    d = type(u).pair_difficulty(start[None], goal[None])
    expected = np.linalg.norm(u._goal_from_state(goal) - u._goal_from_state(start))
    assert d["cube_travel"][1] == "m" and d["cube_travel"][0][0] == pytest.approx(expected) and expected > 0
    env.close()


def test_gap_stats_hand_computed():
    goal = np.zeros((2, 2))
    pred = np.array([[1.0, 0.0], [0.0, 2.0]])       # predicted costs 1 and 4
    realized = np.array([[2.0, 0.0], [0.0, 2.0]])   # realized costs 4 and 4
    s = gap_stats(pred, goal, realized)
    assert s["n"] == 2 and s["median_predicted"] == 2.5 and s["median_realized"] == 4.0
    assert s["median_gap"] == 1.5 and s["median_ratio"] == 2.5


class ClockEnv(gym.Env):
    """Its pixels hold the step count, so an encoder reading them and a clock predictor are exact."""

    def __init__(self, success_at: int | None = None):
        img = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
        self.observation_space = gym.spaces.Dict({"pixels": img, "goal": img})
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.success_at = success_at

    def _obs(self):
        return {"pixels": np.full((8, 8, 3), self.t, np.uint8), "goal": np.full((8, 8, 3), 200, np.uint8)}

    def reset(self, seed=None, options=None):
        self.t = int(options["state"][0])
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, False, False, {"is_success": self.t == self.success_at}


def clock_agent(two_room_ck, lag: int = 0) -> LeWMAgent:
    agent = LeWMAgent.from_pretrained(two_room_ck, "cpu", horizon=2, receding_horizon=1, **FAST)
    fs = agent.cfg.frameskip
    agent.model.encode = lambda px: px[..., 0, 0, 0].float()[..., None]           # (B, T, 1): the clock

    def rollout(ctx, actions, past=None):                                          # frame k+1 is fs*(k+1) later
        b, s, h, _ = actions.shape
        steps = fs * torch.arange(1, h + 1, dtype=torch.float32) + lag
        return (ctx[:, -1, None, None, :] + steps[None, None, :, None]).expand(b, s, h, 1)
    agent.model.rollout = rollout
    return agent


@pytest.mark.parametrize("lag", [0, 1])
def test_exploitation_gap_is_zero_exactly_when_the_model_is_exact(two_room_ck, lag):
    agent = clock_agent(two_room_ck, lag)
    gap = GapRecorder(agent)
    envs = [ClockEnv(), ClockEnv(success_at=107)]
    pairs = [Pair(np.array([0.0]), np.zeros(1)), Pair(np.array([100.0]), np.zeros(1))]
    run_pairs(gap.watch(lambda obs, active: agent.act(obs, active=active)), pairs, envs, budget=23)
    s = gap.finish()
    # env 0 plans at t = 0, 5, 10, 15, 20 (the last frame is never reached); env 1 at 100 and 105,
    # and succeeds at 107, inside its second plan
    assert s["n"] == 5 and s["unrealized"] == 2 and agent.recorder is None
    if lag == 0:
        assert s["median_gap"] == 0.0 and s["median_ratio"] == 1.0
    else:  # a model one step ahead of the truth: the frames are 1 behind its predictions, nearer the goal (200)
        assert s["median_gap"] > 0


def test_recording_changes_no_action(two_room_ck):
    runs = []
    for record in (False, True):
        agent = LeWMAgent.from_pretrained(two_room_ck, "cpu", horizon=2, receding_horizon=1, **FAST)
        agent.recorder = [] if record else None
        env = gym.make("lewm/TwoRoom-v0", image_size=32)
        obs, _ = env.reset(seed=3)
        actions = []
        for _ in range(11):
            actions.append(agent.act(obs))
            obs, *_ = env.step(actions[-1])
        runs.append((np.stack(actions), agent.recorder))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    records = runs[1][1]
    assert [i for i, _, _ in records] == [0, 0, 0] and records[0][1].shape == (agent.cfg.latent_dim,)


def test_open_loop_relative_error_is_zero_when_exact_and_one_when_nothing_moves():
    rng = np.random.default_rng(0)
    start, future = rng.normal(size=(64, 4)), rng.normal(size=(64, 3, 4))
    exact = open_loop_stats(future, future, start)
    assert exact["sq_error"] == [0.0, 0.0, 0.0] and exact["relative"] == [0.0, 0.0, 0.0]
    still = open_loop_stats(np.repeat(start[:, None], 3, 1), future, start)
    np.testing.assert_allclose(still["relative"], 1.0)
    half = open_loop_stats(start[:, None] + 0.5 * (future - start[:, None]), future, start)
    np.testing.assert_allclose(half["relative"], 0.25)


def test_true_cost_oracle_reaches_a_two_room_goal(two_room_ck):
    agent = LeWMAgent.from_pretrained(two_room_ck, "cpu", **FAST)
    env = gym.make("lewm/TwoRoom-v0", image_size=32)
    start, goal = np.array([40.0, 150.0]), np.array([80.0, 120.0])
    assert true_cost(env, np.stack([start, goal]), goal).tolist() == [50.0, 0.0]
    env.reset(options={"state": goal, "goal_state": goal})
    ends = _simulate(env, start, np.ones((10, 2), np.float32), every=5)  # 5 px per axis per step
    np.testing.assert_allclose(ends, [start + 25, start + 50])
    assert env.unwrapped.get_state().tolist() == goal.tolist()            # the env is left where it was
    ok = oracle_success(agent, [env], [Pair(start, goal)], budget=30, samples=16, iterations=2, latent=False, seed=0)
    assert ok.tolist() == [True]


def test_eval_diagnose_end_to_end(two_room_data, two_room_ck, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(two_room_ck), "--data", str(two_room_data), "--episodes", "2",
            "--seeds", "0", "--num-samples", "8", "--num-iterations", "2", "--num-elites", "2", "--horizon", "2",
            "--receding-horizon", "1", "--budget", "12", "--goal-offset", "10", "--no-baselines", "--diagnose",
            "--diagnose-pairs", "2", "--oracle-samples", "8", "--oracle-iterations", "2", "--diagnose-windows", "16",
            "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["pair_difficulty"]["distance"]["median"] > 0
    d = report["diagnostics"]
    assert d["exploitation_gap"]["n"] >= 1 and np.isfinite(d["exploitation_gap"]["median_gap"])
    ol = d["open_loop"]
    assert ol["windows"] == 16 and len(ol["relative"]) == 2 and np.isfinite(ol["relative"]).all()
    orc = d["oracle"]
    assert orc["pairs"] == 2 and 0 <= orc["sim_latent"] <= 1 and 0 <= orc["sim_true"] <= 1
    assert orc["lewm"] == report["rows"]["lewm"]["per_seed"]["0"]
    table = (out / "eval.md").read_text()
    assert "Pair difficulty (median / p90): distance" in table and "simulator + true state cost" in table
