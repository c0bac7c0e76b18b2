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


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3x (N, heads, T, hd)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        y = y.transpose(1, 2).reshape(n, t, self.heads * self.head_dim)  # (N, T, heads*hd)
        return F.dropout(self.out(y), p, self.training)


class Block(nn.Module):
    """Pre-LN transformer block (bidirectional): the ViT encoder's layer."""

    def __init__(self, dim: int, heads: int, mlp: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim // heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=False)
        return x + self.mlp(self.norm2(x))


class AdaLNZeroBlock(nn.Module):
    """Causal pre-LN block conditioned per token by AdaLN-zero.

    x: (N, T, dim) frame tokens; cond: (N, T, dim) action embedding of each frame's block.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, mlp: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = Attention(dim, heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = MLP(dim, mlp, dropout)
        self.modulation = nn.Linear(dim, 6 * dim)
        # Zero init: every block starts as the identity (gates are 0).
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(cond)).chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, causal=True)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)
