"""The trainer's settings: `TrainConfig`, checked on construction (one line naming the field)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import PRESETS, fields_from_dict
from ..flags import check_ranges, option
from ..precision import PRECISIONS, check_precision

# Fields that may change when a run is resumed; any other change is refused.
RESUMABLE = {"steps", "eval_interval", "ckpt_interval", "log_interval", "workers", "device", "data_mode",
             "max_bad_steps", "progress", "dist_timeout"}


@dataclass(frozen=True)
class TrainConfig:
    data: str = option(help="rollout file (.h5) written by `lewm collect`")
    out: str = option(help="checkpoint folder (resumed if it holds a run)")
    preset: str = option("small", choices=sorted(PRESETS))
    steps: int = option(10_000, "optimizer steps in all", low=1)
    batch_size: int = option(128, "training windows per step; under torchrun the global batch, split evenly over the "
                                  "processes", low=2)
    lr: float = option(5e-5, "peak AdamW learning rate", above=0)
    weight_decay: float = option(1e-3, "AdamW weight decay", low=0)
    warmup_steps: int = option(500, "linear learning-rate warm-up, then cosine decay to 0; one longer than "
                                    "--steps becomes a fifth of it (the run says so)", low=0)
    grad_clip: float = option(1.0, "gradient-norm clip", above=0)
    sigreg_weight: float | None = option(  # None: `default_sigreg_weight` of the preset
        None, "lambda, against the prediction loss summed over the latent dimensions (default: 0.09 x latent_dim "
              "for --preset paper, the reference's 0.09 per dimension; else 0.09)", low=0)
    num_projections: int = option(1024, "SIGReg random directions per step", low=1)
    knots: int = option(17, "SIGReg integration points on [0, 3]", low=2)
    val_fraction: float = option(0.1, "share of episodes held out for validation", low=0, below=1)
    val_windows: int = option(512, "fixed validation windows", low=1)
    eval_interval: int = option(500, "steps between validations; over half of --steps: a third of it", low=1)
    ckpt_interval: int = option(500, "steps between checkpoints (what an interruption can lose); over half of "
                                     "--steps: a third of it", low=1)
    log_interval: int = option(50, "steps between log.jsonl rows", low=1)
    seed: int = option(0, "data split, batches, SIGReg directions", low=0)
    device: str = option("auto", "auto | cpu | cuda | cuda:N | mps")
    data_mode: str = option("auto", choices=["auto", "memory", "stream"])  # auto: memory if pixels fit in 4 GiB
    workers: int = option(4, "DataLoader processes in stream mode", low=0)
    bn_batches: int = option(20, "training batches that re-estimate BatchNorm statistics before validating and "
                                 "saving (0: off)", low=0)
    weights_dtype: str = option("float32", choices=["float32", "float16", "bfloat16"])  # of model.safetensors
    precision: str = option("auto", "autocast: auto = bf16 on CUDA GPUs that have it; on a CPU bf16 only where a "
                                    "short measurement at start finds it clearly faster (the log says which); "
                                    "fp32/bf16 force it", choices=list(PRECISIONS))
    sequence_frames: int | None = option(  # None: see `sequence_frames`
        None, "frames per training window (default: history + 1, for either predictor; "
              "'{\"predictor_attention\": \"banded\"}' in --model picks the cacheable one)", low=2)
    open_loop_steps: int = option(0, "also predict the last K frames of each window open loop from its first "
                                     "history frames (each prediction fed back, as the planner imagines) and add "
                                     "that error to the loss; windows grow to history + K frames; 0: teacher "
                                     "forcing only", low=0)
    progress: bool = option(True, flag="--no-progress")
    max_bad_steps: int = option(3, "steps with a non-finite gradient norm that are skipped (no update) before "
                                   "the run stops; 0: stop at the first", low=0)
    dist_timeout: float = option(600.0, "torchrun: seconds a process waits for the others before the job fails",
                                 above=0)

    from_dict = classmethod(fields_from_dict)  # the JSON reader of every config (config.py)

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
        if self.sequence_frames is not None and self.sequence_frames < 2:
            raise ValueError(f"sequence_frames: expected an int >= 2 (a frame and its successor), "
                             f"got {self.sequence_frames}")
        if self.open_loop_steps < 0:
            raise ValueError(f"open_loop_steps: must be >= 0, got {self.open_loop_steps}")
        if self.max_bad_steps < 0:
            raise ValueError(f"max_bad_steps: must be >= 0, got {self.max_bad_steps}")
        if self.bn_batches < 0:
            raise ValueError(f"bn_batches: must be >= 0, got {self.bn_batches}")
        if self.batch_size < 2:
            raise ValueError("batch_size: SIGReg needs at least 2 samples per batch")
        if not 0 < self.dist_timeout < math.inf:
            raise ValueError(f"dist_timeout: expected a positive number of seconds, got {self.dist_timeout}")
        check_ranges(self)  # every declared range (flags.py), after the checks above

    # The defaults suit runs of thousands of steps; a short run must still reach its peak rate and
    # validate and save more than once. Fitted when used (not stored), so that a run resumed with
    # another --steps is still the same run.
    @property
    def run_warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps <= self.steps else self.steps // 5

    @property
    def run_eval_interval(self) -> int:
        return _fit_interval(self.eval_interval, self.steps)

    @property
    def run_ckpt_interval(self) -> int:
        return _fit_interval(self.ckpt_interval, self.steps)

    def fit_notes(self) -> list[str]:
        """One line per setting fitted to the run's length."""
        fitted = (("warmup_steps", self.warmup_steps, self.run_warmup, "longer than the run, so a fifth"),
                  ("eval_interval", self.eval_interval, self.run_eval_interval, "over half, so a third"),
                  ("ckpt_interval", self.ckpt_interval, self.run_ckpt_interval, "over half, so a third"))
        return [f"{name} {given} -> {used} ({why} of --steps {self.steps})"
                for name, given, used, why in fitted if used != given]


def _fit_interval(interval: int, steps: int) -> int:
    """An interval over half the run would act once, at its end: a third of the run instead."""
    return interval if interval <= steps / 2 else max(1, math.ceil(steps / 3))
