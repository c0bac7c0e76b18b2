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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from lewm_envs import check_pixel_settings

from .agent import LeWMAgent
from .checkpoint import CheckpointMeta, weights_sha256
from .data import split_episodes
from .diagnostics import GapRecorder, diagnose, difficulty_line, markdown as diagnostics_markdown, pair_difficulty
from .progress import Progress
from .rollouts import RolloutFile

Policy = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]  # (batched obs, active) -> actions
# A baseline for the same table: (seed, action space) -> Policy, built once per seed.
PolicyFactory = Callable[[int, gym.spaces.Box], Policy]


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str
    data: str | None = None              # rollout file with held-out episodes ...
    env_id: str | None = None            # ... or goals from the env's own reset
    episodes: int = 50
    seeds: tuple[int, ...] = (0, 1, 2)
    goal_offset: int = 25
    budget: int = 50
    device: str = "auto"
    precision: str = "auto"
    planner: dict[str, Any] = field(default_factory=dict)   # PlannerConfig overrides
    baselines: bool = True               # random and replay rows
    video: str | None = None             # folder for MP4s of the agent's first pairs of each seed
    video_episodes: int = 2              # pairs filmed per seed
    diagnose: bool = False               # report where planning fails (diagnostics.py); slow
    diagnose_pairs: int = 10             # oracle planners run on this many first pairs of the first seed
    diagnose_windows: int = 256          # held-out windows for the open-loop prediction error
    oracle_samples: int = 64             # the oracle CEM's samples and iterations per block
    oracle_iterations: int = 3
    progress: bool = True                # progress of the agent's steps, with ETA (plain lines off a terminal)

    def __post_init__(self) -> None:
        if (self.data is None) == (self.env_id is None):
            raise ValueError("give exactly one of --data (held-out pairs) or --env (goals from env.reset)")
        for name in ("episodes", "goal_offset", "budget", "video_episodes", "diagnose_pairs", "diagnose_windows",
                     "oracle_samples", "oracle_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("--seeds: give at least one seed")


@dataclass(frozen=True)
class Pair:
    state: np.ndarray
    goal_state: np.ndarray
    actions: np.ndarray | None = None    # recorded actions from start to goal (dataset mode)
    episode: int = -1
    start: int = -1


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def held_out_episodes(rf: RolloutFile, meta: CheckpointMeta) -> tuple[np.ndarray, str]:
    """The checkpoint's validation episodes if `rf` is its training file, else every episode."""
    t = meta.training
    seed = t.get("data_recipe", {}).get("seed", rf.attr("seed"))  # older checkpoints did not record it
    same = (t.get("data_episodes") == rf.num_episodes and t.get("data_frames") == rf.num_frames
            and seed == rf.attr("seed") and "train_config" in t)
    if same:
        tc = t["train_config"]
        val = split_episodes(rf.num_episodes, tc["val_fraction"], tc["seed"]).val_episodes
        return val, "validation split of the training file"
    return np.arange(rf.num_episodes), "every episode (this file was not the training file)"


def make_env(env_id: str, env_kwargs: dict[str, Any], budget: int) -> gym.Env:
    return gym.make(env_id, **env_kwargs, max_episode_steps=budget + 1)


def sample_pairs(rf: RolloutFile, episodes: np.ndarray, n: int, offset: int, seed: int,
                 solved: Callable[[Pair], bool]) -> tuple[list[Pair], int]:
    """`n` seeded (start, start+offset) pairs from `episodes`; starts already solved are skipped."""
    lengths = rf.episode_lengths[episodes]
    eligible = episodes[lengths > offset]
    if len(eligible) == 0:
        raise ValueError(f"--goal-offset {offset}: no held-out episode is longer than {offset} steps "
                         f"(longest: {int(lengths.max()) if len(lengths) else 0})")
    rng = np.random.default_rng([seed, 7919])
    states, actions = rf.column("state"), rf.column("action")
    pairs: list[Pair] = []
    skipped, seen = 0, set()
    capacity = int((rf.episode_lengths[eligible] - offset).sum())
    while len(pairs) < n:
        if len(seen) >= capacity:
            raise ValueError(f"only {len(pairs)} usable start/goal pairs in {len(eligible)} held-out episodes "
                             f"({skipped} skipped as already solved); asked for {n}: collect more data or "
                             "lower --episodes")
        ep = int(rng.choice(eligible))
        t = int(rng.integers(0, rf.episode_lengths[ep] - offset))
        if (ep, t) in seen:
            continue
        seen.add((ep, t))
        row = int(rf.episode_starts[ep]) + t
        pair = Pair(states[row], states[row + offset], actions[row:row + offset], ep, t)
        if solved(pair):
            skipped += 1
            continue
        pairs.append(pair)
    return pairs, skipped


def run_pairs(policy: Policy, pairs: list[Pair], envs: list[gym.Env], budget: int,
              record: dict[int, list] | None = None, progress: Progress | None = None) -> np.ndarray:
    """Play every pair for `budget` steps in lockstep; returns success flags.

    `record[i]` (for the pair indices given as keys) receives a `video.Snapshot` after the
    reset and after each of pair i's steps; it ends at its first success. `progress` counts
    lockstep steps (all `budget` of them, also when every pair succeeds early).
    """
    obs = [env.reset(options={"state": p.state, "goal_state": p.goal_state})[0] for env, p in zip(envs, pairs)]
    success = np.zeros(len(pairs), bool)
    if record:
        from .video import Snapshot

        def snap(i: int, t: int) -> None:
            record[i].append(Snapshot(obs[i]["pixels"].copy(), obs[i]["goal"].copy(), t, bool(success[i])))
        for i in record:
            snap(i, 0)
    for t in range(1, budget + 1):
        active = ~success
        batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}  # every key: baselines may use low-dim ones
        actions = policy(batch, active)
        for i in np.flatnonzero(active):
            obs[i], _, _, _, info = envs[i].step(actions[i])
            success[i] = bool(info["is_success"])
            if record and i in record:
                snap(i, t)
        if progress is not None:
            progress.update(budget - t + 1 if success.all() else 1)
        if success.all():
            break
    return success


def _replay_policy(pairs: list[Pair], action_dim: int) -> Policy:
    step = np.zeros(len(pairs), int)

    def policy(obs: dict, active: np.ndarray) -> np.ndarray:
        out = np.zeros((len(pairs), action_dim), np.float32)  # after the recording: stand still
        for i, p in enumerate(pairs):
            if step[i] < len(p.actions):
                out[i] = p.actions[step[i]]
            step[i] += 1
        return out
    return policy


def _random_policy(seed: int, space: gym.spaces.Box) -> Policy:
    rng = np.random.default_rng([seed, 104729])
    return lambda obs, active: rng.uniform(space.low, space.high, (len(active), space.shape[0])).astype(np.float32)


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


def evaluate(cfg: EvalConfig, on_seed: Callable[[str, int, float], None] | None = None,
             extra: dict[str, PolicyFactory] | None = None) -> dict[str, Any]:
    """Run the protocol; returns the report (rows: lewm, random, replay, then `extra`) as a dict."""
    if cfg.video:
        from .video import require
        require()  # a missing dependency must fail before the evaluation, not after it
    agent = LeWMAgent.from_pretrained(cfg.checkpoint, cfg.device, precision=cfg.precision, **cfg.planner)
    meta = agent.meta
    rf = RolloutFile(cfg.data) if cfg.data else None
    env_id = (rf.env_id or meta.env_id) if rf else cfg.env_id  # a reference-layout file names no env
    if env_id not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}; registered lewm envs: "
                         f"{sorted(k for k in gym.registry if k.startswith('lewm/'))}")
    if meta.env_id is not None and meta.env_id != env_id:
        raise ValueError(f"checkpoint {cfg.checkpoint} was trained on {meta.env_id}, not {env_id}")
    env_kwargs = dict(rf.env_kwargs if rf and rf.env_id else meta.env_kwargs)  # (nor its env's kwargs)
    env_kwargs.pop("terminate_on_success", None)  # success at any step is tracked here
    if meta.env_id is not None:
        check_pixel_settings(env_id, env_kwargs, meta.env_kwargs, f"--data: {cfg.data}" if rf else "the env")
    envs = [make_env(env_id, env_kwargs, cfg.budget) for _ in range(cfg.episodes)]
    probe = envs[0]
    space = probe.action_space
    held, held_note = held_out_episodes(rf, meta) if rf else (np.zeros(0, int), "env.reset goals")

    def solved(p: Pair) -> bool:
        return bool(probe.reset(options={"state": p.state, "goal_state": p.goal_state})[1]["is_success"])

    factories: dict[str, PolicyFactory | None] = {"lewm": None}
    if cfg.baselines:
        factories["random"] = _random_policy
        if rf:
            factories["replay"] = None
    factories.update(extra or {})
    results: dict[str, dict[int, np.ndarray]] = {r: {} for r in factories}
    seconds = dict.fromkeys(factories, 0.0)
    skipped: dict[int, int] = {}
    plan_times: list[float] = []
    agent_steps = 0
    videos: list[str] = []
    seed_pairs: list[list[Pair]] = []
    gap = GapRecorder(agent) if cfg.diagnose else None
    bar = Progress(len(cfg.seeds) * cfg.budget, "eval lewm", unit="step", enabled=cfg.progress)
    for seed in cfg.seeds:
        if rf:
            pairs, skipped[seed] = sample_pairs(rf, held, cfg.episodes, cfg.goal_offset, seed, solved)
        else:
            pairs, skipped[seed] = _env_pairs(probe, cfg.episodes, seed)
        seed_pairs.append(pairs)
        for name, factory in factories.items():
            record = ({i: [] for i in range(min(cfg.video_episodes, len(pairs)))}
                      if cfg.video and name == "lewm" else None)
            if name == "lewm":
                agent.reset()
                agent.planner.seed(seed)
                n_before = len(agent.solve_seconds)
                policy = counter = _Counter(lambda obs, active: agent.act(obs, active=active))
                if gap is not None:
                    policy = gap.watch(counter)
            elif name == "replay":
                policy = _replay_policy(pairs, space.shape[0])
            else:
                policy = factory(seed, space)
            t0 = time.perf_counter()
            results[name][seed] = run_pairs(policy, pairs, envs, cfg.budget, record,
                                            bar if name == "lewm" else None)
            seconds[name] += time.perf_counter() - t0
            if record:
                videos += _write_videos(cfg, env_id, seed, record, results[name][seed])
            if name == "lewm":
                plan_times += list(agent.solve_seconds)[n_before:]
                agent_steps += counter.steps
            if on_seed:
                on_seed(name, seed, float(results[name][seed].mean()))
    bar.close()
    times = np.asarray(plan_times)
    n_episodes = cfg.episodes * len(cfg.seeds)
    rows = {r: {**summarize(results[r], skipped), "seconds_per_episode": seconds[r] / n_episodes}
            for r in factories}
    report = {"env_id": env_id, "checkpoint": str(cfg.checkpoint), "weights_sha256": weights_sha256(cfg.checkpoint),
              "data": cfg.data, "held_out": held_note,
              "held_out_episodes": int(len(held)), "episodes_per_seed": cfg.episodes, "seeds": list(cfg.seeds),
              "goal_offset": cfg.goal_offset, "budget": cfg.budget, "device": str(agent.device),
              "precision": agent.precision_choice.precision, "precision_reason": agent.precision_choice.reason,
              "planner": agent.planner_cfg.to_dict(),
              "cost_probe": None if agent.cost_probe is None or not agent.planner_cfg.probe_weight
              else agent.cost_probe[1],
              "rows": rows,
              "planning": {"solves": int(len(times)), "envs_per_solve": cfg.episodes,
                           "median_s_per_solve": float(np.median(times)) if len(times) else None,
                           "p95_s_per_solve": float(np.percentile(times, 95)) if len(times) else None,
                           "s_per_env_step": float(times.sum() / max(agent_steps, 1))}}
    every = [p for pairs in seed_pairs for p in pairs]
    report["pair_difficulty"] = pair_difficulty(probe, np.stack([p.state for p in every]),
                                                np.stack([p.goal_state for p in every]))
    if gap is not None:
        report["diagnostics"] = diagnose(cfg, agent, gap, rf, held, envs, seed_pairs[0],
                                         results["lewm"][cfg.seeds[0]])
    if cfg.video:
        report["videos"] = videos
    for env in envs:
        env.close()
    if rf:
        rf.close()
    return report


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


class _Counter:
    """Wraps a policy and counts the env steps it acts for (for planning time per env step)."""

    def __init__(self, policy: Policy):
        self.policy, self.steps = policy, 0

    def __call__(self, obs: dict, active: np.ndarray) -> np.ndarray:
        self.steps += int(active.sum())
        return self.policy(obs, active)


def _env_pairs(env: gym.Env, n: int, seed: int) -> tuple[list[Pair], int]:
    """Start/goal pairs from the env's own seeded reset (no dataset)."""
    pairs, skipped, k = [], 0, 0
    while len(pairs) < n:
        _, info = env.reset(seed=int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
        k += 1
        u = env.unwrapped
        if info["is_success"]:
            skipped += 1
            continue
        pairs.append(Pair(u.get_state(), u.goal_state))
    return pairs, skipped


def planner_line(report: dict[str, Any]) -> str:
    """The planner settings behind the lewm row, as the table's reader needs them."""
    c = report["planner"]
    line = (f"Planner: CEM {c['num_samples']} samples x {c['num_iterations']} iterations, {c['num_elites']} elites, "
            f"horizon {c['horizon']}, replan every {c['receding_horizon']} blocks, cost {c['cost']!r}, "
            f"noise beta {c['noise_beta']:g}")
    probe = report.get("cost_probe")
    if probe:
        line += (f", cost probe of {probe.get('quantity')} fitted on {probe.get('data')} at weight "
                 f"{c['probe_weight']:g}")
    return line + "."


def markdown(report: dict[str, Any]) -> str:
    p = report["planning"]
    rows = report["rows"]
    paper = any(r["skipped"] for r in rows.values()) and all("paper" in r for r in rows.values())
    lines = [f"`{report['env_id']}` — {report['episodes_per_seed']} pairs x {len(report['seeds'])} seeds, "
             f"goal +{report['goal_offset']} steps, budget {report['budget']}; held out: {report['held_out']}", "",
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
