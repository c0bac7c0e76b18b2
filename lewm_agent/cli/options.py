"""The command line's options that are no config field: each declared once, as a field of a
dataclass here (help in its metadata, as for the config fields), and built into argparse options
by the same `flags.add_options`. Their order is the order of `--help`."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import PLANNER_KINDS
from ..flags import option

DEMO_CHECKPOINT = "pusht"
JSON = "JSON"


@dataclass(frozen=True)
class TrainJSON:
    """`lewm train`: the JSON objects beside TrainConfig's flags."""
    model: str = option("{}", 'ModelConfig overrides, e.g. \'{"image_size": 96}\'', metavar=JSON)
    planner: str = option("{}", "planning defaults stored in the checkpoint (by default those of the env's shipped "
                                "checkpoint, measured best there, else the planner's own); keys given here replace "
                                "them, e.g. '{\"noise_beta\": 2}'", metavar=JSON)


@dataclass(frozen=True)
class CollectEnv:
    """`lewm collect`: the env's and expert's settings."""
    image_size: int | None = option(None, "env image_size (default: the env's)")
    env_kwargs: str = option("{}", "extra env kwargs (e.g. render settings)", metavar=JSON)
    expert_kwargs: str = option("{}", 'e.g. \'{"noise": 0.3}\'', metavar=JSON)


PLANNER_INT_FLAGS = ("num_samples", "num_iterations", "num_elites", "horizon", "receding_horizon")
_CHECKPOINTS = "planner (default: checkpoint's)"


@dataclass(frozen=True)
class EvalPlanner:
    """`lewm eval`: planner settings over the checkpoint's (None: the checkpoint's)."""
    num_samples: int | None = option(None, _CHECKPOINTS)
    num_iterations: int | None = option(None, _CHECKPOINTS)
    num_elites: int | None = option(None, _CHECKPOINTS)
    horizon: int | None = option(None, _CHECKPOINTS)
    receding_horizon: int | None = option(None, _CHECKPOINTS)
    planner: str = option("{}", "planner settings as in `lewm train --planner`, e.g. '{\"num_samples\": 600}'; "
                                "the flags below override it (default: the checkpoint's)", metavar=JSON)
    std: float | None = option(None, "planner: initial sampling std")
    noise_beta: float | None = option(None, "planner: sampling noise colour along time (0 white, 2 smooth)")
    warm_start: int | None = option(None, "planner: reuse the previous plan", choices=[0, 1])
    cost: str | None = option(None, "planner: goal distance of the final predicted frame (paper) or the min over "
                                    "the horizon", choices=["final", "min"])


@dataclass(frozen=True)
class EvalOut:
    """`lewm eval`: where the report goes."""
    out: str | None = option(None, "folder for eval.json and eval.md")
    card: bool = option(False, "write eval.json into the checkpoint folder and the table into its model card")
    card_name: str = option("eval", "with --card: NAME.json and card section NAME, e.g. a second test file "
                                    "(default: eval)", metavar="NAME")
    force: bool = option(False, "with --card: write into a shipped checkpoint, or over a section measured on "
                                "more pairs")


@dataclass(frozen=True)
class ProbeOut:
    """`lewm probe`: where the report goes, or the cost probe fitted instead."""
    out: str | None = option(None, "folder for probe.json and probe.md")
    card: bool = option(False, "write probe.json and the table into the checkpoint's card")
    force: bool = option(False, "with --card: write into a shipped checkpoint")
    cost_probe: str | None = option(None, "instead: fit a linear probe of QUANTITY (e.g. cube_xyz) on --data (the "
                                          "training file) and save it into the checkpoint for the planner's "
                                          "probe_weight cost", metavar="QUANTITY")


@dataclass(frozen=True)
class PlotOptions:
    run: str | None = option(None, "training output folder holding log.jsonl (or the log file); optional with "
                                   "--eval", flag="run", metavar="RUN_DIR", nargs="?")
    eval_file: str | None = option(None, "eval.json to chart (default: RUN_DIR/eval.json or RUN_DIR/eval/eval.json "
                                         "if present)", flag="--eval", metavar="FILE")
    out: str | None = option(None, "folder for the PNGs (default: RUN_DIR/plots)")


@dataclass(frozen=True)
class DemoOptions:
    out: str = option("runs/demo", "folder for the data, videos and report")
    checkpoint: str | None = option(None, f"shipped name (pusht, two_room, cube) or checkpoint folder; its env and "
                                          f"image size come from its config.json (default: {DEMO_CHECKPOINT}; not "
                                          f"with --train)")
    episodes: int | None = option(None, "episodes to collect (default 200 to draw pairs from; 400 Two-Room episodes "
                                        "with --train)")
    eval_episodes: int = option(50, "start/goal pairs")
    video_episodes: int = option(2, "pairs filmed (0: no video)")
    planner_kind: str = option("cem", "cem: the search; policy: the checkpoint's actor alone (Cube plans best so); "
                                      "policy+cem: CEM started from the actor's plan (not with --train)",
                               choices=list(PLANNER_KINDS))
    train: bool = option(False, "instead: collect 400 Two-Room episodes, train the `tiny` preset from scratch, "
                                "evaluate it")
    steps: int = option(1500, "training steps (with --train)")


@dataclass(frozen=True)
class ImportOptions:
    reference: str = option(help="reference LeWM checkpoint: its *_object.ckpt, its weights.pt (config.json beside "
                                 "it), or their folder")
    out: str = option(help="checkpoint folder to write (must not hold one)")
    action_mean: str | None = option(None, "per dimension, comma-separated: mean of the training data's actions")
    action_std: str | None = option(None, "per dimension, comma-separated: std of the training data's actions")
    action_low: str | None = option(None, "per dimension, comma-separated: action-space lower bound (or --env)")
    action_high: str | None = option(None, "per dimension, comma-separated: action-space upper bound (or --env)")
    env: str | None = option(None, "env id recorded in the checkpoint; bounds from its action space")
    env_kwargs: str = option("{}", "with --env: env kwargs recorded for eval, over the defaults (the model's "
                                   "image_size; lewm/PushT-v0: render_style=reference, physics=reference)",
                          metavar=JSON)
    encoder_heads: int | None = option(None, "ViT heads, where the checkpoint does not say")
    predictor_heads: int | None = option(None, "predictor heads, where the checkpoint does not say")
