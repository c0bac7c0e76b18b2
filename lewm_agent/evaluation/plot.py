"""PNG figures of a training run (`log.jsonl`) and of an evaluation report (`eval.json`).

`lewm plot RUN_DIR` writes, into RUN_DIR/plots (or --out):
  pred_loss.png    prediction loss, train and validation (log scale)
  sigreg_loss.png  SIGReg loss, train and validation (log scale)
  collapse.png     collapse indicators: embedding std (train, validation) and the validation
                   embedding's effective rank on a second axis (a collapsing encoder drives both down)
  lr.png           learning rate (warm-up, cosine decay)
  training.png     the four panels in one figure
  success.png      if an eval report is found: success per policy row, pooled rate with its 95%
                   Wilson interval as error bars and each seed's rate as a point

Figures are drawn on `matplotlib.figure.Figure` objects, which render with Agg and never
touch pyplot's global state or the user's backend.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..runlog import LOG_FILE, log_rows

PLOT_INSTALL = "pip install 'lewm-agent[plot]' (matplotlib)"
Series = dict[str, tuple[np.ndarray, np.ndarray]]   # metric -> (steps, values)

# name, title, [(log key, legend label)], log scale
PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...], bool], ...] = (
    ("pred_loss", "Prediction loss", (("train/pred_loss", "train"), ("val/pred_loss", "validation")), True),
    ("sigreg_loss", "SIGReg loss", (("train/sigreg_loss", "train"), ("val/sigreg_loss", "validation")), True),
    ("collapse", "Collapse indicators", (("train/emb_std", "emb std (train)"), ("val/emb_std", "emb std (validation)"),
                                         ("val/emb_rank", "emb rank (validation)")), False),
    ("lr", "Learning rate", (("lr", "lr"),), False),
)
SECOND_AXIS = {"val/emb_rank"}  # a rank (tens) next to a std (~1) needs its own scale


def _figure(**kwargs: Any) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(f"plots need matplotlib: {PLOT_INSTALL}") from None
    return Figure(**kwargs)


def load_log(path: str | os.PathLike) -> Series:
    """Read the trainer's log.jsonl into per-metric (steps, values) arrays.

    A last line cut short (the trainer killed mid-write) is ignored; any other malformed
    line is an error naming it.
    """
    rows: dict[str, tuple[list[int], list[float]]] = {}
    for _, row in log_rows(path):
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                steps, values = rows.setdefault(key, ([], []))
                steps.append(row["step"])
                values.append(float(value))
    return {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in rows.items()}


def _draw_panel(ax: Any, series: Series, title: str, keys: tuple[tuple[str, str], ...], log: bool) -> None:
    ax2 = None
    handles = []
    for i, (key, label) in enumerate(keys):
        if key not in series:
            continue
        steps, values = series[key]
        target = ax
        if key in SECOND_AXIS:
            ax2 = ax2 or ax.twinx()
            target = ax2
            target.set_ylabel(label)
        style = "o-" if len(steps) < 30 else "-"   # sparse validation points stay visible
        handles += target.plot(steps, values, style, color=f"C{i}", label=label, markersize=3)
        if log and np.all(values[np.isfinite(values)] > 0):
            target.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if len(handles) > 1:
        (ax2 or ax).legend(handles=handles, labels=[h.get_label() for h in handles], fontsize=8)  # on top


def plot_training(series: Series, out: str | os.PathLike) -> list[Path]:
    """One PNG per panel with data, plus `training.png` holding all of them."""
    out = Path(out)
    panels = [p for p in PANELS if any(k in series for k, _ in p[2])]
    if not panels:
        known = sorted({k for p in PANELS for k, _ in p[2]})
        raise ValueError(f"the log holds none of the plotted metrics {known}; found {sorted(series)}")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, title, keys, log in panels:
        fig = _figure(figsize=(6, 4), layout="constrained")
        _draw_panel(fig.subplots(), series, title, keys, log)
        paths.append(_save_png(fig, out / f"{name}.png"))
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig = _figure(figsize=(6 * cols, 4 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (_, title, keys, log) in zip(axes, panels):
        _draw_panel(ax, series, title, keys, log)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    paths.append(_save_png(fig, out / "training.png"))
    return paths


def _check_report(report: Any, source: str) -> dict[str, dict[str, Any]]:
    rows = report.get("rows") if isinstance(report, dict) else None
    if not isinstance(rows, dict) or not rows:
        raise ValueError(f"{source}: expected an eval report (from `lewm eval --out`) with a non-empty 'rows' object")
    for name, row in rows.items():
        ok = (isinstance(row, dict) and isinstance(row.get("success"), (int, float))
              and isinstance(row.get("per_seed"), dict)
              and isinstance(row.get("ci95"), list) and len(row["ci95"]) == 2)
        if not ok:
            raise ValueError(f"{source}: rows.{name}: expected 'success' (a number), 'ci95' ([low, high]) "
                             "and 'per_seed' ({seed: rate})")
    return rows


def plot_eval(report: dict[str, Any], path: str | os.PathLike, source: str = "eval report") -> Path:
    """Bar chart: pooled success per policy row, 95% Wilson interval, per-seed points."""
    rows = _check_report(report, source)
    names = list(rows)
    x = np.arange(len(names))
    rate = np.array([100 * rows[n]["success"] for n in names])
    lo = np.array([100 * rows[n]["ci95"][0] for n in names])
    hi = np.array([100 * rows[n]["ci95"][1] for n in names])
    fig = _figure(figsize=(1.6 * len(names) + 2.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.bar(x, rate, width=0.6, color=[f"C{i}" for i in range(len(names))], alpha=0.75, label="pooled success")
    ax.errorbar(x, rate, yerr=[rate - lo, hi - rate], fmt="none", ecolor="black", capsize=6,
                label="95% Wilson interval")
    for i, n in enumerate(names):
        seeds = np.array([100 * v for v in rows[n]["per_seed"].values()], dtype=float)
        dx = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else np.zeros(1)  # side by side, not jittered
        ax.scatter(x[i] + dx, seeds, s=22, color="black", zorder=3, label="per seed" if i == 0 else None)
        ax.annotate(f"{rate[i]:.1f}%", (x[i], hi[i]), textcoords="offset points", xytext=(0, 4), ha="center",
                    fontsize=9)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 112)
    ax.set_ylabel("success (%)")
    env = report.get("env_id", "")
    n_seeds = len(report.get("seeds", [])) or len(next(iter(rows.values()))["per_seed"])
    plural = "s" if n_seeds != 1 else ""
    ax.set_title(f"{env}  {report.get('episodes_per_seed', '?')} pairs x {n_seeds} seed{plural}".strip())
    fig.legend(fontsize=8, loc="outside lower center", ncols=3)  # below the axes: never over a bar
    ax.grid(axis="y", alpha=0.3)
    return _save_png(fig, path)


def _save_png(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def find_eval(run: Path) -> Path | None:
    for candidate in (run / "eval.json", run / "eval" / "eval.json"):
        if candidate.is_file():
            return candidate
    return None


def plot_run(run: str | os.PathLike | None, eval_file: str | os.PathLike | None = None,
             out: str | os.PathLike | None = None) -> list[Path]:
    """`lewm plot`: training curves of RUN_DIR/log.jsonl and, if found, the eval chart; with no
    RUN_DIR, the chart of `eval_file` alone (e.g. a shipped checkpoint's eval.json). Returns the PNGs."""
    if run is None:
        if eval_file is None:
            raise ValueError("give RUN_DIR (a training folder), --eval FILE (an eval.json), or both")
        paths, ev = [], Path(eval_file)
        out_dir = Path(out) if out else ev.parent / "plots"
    else:
        log = Path(run) if Path(run).is_file() else Path(run) / LOG_FILE
        if not log.is_file():
            raise ValueError(f"{log}: no training log; expected the folder written by `lewm train` (with {LOG_FILE})")
        series = load_log(log)
        if not series:
            raise ValueError(f"{log}: the log is empty (training logs every --log-interval steps)")
        out_dir = Path(out) if out else log.parent / "plots"
        paths = plot_training(series, out_dir)
        ev = Path(eval_file) if eval_file else find_eval(log.parent)
    if ev is not None:
        if not ev.is_file():
            raise ValueError(f"--eval: {ev} does not exist")
        try:
            report = json.loads(ev.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"--eval: {ev} is not JSON ({e})") from None
        paths.append(plot_eval(report, out_dir / "success.png", source=str(ev)))
    return paths
