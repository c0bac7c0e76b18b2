import pytest
import torch

from lewm_agent import PlannerConfig
from lewm_agent.planning.planner import CEMPlanner

B, H, A = 4, 5, 3


def quadratic(target):
    def cost(actions):  # (B, S, H, A) -> (B, S)
        return (actions - target[:, None]).pow(2).sum((-1, -2))
    return cost


def test_finds_minimum_of_quadratic_for_several_envs_at_once():
    target = torch.randn(B, H, A, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)
    planner = CEMPlanner(A, PlannerConfig(), seed=0)
    plan = planner.plan(quadratic(target), B)
    assert plan.shape == (B, H, A)
    assert (plan - target).abs().max() < 0.05


def test_one_elite_gives_no_nan_and_one_call_per_iteration():
    target = torch.ones(B, H, A)
    calls = []

    def cost(actions):
        calls.append(actions.shape)
        return quadratic(target)(actions)

    cfg = PlannerConfig(num_samples=16, num_iterations=7, num_elites=1)
    plan = CEMPlanner(A, cfg).plan(cost, B)
    assert torch.isfinite(plan).all()
    assert calls == [(B, 16, H, A)] * 7  # every env and sample in one batched call


def test_elite_mean_is_the_next_candidate_zero():
    target = torch.randn(B, H, A, generator=torch.Generator().manual_seed(0))
    seen = []

    def cost(actions):
        c = quadratic(target)(actions)
        seen.append((actions.clone(), c.clone()))
        return c

    plan = CEMPlanner(A, PlannerConfig(num_samples=32, num_iterations=10, num_elites=4)).plan(cost, B)
    for (actions, c), (nxt, _) in zip(seen, seen[1:] + [(plan[:, None], None)]):
        idx = c.topk(4, dim=1, largest=False).indices
        elite_mean = torch.stack([actions[i, idx[i]].mean(0) for i in range(B)])
        torch.testing.assert_close(nxt[:, 0], elite_mean)


def test_bounds_nan_costs_and_warm_start():
    target = torch.full((B, H, A), 3.0)
    planner = CEMPlanner(A, PlannerConfig(num_samples=64, num_iterations=10, num_elites=8))
    plan = planner.plan(quadratic(target), B, low=torch.tensor(-1.0), high=torch.tensor(1.0))
    assert plan.max() <= 1.0 and plan.max() > 0.9

    def nan_cost(actions):
        c = quadratic(torch.zeros(B, H, A))(actions)
        return torch.where(actions[..., 0, 0] > 0, torch.full_like(c, float("nan")), c)
    plan = planner.plan(nan_cost, B)
    assert torch.isfinite(plan).all() and (plan[..., 0, 0] <= 0).all()

    init = torch.full((B, H, A), 0.5)
    warm = CEMPlanner(A, PlannerConfig(num_iterations=1, num_samples=8, num_elites=8, std=1e-6))
    torch.testing.assert_close(warm.plan(quadratic(target), B, init_mean=init), init, atol=1e-4, rtol=0)


def test_seeded_and_validated():
    target = torch.randn(B, H, A)
    cfg = PlannerConfig(num_samples=32, num_iterations=3, num_elites=4)
    p1 = CEMPlanner(A, cfg, seed=7).plan(quadratic(target), B)
    p2 = CEMPlanner(A, cfg, seed=7).plan(quadratic(target), B)
    p3 = CEMPlanner(A, cfg, seed=8).plan(quadratic(target), B)
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    with pytest.raises(ValueError, match="cost_fn must return"):
        CEMPlanner(A, cfg).plan(lambda a: a.sum(-1), B)
    with pytest.raises(ValueError, match="init_mean"):
        CEMPlanner(A, cfg).plan(quadratic(target), B, init_mean=torch.zeros(B, H + 1, A))
    with pytest.raises(ValueError, match="num_elites"):
        PlannerConfig(num_samples=10, num_elites=11)


def test_colored_noise_has_unit_variance_and_persistence():
    from lewm_agent.planning.planner import colored_noise
    g = torch.Generator().manual_seed(0)
    for t in (24, 25):
        x = colored_noise((4000,), t, 2.0, g, torch.device("cpu"))
        assert x.shape == (4000, t)
        assert torch.allclose(x.std(0), torch.ones(t), atol=0.06)
        lag1 = torch.corrcoef(torch.stack([x[:, 10], x[:, 11]]))[0, 1]
        assert lag1 > 0.7  # white noise would give ~0


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_time_correlated_sampling_still_minimises(beta):
    # A persistent target (each action dim constant over the 25 env steps): coloured noise is a
    # prior for such plans; it trades away fitting white, step-to-step jitter.
    per_dim = torch.randn(B, 1, 1, 2, generator=torch.Generator().manual_seed(1)).clamp(-1.5, 1.5)
    target = per_dim.expand(B, H, 5, 2).reshape(B, H, 10)
    cfg = PlannerConfig(noise_beta=beta)
    plan = CEMPlanner(10, cfg, seed=0, step_dim=2).plan(quadratic(target), B)
    err = (plan - target).abs()
    assert err.mean() < 0.05 and err.max() < 0.4
    with pytest.raises(ValueError, match="step_dim"):
        CEMPlanner(10, cfg, step_dim=3)
    with pytest.raises(ValueError, match="noise_beta"):
        PlannerConfig(noise_beta=-1)


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_noise_drawn_beforehand_gives_the_same_plan(beta):
    """What a captured CUDA graph replays: the whole solve's noise drawn first, then the loop."""
    cfg = PlannerConfig(num_samples=24, num_iterations=4, num_elites=5, noise_beta=beta)
    target = torch.randn(B, H, 2 * A)
    eager = CEMPlanner(2 * A, cfg, seed=7, step_dim=A).plan(quadratic(target), B)
    planner = CEMPlanner(2 * A, cfg, seed=7, step_dim=A)
    noise = planner.draw_noise(B)
    assert noise.shape == (4, B, 24, H, 2 * A)
    assert torch.equal(planner.plan(quadratic(target), B, noise=noise), eager)
    with pytest.raises(ValueError, match=r"noise: expected \(iterations, B, S, H, A\)"):
        planner.plan(quadratic(target), B, noise=noise[:3])
