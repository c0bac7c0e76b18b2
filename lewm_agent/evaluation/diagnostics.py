"""What an evaluation's pairs ask, and where a planning failure sits (`lewm eval --diagnose`).

Pair difficulty: per env, the median and p90 of what the start/goal pairs ask (travel,
rotation), declared by each env class as `pair_difficulty(start_states, goal_states)`.

Diagnostics separate the three seats of a failure:
  dynamics, exploited: the latent cost the model predicts for each executed plan versus
    the encoder's cost of the frame actually reached (a planner that finds actions the
    model is wrong about shows realized >> predicted);
  dynamics, open loop: prediction error at +1..+H blocks on held-out recordings, relative
    to "nothing moves" (< 1: better than predicting no motion);
  search and representation: CEM through the real simulator (`oracle.py`) with the latent
    cost and with the env's true state distance, on the first pairs.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..data.rollouts import RolloutFile
from ..data.windows import window_starts
from ..planning.agent import LeWMAgent
from .oracle import oracle_rows
from .policy import Policy


# ------------------------------------------------------------ pair difficulty
def pair_difficulty(env: gym.Env, starts: np.ndarray, goals: np.ndarray) -> dict[str, dict[str, Any]]:
    """{quantity: {median, p90, unit}} over the pairs, from the env class's declaration ({} without one)."""
    declare = getattr(type(env.unwrapped), "pair_difficulty", None)
    if declare is None or len(starts) == 0:
        return {}
    return {name: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "unit": unit}
            for name, (v, unit) in declare(np.asarray(starts), np.asarray(goals)).items()}


def difficulty_line(d: dict[str, dict[str, Any]]) -> str:
    parts = [f"{name.replace('_', ' ')} {q['median']:.3g} / {q['p90']:.3g} {q['unit']}" for name, q in d.items()]
    return "Pair difficulty (median / p90): " + ", ".join(parts) + "."


# ------------------------------------------------------------ exploitation gap
def gap_stats(pred: np.ndarray, goal: np.ndarray, realized: np.ndarray) -> dict[str, Any]:
    """Predicted ||z_pred - z_goal||^2 versus realized ||enc(frame reached) - z_goal||^2, rows (N, D)."""
    p = np.square(pred - goal).sum(-1)
    r = np.square(realized - goal).sum(-1)
    ratio = r / np.maximum(p, 1e-12)  # a predicted cost of exactly 0 would make the ratio meaningless
    return {"n": int(len(p)), "median_predicted": float(np.median(p)), "median_realized": float(np.median(r)),
            "median_gap": float(np.median(r - p)), "median_ratio": float(np.median(ratio))}


class GapRecorder:
    """Pairs each of the agent's solves with the frame its sub-env reaches after the executed blocks.

    `watch(policy)` wraps the agent's policy for one `run_pairs` call. A solve at a call
    starts R*frameskip env steps; the frame seen at the call after them is the one reached.
    Solves whose episode ends first (success or budget) are counted as `unrealized`.
    """

    def __init__(self, agent: LeWMAgent):
        self.agent = agent
        self.steps = agent.receding_horizon * agent.cfg.frameskip  # the blocks each solve executes
        self.pred: list[np.ndarray] = []
        self.goal: list[np.ndarray] = []
        self.realized: list[np.ndarray] = []
        self.pending: dict[int, list] = {}   # sub-env -> [predicted, goal, env steps left]
        self.unrealized = 0
        agent.recorder = []

    def watch(self, policy: Policy) -> Policy:
        self.unrealized += len(self.pending)
        self.pending = {}

        def watched(obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
            self._realize(obs["pixels"], active)
            start = len(self.agent.recorder)
            actions = policy(obs, active)
            for i, z, g in self.agent.recorder[start:]:
                self.pending[int(i)] = [z, g, self.steps]
            for i in np.flatnonzero(active):
                if i in self.pending:
                    self.pending[i][2] -= 1
            return actions
        return watched

    def _realize(self, pixels: np.ndarray, active: np.ndarray) -> None:
        done = [i for i, (_, _, left) in self.pending.items() if left == 0]
        stale = [i for i, (_, _, left) in self.pending.items() if left > 0 and not active[i]]
        for i in stale:                         # the episode ended inside the executed blocks
            del self.pending[i]
        self.unrealized += len(stale)
        if done:
            self.realized.append(self.agent.encode_frames(pixels[done]))
            for i in done:
                z, g, _ = self.pending.pop(i)
                self.pred.append(z)
                self.goal.append(g)

    def finish(self) -> dict[str, Any]:
        self.agent.recorder = None
        self.unrealized += len(self.pending)
        if not self.pred:
            return {"n": 0, "unrealized": self.unrealized}
        stats = gap_stats(np.stack(self.pred), np.stack(self.goal), np.concatenate(self.realized))
        return {**stats, "unrealized": self.unrealized}


# ------------------------------------------------------------ open-loop error
def open_loop_stats(pred: np.ndarray, future: np.ndarray, start: np.ndarray) -> dict[str, list[float]]:
    """pred/future (B, H, D), start (B, D): mean squared error per step, and relative to "nothing moves"."""
    err = np.square(pred - future).sum(-1).mean(0)                    # (H,)
    still = np.square(future - start[:, None]).sum(-1).mean(0)        # the error of predicting z_t forever
    return {"sq_error": err.tolist(), "relative": (err / np.maximum(still, 1e-12)).tolist()}


@torch.inference_mode()
def open_loop_error(agent: LeWMAgent, rf: RolloutFile, episodes: np.ndarray, windows: int,
                    seed: int) -> dict[str, Any]:
    """Roll the predictor out from single frames of held-out episodes over the recorded blocks."""
    fs, horizon = agent.cfg.frameskip, agent.planner_cfg.horizon
    starts = window_starts(rf, episodes, horizon * fs)
    if len(starts) == 0:
        return {"skipped": f"no held-out episode is longer than {horizon * fs} steps"}
    rng = np.random.default_rng([seed, 6007])
    starts = np.sort(rng.choice(starts, min(windows, len(starts)), replace=False))
    pixels, actions = rf.column("pixels"), rf.column("action")
    pred, future, start = [], [], []
    for chunk in np.array_split(starts, -(-len(starts) // 32)):      # 32 windows at a time bound memory
        rows = chunk[:, None] + fs * np.arange(horizon + 1)           # (b, H+1)
        frames = np.stack([pixels[int(r)] for r in rows.reshape(-1)])  # plain reads: h5py fancy ones are slow
        z = agent.encode_frames(frames).reshape(len(chunk), horizon + 1, -1)
        acts = np.stack([actions[int(t):int(t) + horizon * fs] for t in chunk])
        blocks = ((acts - agent.action_mean) / agent.action_std).reshape(len(chunk), 1, horizon, -1)
        zt = torch.from_numpy(z).to(agent.device)
        p = agent.model.rollout(zt[:, :1], torch.from_numpy(blocks.astype(np.float32)).to(agent.device))
        pred.append(p[:, 0].float().cpu().numpy())
        future.append(z[:, 1:])
        start.append(z[:, 0])
    stats = open_loop_stats(np.concatenate(pred), np.concatenate(future), np.concatenate(start))
    return {"windows": int(len(starts)), "horizon_blocks": horizon, **stats}


# ------------------------------------------------------------ the report
def diagnose(agent: LeWMAgent, gap: GapRecorder, rf: RolloutFile | None, held: np.ndarray, envs: list[gym.Env],
             pairs: list, lewm_success: np.ndarray, *, budget: int, seed: int, oracle_pairs: int, windows: int,
             oracle_samples: int, oracle_iterations: int) -> dict[str, Any]:
    """report["diagnostics"]: exploitation gap, open-loop error (`windows` held-out windows), and oracle
    rows on the first `oracle_pairs` of `pairs` (CEM of `oracle_samples` x `oracle_iterations`)."""
    k = min(oracle_pairs, len(pairs))
    return {"exploitation_gap": gap.finish(),
            "open_loop": (open_loop_error(agent, rf, held, windows, seed) if rf is not None
                          else {"skipped": "no dataset (--env mode)"}),
            "oracle": oracle_rows(agent, envs[:k], pairs[:k], lewm_success[:k], budget, oracle_samples,
                                  oracle_iterations, seed)}


def diagnostics_markdown(d: dict[str, Any]) -> str:
    """The diagnostics table (appended to the eval report's markdown)."""
    rows = ["| seat | measure | value |", "|---|---|---|"]
    g = d.get("exploitation_gap", {})
    if g.get("n"):
        rows.append(f"| dynamics (exploited) | latent cost of executed plans: predicted / realized (median) | "
                    f"{g['median_predicted']:.3g} / {g['median_realized']:.3g}; gap {g['median_gap']:+.3g}, "
                    f"ratio {g['median_ratio']:.3g}x (n={g['n']}, {g['unrealized']} unrealized) |")
    elif g:
        rows.append(f"| dynamics (exploited) | | no executed plan ran to its end ({g['unrealized']} cut short) |")
    o = d.get("open_loop", {})
    if "relative" in o:
        rel = " / ".join(f"{v:.2f}" for v in o["relative"])
        rows.append(f"| dynamics (open loop) | error relative to \"nothing moves\" at +1..+{o['horizon_blocks']} "
                    f"blocks ({o['windows']} windows) | {rel} |")
    else:
        rows.append(f"| dynamics (open loop) | | skipped: {o.get('skipped', 'not run')} |")
    orc = d.get("oracle", {})
    if "sim_latent" in orc:
        n = orc["pairs"]
        rows += [f"| search + representation | simulator + latent cost: success on the first {n} pairs | "
                 f"{100 * orc['sim_latent']:.0f}% |",
                 f"| search | simulator + true state cost: success | {100 * orc['sim_true']:.0f}% |",
                 f"| (reference) | LeWM on the same {n} pairs | {100 * orc['lewm']:.0f}% |"]
    else:
        rows.append(f"| search (oracle) | | skipped: {orc.get('skipped', 'not run')} |")
    return "\n".join(["Diagnostics (sim+true fails: search; sim+latent fails but sim+true works: representation; "
                      "sim+latent works but LeWM fails: dynamics):", "", *rows])
