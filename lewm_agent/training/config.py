"""The trainer's settings: `TrainConfig`, checked on construction (one line naming the field)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import PRESETS
from ..precision import check_precision

# Fields that may change when a run is resumed; any other change is refused.
RESUMABLE = {"steps", "eval_interval", "ckpt_interval", "log_interval", "workers", "device", "data_mode",
             "progress", "dist_timeout"}


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    preset: str = "small"
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 1e-3
    warmup_steps: int = 500
    grad_clip: float = 1.0
    sigreg_weight: float | None = None   # lambda; None: `default_sigreg_weight` of the preset
    num_projections: int = 1024
    knots: int = 17
    val_fraction: float = 0.1
    val_windows: int = 512
    eval_interval: int = 500
    ckpt_interval: int = 500
    log_interval: int = 50
    seed: int = 0
    device: str = "auto"
    data_mode: str = "auto"              # "memory", "stream", or "auto" (memory if pixels fit in 4 GiB)
    workers: int = 4                     # DataLoader workers in stream mode
    bn_batches: int = 20                 # training batches that re-estimate BatchNorm statistics (0: off)
    weights_dtype: str = "float32"       # storage of the exported model.safetensors
    precision: str = "auto"              # autocast: "auto" (bf16 where measured faster), "fp32" or "bf16"
    progress: bool = True
    dist_timeout: float = 600.0          # torchrun: seconds a rank waits for the others before failing

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.data_mode not in ("auto", "memory", "stream"):
            raise ValueError(f"data_mode: expected 'auto', 'memory' or 'stream', got {self.data_mode!r}")
        for name in ("steps", "batch_size", "eval_interval", "ckpt_interval", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        check_precision("precision", self.precision)
        if self.sigreg_weight is not None and not 0 <= self.sigreg_weight < math.inf:
            raise ValueError(f"sigreg_weight: expected a finite number >= 0, got {self.sigreg_weight}")
        if self.bn_batches < 0:
            raise ValueError(f"bn_batches: must be >= 0, got {self.bn_batches}")
        if self.batch_size < 2:
            raise ValueError("batch_size: SIGReg needs at least 2 samples per batch")
        if not 0 < self.dist_timeout < math.inf:
            raise ValueError(f"dist_timeout: expected a positive number of seconds, got {self.dist_timeout}")


def default_sigreg_weight(preset_name: str, latent_dim: int) -> float:
    """lambda when none is given. Our prediction loss sums over the D latent dimensions; the
    reference code averages over them, so its lambda = 0.09 is 0.09 * D here (17.3 for the paper's
    D = 192). The `paper` preset gets that: with 0.09 here it collapsed on one H200 (Push-T, 224 px,
    2021 steps: embedding std 0.15 at step 25 and 0.008 at the end, SIGReg stuck at 51, 4% success).
    The CPU presets keep 0.09, the value their Two-Room runs were measured with (0.09 * D there
    over-spread the latent and left CEM on a flat cost plateau)."""
    return 0.09 * latent_dim if preset_name == "paper" else 0.09
