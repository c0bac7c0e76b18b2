"""The public reference implementation of LeWM (the `stable-worldmodel` package), built at our sizes.

The benchmarks time it beside `lewm_agent` in one process. Only the reference's own LeWM module,
SIGReg loss and CEM solver are imported, each from its file: the package's `__init__` also imports
its datasets, environments and policies (torchvision, lancedb, ...), which a timing does not use
and which need not import on every machine (torchvision must match the installed torch build).
Install with `pip install -e .[bench]`.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from lewm_agent import ModelConfig

PACKAGE = "stable_worldmodel"
# Sub-packages registered bare, so importing one of their files skips the package's __init__.
BARE = ("", "wm", "wm.lewm", "solver")


def missing() -> str | None:
    """None when the reference can be built here, else why not (one line)."""
    for name in (PACKAGE, "transformers", "einops", "loguru"):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            return f"the reference needs {name!r}: pip install -e .[bench]"
    try:
        from transformers import ViTModel  # noqa: F401
    except Exception as e:  # seen: a torchvision built for another torch makes transformers refuse its models
        return (f"the reference's ViT (transformers.ViTModel) does not import ({type(e).__name__}); if "
                f"`import torchvision` fails too, it does not match this torch: pip uninstall torchvision "
                f"(the benchmark does not use it)")
    return None


@functools.cache
def _modules() -> SimpleNamespace:
    """The reference's LeWM model classes, loss and CEM solver, imported without its package __init__."""
    why = missing()
    if why:
        raise RuntimeError(why)
    root = Path(importlib.util.find_spec(PACKAGE).submodule_search_locations[0])
    for sub in BARE:
        name = ".".join(filter(None, (PACKAGE, sub)))
        if name not in sys.modules:
            bare = types.ModuleType(name)
            bare.__path__ = [str(root.joinpath(*sub.split(".")) if sub else root)]
            sys.modules[name] = bare
    get = lambda sub: importlib.import_module(f"{PACKAGE}.{sub}")  # noqa: E731
    return SimpleNamespace(module=get("wm.lewm.module"), lewm=get("wm.lewm.lewm"), loss=get("wm.loss"),
                           cem=get("solver.cem"))


def build_model(cfg: ModelConfig) -> nn.Module:
    """The reference's LeWM (HF ViT encoder with CLS token, AdaLN-zero predictor, BatchNorm projectors)
    with the sizes of `cfg` (a ViT config: the reference has no CNN encoder)."""
    if cfg.encoder != "vit":
        raise ValueError(f"encoder: the reference has a ViT encoder only, got {cfg.encoder!r}")
    from transformers import ViTConfig, ViTModel
    m = _modules().module
    d = cfg.latent_dim
    encoder = ViTModel(ViTConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.encoder_width,
                                 num_hidden_layers=cfg.encoder_depth, num_attention_heads=cfg.encoder_heads,
                                 intermediate_size=cfg.encoder_mlp), add_pooling_layer=False)
    predictor = m.Predictor(num_frames=cfg.history, depth=cfg.predictor_depth, heads=cfg.predictor_heads,
                            mlp_dim=cfg.predictor_mlp, input_dim=d, hidden_dim=d, dim_head=cfg.predictor_head_dim,
                            dropout=cfg.dropout)
    action_encoder = m.Embedder(input_dim=cfg.action_block_dim, smoothed_dim=cfg.action_block_dim, emb_dim=d,
                                mlp_scale=cfg.action_hidden // d)
    projector = m.MLP(cfg.encoder_width, cfg.projector_hidden, d, norm_fn=nn.BatchNorm1d)
    pred_proj = m.MLP(d, cfg.projector_hidden, d, norm_fn=nn.BatchNorm1d)
    return _modules().lewm.LeWM(encoder, predictor, action_encoder, projector, pred_proj)


class Planner:
    """The reference's CEM solver on its model, planning from one context frame (its default
    history_len) towards a goal image for `n` envs. `solve()` is one full solve; bf16 is
    autocast around it, as for ours (its action encoder casts to float32, so bf16 weights fail).
    The solver takes the envs one at a time (its default batch_size=1): its LeWM cost broadcasts
    the goal embedding (n, 1, D) against (n, S, T, D), which fails for n > 1."""

    def __init__(self, model: nn.Module, cfg: ModelConfig, n: int, samples: int, iterations: int, elites: int,
                 horizon: int, device: torch.device, bf16: bool = False):
        import gymnasium as gym
        self.device, self.bf16 = device, bf16
        self.model = model.to(device).eval()
        self.solver = _modules().cem.CEMSolver(self.model, batch_size=1, num_samples=samples, n_steps=iterations,
                                               topk=elites, device=device, seed=0)
        box = gym.spaces.Box(-1.0, 1.0, (n, cfg.action_dim))
        self.solver.configure(action_space=box, n_envs=n,
                              config=SimpleNamespace(horizon=horizon, action_block=cfg.frameskip))
        s, gen = cfg.image_size, torch.Generator().manual_seed(0)
        self.pixels = torch.rand(n, 1, 3, s, s, generator=gen).to(device)
        self.goal = torch.rand(n, 1, 3, s, s, generator=gen).to(device)
        self.action = torch.zeros(n, 1, cfg.action_block_dim, device=device)

    def solve(self) -> torch.Tensor:
        info = {"pixels": self.pixels, "goal": self.goal, "action": self.action}  # fresh: nothing cached
        with contextlib.redirect_stdout(io.StringIO()), \
                torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            return self.solver.solve(info)["actions"]  # the solver prints its time on every call


def sigreg(num_proj: int) -> nn.Module:
    """The reference's SIGReg loss module."""
    return _modules().loss.SIGReg(num_proj=num_proj)


def train_step_fn(model: nn.Module, cfg: ModelConfig, device: torch.device, num_projections: int,
                  sigreg_weight: float = 0.09):
    """One training step of the reference's model as its LeWM recipe computes it: encode the window,
    predict frames 1..h from frames 0..h-1 and their actions, MSE + weight * its SIGReg, backward,
    clip, AdamW; bf16 autocast on CUDA (as ours). Takes float pixels (B, h+1, 3, S, S)."""
    model.to(device).train()
    reg = sigreg(num_projections).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=1e-3)

    def step(pixels: torch.Tensor, actions: torch.Tensor) -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            info = model.encode({"pixels": pixels, "action": actions})
            emb = info["emb"]
            pred = model.predict(emb[:, :-1], info["act_emb"][:, :-1])
            loss = (pred - emb[:, 1:]).pow(2).mean() + sigreg_weight * reg(emb.transpose(0, 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step
