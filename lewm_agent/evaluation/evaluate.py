"""The evaluation protocol (the paper's, made honest).

Start = a frame of a held-out episode, goal = the frame `goal_offset` env steps later in
the same episode, `budget` env steps, success if the env reports success at any step.
`episodes` pairs per seed; pairs already successful at the start are skipped and counted.
The same pairs are given to the agent, to a random policy and to a replay of the recorded
actions (the reachable upper bound). Without a dataset (`env_id` mode) start and goal
come from the env's own seeded `reset`. All episodes of a seed run in lockstep so that
the agent plans for all of them in one batched call. Every report says what its pairs ask
(`pair_difficulty`); `diagnose` adds where planning fails (diagnostics.py, oracle.py).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lewm_envs import check_dynamics_settings, check_pixel_settings

from ..checkpoint import CheckpointMeta, weights_sha256
from ..config import fields_from_dict
from ..data.rollouts import RolloutFile
from ..flags import CHECKPOINT_HELP, check_ranges, option
from ..planning.agent import PLANNER_KINDS, LeWMAgent
from ..precision import PRECISIONS
from ..progress import Progress
from .diagnostics import GapRecorder, diagnose, diagnostics_markdown, difficulty_line, pair_difficulty
from .pairs import Pair, env_pairs, held_out_episodes, recipe_expert, run_pairs, sample_pairs
from .policy import PolicyFactory
from .resume import SeedLog
from .rows import LeWMRow, Row, factory_row, random_policy, replay_row
from .work import PairSteps


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str = option(help=CHECKPOINT_HELP)
    data: str | None = option(None, "rollout file: start/goal pairs from its held-out episodes")
    env_id: str | None = option(None, "no dataset: pairs along episodes of the env's expert", flag="--env")
    episodes: int = option(50, "pairs per seed", low=1)
    seeds: tuple[int, ...] = option((0, 1, 2), nargs="+", low=0)
    goal_offset: int | None = option(None, "with --data: env steps from start to goal frame (default 25)", low=1)
    goal_steps: int | None = option(None, "with --env: starts along episodes of the env's expert (as the checkpoint's "
                                          "data recipe collected them), goals K env steps on (default 25, the --data "
                                          "protocol's offset)", metavar="K", low=1)
    budget: int = option(50, "env steps allowed", low=1)
    device: str = option("auto")
    precision: str = option("auto", "autocast of the imagined rollouts: auto = bf16 on CUDA GPUs that have it; on a "
                                    "CPU measured at the first plan (bf16 only where clearly faster, same costs)",
                            choices=list(PRECISIONS))
    planner_kind: str = option("cem", "cem: the search; policy: the checkpoint's actor alone (`lewm train-policy`); "
                                      "policy+cem: CEM started from the actor's plan, fewer iterations",
                               choices=list(PLANNER_KINDS))
    seeded_iterations: int | None = option(None, "with policy+cem: CEM iterations (default a third of the "
                                                 "planner's)", metavar="N", low=1)
    planner: dict[str, Any] = field(default_factory=dict)   # PlannerConfig overrides
    baselines: bool = option(True, "skip the random and replay rows", flag="--no-baselines")
    video: str | None = option(None, "MP4s of the agent's first pairs of each seed", metavar="DIR")
    video_episodes: int = option(2, "pairs filmed per seed", metavar="K", low=1)
    diagnose: bool = option(False, "also report where planning fails: exploitation gap, open-loop error, simulator "
                                   "oracles (slow)")
    diagnose_pairs: int = option(10, "oracle planners run on the first K pairs of the first seed", metavar="K", low=1)
    diagnose_windows: int = option(256, "held-out windows for the open-loop error", low=1)
    oracle_samples: int = option(64, "oracle CEM samples per iteration", low=1)
    oracle_iterations: int = option(3, "oracle CEM iterations per block", low=1)
    # finished seeds kept here as they end, so that the same evaluation resumes after a crash
    # (the CLI's --out or --card folder); not with --video or --diagnose, which need every seed's play
    resume_file: str | None = None
    # progress of the agent's steps, with ETA (plain lines off a terminal)
    progress: bool = option(True, "no progress bar or progress lines", flag="--no-progress")

    from_dict = classmethod(fields_from_dict)  # the JSON reader of every config (config.py)

    def __post_init__(self) -> None:
        if (self.data is None) == (self.env_id is None):
            raise ValueError("give exactly one of --data (held-out pairs) or --env (goals from env.reset)")
        if self.env_id is not None and self.goal_offset is not None:
            raise ValueError("--goal-offset: applies to --data pairs (two frames of one episode); with --env, "
                             "--goal-steps K poses goals the env's expert reaches in K steps")
        if self.data is not None and self.goal_steps is not None:
            raise ValueError("--goal-steps: applies to --env; with --data the goal is the frame --goal-offset "
                             "steps on")
        default = "goal_offset" if self.data is not None else "goal_steps"  # the protocol's 25 steps
        if getattr(self, default) is None:
            object.__setattr__(self, default, 25)
        for name in ("episodes", "goal_offset", "goal_steps", "budget", "video_episodes", "diagnose_pairs",
                     "diagnose_windows", "oracle_samples", "oracle_iterations"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("--seeds: give at least one seed")
        check_ranges(self)  # every declared range (flags.py), after the checks above


def _goal_words(report: dict[str, Any]) -> str:
    if report.get("goal_steps"):
        return f"goal: {report['goal_steps']} expert steps on from a start along the env's expert episodes"
    return f"goal +{report['goal_offset']} steps"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def make_eval_env(env_id: str, env_kwargs: dict[str, Any], budget: int) -> gym.Env:
    return gym.make(env_id, **env_kwargs, max_episode_steps=budget + 1)


def _rates(wins: dict[int, int], tries: dict[int, int]) -> dict[str, Any]:
    per_seed = {s: wins[s] / tries[s] for s in wins}
    total, n = int(sum(wins.values())), int(sum(tries.values()))
    rates = np.array(list(per_seed.values()))
    return {"success": total / n, "mean": float(rates.mean()), "std": float(rates.std(ddof=1)) if len(rates) > 1
            else 0.0, "ci95": list(wilson(total, n)), "per_seed": per_seed, "n": n}


def summarize(successes: dict[int, np.ndarray], skipped: dict[int, int]) -> dict[str, Any]:
    """Success over the pairs played (honest), and under the paper's protocol ("paper"): every drawn
    pair counts, so a start that already satisfied the goal, skipped here, counts as a success."""
    wins = {s: int(v.sum()) for s, v in successes.items()}
    tries = {s: len(v) for s, v in successes.items()}
    paper = _rates({s: wins[s] + skipped[s] for s in wins}, {s: tries[s] + skipped[s] for s in wins})
    return {**_rates(wins, tries), "skipped": int(sum(skipped.values())), "paper": paper}


@dataclass
class _Played:
    """What the seeds' games left: success flags and seconds per row, skipped starts, pairs, videos."""
    results: dict[str, dict[int, np.ndarray]]
    seconds: dict[str, float]
    skipped: dict[int, int] = field(default_factory=dict)
    seed_pairs: list[list[Pair]] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)


def evaluate(cfg: EvalConfig, on_seed: Callable[[str, int, float], None] | None = None,
             extra: dict[str, PolicyFactory] | None = None) -> dict[str, Any]:
    """Run the protocol; returns the report (rows: lewm, random, replay, then `extra`) as a dict."""
    if cfg.video:
        from .video import require
        require()  # a missing dependency must fail before the evaluation, not after it
    resumable = cfg.resume_file if not (cfg.video or cfg.diagnose) else None
    precision = SeedLog.precision_of(resumable) or cfg.precision  # a resumed run keeps its precision
    agent = LeWMAgent.from_pretrained(cfg.checkpoint, cfg.device, precision=precision, planner_kind=cfg.planner_kind,
                                      seeded_iterations=cfg.seeded_iterations, **cfg.planner)
    rf = RolloutFile(cfg.data) if cfg.data else None
    env_id, env_kwargs = _env_of(cfg, agent.meta, rf)
    envs = [make_eval_env(env_id, env_kwargs, cfg.budget) for _ in range(cfg.episodes)]
    env = envs[0]  # checks starts, draws --env goals and declares pair difficulty; plays pair 0 too
    held, held_note = (held_out_episodes(rf, agent.meta) if rf
                       else (np.zeros(0, int), "windows of the env's expert episodes"))

    def solved(p: Pair) -> bool:
        return bool(env.reset(options={"state": p.state, "goal_state": p.goal_state})[1]["is_success"])

    expert_kwargs, max_steps = recipe_expert(agent.meta, env_id) if not rf else ({}, None)

    def draw(seed: int) -> tuple[list[Pair], int]:
        return (sample_pairs(rf, held, cfg.episodes, cfg.goal_offset, seed, solved) if rf
                else env_pairs(env, cfg.episodes, seed, cfg.goal_steps, expert_kwargs, max_steps))

    gap = GapRecorder(agent) if cfg.diagnose else None
    # at most every pair of every seed for the whole budget; PairSteps revises it as pairs succeed
    bar = Progress(len(cfg.seeds) * cfg.episodes * cfg.budget, "eval lewm", unit="pair-step", enabled=cfg.progress)
    lewm = LeWMRow(agent, gap, PairSteps(bar, len(cfg.seeds), cfg.episodes, cfg.budget))
    rows = _rows(lewm, cfg.baselines, rf is not None, env.action_space, extra or {})
    log = SeedLog(resumable, _resume_key(cfg, agent, list(rows)))
    played = _play(cfg, env_id, list(rows.values()), envs, draw, on_seed, log)
    bar.close()
    report = _report(cfg, env_id, agent, lewm, held, held_note, played)
    all_pairs = [p for pairs in played.seed_pairs for p in pairs]
    report["pair_difficulty"] = pair_difficulty(env, np.stack([p.state for p in all_pairs]),
                                                np.stack([p.goal_state for p in all_pairs]))
    if gap is not None:
        report["diagnostics"] = _diagnostics(cfg, agent, gap, rf, held, envs, played)
    if cfg.video:
        report["videos"] = played.videos
    log.finish()  # every seed is in the report now
    for e in envs:
        e.close()
    if rf:
        rf.close()
    return report


def _diagnostics(cfg: EvalConfig, agent: LeWMAgent, gap: GapRecorder, rf: RolloutFile | None, held: np.ndarray,
                 envs: list[gym.Env], played: _Played) -> dict[str, Any]:
    """Where planning fails, on the first seed's pairs (diagnostics.py takes the few settings it reads)."""
    return diagnose(agent, gap, rf, held, envs, played.seed_pairs[0], played.results["lewm"][cfg.seeds[0]],
                    budget=cfg.budget, seed=cfg.seeds[0], oracle_pairs=cfg.diagnose_pairs,
                    windows=cfg.diagnose_windows, oracle_samples=cfg.oracle_samples,
                    oracle_iterations=cfg.oracle_iterations)


def _rows(lewm: LeWMRow, baselines: bool, replay: bool, space: gym.spaces.Box,
          extra: dict[str, PolicyFactory]) -> dict[str, Row]:
    """The table's rows in order: lewm; random and (with a dataset) replay unless `baselines` is off;
    then every extra policy."""
    rows: dict[str, Row] = {"lewm": lewm}
    if baselines:
        rows["random"] = factory_row("random", random_policy, space)
        if replay:
            rows["replay"] = replay_row(space.shape[0])
    rows.update({name: factory_row(name, f, space) for name, f in extra.items()})
    return rows


def _env_of(cfg: EvalConfig, meta: CheckpointMeta, rf: RolloutFile | None) -> tuple[str, dict[str, Any]]:
    """The env id and kwargs the pairs are played in; refuses one the checkpoint was not trained for."""
    env_id = (rf.env_id or meta.env_id) if rf else cfg.env_id  # a reference-layout file names no env
    if env_id not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}; registered lewm envs: "
                         f"{sorted(k for k in gym.registry if k.startswith('lewm/'))}")
    if meta.env_id is not None and meta.env_id != env_id:
        raise ValueError(f"checkpoint {cfg.checkpoint} was trained on {meta.env_id}, not {env_id}")
    env_kwargs = dict(rf.env_kwargs if rf and rf.env_id else meta.env_kwargs)  # (nor its env's kwargs)
    env_kwargs.pop("terminate_on_success", None)  # success at any step is tracked here
    if meta.env_id is not None:
        what = f"--data: {cfg.data}" if rf else "the env"
        check_pixel_settings(env_id, env_kwargs, meta.env_kwargs, what)
        check_dynamics_settings(env_id, env_kwargs, meta.env_kwargs, what)  # its pairs are played in the data's env
    return env_id, env_kwargs


def _resume_key(cfg: EvalConfig, agent: LeWMAgent, rows: list[str]) -> dict[str, Any]:
    """What makes two evaluations the same one (whose finished seeds may be reused)."""
    return {"weights": weights_sha256(cfg.checkpoint), "data": cfg.data, "env_id": cfg.env_id,
            "episodes": cfg.episodes, "goal_offset": cfg.goal_offset, "goal_steps": cfg.goal_steps,
            "budget": cfg.budget, "planner": agent.planner_cfg.to_dict(), **_kind(agent), "rows": rows,
            "precision": agent.precision_choice.precision}


def _resumed(played: _Played, rows: list[Row], seed: int, done: dict[str, Any]) -> None:
    for row in rows:
        played.results[row.name][seed] = np.asarray(done["rows"][row.name]["success"], bool)
        played.seconds[row.name] += done["rows"][row.name]["seconds"]
        if isinstance(row, LeWMRow):
            row.plan_times += done["plan_times"]
            row.steps += done["steps"]


def _play(cfg: EvalConfig, env_id: str, rows: list[Row], envs: list[gym.Env],
          draw: Callable[[int], tuple[list[Pair], int]], on_seed: Callable[[str, int, float], None] | None,
          log: SeedLog) -> _Played:
    """Every row plays each seed's pairs, the same pairs for every row; seeds in `log` are not replayed."""
    played = _Played({row.name: {} for row in rows}, {row.name: 0.0 for row in rows})
    lewm = next(row for row in rows if isinstance(row, LeWMRow))
    for seed in cfg.seeds:
        pairs, played.skipped[seed] = draw(seed)
        played.seed_pairs.append(pairs)
        done = log.get(seed)
        if done is not None:
            _resumed(played, rows, seed, done)
            if lewm.progress is not None:
                lewm.progress.skip()  # no work and no time: it must not raise the rate
            continue
        times_before, steps_before, seconds_before = len(lewm.plan_times), lewm.steps, dict(played.seconds)
        for row in rows:
            record = ({i: [] for i in range(min(cfg.video_episodes, len(pairs)))}
                      if cfg.video and row.films else None)
            policy = row.policy_for(seed, pairs)
            t0 = time.perf_counter()
            success = played.results[row.name][seed] = run_pairs(policy, pairs, envs, cfg.budget, record,
                                                                 row.progress)
            played.seconds[row.name] += time.perf_counter() - t0
            if record:
                played.videos += _write_videos(cfg, env_id, seed, record, success)
            row.played()
            if on_seed:
                on_seed(row.name, seed, float(success.mean()))
        log.put(seed, {"skipped": played.skipped[seed], "plan_times": lewm.plan_times[times_before:],
                       "steps": lewm.steps - steps_before,
                       "rows": {r.name: {"success": played.results[r.name][seed].tolist(),
                                         "seconds": played.seconds[r.name] - seconds_before[r.name]} for r in rows}})
    return played


def _report(cfg: EvalConfig, env_id: str, agent: LeWMAgent, lewm: LeWMRow, held: np.ndarray, held_note: str,
            played: _Played) -> dict[str, Any]:
    times = np.asarray(lewm.plan_times)
    n_episodes = cfg.episodes * len(cfg.seeds)
    rows = {r: {**summarize(played.results[r], played.skipped), "seconds_per_episode": played.seconds[r] / n_episodes}
            for r in played.results}
    return {"env_id": env_id, "checkpoint": str(cfg.checkpoint), "weights_sha256": weights_sha256(cfg.checkpoint),
            "data": cfg.data, "held_out": held_note,
            "held_out_episodes": int(len(held)), "episodes_per_seed": cfg.episodes, "seeds": list(cfg.seeds),
            "goal_offset": cfg.goal_offset, **({"goal_steps": cfg.goal_steps} if cfg.env_id else {}),
            "budget": cfg.budget, "device": str(agent.device),
            "precision": agent.precision_choice.precision, "precision_reason": agent.precision_choice.reason,
            "planner": agent.planner_cfg.to_dict(), **_kind(agent),
            "cost_probe": None if agent.cost_probe is None or not agent.planner_cfg.probe_weight
            else agent.cost_probe[1],
            "rows": rows,
            "planning": {"solves": int(len(times)), "envs_per_solve": cfg.episodes,
                         "median_s_per_solve": float(np.median(times)) if len(times) else None,
                         "p95_s_per_solve": float(np.percentile(times, 95)) if len(times) else None,
                         "s_per_env_step": float(times.sum() / max(lewm.steps, 1))}}


def _kind(agent: LeWMAgent) -> dict[str, Any]:
    """The planner kind of a report (absent for plain CEM, so earlier reports and resume keys still match),
    with the actor's record where one plans."""
    if agent.planner_kind == "cem":
        return {}
    out: dict[str, Any] = {"planner_kind": agent.planner_kind, "actor": agent.actor[1].get("objective")}
    if agent.planner_kind == "policy+cem":
        out["seeded_iterations"] = agent.seeded_iterations
    return out


def _write_videos(cfg: EvalConfig, env_id: str, seed: int, record: dict[int, list],
                  success: np.ndarray) -> list[str]:
    """`<env>_seed<s>_pair<i>_{success,fail}.mp4` in cfg.video; drops the other outcome's file of a past run."""
    from .video import write_episode
    out, env_name = Path(cfg.video), env_id.split("/")[-1]
    paths = []
    for i, snapshots in record.items():
        base = f"{env_name}_seed{seed}_pair{i}"
        outcome, other = ("success", "fail") if success[i] else ("fail", "success")
        (out / f"{base}_{other}.mp4").unlink(missing_ok=True)
        path = write_episode(out / f"{base}_{outcome}.mp4", snapshots, f"LeWM | {env_id} | seed {seed} | pair {i}",
                             total_steps=cfg.budget)
        paths.append(str(path))
    return paths


def planner_line(report: dict[str, Any]) -> str:
    """The planner settings behind the lewm row, as the table's reader needs them."""
    c = report["planner"]
    kind = report.get("planner_kind", "cem")
    if kind == "policy":
        return (f"Planner: the checkpoint's actor alone (objective {report.get('actor')}), one forward pass per "
                f"action block, horizon {c['horizon']}.")
    if kind == "policy+cem":
        c = {**c, "num_iterations": report["seeded_iterations"]}
    line = ("Planner: CEM started from the actor's plan (kept among the samples, the best candidate returned),"
            if kind == "policy+cem" else "Planner: CEM")
    line += (f" {c['num_samples']} samples x {c['num_iterations']} iterations, {c['num_elites']} elites, "
            f"horizon {c['horizon']}, replan every {c['receding_horizon']} blocks, cost {c['cost']!r}, "
            f"noise beta {c['noise_beta']:g}")
    cost_probe = report.get("cost_probe")
    if cost_probe:
        line += (f", cost probe of {cost_probe.get('quantity')} fitted on {cost_probe.get('data')} at weight "
                 f"{c['probe_weight']:g}")
    return line + "."


def eval_markdown(report: dict[str, Any]) -> str:
    p = report["planning"]
    rows = report["rows"]
    paper = any(r["skipped"] for r in rows.values()) and all("paper" in r for r in rows.values())
    lines = [f"`{report['env_id']}` — {report['episodes_per_seed']} pairs x {len(report['seeds'])} seeds, "
             f"{_goal_words(report)}, budget {report['budget']}; held out: {report['held_out']}", "",
             "| policy | success (mean ± std over seeds) | pooled [95% Wilson] | per seed | skipped |"
             + (" paper protocol (skipped = success) |" if paper else "") + " s/episode |",
             "|---|---|---|---|---|" + ("---|" if paper else "") + "---|"]
    for name, r in rows.items():
        seeds = " / ".join(f"{100 * v:.0f}" for v in r["per_seed"].values())
        extra = ""
        if paper:
            q = r["paper"]
            extra = (f" {100 * q['mean']:.1f} ± {100 * q['std']:.1f}% [{100 * q['ci95'][0]:.1f}, "
                     f"{100 * q['ci95'][1]:.1f}] |")
        lines.append(f"| {name} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f}% | {100 * r['success']:.1f}% "
                     f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] | {seeds} | {r['skipped']} |{extra} "
                     f"{r['seconds_per_episode']:.2f} |")
    if paper:
        lines += ["", "Success is over the pairs played; pairs whose start already satisfied the goal were "
                      "skipped and redrawn (\"skipped\"). The paper's protocol keeps them and counts them as "
                      "successes: (successes + skipped) / (pairs + skipped), per seed; its interval is pooled."]
    if report.get("planner"):
        lines += ["", planner_line(report)]
    if p["median_s_per_solve"] is not None:
        why = f" ({report['precision_reason']})" if report.get("precision_reason") else ""
        lines += ["", f"Planning ({report['device']}, {report['precision']}{why}): {p['solves']} batched solves of "
                      f"{p['envs_per_solve']} envs, median {p['median_s_per_solve']:.2f} s, p95 "
                      f"{p['p95_s_per_solve']:.2f} s per solve; {1e3 * p['s_per_env_step']:.1f} ms per env step."]
    if report.get("pair_difficulty"):
        lines += ["", difficulty_line(report["pair_difficulty"])]
    if "diagnostics" in report:
        lines += ["", diagnostics_markdown(report["diagnostics"])]
    return "\n".join(lines) + "\n"
