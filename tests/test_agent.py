import gymnasium as gym
import numpy as np
import pytest
from conftest import DotEnv

from lewm_agent import PlannerConfig
from lewm_agent.planning.agent import LeWMAgent

FAST = dict(num_samples=32, num_iterations=3, num_elites=4)


@pytest.fixture
def agent(trained_checkpoint):
    return LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", seed=0, **FAST)


def test_single_and_batched_actions_are_in_the_action_space(agent):
    env = DotEnv()
    obs, _ = env.reset(seed=0)
    for _ in range(12):
        a = agent.act(obs)
        assert a.shape == (2,) and a.dtype == np.float32 and env.action_space.contains(a)
        obs, *_ = env.step(a)
    venv = gym.vector.SyncVectorEnv([DotEnv for _ in range(3)])
    obs, _ = venv.reset(seed=1)
    agent.reset()
    for _ in range(12):
        a = agent.act(obs)
        assert a.shape == (3, 2) and venv.action_space.contains(a)
        obs, *_ = venv.step(a)


def test_one_batched_plan_per_receding_horizon(agent):
    venv = gym.vector.SyncVectorEnv([lambda: DotEnv(terminate_on_success=False) for _ in range(2)])
    obs, _ = venv.reset(seed=0)
    agent.reset()
    calls = []
    solve = agent._solve
    agent._solve = lambda envs: calls.append(len(envs)) or solve(envs)
    steps_per_plan = agent.planner_cfg.receding_horizon * agent.cfg.frameskip
    for _ in range(2 * steps_per_plan):
        obs, *_ = venv.step(agent.act(obs))
    assert calls == [2, 2]  # both sub-envs in one plan, replanning every R blocks


def test_save_load_round_trip_gives_identical_actions(agent, tmp_path):
    agent.save(tmp_path / "ck")
    other = LeWMAgent.from_pretrained(tmp_path / "ck", device="cpu", seed=0)
    assert other.planner_cfg == agent.planner_cfg
    for a in (agent, other):
        a.reset()
    env1, env2 = DotEnv(), DotEnv()
    o1, _ = env1.reset(seed=3)
    o2, _ = env2.reset(seed=3)
    for _ in range(15):
        a1, a2 = agent.act(o1), other.act(o2)
        np.testing.assert_array_equal(a1, a2)
        o1, *_ = env1.step(a1)
        o2, *_ = env2.step(a2)


def test_actions_are_denormalized_and_clipped(trained_checkpoint):
    agent = LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", **FAST, std=30.0)
    obs, _ = DotEnv().reset(seed=0)
    acts = np.stack([agent.act(obs) for _ in range(agent.cfg.frameskip * agent.planner_cfg.receding_horizon)])
    assert acts.min() >= -1.0 and acts.max() <= 1.0
    assert np.isclose(np.abs(acts), 1.0).any()  # a huge std pushes plans onto the bounds


def test_episode_start_and_goal_change_clear_state(agent):
    env = DotEnv()
    obs, _ = env.reset(seed=0)
    agent.act(obs)
    assert len(agent._envs[0].queue) > 0
    agent.act(obs, episode_start=np.array([True]))
    assert len(agent._envs[0].frames) == 1  # history restarted
    obs2, _ = env.reset(seed=1)  # another goal image: a new episode
    n = len(agent.solve_seconds)
    agent.act(obs2)
    assert len(agent.solve_seconds) == n + 1 and len(agent._envs[0].frames) == 1


def test_history_and_memory_stay_bounded(trained_checkpoint):
    agent = LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", num_samples=8, num_iterations=1,
                                      num_elites=2, receding_horizon=1)
    env = DotEnv(max_steps=10_000)
    obs, _ = env.reset(seed=0)
    for _ in range(400):
        obs, *_ = env.step(agent.act(obs))
    sub = agent._envs[0]
    assert len(sub.frames) == agent.cfg.history and len(sub.blocks) == agent.cfg.history - 1
    assert len(sub.queue) <= agent.planner_cfg.receding_horizon


def test_sb3_predict_signature(agent):
    venv = gym.vector.SyncVectorEnv([DotEnv for _ in range(2)])
    obs, _ = venv.reset(seed=0)
    actions, state = agent.predict(obs, state=None, episode_start=np.array([True, True]), deterministic=True)
    assert actions.shape == (2, 2) and state is None


def test_plans_move_the_dot_towards_its_goal(trained_checkpoint):
    agent = LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", seed=0, num_samples=64,
                                      num_iterations=5, num_elites=8, receding_horizon=1)
    gains, env = [], DotEnv()
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        agent.reset()
        d0 = np.linalg.norm(env.pos - env.goal)
        for _ in range(5):  # one block
            obs, *_ = env.step(agent.act(obs))
        gains.append(d0 - np.linalg.norm(env.pos - env.goal))
    assert np.mean(gains) > 0.05  # the planned block closes distance (random actions: ~0)


@pytest.mark.parametrize("obs, message", [
    ({"pixels": np.zeros((32, 32, 3), np.uint8)}, r"obs\['goal'\]: missing"),
    ({"pixels": np.zeros((32, 32, 3), np.float32), "goal": np.zeros((32, 32, 3), np.uint8)}, "uint8"),
    ({"pixels": np.zeros((32, 32), np.uint8), "goal": np.zeros((32, 32), np.uint8)}, r"shape \(H, W, 3\)"),
    ({"pixels": np.zeros((32, 32, 3), np.uint8), "goal": np.zeros((16, 16, 3), np.uint8)}, "differs"),
    ([np.zeros((32, 32, 3), np.uint8)], "expected a dict"),
    ({"pixels": np.zeros((32, 24, 3), np.uint8), "goal": np.zeros((32, 24, 3), np.uint8)}, "square images"),
    ({"pixels": np.zeros((1, 1, 3), np.uint8), "goal": np.zeros((1, 1, 3), np.uint8)}, "at least 8 px"),
])
def test_bad_observations_raise(agent, obs, message):
    with pytest.raises(ValueError, match=message):
        agent.act(obs)


def test_changing_batch_size_needs_reset(agent):
    img = np.zeros((2, 32, 32, 3), np.uint8)
    agent.act({"pixels": img, "goal": img})
    with pytest.raises(ValueError, match="call agent.reset"):
        agent.act({"pixels": img[:1], "goal": img[:1]})
    with pytest.raises(ValueError, match="episode_start"):
        agent.act({"pixels": img, "goal": img}, episode_start=[True])


def test_planner_config_is_validated():
    with pytest.raises(ValueError, match="receding_horizon"):
        PlannerConfig(horizon=3, receding_horizon=4)
    with pytest.raises(ValueError, match="cost must be 'final' or 'min'"):
        PlannerConfig(cost="mean")


def test_min_cost_is_the_closest_predicted_frame(trained_checkpoint):
    import torch
    costs = {}
    rng = np.random.default_rng(0)
    context = rng.integers(0, 256, (2, 1, 32, 32, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    actions = torch.from_numpy(rng.normal(size=(2, 16, 5, 10)).astype(np.float32))
    for cost in ("final", "min"):
        agent = LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", precision="fp32", cost=cost, **FAST)

        def capture(cost_fn, n, init, low, high, noise=None, cost=cost):
            costs[cost] = cost_fn(actions)
            return torch.zeros(n, 5, 10)
        agent.planner.plan = capture
        agent.plan(context, goal)
    with torch.inference_mode():
        model = agent.model
        emb = model.encode(torch.from_numpy(np.concatenate([context, goal[:, None]], 1)))
        z = model.rollout(emb[:, :1], actions)                                  # (2, 16, 5, D)
        dist = (z - emb[:, 1][:, None, None]).pow(2).sum(-1)
    torch.testing.assert_close(costs["final"], dist[..., -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(costs["min"], dist.amin(-1), rtol=1e-4, atol=1e-4)
    assert (costs["min"] < costs["final"]).any()


def test_compile_modes_are_checked_and_the_cost_traces_as_one_graph(trained_checkpoint):
    """compile= takes torch.compile modes or "cudagraph" (CUDA only); the imagined cost has no
    graph break (no host sync, no data-dependent Python), which capture and compilation need."""
    import torch
    with pytest.raises(ValueError, match="compile: expected None, 'cudagraph' or a torch.compile mode"):
        LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", compile="fast")
    with pytest.raises(ValueError, match="'cudagraph' needs a CUDA device"):
        LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", compile="cudagraph")
    agent = LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", precision="fp32", **FAST)
    d, a = agent.cfg.latent_dim, agent.cfg.action_block_dim
    gen = torch.Generator().manual_seed(0)
    ctx, past = torch.randn(2, 3, d, generator=gen), torch.randn(2, 2, a, generator=gen)
    actions, goal = torch.randn(2, 8, 5, a, generator=gen), torch.randn(2, d, generator=gen)
    traced = torch.compile(agent._imagined_cost, fullgraph=True, backend="eager", dynamic=False)
    with torch.inference_mode():
        torch.testing.assert_close(traced(ctx, actions, past, goal), agent._imagined_cost(ctx, actions, past, goal))
