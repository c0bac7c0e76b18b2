import pytest
import torch

from lewm_agent import sigreg
from lewm_agent.model.losses import embedding_stats, pred_loss


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def gaussian(n=512, d=32, seed=1):
    return torch.randn(n, d, generator=_gen(seed))


def test_small_for_standard_gaussian_large_for_degenerate():
    ref = float(sigreg(gaussian(), generator=_gen()))
    assert ref < 2.0
    z = gaussian()
    degenerate = {
        "constant": torch.ones_like(z) * 0.3,
        "low_rank": z[:, :2] @ torch.randn(2, 32, generator=_gen(2)) / 2 ** 0.5,
        "scaled": 3.0 * z,
        "shrunk": 0.2 * z,
        "shifted": z + 2.0,
    }
    for name, bad in degenerate.items():
        value = float(sigreg(bad, generator=_gen()))
        assert value > 10 * ref, (name, value, ref)


def test_gradients_flow_and_push_towards_gaussian():
    z = (0.2 * gaussian()).requires_grad_(True)
    loss = sigreg(z, num_projections=256, generator=_gen())
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with torch.no_grad():  # a small step against the gradient lowers the statistic
        z2 = z - 0.05 * z.grad / z.grad.norm() * z.norm()
    assert float(sigreg(z2, num_projections=256, generator=_gen())) < float(loss.detach())


def test_deterministic_with_seed_and_fresh_directions_otherwise():
    z = gaussian()
    assert float(sigreg(z, generator=_gen(5))) == float(sigreg(z, generator=_gen(5)))
    assert float(sigreg(z, generator=_gen(5))) != float(sigreg(z, generator=_gen(6)))


def test_time_axis_is_mean_over_steps():
    z = torch.stack([gaussian(seed=1), 2.0 * gaussian(seed=2), gaussian(seed=3)])  # (T, N, D)
    per_step = [float(sigreg(z[t], generator=_gen(0))) for t in range(3)]
    assert float(sigreg(z, generator=_gen(0))) == pytest.approx(sum(per_step) / 3, rel=1e-5)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(N, D\) or \(T, N, D\)"):
        sigreg(torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="at least 2"):
        sigreg(torch.randn(1, 8))


def test_pred_loss_and_collapse_indicators():
    a, b = torch.zeros(4, 3, 8), torch.ones(4, 3, 8)
    assert float(pred_loss(a, b)) == 8.0  # squared norm over D = 8, averaged over batch and time
    with pytest.raises(ValueError, match="differ"):
        pred_loss(a, b[:, :2])
    healthy = embedding_stats(gaussian(d=16))
    collapsed = embedding_stats(gaussian(d=16)[:, :1].repeat(1, 16))
    assert healthy["emb_std"] > 0.9 and healthy["emb_rank"] > 14
    assert collapsed["emb_rank"] < 1.5
