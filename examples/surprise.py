"""Violation of expectation on Push-T: is the world model surprised when physics breaks?

    python examples/surprise.py --checkpoint runs/pusht/model --data pusht.h5 --episodes 20 --out surprise

For held-out episodes of a Push-T rollout file, the model's surprise (`WorldModel.surprise`:
the squared error of its prediction of each next frame; one model step = one action block of
`frameskip` env steps) is measured along three versions of the same recorded window:
  normal    the recorded trajectory (its states, rendered);
  teleport  at the perturbation frame the block jumps (its centre of gravity moved `--shift`
            arena px in a random free direction and turned by `--rotate` rad) and the rest of
            the recorded actions is re-simulated from there: physics is broken exactly once;
  colour    the recorded states, but the block is painted `--color` from the perturbation
            frame on: a visual change that breaks no physics.
The three share the frames before the perturbation and every action block. The mean curves
around the perturbation go to OUT/surprise.png, per-episode values to OUT/surprise.json, and
paired sign-flip permutation tests at the perturbation step are printed. Needs matplotlib.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import lewm_agent  # noqa: F401  (registers the lewm/* envs)
from lewm_agent.checkpoint import load_checkpoint
from lewm_agent.data.rollouts import RolloutFile
from lewm_agent.device import resolve_device
from lewm_agent.evaluation.pairs import held_out_episodes
from lewm_envs.pusht.env import t_corners
from lewm_envs.pusht.render import (
    AGENT_RADIUS,
    T_COG,
    WALL_HI,
    WALL_LO,
    PushTRenderer,
    t_sdf,
    to_world,
    wrap_angle,
)

ENV_ID = "lewm/PushT-v0"
CONDITIONS = ("normal", "teleport", "colour")
ALPHA = 0.05


# ------------------------------------------------------------------ perturbations
def teleport_pose(state: np.ndarray, shift: float, rotate: float, rng: np.random.Generator,
                  margin: float = 10.0, clearance: float = 5.0) -> np.ndarray | None:
    """A new block pose (x, y, angle): the T's centre of gravity moved `shift` px, the T turned by
    +-`rotate` rad. Directions are tried in a random order; the first that keeps the whole T
    `margin` px off the walls and `clearance` px off the disc wins (None if none does), so the
    re-simulation starts from a legal state instead of an overlap that pymunk would resolve."""
    x, y, angle = (float(v) for v in state[2:5])
    cog = to_world(np.asarray(T_COG), x, y, angle)
    agent = np.asarray(state[:2], np.float64)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    for phi in rng.permutation(72) * (2 * math.pi / 72):
        new_angle = float(wrap_angle(angle + sign * rotate))
        new_cog = cog + shift * np.array([math.cos(phi), math.sin(phi)])
        origin = new_cog - to_world(np.asarray(T_COG), 0.0, 0.0, new_angle)  # the T's origin for that cog
        pose = np.array([origin[0], origin[1], new_angle])
        corners = t_corners(*pose)
        inside = (corners >= WALL_LO + margin).all() and (corners <= WALL_HI - margin).all()
        if inside and float(t_sdf(agent, *pose)) - AGENT_RADIUS >= clearance:
            return pose
    return None


def teleport_states(env: gym.Env, states: np.ndarray, actions: np.ndarray, row: int, pose: np.ndarray,
                    stop: int) -> np.ndarray:
    """`states` (L, 10) with the block put at `pose` (at rest) at `row` and rows row+1..stop
    re-simulated with the recorded `actions` (L-1, 2); every other row is the recorded one."""
    if not 0 <= row <= stop < len(states) or stop > len(actions):
        raise ValueError(f"row/stop: expected 0 <= row <= stop <= {len(actions)}, got row={row}, stop={stop}")
    out = np.array(states, np.float64, copy=True)
    s = out[row].copy()
    s[2:5], s[7:10] = pose, 0.0
    env.reset(options={"state": s, "goal_state": s})  # the goal is irrelevant here; skip sampling one
    out[row] = env.get_state()
    for t in range(row, stop):
        env.step(actions[t])
        out[t + 1] = env.get_state()
    return out


def render_frames(renderer: PushTRenderer, states: np.ndarray, rows: np.ndarray,
                  color_from: int | None = None, color=None) -> np.ndarray:
    """uint8 (len(rows), S, S, 3): the states at `rows`, the block painted `color` at rows >= color_from."""
    return np.stack([renderer.render(states[r, :2], states[r, 2:5],
                                     color if color_from is not None and r >= color_from else None)
                     for r in rows])


def conditions(env: gym.Env, renderer: PushTRenderer, states: np.ndarray, actions: np.ndarray, rows: np.ndarray,
               row: int, pose: np.ndarray, color) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three versions of one window: name -> (states (L, 10), pixels (len(rows), S, S, 3)).

    `rows` are the window's block-boundary rows, `row` (one of them) the perturbation frame."""
    moved = teleport_states(env, states, actions, row, pose, int(rows[-1]))
    return {"normal": (states, render_frames(renderer, states, rows)),
            "teleport": (moved, render_frames(renderer, moved, rows)),
            "colour": (states, render_frames(renderer, states, rows, row, color))}


def action_blocks(actions: np.ndarray, rows: np.ndarray, mean, std) -> np.ndarray:
    """Normalized blocks (len(rows)-1, fs*A) taken from each window frame but the last, as in training."""
    blocks = [(actions[a:b] - np.asarray(mean)) / np.asarray(std) for a, b in itertools.pairwise(rows)]
    return np.stack([blk.reshape(-1) for blk in blocks]).astype(np.float32)


# ------------------------------------------------------------------ statistics
def sign_flip_test(x, y, n_perm: int = 20000, seed: int = 0) -> dict[str, float]:
    """Paired two-sided permutation test of mean(x - y) = 0: random sign flips of the differences
    (every one of the 2^n when that is fewer than `n_perm`, which makes the p-value exact)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x - y if x.shape == y.shape else np.empty(0)
    if d.ndim != 1 or len(d) < 1 or not np.isfinite(d).all():
        raise ValueError(f"x, y: expected two finite 1-D arrays of equal length >= 1, got shapes "
                         f"{x.shape} and {y.shape}")
    n, observed = len(d), abs(d.mean())
    if 2 ** n <= n_perm:
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
        p = float(np.mean(np.abs(signs @ d) / n >= observed - 1e-12))
    else:
        signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(n_perm, n))
        # The observed labelling counts as one permutation, so p is never 0.
        p = float((1 + np.sum(np.abs(signs @ d) / n >= observed - 1e-12)) / (n_perm + 1))
    return {"mean_diff": float(d.mean()), "p": p, "n": n}


# ------------------------------------------------------------------ the experiment
def run(checkpoint: str, data: str, episodes: int = 20, before: int | None = None, after: int = 3,
        shift: float = 80.0, rotate: float = 0.5, color=(220, 60, 60), seed: int = 0, device: str = "auto",
        all_episodes: bool = False) -> dict:
    """Surprise along the three conditions for up to `episodes` windows; returns the report dict."""
    if episodes < 1 or after < 1 or (before is not None and before < 1):
        raise ValueError(f"--episodes, --before, --after: must be >= 1, got {episodes}, {before}, {after}")
    if not shift > 0 or not math.isfinite(shift):
        raise ValueError(f"--shift: expected a positive number of arena px, got {shift}")
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, dev)
    cfg = model.cfg
    fs, before = cfg.frameskip, cfg.history if before is None else before
    with RolloutFile(data) as rf:
        if rf.env_id != ENV_ID:
            raise ValueError(f"--data: {data} holds {rf.env_id!r} episodes; the surprise demo needs {ENV_ID} rollouts")
        if meta.env_id not in (None, ENV_ID):
            raise ValueError(f"--checkpoint: {checkpoint} was trained on {meta.env_id}, not {ENV_ID}")
        if rf.action_dim != cfg.action_dim:
            raise ValueError(f"--data: actions have {rf.action_dim} dims, the checkpoint expects {cfg.action_dim}")
        pool, source = (np.arange(rf.num_episodes), "every episode") if all_episodes else held_out_episodes(rf, meta)
        need = (before + after) * fs + 1  # env steps a window spans
        pool = pool[rf.episode_lengths[pool] >= need]
        if len(pool) == 0:
            raise ValueError(f"--data: no episode of {source} has the {need} steps a window needs "
                             f"((--before {before} + --after {after}) x frameskip {fs} + 1); lower them or "
                             "pass --all-episodes")
        rng = np.random.default_rng(seed)
        size = rf.image_shape[0]
        env = gym.make(ENV_ID, **{**rf.env_kwargs, "image_size": size, "terminate_on_success": False}).unwrapped
        renderer = PushTRenderer(size)
        pixels = {c: [] for c in CONDITIONS}
        blocks, used, skipped, mismatch = [], [], 0, 0
        for ep in rng.permutation(pool):
            if len(used) == episodes:
                break
            rec = rf.episode(int(ep), ("pixels", "action", "state"))
            last = (len(rec["state"]) - 1) // fs                          # last block-boundary frame
            k = int(rng.integers(before, last - after + 1))               # the first perturbed frame
            rows = fs * np.arange(k - before, k + after + 1)
            pose = teleport_pose(rec["state"][fs * k], shift, rotate, rng)
            if pose is None:
                skipped += 1
                continue
            versions = conditions(env, renderer, rec["state"], rec["action"], rows, fs * k, pose, color)
            mismatch = max(mismatch, int(np.abs(versions["normal"][1].astype(int) - rec["pixels"][rows]).max()))
            for c in CONDITIONS:
                pixels[c].append(versions[c][1])
            blocks.append(action_blocks(rec["action"], rows, meta.action_mean, meta.action_std))
            used.append((int(ep), k))
        env.close()
    if not used:
        raise ValueError(f"--shift {shift}: no window had room to teleport the block that far; lower --shift")
    acts = torch.from_numpy(np.stack(blocks)).to(dev)
    surprise = {}
    with torch.inference_mode():
        for c in CONDITIONS:
            px = torch.from_numpy(np.stack(pixels[c]))
            surprise[c] = torch.cat([model.surprise(px[i:i + 16].to(dev), acts[i:i + 16])
                                     for i in range(0, len(px), 16)]).float().cpu().numpy()  # (n, T-1)
    step = before - 1  # surprise entry that predicts the first perturbed frame
    at = {c: surprise[c][:, step] for c in CONDITIONS}
    tests = {"teleport_vs_normal": sign_flip_test(at["teleport"], at["normal"], seed=seed),
             "colour_vs_normal": sign_flip_test(at["colour"], at["normal"], seed=seed),
             "teleport_vs_colour": sign_flip_test(at["teleport"], at["colour"], seed=seed)}
    return {"checkpoint": str(checkpoint), "data": str(data), "source": source, "frameskip": fs,
            "before": before, "after": after, "shift": shift, "rotate": rotate, "color": list(color),
            "windows": [{"episode": e, "perturb_frame": k, "perturb_step": fs * k} for e, k in used],
            "skipped_no_room": skipped, "requested": episodes, "render_max_abs_diff": mismatch,
            "offsets": list(range(-step, surprise["normal"].shape[1] - step)),
            "surprise": {c: v.tolist() for c, v in surprise.items()}, "tests": tests}


# ------------------------------------------------------------------ output
def interpret(tests: dict) -> str:
    def verdict(name: str, what: str) -> str:
        t = tests[name]
        if t["p"] < ALPHA and t["mean_diff"] > 0:
            return f"{what} raises surprise (p={t['p']:.3g})"
        if t["p"] < ALPHA:
            return f"{what} lowers surprise (p={t['p']:.3g})"
        return f"{what} does not change surprise detectably (p={t['p']:.3g}, n={t['n']})"
    line = f"{verdict('teleport_vs_normal', 'teleporting the block')}; {verdict('colour_vs_normal', 'recolouring it')}"
    tc = tests["teleport_vs_colour"]
    if tc["p"] < ALPHA:
        more = "more" if tc["mean_diff"] > 0 else "less"
        line += f"; the physical violation is {more} surprising than the visual change"
    return line + "."


def plot(report: dict, path: Path) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise ValueError("the surprise plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    x = np.asarray(report["offsets"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for c, color in zip(CONDITIONS, ("tab:gray", "tab:red", "tab:blue")):
        s = np.asarray(report["surprise"][c])
        mean = s.mean(0)
        sem = s.std(0, ddof=1) / math.sqrt(len(s)) if len(s) > 1 else np.zeros_like(mean)
        ax.plot(x, mean, marker="o", color=color, label=c)
        ax.fill_between(x, mean - sem, mean + sem, color=color, alpha=0.2)
    ax.axvline(0, color="k", linestyle=":", linewidth=1)
    ax.set_xlabel(f"model step relative to the perturbation (1 step = {report['frameskip']} env steps)")
    ax.set_ylabel("surprise (prediction error)")
    ax.set_title(f"Push-T violation of expectation (n={len(report['windows'])}, mean ± s.e.m.)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_color(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    try:
        rgb = tuple(int(v) for v in parts)
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"--color: expected R,G,B integers in [0, 255] (e.g. 220,60,60), got {text!r}")
    return rgb  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="Push-T checkpoint folder")
    p.add_argument("--data", required=True, help="Push-T rollout file (its held-out episodes are used)")
    p.add_argument("--episodes", type=int, default=20, help="windows (one per episode)")
    p.add_argument("--out", default="surprise", help="folder for surprise.png and surprise.json")
    p.add_argument("--before", type=int, default=None, help="model steps before the perturbation (default: history)")
    p.add_argument("--after", type=int, default=3, help="model steps from the perturbation on")
    p.add_argument("--shift", type=float, default=80.0, help="teleport distance, arena px (the T is 120 px wide)")
    p.add_argument("--rotate", type=float, default=0.5, help="teleport rotation, rad")
    p.add_argument("--color", default="220,60,60", help="R,G,B of the recoloured block")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--all-episodes", action="store_true", help="use training episodes too (not held out)")
    a = p.parse_args(argv)
    try:
        report = run(a.checkpoint, a.data, a.episodes, a.before, a.after, a.shift, a.rotate, parse_color(a.color),
                     a.seed, a.device, a.all_episodes)
        out = Path(a.out)
        png = plot(report, out / "surprise.png")
        (out / "surprise.json").write_text(json.dumps(report, indent=1) + "\n")
    except (ValueError, FileNotFoundError) as e:
        print(f"surprise.py: error: {e}", file=sys.stderr)
        return 2
    n = len(report["windows"])
    print(f"{n} windows from {report['source']} of {a.data}"
          + (f" (asked for {a.episodes}: not enough long episodes)" if n < a.episodes else "")
          + (f", {report['skipped_no_room']} skipped (no room to teleport)" if report["skipped_no_room"] else ""))
    if report["render_max_abs_diff"]:
        print(f"note: re-rendered frames differ from the file's by up to {report['render_max_abs_diff']}/255")
    step = report["offsets"].index(0)
    means = {c: float(np.mean(np.asarray(report["surprise"][c])[:, step])) for c in CONDITIONS}
    print("surprise at the perturbation step (mean): " + ", ".join(f"{c} {v:.4g}" for c, v in means.items()))
    for name, t in report["tests"].items():
        print(f"  {name:20s} mean diff {t['mean_diff']:+.4g}  p={t['p']:.3g}  n={t['n']}  (paired sign-flip test)")
    print(interpret(report["tests"]))
    print(f"wrote {png} and {out / 'surprise.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
