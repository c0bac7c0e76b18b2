"""The goal-conditioned actor: hindsight data, fitting, its tie to the weights, and the planner kinds."""
from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import DotEnv

from lewm_agent import LeWMAgent
from lewm_agent.checkpoint import load_checkpoint, save_checkpoint
from lewm_agent.cli import main
from lewm_agent.config import PlannerConfig
from lewm_agent.planning.actor import ACTOR, ActorConfig, GoalActor, load_actor, save_actor
from lewm_agent.planning.planner import CEMPlanner
from lewm_agent.training.actor_data import HindsightSet
from lewm_agent.training.actor_fit import FitSettings, fit_actor, imagined_cost

# ------------------------------------------------------- a synthetic world
# A point moved by 2-D actions, FS env steps per block, seen through a fixed linear latent: the
# right action towards a goal is known (its direction), and a toy "world model" imagines exactly.
FS, SPEED = 2, 0.05
LATENT = np.array([[1.0, 0.0, 0.5, -0.3], [0.0, 1.0, -0.4, 0.6]], np.float32)  # position (2) -> latent (4)


def point_world(rng: np.random.Generator, episodes: int, length: int = 60) -> HindsightSet:
    """Random smooth-action episodes of the point, as latents and actions (the data's "expert")."""
    zs, acts = [], []
    for _ in range(episodes):
        pos, a = rng.uniform(0.2, 0.8, 2), rng.uniform(-1, 1, 2)
        path, actions = [pos.copy()], []
        for _ in range(length - 1):
            a = np.clip(0.8 * a + 0.5 * rng.normal(size=2), -1, 1)
            pos = pos + SPEED * a
            path.append(pos.copy())
            actions.append(a.copy())
        zs.append(np.asarray(path) @ LATENT)
        acts.append(np.vstack([actions, np.full((1, 2), np.nan)]))
    return HindsightSet(np.concatenate(zs).astype(np.float32), np.concatenate(acts).astype(np.float32),
                        np.cumsum([length] * episodes), FS)


class PointModel:
    """Exact imagination of the point world, with the world model's `rollout` interface."""

    def rollout(self, ctx: torch.Tensor, actions: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        b, s, h, _ = actions.shape
        m = torch.as_tensor(LATENT)
        pos = torch.linalg.lstsq(m.T, ctx[:, -1].T).solution.T                     # (B, 2)
        moves = actions.reshape(b, s, h, FS, 2).sum(3) * SPEED                     # (B, S, H, 2) per block
        return (pos[:, None, None] + moves.cumsum(2)) @ m


def reach_rate(policy, rng: np.random.Generator, n: int = 200, blocks: int = 12) -> float:
    """Share of random start/goal pairs where closed-loop blocks of `policy(pos, goal)` get within 0.05."""
    start = rng.uniform(0.3, 0.7, (n, 2))
    goal = start + rng.uniform(-0.25, 0.25, (n, 2))
    pos, reached = start.copy(), np.zeros(n, bool)
    for _ in range(blocks):
        block = policy(pos, goal)
        for s in range(FS):
            pos = pos + SPEED * np.clip(block[:, 2 * s:2 * s + 2], -1, 1)
            reached |= np.linalg.norm(pos - goal, axis=1) < 0.05
    return float(reached.mean())


@pytest.mark.parametrize("objective", ["bc", "bc+imagine"])
def test_the_actor_learns_a_synthetic_goal_reaching_task_far_above_chance(objective):
    rng = np.random.default_rng(0)
    train, val = point_world(rng, 60), point_world(rng, 10)
    s = FitSettings(objective, steps=400, batch_size=128, lr=3e-3, hidden=64, horizon=3, max_goal_blocks=6)
    actor, held = fit_actor(train, val, s, -torch.ones(2 * FS), torch.ones(2 * FS), imagined_cost(PointModel()))

    def act(pos, goal):
        with torch.no_grad():
            z, g = (torch.as_tensor(x @ LATENT, dtype=torch.float32) for x in (pos, goal))
            return actor(z, g)[:, 0].numpy()
    noise = np.random.default_rng(2)
    chance = reach_rate(lambda pos, goal: noise.uniform(-1, 1, (len(pos), 2 * FS)), np.random.default_rng(1))
    assert chance < 0.3
    assert reach_rate(act, np.random.default_rng(1)) > 0.9
    # Held out, its blocks are closer to the recorded ones than the mean action, and its imagined
    # plans end far nearer the goal than standing still.
    assert held["block_mse"] < 0.7 * held["block_mse_mean_action"]
    assert held["imagined_cost_ratio"] < 0.2 < 0.9 < held["imagined_cost_ratio_mean_action"]


def test_hindsight_examples_are_the_recorded_blocks_before_a_later_frame_of_the_same_episode():
    # The latent of row r is r itself, and its action (r, -r): every example can be read back.
    rows = np.arange(50, dtype=np.float32)
    actions = np.stack([rows, -rows], 1)
    actions[[19, 49]] = np.nan                                            # no action at an episode's last frame
    data = HindsightSet(rows[:, None], actions, np.array([20, 50]), frameskip=2)
    z, goal, blocks, mask = data.sample(np.random.default_rng(0), 500, horizon=3, max_blocks=5)
    t, g = z[:, 0].astype(int), goal[:, 0].astype(int)
    k = (g - t) // 2
    assert ((g - t) % 2 == 0).all() and k.min() == 1 and k.max() == 5
    assert ((t < 20) == (g < 20)).all()                                   # goal in the start's episode
    for i in range(len(t)):
        for j in range(min(k[i], 3)):                                     # the blocks towards the goal, as recorded
            np.testing.assert_array_equal(blocks[i, j], [t[i] + 2 * j, -t[i] - 2 * j, t[i] + 2 * j + 1,
                                                         -t[i] - 2 * j - 1])
        np.testing.assert_array_equal(mask[i], np.arange(3) < min(k[i], 3))


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



def test_the_actor_alone_skips_the_precision_measurement(trained_checkpoint, monkeypatch):
    model, meta = load_checkpoint(trained_checkpoint)
    net = GoalActor(ActorConfig(model.cfg.latent_dim, meta.planner.horizon, model.cfg.action_block_dim, 16, 1))
    monkeypatch.setattr(LeWMAgent, "_measure_precision", lambda self: pytest.fail("nothing imagined to time"))
    agent = LeWMAgent(model, meta, "cpu", actor=(net, {}), planner_kind="policy")  # precision "auto"
    obs, _ = DotEnv(terminate_on_success=False).reset(seed=0)
    assert agent.act(obs).shape == (2,)
    assert agent.precision_choice.precision == "fp32" and "actor alone" in agent.precision_choice.reason
    searched = LeWMAgent(model, meta, "cpu", actor=(net, {}), planner_kind="policy+cem")
    with pytest.raises(pytest.fail.Exception):
        searched.precision_choice  # noqa: B018  the seeded search imagines rollouts: it measures

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
    assert main(["eval", "--checkpoint", str(ck), "--data", str(two_room_data), "--planner-kind", "policy",
                 "--episodes", "1", "--seeds", "0", "--device", "cpu", "--no-progress"]) == 2
    one_line(capsys, "eval", f"{ACTOR} was trained on other weights")


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


# ------------------------------------------------------------------- CLI
def one_line(capsys, command: str, message: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"lewm {command}: error: ") and message in err, err


def test_train_policy_writes_the_actor_and_its_card_section(two_room_ck, two_room_data, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(two_room_ck, src)
    out = tmp_path / "with_actor"
    assert main(["train-policy", "--checkpoint", str(src), "--data", str(two_room_data), "--out", str(out),
                 "--objective", "bc+imagine", "--steps", "20", "--batch-size", "32", "--frames", "1500",
                 "--device", "cpu", "--no-progress"]) == 0
    assert f"wrote {out / ACTOR}: bc+imagine" in capsys.readouterr().out
    assert not (src / ACTOR).exists()                                         # --out: the source is untouched
    actor, info = load_actor(out)
    assert info["objective"] == "bc+imagine" and "--objective bc+imagine" in info["command"]
    card = (out / "README.md").read_text()
    assert "## Actor (goal-conditioned policy)" in card and "Held out" in card and "lewm train-policy" in card
    horizon = json.loads((src / "config.json").read_text())["planner"]["horizon"]
    assert f"hindsight goals 1-{horizon} action blocks ahead" in card  # the default goal range: the horizon
    for kind, says in (("policy", "the checkpoint's actor alone (objective bc+imagine)"),
                       ("policy+cem", "CEM started from the actor's plan (kept among the samples, the best "
                                      "candidate returned), 16 samples x 2 iterations")):
        report = tmp_path / kind
        assert main(["eval", "--checkpoint", str(out), "--data", str(two_room_data), "--planner-kind", kind,
                     "--episodes", "2", "--seeds", "0", "--budget", "10", "--num-samples", "16", "--num-elites", "4",
                     "--num-iterations", "6", "--no-baselines", "--device", "cpu", "--no-progress",
                     "--out", str(report)]) == 0
        assert json.loads((report / "eval.json").read_text())["planner_kind"] == kind
        assert says in (report / "eval.md").read_text()


def test_cli_bad_input_is_one_line_and_exit_2(two_room_ck, two_room_data, dot_dataset, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copytree(two_room_ck, ck)
    base = ["--steps", "5", "--device", "cpu", "--no-progress"]
    assert main(["train-policy", "--checkpoint", str(ck), "--data", str(dot_dataset), *base]) == 2
    one_line(capsys, "train-policy", "holds 'test/Dot-v0' episodes, the checkpoint is for 'lewm/TwoRoom-v0'")
    assert not (ck / ACTOR).exists()
    assert main(["train-policy", "--checkpoint", "two_room", "--data", str(two_room_data), *base]) == 2
    one_line(capsys, "train-policy", "is a shipped checkpoint")
    assert main(["train-policy", "--checkpoint", str(ck), "--data", str(two_room_data), "--imagine-weight", "2",
                 *base]) == 2
    one_line(capsys, "train-policy", "--imagine-weight: only means something with --objective")
    evaluate = ["eval", "--checkpoint", str(ck), "--data", str(two_room_data), "--episodes", "1", "--seeds", "0",
                "--device", "cpu", "--no-progress"]
    assert main([*evaluate, "--planner-kind", "policy+cem"]) == 2
    one_line(capsys, "eval", "planner_kind 'policy+cem': the checkpoint has no actor")
    assert main([*evaluate, "--planner-kind", "policy", "--card"]) == 2
    one_line(capsys, "eval", "--planner-kind policy goes under its own --card-name (e.g. eval_policy)")
    assert main([*evaluate, "--seeded-iterations", "3"]) == 2
    one_line(capsys, "eval", "--seeded-iterations: only means something with --planner-kind")
