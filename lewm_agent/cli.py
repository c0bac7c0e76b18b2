"""`lewm` command line: collect | train | eval | plot | demo.

Each subcommand parses its flags into its entry point's typed config; bad input ends
with one line naming the problem and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from typing import Callable

from .config import PRESETS

# ------------------------------------------------------------------- train
def _train_args(p: argparse.ArgumentParser) -> None:
    from .train import TrainConfig
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    p.add_argument("--data", required=True, help="rollout file (.h5) written by `lewm collect`")
    p.add_argument("--out", required=True, help="checkpoint folder (resumed if it holds a run)")
    p.add_argument("--preset", default=defaults["preset"], choices=sorted(PRESETS))
    for name in ("steps", "batch_size", "warmup_steps", "val_windows", "eval_interval", "ckpt_interval",
                 "log_interval", "seed", "workers", "num_projections", "knots"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=defaults[name])
    for name in ("lr", "weight_decay", "grad_clip", "sigreg_weight", "val_fraction"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=defaults[name])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--data-mode", default="auto", choices=["auto", "memory", "stream"])
    p.add_argument("--weights-dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--model", default="{}", metavar="JSON",
                   help='ModelConfig overrides, e.g. \'{"image_size": 96}\'')
    p.add_argument("--no-progress", action="store_true")


def _train(a: argparse.Namespace) -> int:
    from .train import TrainConfig, train
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kwargs = {k: v for k, v in vars(a).items() if k in fields}
    try:
        overrides = json.loads(a.model)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model: not valid JSON ({e})") from None
    if not isinstance(overrides, dict):
        raise ValueError("--model: expected a JSON object of ModelConfig fields")
    cfg = TrainConfig(**kwargs, progress=not a.no_progress)
    out = train(cfg, overrides, command="lewm " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    print(f"checkpoint: {out}")
    return 0


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "train": ("fit a world model from a rollout file", _train_args, _train),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lewm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, (help_, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.cmd][2](args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
        print(f"lewm {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lewm {args.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
