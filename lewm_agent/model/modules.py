"""Building blocks shared by the encoder and the predictor.

- `Projector`: the paper's MLP with BatchNorm (Linear -> BatchNorm -> GELU -> Linear).
- `Attention`: multi-head self-attention on `F.scaled_dot_product_attention`.
- `Block`: pre-LN transformer block (ViT encoder).
- `AdaLNZeroBlock`: pre-LN block whose LayerNorms are modulated by a per-token condition
  (the action embedding) with zero-initialised shift/scale/gate (DiT, Peebles & Xie 2023),
  so the predictor starts as the identity on its input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]  # keys and values, each (N, heads, T, head_dim)


class Projector(nn.Module):
    """MLP(in -> hidden -> out) with BatchNorm1d; accepts any leading shape."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])  # (N, in) for BatchNorm1d
        x = self.fc2(F.gelu(self.norm(self.fc1(x))))
        return x.reshape(*lead, -1)     # (..., out)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1(x))
        x = F.dropout(x, self.dropout, self.training)
        return F.dropout(self.fc2(x), self.dropout, self.training)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool,
              dropout: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over (N, heads, T, hd); mask: bool (Tq, Tk), True = may attend.

    Without dropout and for a few tokens (the predictor's T <= history), the plain formulation
    is used on every device: PyTorch's fused kernels are built for long sequences, and a planning
    rollout holds thousands of (sample, head) rows of 3 tokens each, where they were slower on CPU
    and took most of a GPU rollout (README, Speed). Long sequences (the ViT's patches) keep the
    fused kernel, which never materializes the (Tq, Tk) score matrix.
    """
    if dropout > 0 or k.shape[-2] > 16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5           # (N, heads, Tq, Tk)
    if causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1).to(v.dtype) @ v


def rotary(positions: torch.Tensor, head_dim: int, base: float = 10_000.0) -> KV:
    """Rotary position tables (RoFormer, Su et al. 2021) for integer `positions` (T,): (cos, sin), each
    (T, head_dim). A query-key product then depends on the positions' difference only, so keys
    rotated once at their own position stay valid in a cache however the sequence grows."""
    freqs = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * freqs                     # (T, hd/2)
    angles = torch.cat([angles, angles], -1)                          # (T, hd): the halves rotate as pairs
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., T, hd) rotated by the tables of its T positions."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos.to(x.dtype) + turned * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, causal: bool, prefix: KV | None = None, last_only: bool = False,
                rope: KV | None = None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, KV]:
        """x: (N, T, dim) -> (y, (k, v) of x's tokens).

        prefix: keys/values (N, heads, P, hd) of P earlier tokens that every query sees
        (a common context computed once); last_only: only the last token's output is
        computed, the others contribute keys and values (all a planner needs in the
        predictor's final layer). rope: rotary (cos, sin) of x's positions, (T, hd), applied
        to its queries and keys (the keys returned are rotated: what a cache keeps); mask:
        an explicit bool (T, P+T) mask, True = may attend, in place of `causal`.
        """
        n, t, _ = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3x (N, heads, T, hd)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        kv = (k, v)
        if prefix is not None:
            k, v = torch.cat([prefix[0], k], 2), torch.cat([prefix[1], v], 2)  # (N, heads, P+T, hd)
        if mask is not None:
            causal = False
        elif last_only:
            q, t = q[:, :, -1:], 1  # the last token sees every key: no mask
            causal = False
        elif prefix is not None and causal:
            p = prefix[0].shape[2]
            mask = torch.arange(p + t, device=x.device) <= p + torch.arange(t, device=x.device)[:, None]
            causal = False
        drop = self.dropout if self.training else 0.0
        y = attention(q, k, v, mask, causal, drop)
        y = y.transpose(1, 2).reshape(n, t, self.heads * self.head_dim)  # (N, T, heads*hd)
        return F.dropout(self.out(y), drop, self.training), kv


class Block(nn.Module):
    """Pre-LN transformer block (bidirectional): the ViT encoder's layer."""

    def __init__(self, dim: int, heads: int, mlp: int, dropout: float = 0.0, eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, dim // heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=False)[0]
        return x + self.mlp(self.norm2(x))


class AdaLNZeroBlock(nn.Module):
    """Causal pre-LN block conditioned per token by AdaLN-zero.

    x: (N, T, dim) frame tokens; cond: (N, T, dim) action embedding of each frame's block.
    reference: the public reference's block (`ModelConfig.layer_norms="reference"`): AdaLN norms at
    eps 1e-6, and an affine LayerNorm on the modulated input of the attention and of the MLP.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, mlp: int, dropout: float = 0.0,
                 reference: bool = False):
        super().__init__()
        eps = 1e-6 if reference else 1e-5
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.attn = Attention(dim, heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.mlp = MLP(dim, mlp, dropout)
        # Only built for the reference's layout, so older checkpoints keep exactly their keys.
        self.attn_norm = nn.LayerNorm(dim) if reference else nn.Identity()
        self.mlp_norm = nn.LayerNorm(dim) if reference else nn.Identity()
        self.modulation = nn.Linear(dim, 6 * dim)
        # Zero init: every block starts as the identity (gates are 0).
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def modulate(self, cond: torch.Tensor) -> torch.Tensor:
        """The per-token shift/scale/gate of both sub-layers from the condition: (..., 6 * dim)."""
        return self.modulation(F.silu(cond))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None, prefix: KV | None = None,
                last_only: bool = False, mod: torch.Tensor | None = None, rope: KV | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, KV]:
        """Returns the block's output ((N, 1, dim) if `last_only`) and its tokens' keys/values.

        mod: `modulate(cond)` computed beforehand (a planner reuses each action's across the steps
        whose window holds it); then `cond` is not used. rope, mask: see `Attention.forward`.
        """
        mod = self.modulate(cond) if mod is None else mod
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        y, kv = self.attn(self.attn_norm(self.norm1(x) * (1 + scale1) + shift1), causal=True, prefix=prefix,
                          last_only=last_only, rope=rope, mask=mask)
        if last_only:
            x, gate1, shift2, scale2, gate2 = (z[:, -1:] for z in (x, gate1, shift2, scale2, gate2))
        x = x + gate1 * y
        return x + gate2 * self.mlp(self.mlp_norm(self.norm2(x) * (1 + scale2) + shift2)), kv
