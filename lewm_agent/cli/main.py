"""`lewm` command line: collect | train | train-policy | eval | import | probe | plot | demo.

Each subcommand parses its flags into its entry point's typed config; bad input ends
with one line naming the problem and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from ..flags import add_options, config_kwargs, from_args
from ..lock import RunLock
from .options import (
    DEMO_CHECKPOINT,
    PLANNER_INT_FLAGS,
    CollectEnv,
    DemoOptions,
    EvalOut,
    EvalPlanner,
    ImportOptions,
    PlotOptions,
    ProbeOut,
    TrainJSON,
)

# ------------------------------------------------------------------- train
TRAIN_OPTIONS = ("data", "out", "preset", "steps", "batch_size", "warmup_steps", "val_windows", "eval_interval",
                 "ckpt_interval", "log_interval", "seed", "workers", "num_projections", "knots", "bn_batches", "lr",
                 "weight_decay", "grad_clip", "val_fraction", "dist_timeout", "sigreg_weight", "device", "data_mode",
                 "weights_dtype", "precision", "sequence_frames", "open_loop_steps", "max_bad_steps")


def _train_args(p: argparse.ArgumentParser) -> None:
    from ..training.config import TrainConfig
    add_options(p, TrainConfig, TRAIN_OPTIONS)
    add_options(p, TrainJSON)
    add_options(p, TrainConfig, ["progress"])


def _run_train(a: argparse.Namespace) -> int:
    from ..config import ModelConfig, PlannerConfig
    from ..training.config import TrainConfig
    from ..training.train import TrainingDiverged, train
    overrides = _fields_arg("--model", a.model, ModelConfig)
    cfg = TrainConfig(**config_kwargs(TrainConfig, a, (*TRAIN_OPTIONS, "progress")))
    try:
        out = train(cfg, overrides, command=a.command_line,
                    planner=_fields_arg("--planner", a.planner, PlannerConfig))
    except TrainingDiverged as e:
        print(f"lewm train: stopped: {e}", file=sys.stderr)
        return 1
    print(f"checkpoint: {out}")
    return 0


def _fields_arg(flag: str, text: str, cls: type) -> dict:
    """A JSON object of `cls` dataclass fields (e.g. --planner, --model); unknown keys refused by name."""
    value = _json_arg(flag, text)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{flag}: unknown key(s) {unknown}; expected keys among {sorted(known)}")
    return value


def _json_arg(flag: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag}: expected a JSON object, got {text!r}")
    return value


# ------------------------------------------------------------ train-policy
TRAIN_POLICY_OPTIONS = ("checkpoint", "data", "out", "objective", "steps", "batch_size", "lr", "hidden",
                        "max_goal_blocks", "imagine_weight", "frames", "val_fraction", "seed", "device", "force",
                        "progress")


def _train_policy_args(p: argparse.ArgumentParser) -> None:
    from ..training.train_policy import PolicyTrainConfig
    add_options(p, PolicyTrainConfig, TRAIN_POLICY_OPTIONS)


def _run_train_policy(a: argparse.Namespace) -> int:
    from ..training.train_policy import PolicyTrainConfig, report_line, train_policy
    folder, report = train_policy(PolicyTrainConfig(**config_kwargs(PolicyTrainConfig, a, TRAIN_POLICY_OPTIONS)),
                                  command=a.command_line)
    print(report_line(folder, report))
    return 0


# ----------------------------------------------------------------- collect
def _collect_args(p: argparse.ArgumentParser) -> None:
    from ..data.collect import CollectConfig
    add_options(p, CollectConfig, ("env_id", "episodes", "out", "workers", "seed"))
    add_options(p, CollectEnv)
    add_options(p, CollectConfig, ("max_steps", "compression", "overwrite", "progress"))


def _run_collect(a: argparse.Namespace) -> int:
    from ..data.collect import CollectConfig, collect, print_summary
    env_kwargs = _json_arg("--env-kwargs", a.env_kwargs)
    if a.image_size is not None:
        env_kwargs["image_size"] = a.image_size
    names = ("env_id", "episodes", "out", "workers", "seed", "max_steps", "overwrite", "progress", "compression")
    cfg = CollectConfig(**config_kwargs(CollectConfig, a, names), env_kwargs=env_kwargs,
                        expert_kwargs=_json_arg("--expert-kwargs", a.expert_kwargs), command=a.command_line)
    summary = collect(cfg)
    print_summary(summary, a.out)
    if summary["stopped"] and summary["written"]:
        print(f"lewm collect: stopped after {summary['episodes']} complete episodes ({summary['stopped']}); "
              f"{a.out} holds them and is readable", file=sys.stderr)
        return 1
    return 1 if summary["stopped"] else 130 if summary["interrupted"] else 0


# -------------------------------------------------------------------- eval
EVAL_OPTIONS = ("episodes", "seeds", "goal_offset", "goal_steps", "budget", "device", "precision", "planner_kind",
                "seeded_iterations")
EVAL_LATER = ("video", "video_episodes", "diagnose", "diagnose_pairs", "diagnose_windows", "oracle_samples",
              "oracle_iterations")
EVAL_FIELDS = ("checkpoint", "data", "env_id", *EVAL_OPTIONS, "baselines", "progress", *EVAL_LATER)


def _eval_args(p: argparse.ArgumentParser) -> None:
    from ..evaluation.evaluate import EvalConfig
    add_options(p, EvalConfig, ["checkpoint"])
    add_options(p.add_mutually_exclusive_group(required=True), EvalConfig, ["data", "env_id"])
    add_options(p, EvalConfig, EVAL_OPTIONS)
    add_options(p, EvalPlanner)
    add_options(p, EvalConfig, ["baselines"])
    add_options(p, EvalOut, ["out", "card"])
    add_options(p, EvalConfig, ["progress"])
    add_options(p, EvalOut, ["card_name", "force"])
    add_options(p, EvalConfig, EVAL_LATER)


def _check_headline_recipe(checkpoint: str, data: str) -> None:
    """The card's headline evaluation claims pairs of the training data's recipe (pace, goals):
    a test file collected another way belongs under another --card-name."""
    from ..checkpoint import read_meta
    from ..data.rollouts import RolloutFile
    meta = read_meta(checkpoint)
    recipe = meta.training.get("data_recipe")
    if not recipe:
        return  # a checkpoint that does not say how its data was made (e.g. imported)
    with RolloutFile(data) as rf:
        theirs = {"expert_kwargs": rf.attr("expert_kwargs") or {}, "env_kwargs": rf.env_kwargs}
    ours = {"expert_kwargs": recipe.get("expert_kwargs") or {}, "env_kwargs": meta.env_kwargs}
    for field in ("expert_kwargs", "env_kwargs"):
        if json.dumps(theirs[field], sort_keys=True) != json.dumps(ours[field], sort_keys=True):
            raise ValueError(f"--data: its {field} {json.dumps(theirs[field], sort_keys=True)} differ from the "
                             f"training recipe's {json.dumps(ours[field], sort_keys=True)}, which the card's "
                             "headline evaluation claims; write it under another --card-name")


def _run_eval(a: argparse.Namespace) -> int:
    from ..checkpoint import check_card_write, resolve_checkpoint
    a.checkpoint = str(resolve_checkpoint(a.checkpoint))  # a shipped name -> its folder, for --card too
    if a.card and not a.card_name.replace("_", "").isalnum():
        raise ValueError(f"--card-name: expected letters, digits and '_', got {a.card_name!r}")
    if a.card and a.card_name == "eval" and a.planner_kind != "cem":  # the headline section is the search's
        raise ValueError(f"--card: --planner-kind {a.planner_kind} goes under its own --card-name "
                         f"(e.g. {'eval_' + a.planner_kind.replace('+', '_')}), not the CEM headline 'eval'")
    if a.card:
        check_card_write(a.checkpoint, a.card_name, a.force, a.episodes, len(a.seeds))
    if a.card and a.card_name == "eval" and a.data:
        _check_headline_recipe(a.checkpoint, a.data)
    from ..config import PlannerConfig
    from ..evaluation.evaluate import EvalConfig, evaluate
    planner_flags = (*PLANNER_INT_FLAGS, "std", "noise_beta", "cost")
    planner = {**_fields_arg("--planner", a.planner, PlannerConfig),  # the flags below override it
               **{k: getattr(a, k) for k in planner_flags if getattr(a, k) is not None}}
    if a.warm_start is not None:
        planner["warm_start"] = bool(a.warm_start)
    # Finished seeds are kept beside the output as they end: the same command resumes after a crash.
    where = Path(a.out) / "eval.json" if a.out else Path(a.checkpoint) / f"{a.card_name}.json" if a.card else None
    cfg = EvalConfig(**config_kwargs(EvalConfig, a, EVAL_FIELDS), planner=planner,
                     resume_file=None if where is None else str(where) + ".partial")
    with contextlib.ExitStack() as locks:  # one evaluation per output (and per card section)
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
            locks.enter_context(RunLock(a.out, "eval.lock", "evaluation"))
        if a.card:
            locks.enter_context(RunLock(a.checkpoint, f"{a.card_name}.lock", "evaluation"))
        report = evaluate(cfg, on_seed=lambda row, seed, rate: print(f"seed {seed}: {row} {100 * rate:.0f}%",
                                                                      file=sys.stderr))
        _write_eval(a, report)
    return 0


def _write_eval(a: argparse.Namespace, report: dict) -> None:
    from ..checkpoint import write_card_section
    from ..evaluation.evaluate import eval_markdown
    table = eval_markdown(report)
    print(table)
    if a.out:
        _save_report(Path(a.out), report, table)
    if a.card:
        _save_report(Path(a.checkpoint), report, stem=a.card_name)
        title = "Evaluation" if a.card_name == "eval" else f"Evaluation: {a.card_name.replace('_', ' ')}"
        write_card_section(a.checkpoint, a.card_name, f"## {title}\n\n`{a.command_line}`\n\n{table}")
    for path in report.get("videos", []):
        print(f"video: {path}", file=sys.stderr)


def _save_report(folder: Path, report: dict, table: str | None = None, stem: str = "eval") -> None:
    """<stem>.json (and <stem>.md when `table` is given) in `folder`, each written atomically."""
    from ..checkpoint import atomic_write_bytes
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{stem}.json", (json.dumps(report, indent=2) + "\n").encode())
    if table is not None:
        atomic_write_bytes(folder / f"{stem}.md", table.encode())


# -------------------------------------------------------------------- plot
def _plot_args(p: argparse.ArgumentParser) -> None:
    add_options(p, PlotOptions)


def _run_plot(a: argparse.Namespace) -> int:
    from ..evaluation.plot import plot_run
    o = from_args(PlotOptions, a)
    for path in plot_run(o.run, o.eval_file, o.out):
        print(path)
    return 0


# ------------------------------------------------------------------- probe
PROBE_OPTIONS = ("checkpoint", "data", "frames", "val_fraction", "seed", "mlp_steps", "features", "untrained",
                 "device")


def _probe_args(p: argparse.ArgumentParser) -> None:
    from ..evaluation.probe import ProbeConfig
    add_options(p, ProbeConfig, PROBE_OPTIONS)
    add_options(p, ProbeOut)


def _cost_probe(a: argparse.Namespace) -> int:
    from ..evaluation.cost_probe_fit import fit_cost_probe
    from ..planning.cost_probe import save_cost_probe
    matrix, report = fit_cost_probe(a.checkpoint, a.data, a.cost_probe, frames=a.frames,
                                    val_fraction=a.val_fraction, seed=a.seed, device=a.device)
    path = save_cost_probe(a.checkpoint, matrix, {**report, "command": a.command_line})
    held = report["held_out"]
    print(f"wrote {path}: {a.cost_probe} from {report['fit_frames']} frames; on {report['score_frames']} held-out "
          f"frames r {held['r']:.3f}, R2 {held['r2']:.3f}, median error {held['median_error']:.3g} {held['unit']}; "
          f"pooled std {report['scale']:.3g} {report['unit']}")
    pairs = report["pairs"]
    if pairs:
        print(f"on {pairs['pairs']} held-out pairs {pairs['offset']} frames apart (median {a.cost_probe} change "
              f"{pairs['median_displacement']:.3g} {report['unit']}): Pearson r with that change, latent term "
              f"{pairs['r_latent_term']:.2f}, probe term {pairs['r_probe_term']:.2f}; probe_weight "
              f"{pairs['balancing_weight']:.3g} makes their medians equal")
    return 0


def _run_probe(a: argparse.Namespace) -> int:
    from ..checkpoint import atomic_write_bytes, check_card_write, resolve_checkpoint, write_card_section
    a.checkpoint = str(resolve_checkpoint(a.checkpoint))  # a shipped name -> its folder, for --card too
    if a.untrained and (a.card or a.cost_probe is not None):  # neither describes the weights any more
        raise ValueError(f"--untrained: probes fresh weights, not the checkpoint's; drop "
                         f"{'--card' if a.card else '--cost-probe'} or --untrained")
    if a.card:
        check_card_write(a.checkpoint, "probe", a.force)
    if a.cost_probe is not None:
        if a.features != "latent":
            raise ValueError(f"--features {a.features}: a cost probe reads the latent the planner uses; "
                             "drop --features or --cost-probe")
        return _cost_probe(a)
    from ..evaluation.probe import ProbeConfig, probe, probe_markdown
    report = probe(ProbeConfig(**config_kwargs(ProbeConfig, a, PROBE_OPTIONS)))
    table = probe_markdown(report)
    print(table)
    for folder in ([Path(a.out)] if a.out else []) + ([Path(a.checkpoint)] if a.card else []):
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / "probe.json", (json.dumps(report, indent=2) + "\n").encode())
    if a.out:
        atomic_write_bytes(Path(a.out) / "probe.md", table.encode())
    if a.card:
        write_card_section(a.checkpoint, "probe", f"## Probes\n\n`{a.command_line}`\n\n{table}")
    return 0


# -------------------------------------------------------------------- demo
def _demo_args(p: argparse.ArgumentParser) -> None:
    add_options(p, DemoOptions)


def _run_demo(a: argparse.Namespace) -> int:
    """Plan with a shipped model towards goals of never-seen episodes of its env (or train one first)."""
    from ..checkpoint import read_meta, resolve_checkpoint
    from ..data.collect import CollectConfig, collect, print_summary
    from ..evaluation.evaluate import EvalConfig, eval_markdown, evaluate
    from ..training.config import TrainConfig
    from ..training.train import train
    o = from_args(DemoOptions, a)
    out = Path(o.out)
    expert_kwargs, max_steps = {}, None
    if o.train:
        env_id, env_kwargs = "lewm/TwoRoom-v0", {}
    else:
        ckpt = resolve_checkpoint(o.checkpoint or DEMO_CHECKPOINT)
        meta = read_meta(ckpt)
        env_id, env_kwargs = meta.env_id, meta.env_kwargs
        # Unseen episodes of the same kind as the training data: the same expert settings (e.g. pace).
        recipe = meta.training.get("data_recipe", {})
        expert_kwargs, max_steps = recipe.get("expert_kwargs") or {}, recipe.get("max_episode_steps")
    # Seed 1: the shipped models were trained on seed 0's episodes, so every pair here is unseen.
    data = out / f"{'train' if o.train else 'unseen'}_{env_id.split('/')[-1].lower()}.h5"
    # Paced episodes are long: 60 of them hold far more than the 50 pairs needed.
    episodes = o.episodes or (400 if o.train else 60 if expert_kwargs.get("max_speed") else 200)
    if not data.exists():
        print(f"[1/3] collecting {episodes} {env_id} episodes with the scripted expert", file=sys.stderr)
        print_summary(collect(CollectConfig(env_id, episodes, str(data), seed=int(not o.train), env_kwargs=env_kwargs,
                                            expert_kwargs=expert_kwargs, max_steps=max_steps)), str(data))
    if o.train:
        ckpt = out / "model"
        print(f"[2/3] training the `tiny` preset for {o.steps} steps into {ckpt}", file=sys.stderr)
        # sigreg_weight 0.3 and coloured CEM noise: the Two-Room settings measured best for this preset
        train(TrainConfig(data=str(data), out=str(ckpt), preset="tiny", steps=o.steps, batch_size=64, lr=3e-3,
                          warmup_steps=100, sigreg_weight=0.3, eval_interval=500, ckpt_interval=500,
                          log_interval=100), {"image_size": 64}, command=a.command_line, planner={"noise_beta": 2.0})
    else:
        print(f"[2/3] using the shipped model {ckpt} ({env_id})", file=sys.stderr)
    print(f"[3/3] planning towards the goal images of {o.eval_episodes} pairs", file=sys.stderr)
    video = {"video": str(out / "videos"), "video_episodes": o.video_episodes} if o.video_episodes else {}
    report = evaluate(EvalConfig(checkpoint=str(ckpt), data=str(data), episodes=o.eval_episodes, seeds=(0,),
                                 planner_kind=o.planner_kind, **video))
    table = eval_markdown(report)
    _save_report(out, report, table)
    print(table)
    for path in report.get("videos", []):
        print(f"video: {path}", file=sys.stderr)
    return 0


def _numbers(flag: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated numbers (one per action dimension), got {text!r}") from None


def _import_args(p: argparse.ArgumentParser) -> None:
    add_options(p, ImportOptions)


def _run_import(a: argparse.Namespace) -> int:
    """A reference (stable-worldmodel) LeWM checkpoint as this package's checkpoint folder."""
    from ..checkpoint import CONFIG, save_checkpoint
    from ..interop.reference_checkpoint import load_reference
    o = from_args(ImportOptions, a)
    if (Path(o.out) / CONFIG).exists():
        raise FileExistsError(f"--out: {o.out} already holds a checkpoint")
    model, meta = load_reference(o.reference, _numbers("--action-mean", o.action_mean),
                                 _numbers("--action-std", o.action_std), _numbers("--action-low", o.action_low),
                                 _numbers("--action-high", o.action_high), o.env, o.encoder_heads, o.predictor_heads,
                                 env_kwargs=_json_arg("--env-kwargs", o.env_kwargs))
    meta = dataclasses.replace(meta, training={**meta.training, "command": a.command_line})
    save_checkpoint(o.out, model, meta)
    print(f"imported {o.reference} -> {o.out} ({model.num_parameters()['total']:,} parameters)", file=sys.stderr)
    return 0


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "collect": ("record expert rollouts of an env into an HDF5 file", _collect_args, _run_collect),
    "demo": ("plan with a shipped model (Push-T by default; or --train one) and film it", _demo_args, _run_demo),
    "eval": ("evaluate a checkpoint with the paper's protocol", _eval_args, _run_eval),
    "import": ("a reference (stable-worldmodel) LeWM checkpoint as this package's folder", _import_args, _run_import),
    "probe": ("linear and MLP probes: how much physical state the latent holds", _probe_args, _run_probe),
    "plot": ("PNG curves of a training log and a success chart of an eval report", _plot_args, _run_plot),
    "train": ("fit a world model from a rollout file", _train_args, _run_train),
    "train-policy": ("fit a goal-conditioned actor in a checkpoint's latent space (world model frozen)",
                     _train_policy_args, _run_train_policy),
}


# Commands whose torch work slows many-fold when its threads outnumber the free cores.
TORCH_COMMANDS = frozenset({"demo", "eval", "probe", "train", "train-policy"})

# Options that do something only beside another (dependent -> needed), and pairs that exclude each
# other: given alone they would be silently ignored, so they are refused instead.
NEEDS: dict[str, dict[str, str]] = {
    "eval": {"card_name": "card", "force": "card", "video_episodes": "video", "diagnose_pairs": "diagnose",
             "diagnose_windows": "diagnose", "oracle_samples": "diagnose", "oracle_iterations": "diagnose",
             "seeded_iterations": "planner_kind"},
    "probe": {"force": "card"},
    "train-policy": {"imagine_weight": "objective"},  # objective given: bc+imagine, the one it weighs
    "demo": {"steps": "train"},
}
EXCLUDES: dict[str, list[tuple[str, str]]] = {
    "probe": [("cost_probe", "card"), ("cost_probe", "out")],
    "demo": [("train", "checkpoint"), ("train", "planner_kind")],  # a freshly trained model has no actor
}


def _check_combination(cmd: str, p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a dangling or conflicting option in one line naming both flags."""
    flags = {a.dest: a.option_strings[0] for a in p._actions if a.option_strings}
    given = {a.dest for a in p._actions if a.option_strings and getattr(args, a.dest, a.default) != a.default}
    for dep, needed in NEEDS.get(cmd, {}).items():
        if dep in given and needed not in given:
            raise ValueError(f"{flags[dep]}: only means something with {flags[needed]}, which was not given")
    for one, other in EXCLUDES.get(cmd, []):
        if one in given and other in given:
            raise ValueError(f"{flags[one]} and {flags[other]} cannot be combined; drop one")


def _show_defaults(p: argparse.ArgumentParser) -> None:
    """Append "(default: ...)" to every option that has a default and does not show it yet."""
    for action in p._actions:
        if action.default in (None, False, argparse.SUPPRESS) or action.required:
            continue
        if "%(default)" not in (action.help or "") and "default" not in (action.help or ""):
            action.help = f"{action.help or ''} (default: %(default)s)".strip()


def main(argv: list[str] | None = None) -> int:
    from ..version import __version__
    parser = argparse.ArgumentParser(prog="lewm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lewm_agent {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    parsers = {}
    for name, (help_, add_args, _) in COMMANDS.items():
        p = parsers[name] = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        _show_defaults(p)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    # Library modules log through `logging` (silent when imported elsewhere); the CLI shows them.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args.command_line = "lewm " + shlex.join(argv)  # recorded in data files, checkpoints and cards
    try:
        _check_combination(args.cmd, parsers[args.cmd], args)
        if args.cmd in TORCH_COMMANDS:
            from ..threads import fit_threads  # imports torch: not for --help
            fit_threads()
        return COMMANDS[args.cmd][2](args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
        print(f"lewm {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lewm {args.cmd}: interrupted", file=sys.stderr)
        return 130

