"""Import a checkpoint of the public reference LeWM (stable-worldmodel) as this package's model.

The reference writes its model two ways: `torch.save(module)` of the whole training module
(`<run>_object.ckpt`, read here without its classes: safe_unpickle.py) and `torch.save(
model.state_dict())` (`weights.pt` beside a Hydra `config.json`, its `save_pretrained`). Either
holds the LeWM module (keys `encoder.` a transformers ViTModel, `predictor.`, `action_encoder.`,
`projector.`, `pred_proj.`), under whatever prefix the training module put it.

The mapping is exact, not approximate: `ModelConfig.layer_norms="reference"` gives our blocks the
reference's LayerNorms, and two reference details are folded into weights, since they are linear:
its pixel normalisation (ImageNet mean/std on [0, 1] pixels; ours feeds 2x - 1 to the patch
embedding) and its action encoder's kernel-1 Conv1d before the first Linear. What has no
counterpart here (a hidden size between predictor and latent, a LayerNorm projector, a classifier
head on the ViT...) is refused with the key that holds it.

Sizes come from tensor shapes; head counts cannot, so they are read from the pickled module or the
Hydra config, else must be given. The reference stores no action statistics or bounds: those are
the caller's (the `action` column's mean/std of the training data, the env's action space).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import CheckpointMeta
from ..config import ModelConfig, PlannerConfig
from ..model.world_model import WorldModel
from . import safe_unpickle

# The reference's image transform (stable-pretraining's ToImage with ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LEWM_CHILDREN = ("encoder", "predictor", "action_encoder")
# transformers < 5 named ViT layers differently; rewritten to the current names first.
_OLD_VIT = ((r"^encoder\.layer\.(\d+)\.", r"layers.\1."), (r"\.attention\.attention\.query\.", ".attention.q_proj."),
            (r"\.attention\.attention\.key\.", ".attention.k_proj."),
            (r"\.attention\.attention\.value\.", ".attention.v_proj."),
            (r"\.attention\.output\.dense\.", ".attention.o_proj."), (r"\.intermediate\.dense\.", ".mlp.fc1."),
            (r"\.output\.dense\.", ".mlp.fc2."))
# Parts of a ViTModel that LeWM's encode never uses (it reads the last hidden state's CLS token).
_VIT_UNUSED = ("pooler.", "embeddings.mask_token")
# Env kwargs an imported model is recorded with, per env id, beside its image size: the envs here that
# can draw the reference's own pictures and step its physics (a reference Push-T model has only seen
# those pictures, and predicts pushes as its env simulated them).
REFERENCE_ENV_KWARGS: dict[str, dict[str, Any]] = {"lewm/PushT-v0": {"render_style": "reference",
                                                                     "physics": "reference"}}


def read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The LeWM tensors of a reference checkpoint (prefix stripped) and the sizes it records
    (`encoder_heads`, `predictor_heads`, `dropout`, `vit`: the ViT config's fields), from a
    `*_object.ckpt` / `.pt` file or a folder holding one (the newest `*_object.ckpt`, else one `.pt`)."""
    file = _checkpoint_file(Path(path))
    try:
        obj = safe_unpickle.load(file)
    except Exception as e:  # noqa: BLE001  torch raises many types for a foreign or torn file
        raise ValueError(f"reference {file}: not a torch.save file ({type(e).__name__}: {e})") from None
    if isinstance(obj, nn.Module):
        hit = safe_unpickle.find(obj, LEWM_CHILDREN)
        if hit is None:
            raise ValueError(f"reference {file}: no LeWM module (one with {', '.join(LEWM_CHILDREN)}) in the saved "
                             f"{type(obj).__name__}")
        return safe_unpickle.tensors(hit[1]), _sizes_of_module(hit[1])
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None  # a Lightning checkpoint nests it
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"reference {file}: expected a saved module or a state dict, got {type(obj).__name__}")
    return _strip_prefix(state, file), _sizes_of_hydra(file.parent / "config.json")


def _checkpoint_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"reference {path}: no such file or folder")
    objects = sorted(path.glob("*_object.ckpt"), key=lambda p: p.stat().st_mtime)
    if objects:
        return objects[-1]
    weights = sorted(path.glob("*.pt"))
    if len(weights) != 1:
        raise ValueError(f"reference {path}: expected a *_object.ckpt or exactly one .pt file, found "
                         f"{[p.name for p in weights] or 'none'}")
    return weights[0]


def _strip_prefix(state: dict[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
    """The keys under the LeWM module: the prefix in front of `predictor.pos_embedding`."""
    anchor = "predictor.pos_embedding"
    prefixes = {k[:-len(anchor)] for k in state if k == anchor or k.endswith("." + anchor)}
    if len(prefixes) != 1:
        raise ValueError(f"reference {file}: expected one LeWM predictor (a key ending in {anchor!r}), found "
                         f"{len(prefixes)}")
    p = prefixes.pop()
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}


def _sizes_of_module(lewm: nn.Module) -> dict[str, Any]:
    mods = lewm.__dict__["_modules"]
    vit = getattr(mods["encoder"], "config", None)
    vit = dict(vars(vit)) if vit is not None else {}
    predictor = mods["predictor"].__dict__
    return {"encoder_heads": vit.get("num_attention_heads"), "predictor_heads": predictor.get("heads"),
            "dropout": _dropout_of(mods["predictor"]), "vit": vit}


def _dropout_of(predictor: nn.Module) -> float | None:
    for m in predictor.modules():
        if "dropout" in m.__dict__ and isinstance(m.__dict__["dropout"], float):  # its Attention's rate
            return m.__dict__["dropout"]
    return None


def _sizes_of_hydra(config: Path) -> dict[str, Any]:
    """Head counts from the reference's `save_pretrained` config.json (the Hydra model tree), if any."""
    if not config.is_file():
        return {}
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            target = str(node.get("_target_", ""))
            if "num_attention_heads" in node:
                found.setdefault("encoder_heads", node["num_attention_heads"])
            if target.endswith("Predictor"):
                found.setdefault("predictor_heads", node.get("heads"))
                found.setdefault("dropout", node.get("dropout"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    try:
        walk(json.loads(config.read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"reference {config}: not valid JSON ({e})") from None
    return found


class _Keys:
    """The reference tensors not yet mapped; `take` refuses a missing key by name."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.rest = dict(state)

    def take(self, key: str, default: torch.Tensor | None = None) -> torch.Tensor:
        if key in self.rest:
            return self.rest.pop(key).float()
        if default is not None:
            return default
        raise ValueError(f"reference: missing key {key!r} (expected a LeWM state dict)")

    def has(self, key: str) -> bool:
        return key in self.rest

    def count(self, pattern: str) -> int:
        """How many layers: distinct N in keys matching `pattern` (with one (\\d+) group)."""
        return len({m.group(1) for k in self.rest if (m := re.match(pattern, k))})


def _vit_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The LeWM state with its encoder's keys in transformers' current ViTModel layout."""
    out = {}
    for k, v in state.items():
        if k.startswith("encoder."):
            inner = k[len("encoder."):]
            inner = inner[len("vit."):] if inner.startswith("vit.") else inner  # a ViT wrapped in a head model
            for pattern, repl in _OLD_VIT:
                inner = re.sub(pattern, repl, inner)
            if inner.startswith(_VIT_UNUSED):
                continue
            k = "encoder." + inner
        out[k] = v
    return out


def _encoder(keys: _Keys, heads: int, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[dict, dict]:
    """Our ViT encoder's tensors and sizes. The reference's pixel normalisation (x - mean) / std on
    [0, 1] pixels is folded into the patch embedding, which here receives 2x - 1."""
    w = keys.take("encoder.embeddings.patch_embeddings.projection.weight")       # (width, 3, p, p)
    b = keys.take("encoder.embeddings.patch_embeddings.projection.bias")
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    out = {"encoder.patch_embed.weight": w / (2 * s),
           "encoder.patch_embed.bias": b + (w * (0.5 - m) / s).sum((1, 2, 3)),
           "encoder.cls_token": keys.take("encoder.embeddings.cls_token"),
           "encoder.pos_embed": keys.take("encoder.embeddings.position_embeddings")}
    width, patch = w.shape[0], w.shape[-1]
    depth = keys.count(r"encoder\.layers\.(\d+)\.")
    for i in range(depth):
        src, dst = f"encoder.layers.{i}.", f"encoder.blocks.{i}."
        q, k, v = (keys.take(f"{src}attention.{n}_proj.weight") for n in "qkv")
        zero = torch.zeros(width)
        qb, kb, vb = (keys.take(f"{src}attention.{n}_proj.bias", zero) for n in "qkv")  # qkv_bias=False: none
        out.update({f"{dst}attn.qkv.weight": torch.cat([q, k, v]), f"{dst}attn.qkv.bias": torch.cat([qb, kb, vb])})
        for ours, theirs in (("norm1", "layernorm_before"), ("norm2", "layernorm_after"),
                             ("attn.out", "attention.o_proj"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            for p in ("weight", "bias"):
                out[f"{dst}{ours}.{p}"] = keys.take(f"{src}{theirs}.{p}")
    for p in ("weight", "bias"):
        out[f"encoder.norm.{p}"] = keys.take(f"encoder.layernorm.{p}")
    side = math.isqrt(out["encoder.pos_embed"].shape[1] - 1)
    mlp = out["encoder.blocks.0.mlp.fc1.weight"].shape[0] if depth else 4 * width
    sizes = dict(encoder="vit", image_size=side * patch, patch_size=patch, encoder_width=width, encoder_depth=depth,
                 encoder_heads=heads, encoder_mlp=mlp)
    return out, sizes


def _linear(keys: _Keys, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": keys.take(f"{src}.weight"), f"{dst}.bias": keys.take(f"{src}.bias")}


def _projector(keys: _Keys, src: str, dst: str) -> dict[str, torch.Tensor]:
    """The reference's MLP(Linear, norm, GELU, Linear) as our Projector; only a BatchNorm one maps."""
    if not keys.has(f"{src}.net.1.running_mean"):
        raise ValueError(f"reference key {src + '.net.1.running_mean'!r}: missing; lewm_agent's projectors are "
                         f"Linear-BatchNorm-GELU-Linear (the reference's norm_fn=BatchNorm1d)")
    out = {**_linear(keys, f"{src}.net.0", f"{dst}.fc1"), **_linear(keys, f"{src}.net.3", f"{dst}.fc2")}
    for p in ("weight", "bias", "running_mean", "running_var"):
        out[f"{dst}.norm.{p}"] = keys.take(f"{src}.net.1.{p}")
    out[f"{dst}.norm.num_batches_tracked"] = keys.rest.pop(f"{src}.net.1.num_batches_tracked",
                                                           torch.tensor(0)).long()
    return out


def _predictor(keys: _Keys, heads: int) -> tuple[dict, dict]:
    """Our AdaLN-zero predictor ("reference" LayerNorms) and the action encoder, whose kernel-1
    Conv1d is folded into the Linear after it (two linear maps in a row are one)."""
    pos = keys.take("predictor.pos_embedding")                                  # (1, history, D)
    d = pos.shape[-1]
    out = {"pos_embed": pos, **_linear(keys, "predictor.transformer.norm", "norm")}
    depth = keys.count(r"predictor\.transformer\.layers\.(\d+)\.")
    for i in range(depth):
        src, dst = f"predictor.transformer.layers.{i}.", f"blocks.{i}."
        qkv = keys.take(f"{src}attn.to_qkv.weight")
        inner = qkv.shape[0] // 3
        out[f"{dst}attn.qkv.weight"], out[f"{dst}attn.qkv.bias"] = qkv, torch.zeros(3 * inner)  # no bias there
        if keys.has(f"{src}attn.to_out.0.weight"):
            out.update(_linear(keys, f"{src}attn.to_out.0", f"{dst}attn.out"))
        else:  # one head as wide as the latent: the reference skips the output projection
            out[f"{dst}attn.out.weight"], out[f"{dst}attn.out.bias"] = torch.eye(d), torch.zeros(d)
        for ours, theirs in (("attn_norm", "attn.norm"), ("mlp_norm", "mlp.net.0"), ("mlp.fc1", "mlp.net.1"),
                             ("mlp.fc2", "mlp.net.4"), ("modulation", "adaLN_modulation.1")):
            out.update(_linear(keys, src + theirs, dst + ours))
    conv_w = keys.take("action_encoder.patch_embed.weight")[..., 0]
    conv_b = keys.take("action_encoder.patch_embed.bias")
    w1, b1 = keys.take("action_encoder.embed.0.weight"), keys.take("action_encoder.embed.0.bias")
    out.update({"action_encoder.0.weight": w1 @ conv_w, "action_encoder.0.bias": w1 @ conv_b + b1,
                **_linear(keys, "action_encoder.embed.2", "action_encoder.2")})
    inner = out["blocks.0.attn.qkv.weight"].shape[0] // 3 if depth else heads
    if inner % heads:
        raise ValueError(f"predictor_heads: {heads} does not divide the predictor's attention width {inner}")
    mlp = out["blocks.0.mlp.fc1.weight"].shape[0] if depth else d
    sizes = dict(latent_dim=d, history=pos.shape[1], predictor_depth=depth, predictor_heads=heads,
                 predictor_head_dim=inner // heads, predictor_mlp=mlp,
                 action_hidden=w1.shape[0])
    return out, {**sizes, "_action_block_dim": conv_w.shape[1]}


def _check_vit_config(vit: dict[str, Any]) -> None:
    """Refuse a ViT whose computation ours does not reproduce (known from a pickled module only)."""
    for name, expected in (("hidden_act", "gelu"), ("layer_norm_eps", 1e-12), ("num_channels", 3)):
        if name in vit and vit[name] != expected:
            raise ValueError(f"reference encoder.config.{name}: {vit[name]!r}; lewm_agent's ViT computes "
                             f"{name}={expected!r} only")


def _head_count(name: str, given: int | None, recorded: Any) -> int:
    heads = given if given is not None else recorded
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"{name}: the reference checkpoint does not record it (a bare state dict without its "
                         f"config.json); give it ({flag}, the paper's: encoder 3, predictor 16)")
    return heads


def to_model(state: dict[str, torch.Tensor], sizes: dict[str, Any], action_dim: int,
             encoder_heads: int | None = None, predictor_heads: int | None = None,
             pixel_mean: tuple[float, ...] = IMAGENET_MEAN, pixel_std: tuple[float, ...] = IMAGENET_STD
             ) -> WorldModel:
    """Our WorldModel (eval mode) computing what the reference LeWM of `state` computes."""
    _check_vit_config(sizes.get("vit", {}))
    if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
        raise ValueError(f"pixel_mean, pixel_std: expected 3 numbers each, std > 0, got {pixel_mean}, {pixel_std}")
    keys = _Keys(_vit_keys(state))
    enc, enc_sizes = _encoder(keys, _head_count("encoder_heads", encoder_heads, sizes.get("encoder_heads")),
                              pixel_mean, pixel_std)
    pred, pred_sizes = _predictor(keys, _head_count("predictor_heads", predictor_heads, sizes.get("predictor_heads")))
    proj = {**_projector(keys, "projector", "projector"), **_projector(keys, "pred_proj", "pred_projector")}
    if keys.rest:
        first = sorted(keys.rest)[0]
        raise ValueError(f"reference key {first!r}: no counterpart in lewm_agent's model"
                         f"{f' (and {len(keys.rest) - 1} more)' if len(keys.rest) > 1 else ''}")
    block = pred_sizes.pop("_action_block_dim")
    if block % action_dim:
        raise ValueError(f"action_dim: {action_dim} does not divide the reference's action block of {block} "
                         f"(frameskip x action_dim)")
    dropout = sizes.get("dropout")
    cfg = ModelConfig(**enc_sizes, **pred_sizes, projector_hidden=proj["projector.fc1.weight"].shape[0],
                      action_dim=action_dim, frameskip=block // action_dim,
                      dropout=dropout if isinstance(dropout, float) else 0.1, layer_norms="reference")
    model = WorldModel(cfg)
    tensors = {**enc, **pred, **proj}
    expected = model.state_dict()
    for k, v in expected.items():
        if k not in tensors:
            raise ValueError(f"reference: nothing maps to lewm_agent's {k!r} (the checkpoint is incomplete)")
        if tensors[k].shape != v.shape:
            raise ValueError(f"reference: {k!r} maps to shape {tuple(tensors[k].shape)}, expected {tuple(v.shape)} "
                             f"(inconsistent sizes in the checkpoint)")
    model.load_state_dict(tensors)
    return model.eval()


def env_kwargs_for(env_id: str | None, image_size: int, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The env kwargs an imported model's checkpoint records: with an env id, the model's image size and
    the env's reference-style pictures and physics where it has them (REFERENCE_ENV_KWARGS); `given`
    overrides."""
    if env_id is None:
        if given:
            raise ValueError("env_kwargs: recorded for an env; give env_id (--env) too")
        return {}
    import lewm_envs
    kwargs = {"image_size": image_size, **REFERENCE_ENV_KWARGS.get(env_id, {}), **(given or {})}
    lewm_envs.check_kwargs("env_kwargs (--env-kwargs)", lewm_envs.env_class(env_id), kwargs)
    return kwargs


def _bounds(env_id: str | None, low: Any, high: Any) -> tuple[Any, Any]:
    if low is not None and high is not None:
        return low, high
    if env_id is None:
        raise ValueError("action_low, action_high: the reference checkpoint stores no action bounds; give them "
                         "(--action-low/--action-high) or env_id (--env) to take them from its action space")
    import gymnasium as gym

    import lewm_envs  # noqa: F401  registers lewm/ envs
    space = gym.make(env_id).action_space
    return (space.low.tolist() if low is None else low), (space.high.tolist() if high is None else high)


def load_reference(path: str | os.PathLike, action_mean: Any = None, action_std: Any = None,
                   action_low: Any = None, action_high: Any = None, env_id: str | None = None,
                   encoder_heads: int | None = None, predictor_heads: int | None = None,
                   pixel_mean: tuple[float, ...] = IMAGENET_MEAN, pixel_std: tuple[float, ...] = IMAGENET_STD,
                   planner: PlannerConfig | None = None, env_kwargs: dict[str, Any] | None = None
                   ) -> tuple[WorldModel, CheckpointMeta]:
    """A reference LeWM checkpoint as our (model, metadata). action_mean / action_std: the per-dimension
    statistics the reference normalised its `action` column with (it does not store them); bounds
    from `action_low`/`action_high` or `env_id`'s action space; with `env_id` the checkpoint records
    the env kwargs eval plays it with (`env_kwargs_for`: Push-T in the reference's pictures and physics)."""
    if action_mean is None or action_std is None:
        raise ValueError("action_mean, action_std: the reference checkpoint stores no action statistics; give the "
                         "per-dimension mean and std of its training data's actions (--action-mean/--action-std)")
    state, sizes = read(path)
    model = to_model(state, sizes, len(action_mean), encoder_heads, predictor_heads, pixel_mean, pixel_std)
    low, high = _bounds(env_id, action_low, action_high)
    meta = CheckpointMeta(model=model.cfg, action_mean=action_mean, action_std=action_std, action_low=low,
                          action_high=high, planner=planner or PlannerConfig(), env_id=env_id,
                          env_kwargs=env_kwargs_for(env_id, model.cfg.image_size, env_kwargs),
                          training={"imported_from": str(path), "source": "stable-worldmodel LeWM",
                                    "pixel_mean": list(pixel_mean), "pixel_std": list(pixel_std)})
    return model, meta


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "REFERENCE_ENV_KWARGS", "env_kwargs_for", "read", "to_model",
           "load_reference"]
