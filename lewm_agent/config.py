"""Typed, frozen configurations: the world model's architecture and the planner, and the training
defaults that follow from an architecture (window length, SIGReg weight).

`ModelConfig()` with no arguments is the paper's architecture (ViT-Tiny/14 at 224 px,
6-layer AdaLN-zero predictor, ~18M parameters). Named presets live in `PRESETS`.
Derived values (`action_block_dim`, `predictor_inner_dim`) are properties, computed in
one place; configs are never mutated after construction (use `dataclasses.replace`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

ENCODERS = ("vit", "cnn")
PREDICTOR_ATTENTION = ("window", "banded")
LAYER_NORMS = ("lewm", "reference")


def _check_types(cfg: Any) -> None:
    """ValueError naming the first field whose value is not of its declared type (a string where a
    number belongs, null, a list...), whether it came from a flag, JSON or a checkpoint's config.json.
    Sizes (int fields) must also be >= 1, floats finite."""
    for f in dataclasses.fields(cfg):
        v, kind = getattr(cfg, f.name), str(f.type)
        if kind == "int":
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 1
            expected = "an int >= 1"
        elif kind == "float":
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            expected = "a finite number"
        elif kind == "bool":
            ok, expected = isinstance(v, bool), "true or false"
        elif kind == "str":
            ok, expected = isinstance(v, str), "a string"
        else:  # tuple[int, ...]
            ok = (isinstance(v, (list, tuple)) and len(v) > 0
                  and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in v))
            expected = "a non-empty list of ints >= 1"
        if not ok:
            raise ValueError(f"{type(cfg).__name__}.{f.name}: expected {expected}, got {v!r}")


def fields_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """`cls(**d)` for any config dataclass, read from JSON: unknown keys are refused by name, JSON
    lists become tuples where the field's default is one. Every config's `from_dict`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(fields)}")
    return cls(**{k: tuple(v) if isinstance(v, list) and isinstance(fields[k].default, tuple) else v
                  for k, v in d.items()})


@dataclass(frozen=True)
class ModelConfig:
    # --- image encoder ---
    image_size: int = 224              # pixels are resized to this square size
    encoder: str = "vit"               # "vit" (CLS token) or "cnn" (small conv net, CPU presets)
    patch_size: int = 14               # vit only
    encoder_width: int = 192
    encoder_depth: int = 12            # vit only
    encoder_heads: int = 3             # vit only
    encoder_mlp: int = 768             # vit only
    cnn_channels: tuple[int, ...] = (32, 64, 128, 256)  # cnn only: one stride-2 conv each
    # cnn only: a residual block (two 3x3 convs) after each stride-2 conv but the first (at full
    # resolution it costs the most time and widens the view least). The plain net's features see ~22 px
    # of a 64 px frame, about one Push-T block, and only a linear layer joins them: enough for where
    # things are, and the block's angle never entered its latent (probe r < 0.1).
    cnn_residual: bool = False
    # --- latent and projectors (MLP with BatchNorm) ---
    latent_dim: int = 192
    projector_hidden: int = 2048
    # --- actions ---
    action_dim: int = 2                # per env step
    frameskip: int = 5                 # env steps per action block (= per model time step)
    action_hidden: int = 768           # action-block encoder MLP width
    # --- predictor: causal transformer, AdaLN-zero action conditioning ---
    history: int = 3                   # context frames the predictor sees
    predictor_depth: int = 6
    predictor_heads: int = 16
    predictor_head_dim: int = 64
    predictor_mlp: int = 2048
    dropout: float = 0.1
    # "window": each prediction re-runs the window of its last `history` frames (learned absolute
    # positions; what every checkpoint before this option records). "banded": each frame attends to
    # its last `history` frames with rotary (relative) positions, so a rollout caches keys/values.
    predictor_attention: str = "window"
    # "lewm": LayerNorms with PyTorch's eps (1e-5), as every checkpoint before this option. "reference":
    # the public reference's (stable-worldmodel) computation, so its weights import 1:1: ViT norms at
    # transformers' eps 1e-12, AdaLN norms at 1e-6, and an affine LayerNorm at the input of each
    # predictor attention and MLP (after the modulation). See interop/reference_checkpoint.py.
    layer_norms: str = "lewm"

    def __post_init__(self) -> None:
        _check_types(self)
        if self.encoder not in ENCODERS:
            raise ValueError(f"ModelConfig.encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.predictor_attention not in PREDICTOR_ATTENTION:
            raise ValueError(f"ModelConfig.predictor_attention: expected one of {PREDICTOR_ATTENTION}, "
                             f"got {self.predictor_attention!r}")
        if self.layer_norms not in LAYER_NORMS:
            raise ValueError(f"ModelConfig.layer_norms: expected one of {LAYER_NORMS}, got {self.layer_norms!r}")
        if self.predictor_attention == "banded" and self.predictor_head_dim % 2:
            raise ValueError(f"ModelConfig.predictor_head_dim: rotary positions need an even size, "
                             f"got {self.predictor_head_dim}")
        if self.encoder == "vit" and self.image_size % self.patch_size:
            raise ValueError(
                f"ModelConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.encoder == "cnn" and self.image_size % (2 ** len(self.cnn_channels)):
            raise ValueError(
                f"ModelConfig.image_size ({self.image_size}) must be divisible by 2**len(cnn_channels) "
                f"(= {2 ** len(self.cnn_channels)})")
        if self.encoder == "vit" and self.encoder_width % self.encoder_heads:
            raise ValueError("ModelConfig.encoder_width must be a multiple of encoder_heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "cnn_channels", tuple(int(c) for c in self.cnn_channels))

    @property
    def action_block_dim(self) -> int:
        """A: one action block = `frameskip` env actions, flattened."""
        return self.frameskip * self.action_dim

    @property
    def predictor_inner_dim(self) -> int:
        return self.predictor_heads * self.predictor_head_dim

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cnn_channels"] = list(self.cnn_channels)
        return d

    from_dict = classmethod(fields_from_dict)


# "cem": the search alone; "policy": the checkpoint's actor alone (one forward pass per plan);
# "policy+cem": CEM started from the actor's plan, which it keeps among its samples, with fewer iterations.
PLANNER_KINDS = ("cem", "policy", "policy+cem")


@dataclass(frozen=True)
class PlannerConfig:
    """CEM settings; the defaults are the paper's."""
    num_samples: int = 300
    num_iterations: int = 30
    num_elites: int = 30
    std: float = 1.0                   # initial std of the sampling distribution (normalized actions)
    horizon: int = 5                   # planned action blocks
    receding_horizon: int = 5          # blocks executed before replanning
    warm_start: bool = False           # start CEM from the tail of the previous plan
    noise_beta: float = 0.0            # sampling noise colour along time: 0 white (paper), 2 smooth (iCEM)
    cost: str = "final"                # latent distance to the goal of the "final" predicted frame (paper)
                                       # or the "min" over the horizon's frames (reach the goal at any step)
    probe_weight: float = 0.0          # weight of the checkpoint's cost probe (`lewm probe --cost-probe`) in the
                                       # cost: |z - g|^2 + probe_weight |P (z - g)|^2; 0 is the paper's cost

    def __post_init__(self) -> None:
        _check_types(self)
        if self.cost not in ("final", "min"):
            raise ValueError(f"PlannerConfig.cost must be 'final' or 'min', got {self.cost!r}")
        if self.num_elites > self.num_samples:
            raise ValueError(
                f"PlannerConfig.num_elites ({self.num_elites}) must be <= num_samples ({self.num_samples})")
        if self.receding_horizon > self.horizon:
            raise ValueError(
                f"PlannerConfig.receding_horizon ({self.receding_horizon}) must be <= horizon ({self.horizon})")
        if not self.std > 0:
            raise ValueError(f"PlannerConfig.std must be > 0, got {self.std}")
        if not self.probe_weight >= 0:
            raise ValueError(f"PlannerConfig.probe_weight must be >= 0, got {self.probe_weight}")
        if not 0.0 <= self.noise_beta <= 4.0:
            raise ValueError(f"PlannerConfig.noise_beta must be in [0, 4], got {self.noise_beta}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    from_dict = classmethod(fields_from_dict)


# Named architectures. Anything not given keeps the paper default.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper: ViT-Tiny/14 at 224 px, ~18M parameters.
    "paper": {},
    # CPU preset: 64 px, small conv encoder, 3-layer predictor (~1.5M parameters), sized for
    # training on a few CPU cores (README, Speed).
    "small": dict(
        image_size=64, encoder="cnn", cnn_channels=(32, 64, 64, 128), encoder_width=256,
        latent_dim=128, projector_hidden=512, action_hidden=256,
        predictor_depth=3, predictor_heads=4, predictor_head_dim=32, predictor_mlp=512,
    ),
    # Test preset: 32 px, a few thousand parameters per layer: small enough for the test suite.
    "tiny": dict(
        image_size=32, encoder="cnn", cnn_channels=(8, 16, 32), encoder_width=64,
        latent_dim=32, projector_hidden=64, action_hidden=32,
        predictor_depth=2, predictor_heads=2, predictor_head_dim=16, predictor_mlp=64, dropout=0.0,
    ),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """`ModelConfig` of a named preset, with field overrides (e.g. the env's `action_dim`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


def sequence_frames(model_cfg: ModelConfig, asked: int | None = None, open_loop: int = 0) -> int:
    """Frames per training window (`asked`, the trainer's --sequence-frames, if given): history + 1
    for both predictors (each window's last prediction is the one a planner makes). Longer windows
    for the banded one (history + the horizon's 5, to train its roll-out past the context) cost more
    than they teach where episodes are short: on Two-Room's data 8-frame windows keep 44% of the
    episodes (27,296 window starts against 63,485), and the model retrained so planned 65.3% of the
    test pairs against 90.7% with 4-frame windows (3 x 50). `--sequence-frames` still asks for more.
    `open_loop` steps predicted past the history (the trainer's --open-loop-steps) need history + K."""
    least = model_cfg.history + max(1, open_loop)
    if asked is not None and asked < least and open_loop:
        raise ValueError(f"sequence_frames: {open_loop} open-loop steps after history={model_cfg.history} "
                         f"frames need windows of at least {least} frames, got {asked}")
    return asked if asked is not None else least


def default_sigreg_weight(preset_name: str, latent_dim: int) -> float:
    """lambda when none is given. Our prediction loss sums over the D latent dimensions; the
    reference code averages over them, so its lambda = 0.09 is 0.09 * D here (17.3 for the paper's
    D = 192). The `paper` preset gets that: with 0.09 here it collapsed on one H200 (Push-T, 224 px,
    2021 steps: embedding std 0.15 at step 25 and 0.008 at the end, SIGReg stuck at 51, 4% success).
    The CPU presets keep 0.09, the value their Two-Room runs were measured with (0.09 * D there
    over-spread the latent and left CEM on a flat cost plateau)."""
    return 0.09 * latent_dim if preset_name == "paper" else 0.09


__all__ = ["ModelConfig", "PlannerConfig", "PRESETS", "preset"]
