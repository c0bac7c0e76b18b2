"""LeWorldModel: pixels -> latent (encoder + projector), latent x action -> next latent.

Time steps of the model are action blocks: frame t and frame t+1 are `frameskip` env
steps apart and the action of frame t is the block of `frameskip` env actions taken
from it (flattened, normalized), shape A = frameskip * action_dim.

The predictor sees at most `history` frames: the prediction for frame t+1 depends on
frames t-history+1..t and their actions only (a sliding window, as in training on
sub-trajectories of history+1 frames). `predict`, `rollout` and `surprise` all follow
that rule, so `rollout` equals step-by-step `predict` exactly. That is the "window" predictor
(learned absolute positions over the window); the "banded" one (banded.py) attends over a
band of `history` frames with rotary positions and keeps a key/value cache in `rollout`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from . import banded
from .encoders import build_encoder, preprocess
from .modules import AdaLNZeroBlock, Projector


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class WorldModel(nn.Module):
    """LeWM: `encode` pixels (B, T, H, W, 3) uint8 -> embeddings (B, T, D); `predict` the next
    embedding of each frame from its history and action blocks; `rollout` imagines a horizon of
    action blocks from context frames. `extra_repr` summarizes the sizes above the module tree."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        d = cfg.latent_dim
        self.encoder = build_encoder(cfg)
        self.projector = Projector(cfg.encoder_width, cfg.projector_hidden, d)
        self.action_encoder = nn.Sequential(
            nn.Linear(cfg.action_block_dim, cfg.action_hidden), nn.SiLU(), nn.Linear(cfg.action_hidden, d))
        if cfg.predictor_attention == "window":  # learned, over the window; "banded" is rotary (no parameter)
            self.pos_embed = nn.Parameter(torch.randn(1, cfg.history, d) * 0.02)
        self.blocks = nn.ModuleList(
            AdaLNZeroBlock(d, cfg.predictor_heads, cfg.predictor_head_dim, cfg.predictor_mlp, cfg.dropout,
                           reference=cfg.layer_norms == "reference")
            for _ in range(cfg.predictor_depth))
        self.norm = nn.LayerNorm(d)
        self.pred_projector = Projector(d, cfg.projector_hidden, d)

    # ------------------------------------------------------------------ encoder
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) or float (B, T, 3, H, W) in [0, 1] -> embeddings (B, T, D)."""
        _check(isinstance(pixels, torch.Tensor), f"pixels: expected a torch.Tensor, got {type(pixels).__name__}")
        _check(pixels.dim() == 5, f"pixels: expected 5 dims (B, T, H, W, 3) uint8 or (B, T, 3, H, W) float, "
                                  f"got shape {tuple(pixels.shape)}")
        if pixels.dtype == torch.uint8:
            _check(pixels.shape[-1] == 3, f"pixels: uint8 pixels must be (B, T, H, W, 3), got {tuple(pixels.shape)}")
        else:
            _check(pixels.is_floating_point(), f"pixels: expected uint8 or float, got {pixels.dtype}")
            _check(pixels.shape[2] == 3, f"pixels: float pixels must be (B, T, 3, H, W), got {tuple(pixels.shape)}")
            _check(bool(torch.isfinite(pixels).all()), "pixels: contains NaN or inf")
        b, t = pixels.shape[:2]
        x = preprocess(pixels.flatten(0, 1), self.cfg.image_size)  # (B*T, 3, S, S)
        z = self.projector(self.encoder(x))                         # (B*T, D)
        return z.view(b, t, -1)                                     # (B, T, D)

    def forward(self, pixels: torch.Tensor, actions: torch.Tensor, open_loop: int = 0) -> tuple[torch.Tensor, ...]:
        """The training computation (what DistributedDataParallel wraps): windows of pixels
        (B, T, ...) and their action blocks (B, T-1, A) -> embeddings (B, T, D) and the
        teacher-forced predictions of frames 1..T-1 (B, T-1, D); with `open_loop` = K > 0 also
        the imagined embeddings of frames history..history+K-1 (B, K, D), see `imagine_window`."""
        emb = self.encode(pixels)
        pred = self.predict(emb[:, :-1], actions)
        return (emb, pred) if open_loop == 0 else (emb, pred, self.imagine_window(emb, actions, open_loop))

    def imagine_window(self, emb: torch.Tensor, actions: torch.Tensor, k: int) -> torch.Tensor:
        """Frames history..history+k-1 of each window predicted open loop, as a planner does: from
        the first `history` embeddings, each prediction fed back as the next input. emb (B, T, D),
        actions (B, T-1, A), T >= history + k -> (B, k, D)."""
        h = self.cfg.history
        _check(emb.shape[1] >= h + k, f"open_loop: {k} steps after a context of history={h} frames need "
               f"windows of at least {h + k} frames, got {emb.shape[1]}")
        ctx_actions = actions[:, :h - 1] if h > 1 else None
        return self.rollout(emb[:, :h], actions[:, None, h - 1:h - 1 + k], ctx_actions)[:, 0]

    # ---------------------------------------------------------------- predictor
    def _trunk(self, emb: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Causal transformer over one window: (N, w, D), (N, w, A) -> hidden (N, w, D), w <= history."""
        w = emb.shape[1]
        x = emb + self.pos_embed[:, :w]
        cond = self.action_encoder(actions)  # (N, w, D)
        for block in self.blocks:
            x, _ = block(x, cond)
        return self.norm(x)

    def _next(self, shared_e: torch.Tensor, shared_mod: list[torch.Tensor], own_e: torch.Tensor,
              own_mod: list[torch.Tensor], s: int) -> torch.Tensor:
        """The prediction from one window whose first P tokens are common to the S samples of each env.

        shared_e: (B, P, D), computed once per env; own_e: (B*S, w-P, D); *_mod: per block, the
        modulation of those tokens' actions ((B, P, 6D) / (B*S, w-P, 6D)), computed once per rollout.
        Same result as `_trunk` on the concatenated window, with fewer FLOPs: the common
        tokens run at batch B, and in the last layer only the last token is computed.
        Returns (B*S, D).
        """
        p, w = shared_e.shape[1], shared_e.shape[1] + own_e.shape[1]
        x, xs = own_e + self.pos_embed[:, p:w], shared_e + self.pos_embed[:, :p]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            prefix = None
            if p:
                xs, (k, v) = block(xs, None, mod=shared_mod[i])  # the common tokens see only each other
                prefix = (k.repeat_interleave(s, 0), v.repeat_interleave(s, 0))  # (B*S, heads, P, hd)
            x, _ = block(x, None, prefix=prefix, last_only=i == last, mod=own_mod[i])
        return self.pred_projector(self.norm(x[:, -1]))

    def _check_pair(self, emb: torch.Tensor, actions: torch.Tensor) -> None:
        d, a = self.cfg.latent_dim, self.cfg.action_block_dim
        _check(emb.dim() == 3 and emb.shape[-1] == d, f"emb: expected (B, T, {d}), got {tuple(emb.shape)}")
        _check(actions.shape == (*emb.shape[:2], a),
               f"actions: expected (B, T, {a}) = {(*emb.shape[:2], a)} (action blocks of frameskip="
               f"{self.cfg.frameskip} x action_dim={self.cfg.action_dim}), got {tuple(actions.shape)}")

    def predict(self, emb: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Teacher-forced prediction: emb (B, T, D), actions (B, T, A) -> (B, T, D).

        Output t predicts the embedding of frame t+1 from frames max(0, t-history+1)..t.
        """
        self._check_pair(emb, actions)
        if self.cfg.predictor_attention == "banded":
            return self.pred_projector(banded.trunk(self, emb, actions))
        b, t, d = emb.shape
        h = self.cfg.history
        first = self.pred_projector(self._trunk(emb[:, :h], actions[:, :h]))  # (B, min(T,h), D)
        if t <= h:
            return first
        # Every later output sees exactly the h frames ending at it: one window each.
        win_e = emb.unfold(1, h, 1)[:, 1:].permute(0, 1, 3, 2).reshape(-1, h, d)      # (B*(T-h), h, D)
        win_a = actions.unfold(1, h, 1)[:, 1:].permute(0, 1, 3, 2).reshape(-1, h, actions.shape[-1])
        last = self.pred_projector(self._trunk(win_e, win_a)[:, -1]).view(b, t - h, d)  # (B, T-h, D)
        return torch.cat([first, last], dim=1)

    def rollout(self, context_emb: torch.Tensor, actions: torch.Tensor,
                context_actions: torch.Tensor | None = None) -> torch.Tensor:
        """Autoregressive imagination for planning, all candidates in one batched call.

        context_emb: (B, Tc, D) embeddings of the observed frames (the last is "now").
        context_actions: (B, Tc-1, A) the blocks executed between them (None if Tc == 1).
        actions: (B, S, H, A) candidate blocks, the first taken from the last context frame.
        Returns (B, S, H, D): predicted embeddings of the H frames that follow.
        Shape checks only (no data-dependent checks), so it never syncs with the device.
        """
        b, tc, d = context_emb.shape
        _check(actions.dim() == 4 and actions.shape[0] == b and actions.shape[-1] == self.cfg.action_block_dim,
               f"actions: expected (B={b}, S, H, A={self.cfg.action_block_dim}), got {tuple(actions.shape)}")
        _, s, horizon, a = actions.shape
        if tc > 1:
            _check(context_actions is not None and context_actions.shape == (b, tc - 1, a),
                   f"context_actions: expected (B, Tc-1, A) = {(b, tc - 1, a)}, got "
                   f"{None if context_actions is None else tuple(context_actions.shape)}")
        if self.cfg.predictor_attention == "banded":
            past = context_actions if tc > 1 else actions.new_zeros(b, 0, a)
            return banded.rollout(self, context_emb, past, actions.reshape(b * s, horizon, a), s).view(b, s, horizon, d)
        h = self.cfg.history
        keep = min(tc, h)  # older context can never enter a window
        ctx_e = context_emb[:, -keep:]                                                   # (B, keep, D)
        ctx_a = context_actions[:, tc - keep:] if keep > 1 else actions.new_zeros(b, 0, a)  # (B, keep-1, A)
        own_a = actions.reshape(b * s, horizon, a)                                       # (B*S, H, A)
        # Sequence index i: context frame if i < keep, else prediction i-keep. Frame i's action is
        # ctx_a[:, i] for i < keep-1 (executed, common to all samples), else own_a[:, i-keep+1].
        # Each block's modulation of every action, once: an action's token sits in up to `history`
        # windows, and the modulation is an eighth of a token's FLOPs in the paper's predictor.
        ctx_cond, own_cond = self.action_encoder(ctx_a), self.action_encoder(own_a)
        ctx_mod = [blk.modulate(ctx_cond) for blk in self.blocks]                        # (B, keep-1, 6D) each
        own_mod = [blk.modulate(own_cond) for blk in self.blocks]                        # (B*S, H, 6D) each
        preds: list[torch.Tensor] = []
        for k in range(horizon):
            n = keep + k
            lo = n - min(h, n)                     # the window is frames lo .. n-1
            p = max(0, min(keep - 1, n) - lo)      # its leading frames with executed actions
            own = [ctx_e[:, i].repeat_interleave(s, 0) if i < keep else preds[i - keep] for i in range(lo + p, n)]
            j0, j1 = lo + p - keep + 1, n - keep + 1                                        # own_a indices
            nxt = self._next(ctx_e[:, lo:lo + p], [m[:, lo:lo + p] for m in ctx_mod], torch.stack(own, 1),
                             [m[:, j0:j1] for m in own_mod], s)                              # (B*S, D)
            preds.append(nxt)
        return torch.stack(preds, 1).view(b, s, horizon, d)                              # (B, S, H, D)

    # ----------------------------------------------------------------- surprise
    def surprise(self, pixels: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Violation-of-expectation signal: pixels (B, T, ...), actions (B, T-1, A) -> (B, T-1).

        Entry t is the squared prediction error ||pred - z||^2 of frame t+1 given the frames
        before it (the training loss's term): high where the future is not what the model expected.
        """
        emb = self.encode(pixels)
        b, t, _ = emb.shape
        _check(t >= 2, f"pixels: surprise needs at least 2 frames, got T={t}")
        _check(actions.shape == (b, t - 1, self.cfg.action_block_dim),
               f"actions: expected (B, T-1, A) = {(b, t - 1, self.cfg.action_block_dim)}, got {tuple(actions.shape)}")
        _check(bool(torch.isfinite(actions).all()), "actions: contains NaN or inf")
        pred = self.predict(emb[:, :-1], actions.to(emb.dtype))
        return (pred - emb[:, 1:]).pow(2).sum(-1)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"encoder={c.encoder}, image_size={c.image_size}, latent_dim={c.latent_dim}, history={c.history}, "
                f"frameskip={c.frameskip}, action_dim={c.action_dim}, predictor_depth={c.predictor_depth}, "
                f"predictor_attention={c.predictor_attention}")

    def num_parameters(self) -> dict[str, int]:
        def count(*mods: nn.Module) -> int:
            return sum(p.numel() for m in mods for p in m.parameters())
        positions = self.pos_embed.numel() if self.cfg.predictor_attention == "window" else 0
        predictor = count(self.action_encoder, self.blocks, self.norm) + positions
        return {"encoder": count(self.encoder), "projectors": count(self.projector, self.pred_projector),
                "predictor": predictor, "total": count(self)}
