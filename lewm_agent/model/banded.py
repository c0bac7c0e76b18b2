"""The cacheable predictor (`ModelConfig.predictor_attention="banded"`).

Every frame attends to itself and the `history - 1` frames before it (a banded causal mask),
and positions are rotary, i.e. relative. A token's keys and values therefore never change
once computed, however far the sequence grows: an imagined rollout keeps them (per layer,
the last `history - 1` tokens) and computes one new token per step, where the "window"
predictor re-runs its whole window for every prediction.

Unlike the window predictor, a deeper stack sees further back than `history` frames (each
layer widens the band by history - 1), which is why it trains on sequences longer than the
history (`TrainConfig.sequence_frames`). `rollout` equals `predict` on the sequence of the
context frames followed by the predictions, step by step.
"""
from __future__ import annotations

import torch
from torch import nn

from .modules import KV, rotary

# `model` below is a WorldModel (its cfg, action_encoder, blocks, norm, pred_projector); typed as a
# module so that this file, which world_model.py imports, imports nothing back.


def band_mask(t: int, band: int, device: torch.device) -> torch.Tensor:
    """bool (t, t): query i may attend to key j when i - band < j <= i."""
    i = torch.arange(t, device=device)
    gap = i[:, None] - i[None, :]
    return (gap >= 0) & (gap < band)


def trunk(model: nn.Module, emb: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Hidden states of a whole sequence: (N, T, D), (N, T, A) -> (N, T, D), any T."""
    t = emb.shape[1]
    rope = rotary(torch.arange(t, device=emb.device), model.cfg.predictor_head_dim)
    mask = band_mask(t, model.cfg.history, emb.device)
    x, cond = emb, model.action_encoder(actions)
    for block in model.blocks:
        x, _ = block(x, cond, rope=rope, mask=mask)
    return model.norm(x)


def _keep(kv: KV, n: int) -> KV | None:
    """The last n tokens of a cache (None when the band holds no earlier token)."""
    return (kv[0][:, :, -n:], kv[1][:, :, -n:]) if n > 0 else None


def _context_cache(model: nn.Module, ctx_e: torch.Tensor, ctx_a: torch.Tensor, s: int) -> list[KV | None]:
    """Per layer, the keys/values of the context frames before "now" (their actions were executed,
    so they are common to an env's S samples): computed at batch B, then repeated once per sample."""
    keep = model.cfg.history - 1
    if ctx_e.shape[1] == 0 or keep == 0:
        return [None] * len(model.blocks)
    t = ctx_e.shape[1]
    rope = rotary(torch.arange(t, device=ctx_e.device), model.cfg.predictor_head_dim)
    mask = band_mask(t, model.cfg.history, ctx_e.device)
    x, cond, caches = ctx_e, model.action_encoder(ctx_a), []
    for block in model.blocks:
        x, kv = block(x, cond, rope=rope, mask=mask)
        k, v = _keep(kv, keep)
        caches.append((k.repeat_interleave(s, 0), v.repeat_interleave(s, 0)))  # (B*S, heads, <=h-1, hd)
    return caches


def rollout(model: nn.Module, ctx_e: torch.Tensor, ctx_a: torch.Tensor, own_a: torch.Tensor,
            s: int) -> torch.Tensor:
    """Imagine H frames per sample with a key/value cache.

    ctx_e: (B, Tc, D) context embeddings (the last is "now"); ctx_a: (B, Tc-1, A) their executed
    blocks; own_a: (B*S, H, A) the candidates' blocks, the first taken from "now". Returns (B*S, H, D).
    """
    tc, horizon, keep = ctx_e.shape[1], own_a.shape[1], model.cfg.history - 1
    caches = _context_cache(model, ctx_e[:, :-1], ctx_a, s)
    own_cond = model.action_encoder(own_a)
    own_mod = [block.modulate(own_cond) for block in model.blocks]      # (B*S, H, 6D) each, once
    positions = torch.arange(tc - 1, tc - 1 + horizon, device=ctx_e.device)
    cos, sin = rotary(positions, model.cfg.predictor_head_dim)          # (H, hd)
    x = ctx_e[:, -1:].repeat_interleave(s, 0)                           # "now", with each sample's action
    preds: list[torch.Tensor] = []
    for k in range(horizon):
        for i, block in enumerate(model.blocks):
            x, kv = block(x, None, prefix=caches[i], mod=own_mod[i][:, k:k + 1], rope=(cos[k:k + 1], sin[k:k + 1]))
            if keep:
                both = kv if caches[i] is None else tuple(torch.cat([c, n], 2) for c, n in zip(caches[i], kv))
                caches[i] = _keep(both, keep)
        nxt = model.pred_projector(model.norm(x[:, -1]))                 # (B*S, D)
        preds.append(nxt)
        x = nxt[:, None]
    return torch.stack(preds, 1)
