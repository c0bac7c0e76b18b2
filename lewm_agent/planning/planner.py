"""Cross-entropy method over action-block sequences, batched over envs and samples.

One `cost_fn` call per CEM iteration evaluates all S candidates of all B envs; the loop
body has no host-device synchronisation (no `.item()`, no data-dependent Python
branch), so on a GPU the whole solve is queued asynchronously; with its noise drawn
beforehand (`draw_noise`) a whole solve is captured as one CUDA graph (`cuda_graph.py`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import PlannerConfig


def colored_noise(lead: tuple[int, ...], t: int, beta: float, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """Gaussian noise (*lead, t) with power spectrum ~ 1/f^beta, scaled to unit variance per entry.

    beta = 0 is white noise; larger beta gives smoother, more persistent action sequences,
    which reach farther than white noise for the same per-step variance (iCEM, Pinneri et
    al. 2020). Built by shaping random Fourier coefficients and inverting the real FFT.
    """
    freqs = torch.fft.rfftfreq(t, device=device)                   # (F,) in cycles per step
    freqs[0] = 1.0 / t                                              # DC gets the lowest frequency's weight
    scale = freqs.pow(-beta / 2.0)
    coef = torch.randn(2, *lead, len(freqs), device=device, generator=generator) * scale
    coef[1, ..., 0] = 0.0                                            # DC and (even t) Nyquist are real
    if t % 2 == 0:
        coef[1, ..., -1] = 0.0
    x = torch.fft.irfft(torch.complex(coef[0], coef[1]), n=t)       # (*lead, t)
    # Exact per-entry variance of that construction: each interior coefficient enters twice
    # (with its conjugate) and has a real and an imaginary part, so it weighs 4; DC and Nyquist 1.
    weights = torch.full_like(scale, 4.0)
    weights[0] = 1.0
    if t % 2 == 0:
        weights[-1] = 1.0
    return x / ((weights * scale.square()).sum().sqrt() / t)


CostFn = Callable[[torch.Tensor], torch.Tensor]  # actions (B, S, H, A) -> cost (B, S)


class CEMPlanner:
    """Cross-entropy method over action plans: sample `num_samples` plans around a Gaussian,
    score them with a cost function (the world model's imagined goal distance), refit the
    Gaussian to the `num_elites` best, repeat `num_iterations` times. Works on a batch of
    problems at once (one per env) with one cost call per iteration; seeded for reproducibility.
    """

    def __init__(self, action_dim: int, cfg: PlannerConfig | None = None,
                 device: torch.device | str = "cpu", seed: int = 0, step_dim: int | None = None):
        """action_dim: A, the size of one (flattened, normalized) action block.

        step_dim: size of one env step's action inside a block (A = frameskip * step_dim);
        needed for time-correlated sampling noise (`cfg.noise_beta > 0`), which runs along
        the horizon's env steps.
        """
        self.cfg = cfg or PlannerConfig()
        self.action_dim = int(action_dim)
        self.step_dim = int(step_dim or action_dim)
        if self.action_dim % self.step_dim:
            raise ValueError(f"step_dim ({self.step_dim}) must divide action_dim ({self.action_dim})")
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.seed(seed)

    def __repr__(self) -> str:
        c = self.cfg
        return (f"CEMPlanner(action_dim={self.action_dim}, samples={c.num_samples}, iterations={c.num_iterations}, "
                f"elites={c.num_elites}, horizon={c.horizon}, std={c.std}, noise_beta={c.noise_beta}, "
                f"device={self.device.type})")

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def _noise(self, b: int, s: int, h: int) -> torch.Tensor:
        """(B, S, H, A) unit-variance sampling noise: white (the paper) or coloured along time."""
        a = self.action_dim
        if self.cfg.noise_beta == 0:
            return torch.randn(b, s, h, a, device=self.device, generator=self.generator)
        d = self.step_dim
        t = h * a // d                                                        # env steps in the horizon
        x = colored_noise((b, s, d), t, self.cfg.noise_beta, self.generator, self.device)  # (B, S, d, T)
        return x.transpose(-1, -2).reshape(b, s, h, a)                         # step-major blocks, as the data

    def draw_noise(self, batch_size: int) -> torch.Tensor:
        """The sampling noise of a whole solve, (iterations, B, S, H, A), drawn in the order `plan`
        draws it: `plan(..., noise=draw_noise(B))` gives the plan `plan(...)` gives."""
        c = self.cfg
        return torch.stack([self._noise(int(batch_size), c.num_samples, c.horizon) for _ in range(c.num_iterations)])

    @torch.no_grad()
    def plan(self, cost_fn: CostFn, batch_size: int, init_mean: torch.Tensor | None = None,
             low: torch.Tensor | None = None, high: torch.Tensor | None = None,
             noise: torch.Tensor | None = None, keep: torch.Tensor | None = None,
             return_best: bool = False) -> torch.Tensor:
        """Minimise `cost_fn` for B = `batch_size` envs at once; returns the final mean (B, H, A).

        init_mean: (B, H, A) warm start (e.g. the previous plan's tail), zeros otherwise.
        low / high: bounds broadcastable to (B, S, H, A) that samples are clipped to.
        noise: `draw_noise(B)`, drawn beforehand: the loop then touches no random generator and
        is a fixed sequence of kernels on fixed shapes, which a CUDA graph can capture.
        The mean is always candidate 0, so the current plan competes with every new sample
        for a place among the elites; std is the population std of the elites (0, not NaN,
        with a single elite).
        keep: (B, H, A) a proposal (an actor's plan) made candidate 1 of every iteration, so the
        search can refine it but never loses it. return_best: return the lowest-cost candidate
        scored in any iteration instead of the final mean: a proposal nothing beats comes back as is.
        """
        cfg = self.cfg
        b, s, h, a, k = int(batch_size), cfg.num_samples, cfg.horizon, self.action_dim, cfg.num_elites
        if init_mean is None:
            mean = torch.zeros(b, h, a, device=self.device)
        else:
            if tuple(init_mean.shape) != (b, h, a):
                raise ValueError(f"init_mean: expected (B, H, A) = {(b, h, a)}, got {tuple(init_mean.shape)}")
            mean = init_mean.to(self.device, torch.float32).clone()
        std = torch.full((b, h, a), float(cfg.std), device=self.device)
        if noise is not None and tuple(noise.shape) != (cfg.num_iterations, b, s, h, a):
            raise ValueError(f"noise: expected (iterations, B, S, H, A) = {(cfg.num_iterations, b, s, h, a)}, "
                             f"got {tuple(noise.shape)}")
        if keep is not None and (tuple(keep.shape) != (b, h, a) or s < 2):
            raise ValueError(f"keep: expected (B, H, A) = {(b, h, a)} and num_samples >= 2, got "
                             f"{tuple(keep.shape)} with {s} samples")
        best = mean.clone()
        best_cost = torch.full((b,), float("inf"), device=self.device)
        for it in range(cfg.num_iterations):
            eps = self._noise(b, s, h) if noise is None else noise[it]
            samples = mean.unsqueeze(1) + std.unsqueeze(1) * eps          # (B, S, H, A)
            samples[:, 0] = mean                                          # keep the mean as a candidate
            if keep is not None:
                samples[:, 1] = keep
            if low is not None or high is not None:
                samples = samples.clamp(min=low, max=high)
            cost = cost_fn(samples)
            if it == 0 and tuple(cost.shape) != (b, s):
                raise ValueError(f"cost_fn must return (B, S) = {(b, s)}, got {tuple(cost.shape)}")
            cost = torch.nan_to_num(cost.float(), nan=float("inf"))       # a NaN candidate is never an elite
            top = cost.topk(k, dim=1, largest=False)
            idx = top.indices                                             # (B, K), best first
            elites = samples.gather(1, idx[:, :, None, None].expand(b, k, h, a))  # (B, K, H, A)
            if return_best:  # torch.where, not a Python branch: no host synchronisation
                better = top.values[:, 0] < best_cost
                best = torch.where(better[:, None, None], elites[:, 0], best)
                best_cost = torch.where(better, top.values[:, 0], best_cost)
            mean = elites.mean(1)
            std = elites.std(1, correction=0)                             # population std
        return best if return_best else mean
