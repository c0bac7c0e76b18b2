"""The goal-conditioned actor: its tie to the weights, and the planner kinds."""
from __future__ import annotations

import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import DotEnv

from lewm_agent import LeWMAgent
from lewm_agent.checkpoint import load_checkpoint, save_checkpoint
from lewm_agent.config import PlannerConfig
from lewm_agent.planning.actor import ActorConfig, GoalActor, load_actor, save_actor
from lewm_agent.planning.planner import CEMPlanner


# --------------------------------------------------------------- planning
def fixed_actor(plan: torch.Tensor, latent_dim: int) -> GoalActor:
    """An actor that always proposes `plan` (H, A)."""
    actor = GoalActor(ActorConfig(latent_dim, plan.shape[0], plan.shape[1], hidden=8, depth=1))
    with torch.no_grad():
        last = actor.net[-1]
        last.weight.zero_()
        last.bias.copy_(plan.reshape(-1))
    return actor.eval()


def test_a_kept_proposal_nothing_beats_comes_back_after_one_iteration():
    target = torch.tensor([[0.3, -0.2], [0.1, 0.4]])[None]                   # (B=1, H=2, A=2)
    planner = CEMPlanner(2, PlannerConfig(num_samples=16, num_iterations=1, num_elites=4, horizon=2,
                                          receding_horizon=1))

    def cost(x):
        return (x - target[:, None]).pow(2).sum((-1, -2))
    torch.testing.assert_close(planner.plan(cost, 1, init_mean=target, keep=target, return_best=True), target,
                               rtol=0, atol=0)
    assert not torch.equal(planner.plan(cost, 1, init_mean=target), target)     # the elites' mean moves off it
    seen = []
    longer = CEMPlanner(2, PlannerConfig(num_samples=16, num_iterations=3, num_elites=4, horizon=2,
                                         receding_horizon=1))
    longer.plan(lambda x: seen.append(x[:, 1].clone()) or cost(x), 1, keep=target)
    assert len(seen) == 3 and all(torch.equal(x, target) for x in seen)   # a candidate in every iteration


def test_policy_plus_cem_with_a_perfect_actor_returns_its_plan_after_one_iteration(trained_checkpoint):
    model, meta = load_checkpoint(trained_checkpoint)
    cfg = model.cfg
    plan = (0.5 * torch.randn(meta.planner.horizon, cfg.action_block_dim, generator=torch.Generator().manual_seed(0))
            ).clamp(-1, 1)
    obs, _ = DotEnv().reset(seed=0)
    with torch.no_grad():
        ctx = model.encode(torch.from_numpy(obs["pixels"])[None, None])      # (1, 1, D)
        goal = model.rollout(ctx, plan[None, None])[:, 0, -1]               # where the plan leads: its cost is 0
    actor = (fixed_actor(plan, cfg.latent_dim), {"objective": "test"})
    small = PlannerConfig(num_samples=64, num_iterations=30, num_elites=8, horizon=meta.planner.horizon,
                          receding_horizon=meta.planner.horizon)
    seeded = LeWMAgent(model, meta, "cpu", small, precision="fp32", actor=actor, planner_kind="policy+cem",
                       seeded_iterations=1)
    assert seeded.planner.cfg.num_iterations == 1
    with torch.no_grad():
        torch.testing.assert_close(seeded._plan_latent(ctx, goal, None, None)[0], plan, rtol=0, atol=0)
    # Plain CEM from the same start does not return it: the test above depends on keeping the plan.
    cem = LeWMAgent(model, meta, "cpu", PlannerConfig(**{**small.to_dict(), "num_iterations": 1}), precision="fp32")
    with torch.no_grad():
        assert not torch.equal(cem._plan_latent(ctx, goal, None, plan[None].clone())[0], plan)
    default = LeWMAgent(model, meta, "cpu", small, precision="fp32", actor=actor, planner_kind="policy+cem")
    assert default.seeded_iterations == 10                                 # a third of the planner's 30


def test_act_with_the_actor_is_batched_over_a_vector_env(trained_checkpoint, monkeypatch):
    model, meta = load_checkpoint(trained_checkpoint)
    torch.manual_seed(0)
    net = GoalActor(ActorConfig(model.cfg.latent_dim, meta.planner.horizon, model.cfg.action_block_dim, 16, 1))
    agents = [LeWMAgent(model, meta, "cpu", precision="fp32", actor=(net, {}), planner_kind="policy") for _ in range(4)]
    batched, singles = agents[0], agents[1:]
    monkeypatch.setattr(batched.planner, "plan", lambda *a, **k: pytest.fail("the actor alone runs no CEM"))
    calls = []
    propose = batched.propose
    batched.propose = lambda z, g: calls.append(len(z)) or propose(z, g)
    venv = gym.vector.SyncVectorEnv([lambda: DotEnv(terminate_on_success=False) for _ in range(3)])
    obs, _ = venv.reset(seed=4)
    envs = [DotEnv(terminate_on_success=False) for _ in range(3)]
    single_obs = [env.reset(seed=4 + i)[0] for i, env in enumerate(envs)]
    steps = 4 * model.cfg.frameskip
    for _ in range(steps):
        actions = batched.act(obs)
        assert actions.shape == (3, 2) and venv.action_space.contains(actions)
        for i, (agent, env) in enumerate(zip(singles, envs)):               # each sub-env as if alone
            own = agent.act(single_obs[i])
            np.testing.assert_allclose(actions[i], own, atol=1e-5)
            single_obs[i] = env.step(own)[0]
        obs, *_ = venv.step(actions)
    assert calls == [3] * (steps // model.cfg.frameskip)                   # one batched forward per block


def test_policy_plus_cem_acts_batched(trained_checkpoint):
    model, meta = load_checkpoint(trained_checkpoint)
    net = GoalActor(ActorConfig(model.cfg.latent_dim, meta.planner.horizon, model.cfg.action_block_dim, 16, 1))
    agent = LeWMAgent(model, meta, "cpu", PlannerConfig(num_samples=16, num_iterations=3, num_elites=4),
                      precision="fp32", actor=(net, {}), planner_kind="policy+cem")
    venv = gym.vector.SyncVectorEnv([lambda: DotEnv(terminate_on_success=False) for _ in range(2)])
    obs, _ = venv.reset(seed=0)
    solves = []
    solve = agent._solve_latent
    agent._solve_latent = lambda ctx, goal, past, init: solves.append(init.shape) or solve(ctx, goal, past, init)
    for _ in range(2 * agent.planner_cfg.receding_horizon * model.cfg.frameskip):
        actions = agent.act(obs)
        assert actions.shape == (2, 2) and venv.action_space.contains(actions)
        obs, *_ = venv.step(actions)
    # Two batched solves, each started from the actor's plans of both sub-envs.
    assert solves == [(2, agent.planner_cfg.horizon, model.cfg.action_block_dim)] * 2


# ------------------------------------------------------- the weights' tie
def with_actor(two_room_ck, tmp_path):
    """A copy of the checkpoint holding an (untrained) actor tied to its weights."""
    ck = tmp_path / "ck"
    shutil.copytree(two_room_ck, ck)
    model, meta = load_checkpoint(ck)
    save_actor(ck, GoalActor(ActorConfig(model.cfg.latent_dim, meta.planner.horizon, model.cfg.action_block_dim)),
               {"objective": "bc"})
    return ck


def test_an_actor_tied_to_other_weights_is_refused(two_room_ck, two_room_data, tmp_path, capsys):
    ck = with_actor(two_room_ck, tmp_path)
    assert LeWMAgent.from_pretrained(ck, device="cpu", planner_kind="policy").actor is not None
    model, meta = load_checkpoint(ck)
    with torch.no_grad():
        model.pos_embed.add_(0.01)
    save_checkpoint(ck, model, meta)                                           # retrained weights, the old actor
    with pytest.raises(ValueError, match="actor.safetensors was trained on other weights; retrain it"):
        LeWMAgent.from_pretrained(ck, device="cpu", planner_kind="policy+cem")
    with pytest.warns(UserWarning, match="trained on other weights; ignored"):
        assert LeWMAgent.from_pretrained(ck, device="cpu").actor is None   # CEM needs no actor


def test_the_agent_saves_its_actor_tied_to_the_weights_it_writes(two_room_ck, tmp_path):
    agent = LeWMAgent.from_pretrained(with_actor(two_room_ck, tmp_path), device="cpu", planner_kind="policy")
    agent.save(tmp_path / "saved", weights_dtype="float16")                 # other weight bytes
    again = load_actor(tmp_path / "saved")
    assert again is not None and again[1]["objective"] == "bc"
    for a, b in zip(agent.actor[0].state_dict().values(), again[0].state_dict().values()):
        torch.testing.assert_close(a, b)


def test_a_planner_kind_needs_an_actor_and_a_known_name(two_room_ck):
    with pytest.raises(ValueError, match="planner_kind 'policy': the checkpoint has no actor; train one"):
        LeWMAgent.from_pretrained(two_room_ck, device="cpu", planner_kind="policy")
    with pytest.raises(ValueError, match=r"planner_kind: expected one of \['cem', 'policy', 'policy\+cem'\]"):
        LeWMAgent.from_pretrained(two_room_ck, device="cpu", planner_kind="actor")
    with pytest.raises(ValueError, match=r"seeded_iterations: only means something with planner_kind 'policy\+cem'"):
        LeWMAgent.from_pretrained(two_room_ck, device="cpu", seeded_iterations=3)
