"""stable-baselines3 drop-in use, the baseline wrappers, and the two examples that use them."""
import importlib.util
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv

from lewm_agent import LeWMAgent
from lewm_agent.planning.wrappers import GOAL_KEYS, LowDimGoalObs, PixelGoalObs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PLANNER = {"num_samples": 16, "num_iterations": 2, "num_elites": 4}
SIZE = 32


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def two_room(max_steps: int = 12) -> gym.Env:
    return gym.make("lewm/TwoRoom-v0", image_size=SIZE, max_episode_steps=max_steps)


def test_evaluate_policy_runs_the_agent_on_a_dummy_vec_env(two_room_ck):
    agent = LeWMAgent.from_pretrained(two_room_ck, "cpu", **PLANNER)
    resets = []
    reset = agent.reset
    agent.reset = lambda indices=None: (resets.append(None if indices is None else set(np.atleast_1d(indices))),
                                        reset(indices))
    venv = DummyVecEnv([two_room, two_room])
    successes = []
    rewards, lengths = evaluate_policy(
        agent, venv, n_eval_episodes=4, return_episode_rewards=True, warn=False,
        callback=lambda local, _: local["done"] and successes.append(local["info"]["is_success"]))
    assert len(rewards) == len(lengths) == len(successes) == 4
    assert all(1 <= n <= 12 for n in lengths)
    # Sparse reward: -1 per step until success, 0 on the success step.
    for r, n, ok in zip(rewards, lengths, successes):
        assert r == -(n - 1 if ok else n)
    # SB3's first episode_start (all True) and every later done reach the agent as per-env resets.
    assert resets[0] == {0, 1}
    assert set().union(*(r for r in resets[1:] if r)) == {0, 1}


def test_low_dim_wrapper_is_a_goal_env_her_accepts(two_room_ck):
    env = LowDimGoalObs(two_room())
    assert set(env.observation_space.spaces) == set(GOAL_KEYS)
    check_env(env, warn=False)  # includes the GoalEnv check of the vectorised compute_reward
    obs, _ = env.reset(seed=0)
    assert set(obs) == set(GOAL_KEYS) and obs["observation"].dtype == np.float32
    batch = {k: np.stack([v, v]) for k, v in two_room().reset(seed=0)[0].items()}
    np.testing.assert_array_equal(LowDimGoalObs.transform(batch)["desired_goal"][1], obs["desired_goal"])
    reward = env.compute_reward(np.stack([obs["desired_goal"], obs["desired_goal"] + 100]),
                                np.stack([obs["desired_goal"]] * 2), {})
    np.testing.assert_array_equal(reward, [0.0, -1.0])

    from stable_baselines3 import SAC, HerReplayBuffer
    model = SAC("MultiInputPolicy", DummyVecEnv([lambda: LowDimGoalObs(two_room())]),
                replay_buffer_class=HerReplayBuffer, learning_starts=12, buffer_size=1000, batch_size=16, seed=0)
    model.learn(30)  # gradient steps on HER-relabelled batches once the first episode ended
    assert model._n_updates >= 1
    batch = model.replay_buffer.sample(256)
    # Relabelled goals come through the wrapper's compute_reward: nearby future goals count as reached.
    assert (batch.rewards == 0).any() and (batch.rewards == -1).any()


def test_pixel_wrapper_gives_a_channels_first_image_cnn_policy_accepts():
    env = PixelGoalObs(two_room())
    space = env.observation_space
    assert space.shape == (6, SIZE, SIZE) and space.dtype == np.uint8
    assert is_image_space(space) and is_image_space_channels_first(space)
    raw, _ = two_room().reset(seed=3)
    obs, _ = env.reset(seed=3)
    assert space.contains(obs) and space.contains(env.step(env.action_space.sample())[0])
    np.testing.assert_array_equal(obs[:3], raw["pixels"].transpose(2, 0, 1))
    np.testing.assert_array_equal(obs[3:], raw["goal"].transpose(2, 0, 1))
    batch = PixelGoalObs.transform({"pixels": np.stack([raw["pixels"]] * 2), "goal": np.stack([raw["goal"]] * 2)})
    assert batch.shape == (2, 6, SIZE, SIZE) and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[1], obs)

    compare = load_example("compare_sb3")
    with pytest.raises((AssertionError, RuntimeError, ValueError)):
        NatureCNN(space)  # why the example brings its own CNN: 32 px is too small for NatureCNN
    for size in (8, SIZE, 100):
        box = gym.spaces.Box(0, 255, (6, size, size), np.uint8)
        assert compare.SmallCNN(box)(torch.zeros(2, 6, size, size)).shape == (2, 128)
    from stable_baselines3 import PPO
    model = PPO("CnnPolicy", DummyVecEnv([lambda: PixelGoalObs(two_room())]), n_steps=32, batch_size=16, n_epochs=1,
                policy_kwargs={"features_extractor_class": compare.SmallCNN}, seed=0)
    model.learn(32)  # no VecTransposeImage needed: the image is already channels first
    assert model.num_timesteps == 32 and model.get_vec_normalize_env() is None
    assert model.predict(batch, deterministic=True)[0].shape == (2, 2)


def test_wrappers_reject_envs_without_the_keys():
    with pytest.raises(ValueError, match=r"LowDimGoalObs: expected a Dict"):
        LowDimGoalObs(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['goal'\]"):
        PixelGoalObs(_drop_goal(two_room()))
    with pytest.raises(ValueError, match=r"obs\['goal'\]: missing"):
        PixelGoalObs.transform({"pixels": np.zeros((SIZE, SIZE, 3), np.uint8)})


def _drop_goal(env: gym.Env) -> gym.Env:
    keys = [k for k in env.observation_space.spaces if k != "goal"]
    return gym.wrappers.FilterObservation(env, keys)


def test_compare_trains_baselines_and_reports_them_beside_lewm(two_room_ck, two_room_data, tmp_path, capsys):
    compare = load_example("compare_sb3")
    cfg = compare.CompareConfig(checkpoint=str(two_room_ck), data=str(two_room_data), timesteps=200, episodes=3,
                                seeds=(0, 1), goal_offset=10, budget=10, train_episode_steps=20, device="cpu",
                                planner=PLANNER, progress=False)
    report = compare.compare(cfg)
    rows = report["rows"]
    assert list(rows) == ["lewm", "random", "replay", "sac_her", "ppo_pixels"]
    assert all(r["n"] == 6 and set(r["per_seed"]) == {0, 1} for r in rows.values())  # same pairs and seeds
    assert rows["replay"]["success"] == 1.0
    for name in ("sac_her", "ppo_pixels"):
        t = report["training"][name]
        assert set(t["seconds_per_seed"]) == {0, 1} and t["seconds"] > 0 and t["timesteps_per_seed"] == 200
        assert rows[name]["seconds_per_episode"] > 0
    table = compare.comparison_table(report)
    assert "| sac_her |" in table and "200 env steps x 2 seeds" in table

    out = tmp_path / "cmp"
    assert compare.main(["--checkpoint", str(two_room_ck), "--data", str(two_room_data), "--timesteps", "100",
                         "--episodes", "2", "--seeds", "0", "--budget", "5", "--goal-offset", "10",
                         "--baselines", "sac_her", "--train-episode-steps", "20", "--num-samples", "16",
                         "--num-iterations", "2", "--num-elites", "4", "--device", "cpu", "--out", str(out)]) == 0
    saved = json.loads((out / "compare.json").read_text())
    assert list(saved["rows"]) == ["lewm", "random", "replay", "sac_her"]
    assert "| sac_her |" in (out / "compare.md").read_text()
    assert compare.main(["--checkpoint", str(two_room_ck), "--data", str(two_room_data), "--timesteps", "0"]) == 2
    assert compare.main(["--checkpoint", str(two_room_ck), "--data", str(two_room_data), "--baselines", "dqn"]) == 2
    err = capsys.readouterr().err
    assert "--timesteps: must be >= 1" in err and "--baselines: unknown ['dqn']" in err


def test_evaluate_example_runs_the_plain_loop_and_a_vector_env(two_room_ck, capsys):
    example = load_example("evaluate")
    agent = LeWMAgent.from_pretrained(two_room_ck, "cpu", **PLANNER)
    batch_sizes = []
    plan = agent.plan
    agent.plan = lambda context, *args: (batch_sizes.append(len(context)), plan(context, *args))[1]
    envs = gym.vector.SyncVectorEnv([lambda: two_room(12)] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    successes = example.run_vector(agent, envs, episodes=3, seed=0)
    assert len(successes) == 3
    assert batch_sizes[0] == 2  # both sub-envs planned in one batched call
    single = example.run_single(agent, two_room(12), episodes=2, seed=0)
    assert len(single) == 2
    assert example.main(["--checkpoint", str(two_room_ck), "--episodes", "2", "--num-envs", "2", "--max-steps", "8",
                         "--num-samples", "16", "--num-iterations", "2", "--num-elites", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "single env: success" in out and "vector env (2 sub-envs" in out
    assert example.main(["--checkpoint", str(two_room_ck), "--episodes", "0"]) == 2


def test_compare_adds_the_actor_rows_where_the_checkpoint_has_an_actor(two_room_ck, two_room_data, tmp_path, capsys):
    import shutil

    from lewm_agent.checkpoint import load_checkpoint
    from lewm_agent.planning.actor import ActorConfig, GoalActor, save_actor
    compare = load_example("compare_sb3")
    common = dict(data=str(two_room_data), timesteps=100, episodes=2, seeds=(0,), goal_offset=10, budget=5,
                  baselines=(), device="cpu", planner=PLANNER, progress=False)
    assert compare.CompareConfig(checkpoint=str(two_room_ck), **common).actor_kinds() == ()
    ck = tmp_path / "ck"
    shutil.copytree(two_room_ck, ck)
    model, meta = load_checkpoint(ck)
    save_actor(ck, GoalActor(ActorConfig(model.cfg.latent_dim, meta.planner.horizon, model.cfg.action_block_dim)),
               {"objective": "bc"})
    report = compare.compare(compare.CompareConfig(checkpoint=str(ck), **common))
    assert list(report["rows"]) == ["lewm", "random", "replay", "lewm_policy"]
    both = compare.compare(compare.CompareConfig(checkpoint=str(ck), planner_kinds=("policy", "policy+cem"), **common))
    assert list(both["rows"]) == ["lewm", "random", "replay", "lewm_policy", "lewm_policy+cem"]
    assert all(r["n"] == 2 for r in both["rows"].values())
    assert "offline, in the world model's latent" in compare.comparison_table(both)
    # Asked for where there is no actor, or an unknown kind: one line, exit 2, before any training.
    args = ["--data", str(two_room_data), "--baselines", "sac_her", "--device", "cpu"]
    assert compare.main(["--checkpoint", str(two_room_ck), "--planner-kinds", "policy", *args]) == 2
    assert compare.main(["--checkpoint", str(ck), "--planner-kinds", "mpc", *args]) == 2
    err = capsys.readouterr().err
    assert "actor" in err and "--planner-kinds: unknown ['mpc']" in err
    assert "trained sac_her" not in err
