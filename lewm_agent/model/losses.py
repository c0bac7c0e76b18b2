"""The two LeWM losses, and the collapse indicators the trainer logs.

LeWM (Maes et al., "LeWorldModel", arXiv 2603.19312) trains encoder and predictor
end-to-end with `pred_loss + lambda * sigreg_loss`; SIGReg (Balestriero & LeCun,
"LeJEPA", arXiv 2511.08544) keeps the embeddings from collapsing by pushing every 1-D
random projection towards N(0, 1).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from ..distributed import active, sum_over_ranks


def pred_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Next-embedding prediction loss (LeWM eq. 2): mean over batch and time of ||pred - target||^2.

    The squared norm sums over the latent dimension D (eq. 2's ||.||^2). (Averaging
    over D as well would make SIGReg's lambda = 0.09 D times stronger: measured on Two-Room,
    that over-spread latent space left far goals on a flat cost plateau and CEM failed.)
    No stop-gradient: the target embeddings receive gradients too.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return (pred.float() - target.float()).pow(2).sum(-1).mean()


def _global_mean(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Average a batch mean over all ranks (differentiably); returns it and the world size."""
    if active():
        world = dist.get_world_size()
        return sum_over_ranks(x) / world, world
    return x, 1


def random_directions(dim: int, num_projections: int, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """(dim, num_projections) unit vectors, uniform on the sphere."""
    a = torch.randn(dim, num_projections, device=device, generator=generator)
    return a / a.norm(dim=0, keepdim=True)


def sigreg(z: torch.Tensor, num_projections: int = 1024, knots: int = 17, *,
           generator: torch.Generator | None = None, directions: torch.Tensor | None = None,
           reduce: bool = True) -> torch.Tensor:
    """Sketched Isotropic Gaussian Regularizer (LeJEPA, arXiv 2511.08544; LeWM eq. 3).

    z: embeddings (N, D), or (T, N, D) to regularise each time step over the batch.
    Each embedding is projected on `num_projections` random unit directions (fresh on
    every call unless `directions` (D, M) is given; `generator` makes them
    reproducible). For every 1-D projection the Epps-Pulley statistic

        N * integral_{-3}^{3} |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt

    compares the empirical characteristic function phi_N with that of N(0, 1); by
    symmetry the integral is twice the trapezoid rule on `knots` points over [0, 3].
    Returns the mean over directions and time steps (a scalar, differentiable).

    Under torch.distributed the empirical characteristic function is a batch mean, so
    it is all-reduced and N is the global batch: the statistic of the global batch.
    All ranks must then draw the same directions (seed `generator` identically).
    `reduce=False`: this rank's batch alone (e.g. validation on one rank).
    """
    if z.dim() == 2:
        z = z.unsqueeze(0)                                   # (1, N, D)
    if z.dim() != 3:
        raise ValueError(f"sigreg: z must be (N, D) or (T, N, D), got shape {tuple(z.shape)}")
    if z.shape[1] < 2:
        raise ValueError(f"sigreg: needs a batch of at least 2 embeddings, got N={z.shape[1]}")
    if knots < 2:
        raise ValueError(f"sigreg: knots must be >= 2, got {knots}")
    with torch.autocast(device_type=z.device.type, enabled=False):  # cos/sin need fp32
        z = z.float()
        if directions is None:
            directions = random_directions(z.shape[-1], num_projections, z.device, generator)
        t = torch.linspace(0.0, 3.0, knots, device=z.device)              # (K,)
        phi = torch.exp(-0.5 * t * t)                                      # N(0,1) char. function
        dt = 3.0 / (knots - 1)
        trapezoid = torch.full((knots,), 2.0 * dt, device=z.device)       # doubled: [-3, 3]
        trapezoid[[0, -1]] = dt
        weights = trapezoid * phi                                          # (K,)

        x = (z @ directions.to(z.device, torch.float32)).unsqueeze(-1) * t  # (T, N, M, K)
        ecf = torch.stack([x.cos().mean(1), x.sin().mean(1)])            # (2, T, M, K) batch means
        ecf, world = _global_mean(ecf) if reduce else (ecf, 1)
        err = (ecf[0] - phi).square() + ecf[1].square()                  # (T, M, K)
        statistic = (err @ weights) * (z.shape[1] * world)               # (T, M)
    return statistic.mean()


@torch.no_grad()
def embedding_stats(z: torch.Tensor) -> dict[str, float]:
    """Collapse indicators of embeddings z (N, D).

    `emb_std`: mean per-dimension std (-> 0 under collapse; ~1 when SIGReg is satisfied).
    `emb_rank`: effective rank exp(H(singular values / sum)) (Roy & Vetterli 2007), in [1, D].
    """
    z = z.reshape(-1, z.shape[-1]).float()
    zc = z - z.mean(0)
    s = torch.linalg.svdvals(zc)
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return {"emb_std": float(z.std(0).mean()), "emb_rank": float(math.exp(float(entropy)))}
