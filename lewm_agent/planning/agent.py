"""LeWMAgent: goal-image-conditioned latent MPC behind `act(obs)` and SB3's `predict`.

Per sub-env the agent keeps a short history (the last `history` block-boundary frames
and the action blocks executed from them) and a queue of env actions. When a queue
runs dry the sub-env is at a block boundary and needs a plan: all such sub-envs are
planned in one batched CEM call (the context and goal images are encoded once per
plan), the first `receding_horizon` blocks are de-normalized, clipped to the action
space and queued, and the rest of the plan is kept for an optional warm start.
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ..config import PLANNER_KINDS, PlannerConfig
from ..device import resolve_device  # noqa: F401  (also re-exported here)
from ..model.world_model import WorldModel
from ..precision import PrecisionChoice, check_precision, choose, close
from .actor import GoalActor, fit_horizon, load_actor, save_actor
from .cost_probe import load_cost_probe, save_cost_probe
from .cuda_graph import GraphedSolver
from .obs_check import check_vectors, vector_shapes
from .planner import CEMPlanner

CPU_CHUNK = 2048  # imagined sequences per rollout call on CPU (cache-sized; see LeWMAgent.plan)


MIN_IMAGE_SIZE = 8
ENCODE_CHUNK = 256  # frames per encoder call in encode_frames: bounds memory at 224 px
# torch.compile modes the planner's imagined rollouts accept ("reduce-overhead" captures CUDA graphs).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH = "cudagraph"  # a whole CEM solve recorded as one CUDA graph (cuda_graph.py)


def _image_batch(obs: Mapping, key: str) -> np.ndarray:
    if key not in obs:
        raise ValueError(f"obs[{key!r}]: missing; expected a uint8 image (H, W, 3) or batch (N, H, W, 3) "
                         f"(observation keys present: {sorted(obs)})")
    x = obs[key]
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"obs[{key!r}]: expected dtype uint8 (H, W, 3) or (N, H, W, 3), got {x.dtype}")
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"obs[{key!r}]: expected shape (H, W, 3) or (N, H, W, 3), got {x.shape}")
    if x.shape[-3] != x.shape[-2] or x.shape[-2] < MIN_IMAGE_SIZE:
        # Other square sizes are resized to the model's (bilinear, antialiased); a stretched or
        # near-empty image would give a latent the model never saw.
        raise ValueError(f"obs[{key!r}]: expected square images of at least {MIN_IMAGE_SIZE} px (crop first), "
                         f"got {x.shape[-3]}x{x.shape[-2]}")
    return x


@dataclass
class _SubEnv:
    """What the agent remembers about one sub-env between `act` calls."""
    frames: deque                 # block-boundary pixels (H, W, 3), newest last, maxlen = history
    blocks: deque                 # normalized blocks executed from frames[:-1], maxlen = history - 1
    queue: deque = field(default_factory=deque)  # planned blocks (frameskip, action_dim) not yet started
    current: np.ndarray | None = None             # block being executed (frameskip, action_dim)
    step_in_block: int = 0
    goal: np.ndarray | None = None
    plan_tail: np.ndarray | None = None           # (H - R, A) unexecuted part of the last plan


class LeWMAgent:
    """A Gymnasium agent that plans in a LeWorldModel's latent space.

    Each `act(obs)` encodes the current and goal images (`obs["pixels"]`, `obs["goal"]`) and,
    when its previous plan is used up, solves for an action plan with CEM through the model's
    imagined rollouts; it returns actions in the env's action space, for one observation or a
    batch from a vector env. `predict` is stable-baselines3's policy interface. Build it with
    `LeWMAgent.from_pretrained("pusht")` (a shipped name or a checkpoint folder).

    Images are uint8 (H, W, 3), square, at least 8 px; a size other than the model's
    `cfg.image_size` is resized to it (bilinear, antialiased), so feed the size the checkpoint's
    env renders (`lewm_agent.make_env(checkpoint)`) for the results its card reports.
    """

    def __init__(self, model: WorldModel, meta: CheckpointMeta, device: str | torch.device = "auto",
                 planner: PlannerConfig | None = None, seed: int = 0, precision: str = "auto",
                 compile: str | None = None, cost_probe: tuple[torch.Tensor, dict[str, str]] | None = None,
                 *, actor: tuple[GoalActor, dict[str, str]] | None = None, planner_kind: str = "cem",
                 seeded_iterations: int | None = None):
        """precision: "fp32", "bf16" (autocast in the imagined rollouts) or "auto": bf16 on CUDA GPUs
        that have it; on a CPU, measured at the first plan (a few imagined rollouts of this model at
        both precisions, once per process and model shape) and bf16 only where clearly faster with
        the same costs (`precision_choice` says what was chosen and why).

        compile: None (eager); "cudagraph" (CUDA only): each whole CEM solve replayed from a CUDA
        graph recorded on the first solve of its shape, the same plans as eager, the GPU fast path;
        or a `torch.compile` mode for the imagined rollout and its cost, the model work of one CEM
        iteration ("reduce-overhead" replays that as a CUDA graph). Compiling takes tens of seconds
        per batch size; on this project's CPU it gained little.

        cost_probe: (P (latent_dim, k), its fit record) from `load_cost_probe`; the planner's
        `probe_weight` weighs it in the cost. `from_pretrained` loads the checkpoint's own.

        actor: (GoalActor, its training record) from `load_actor`; planner_kind: one of PLANNER_KINDS.
        "policy" replans at every block boundary (a plan is one forward pass); "policy+cem" runs
        `seeded_iterations` CEM iterations (default a third of the planner's, at least 1) from the
        actor's plan and returns the best candidate scored, the actor's plan included.
        """
        self.device = resolve_device(device)
        self._precision = check_precision("precision", precision)
        self._choice: PrecisionChoice | None = None
        self._bf16 = False          # what the autocast regions read: a plain bool, traceable by torch.compile
        if compile is not None and compile not in (*COMPILE_MODES, CUDA_GRAPH):
            raise ValueError(f"compile: expected None, {CUDA_GRAPH!r} or a torch.compile mode {COMPILE_MODES}, "
                             f"got {compile!r}")
        if compile == CUDA_GRAPH and self.device.type != "cuda":
            raise ValueError(f"compile: {CUDA_GRAPH!r} needs a CUDA device, got {self.device.type!r}")
        self.compile = compile
        if precision != "auto" or self.device.type != "cpu":  # nothing to measure: settle it now
            self._settle(choose(precision, self.device, None, lambda b: torch.zeros(1), close(0.01)))
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.cfg = model.cfg
        self.planner_cfg = planner or meta.planner
        self.cost_probe = self._check_probe(cost_probe)
        self.planner_kind, self.actor = planner_kind, self._check_actor(planner_kind, actor)
        if self.planner_kind == "policy" and self._choice is None:  # nothing imagined: nothing to time
            self._settle(PrecisionChoice("fp32", "auto: the actor alone plans, no imagined rollouts to measure"))
        if seeded_iterations is not None and self.planner_kind != "policy+cem":
            raise ValueError(f"seeded_iterations: only means something with planner_kind 'policy+cem', "
                             f"not {self.planner_kind!r}")
        self.seeded_iterations = seeded_iterations or max(1, round(self.planner_cfg.num_iterations / 3))
        search = replace(self.planner_cfg, num_iterations=self.seeded_iterations) \
            if self.planner_kind == "policy+cem" else self.planner_cfg
        self.planner = CEMPlanner(self.cfg.action_block_dim, search, self.device, seed, step_dim=self.cfg.action_dim)
        self._imagine = torch.compile(self._imagined_cost, mode=compile, dynamic=False, fullgraph=True) \
            if compile in COMPILE_MODES else self._imagined_cost
        self._solve_latent = GraphedSolver(self._cem, self.planner.draw_noise) if compile == CUDA_GRAPH else self._cem
        self._seed = seed
        self.action_mean = np.asarray(meta.action_mean, np.float32)
        self.action_std = np.asarray(meta.action_std, np.float32)
        self.action_low = np.asarray(meta.action_low, np.float32)
        self.action_high = np.asarray(meta.action_high, np.float32)
        # Action-space bounds in normalized block coordinates: CEM samples are clipped to them.
        fs = self.cfg.frameskip
        low_n, high_n = ((b - self.action_mean) / self.action_std for b in (self.action_low, self.action_high))
        self.normalized_low = torch.tensor(np.tile(low_n, fs), device=self.device)    # (A,)
        self.normalized_high = torch.tensor(np.tile(high_n, fs), device=self.device)
        self._envs: list[_SubEnv] = []
        self._shape: tuple[int, ...] | None = None
        self._vector_shapes: dict[str, tuple[int, ...]] | None = None  # of the env's observation vectors
        self.solve_seconds: deque[float] = deque(maxlen=10_000)  # wall time of each batched plan
        # Diagnostics (`lewm eval --diagnose`): a list to receive (sub-env index, predicted embedding
        # after the executed blocks, goal embedding) per solve; None keeps planning free of the extra work.
        self.recorder: list[tuple[int, np.ndarray, np.ndarray]] | None = None

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                        planner: PlannerConfig | None = None, seed: int = 0, precision: str = "auto",
                        compile: str | None = None, planner_kind: str = "cem", seeded_iterations: int | None = None,
                        **planner_overrides: Any) -> LeWMAgent:
        """Load a checkpoint folder or a shipped checkpoint by name ("pusht", "two_room", "cube"), from
        any working directory.

        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
        planner: a whole PlannerConfig replacing the checkpoint's planning defaults.
        seed: the planner's sampling seed (plans are reproducible for a seed).
        precision, compile, planner_kind, seeded_iterations: as in the constructor; a planner kind
            other than "cem" needs the checkpoint's actor (`lewm train-policy`).
        planner_overrides: single PlannerConfig fields over those (e.g. num_samples=600): num_samples,
            num_iterations, num_elites, std, horizon, receding_horizon, warm_start, noise_beta,
            cost ("final" | "min") and probe_weight (> 0 needs the checkpoint's cost probe). An
            unknown name is a TypeError.
        """
        dev = resolve_device(device)
        model, meta = load_checkpoint(path, dev)
        cfg = replace(planner or meta.planner, **planner_overrides)
        return cls(model, meta, dev, cfg, seed, precision, compile, load_cost_probe(path, strict=cfg.probe_weight > 0),
                   actor=load_actor(path, strict=planner_kind != "cem", device=dev), planner_kind=planner_kind,
                   seeded_iterations=seeded_iterations)

    @classmethod
    def from_reference(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                       planner: PlannerConfig | None = None, seed: int = 0, precision: str = "auto",
                       compile: str | None = None, *, action_mean: Any = None, action_std: Any = None,
                       action_low: Any = None, action_high: Any = None, env_id: str | None = None,
                       encoder_heads: int | None = None, predictor_heads: int | None = None,
                       env_kwargs: dict[str, Any] | None = None, **planner_overrides: Any) -> LeWMAgent:
        """An agent on a checkpoint of the public reference LeWM (stable-worldmodel's `*_object.ckpt` or
        `weights.pt`), computing what the reference computes (interop/reference_checkpoint.py). The reference keeps
        no action statistics or bounds: give the training data's action mean/std, and the bounds or
        `env_id` (which also records the env kwargs to play it with: for Push-T the reference's pictures;
        `env_kwargs` overrides them). `agent.save(folder)` writes it as this package's checkpoint (`lewm import`
        does both)."""
        from ..interop.reference_checkpoint import load_reference
        dev = resolve_device(device)
        model, meta = load_reference(path, action_mean, action_std, action_low, action_high, env_id,
                                     encoder_heads, predictor_heads, env_kwargs=env_kwargs)
        return cls(model, meta, dev, replace(planner or meta.planner, **planner_overrides), seed, precision, compile)

    def _check_probe(self, cost_probe: tuple[torch.Tensor, dict[str, str]] | None
                     ) -> tuple[torch.Tensor, dict[str, str]] | None:
        if cost_probe is None:
            if self.planner_cfg.probe_weight > 0:
                raise ValueError(f"planner.probe_weight: {self.planner_cfg.probe_weight} needs a cost probe, and the "
                                 "checkpoint has none (fit one: lewm probe --checkpoint C --data TRAIN --cost-probe Q)")
            return None
        matrix, info = cost_probe
        if matrix.dim() != 2 or matrix.shape[0] != self.cfg.latent_dim:
            raise ValueError(f"cost_probe: expected a ({self.cfg.latent_dim}, k) matrix, got {tuple(matrix.shape)}")
        return matrix.float().to(self.device), dict(info)

    def _check_actor(self, kind: str, actor: tuple[GoalActor, dict[str, str]] | None
                     ) -> tuple[GoalActor, dict[str, str]] | None:
        if kind not in PLANNER_KINDS:
            raise ValueError(f"planner_kind: expected one of {list(PLANNER_KINDS)}, got {kind!r}")
        if actor is None:
            if kind != "cem":
                raise ValueError(f"planner_kind {kind!r}: the checkpoint has no actor; train one with "
                                 "`lewm train-policy --checkpoint C --data TRAINING_FILE`")
            return None
        net, info = actor
        c = net.cfg
        if (c.latent_dim, c.block_dim) != (self.cfg.latent_dim, self.cfg.action_block_dim):
            raise ValueError(f"actor: maps latents of {c.latent_dim} to blocks of {c.block_dim}; this model has "
                             f"latents of {self.cfg.latent_dim} and blocks of {self.cfg.action_block_dim}")
        return net.to(self.device).eval(), dict(info)

    @property
    def precision_choice(self) -> PrecisionChoice:
        """The autocast precision of the imagined rollouts and why (measured on first use on a CPU)."""
        if self._choice is None:
            self._settle(self._measure_precision())
        assert self._choice is not None
        return self._choice

    def _settle(self, choice: PrecisionChoice) -> None:
        self._choice, self._bf16 = choice, choice.bf16

    @property
    def bf16(self) -> bool:
        return self.precision_choice.bf16

    @torch.inference_mode()
    def _measure_precision(self) -> PrecisionChoice:
        """One CEM iteration's model work (the planner's sample count, one env) at fp32 and bf16,
        on fixed random latents: bf16 must give the same costs within 1% of their scale."""
        p, d = self.planner_cfg, self.cfg.latent_dim
        g = torch.Generator(device="cpu").manual_seed(0)
        ctx = torch.randn(1, self.cfg.history, d, generator=g).to(self.device)
        past = torch.randn(1, self.cfg.history - 1, self.cfg.action_block_dim, generator=g).to(self.device) \
            if self.cfg.history > 1 else None
        actions = torch.randn(1, p.num_samples, p.horizon, self.cfg.action_block_dim, generator=g).to(self.device)
        goal = torch.randn(1, d, generator=g).to(self.device)

        def work(bf16: bool) -> torch.Tensor:
            self._bf16 = bf16
            return self._imagined_cost(ctx, actions, past, goal)

        key = ("plan", repr(self.cfg), p.num_samples, p.horizon, p.cost)
        return choose(self._precision, self.device, key, work, close(0.01))

    def __repr__(self) -> str:
        p = self.planner_cfg
        return (f"LeWMAgent(env={self.meta.env_id!r}, model={self.model.num_parameters()['total']:,} params, "
                f"device={self.device.type}, precision={self.precision_choice.precision} "
                f"({self.precision_choice.reason}), planner=CEM("
                f"{p.num_samples} samples x {p.num_iterations} iterations, horizon {p.horizon}, "
                f"replan every {p.receding_horizon}, cost={p.cost!r}), planner_kind={self.planner_kind!r})")

    def save(self, path: str | os.PathLike, **kwargs: Any) -> None:
        """Write the agent as a checkpoint folder, with its current planner settings as the folder's
        defaults (and its cost probe, re-tied to the weights written).

        kwargs: `weights_dtype` ("float32", "float16" or "bfloat16", of model.safetensors) and
        `card` (the model card's text, README.md).
        """
        save_checkpoint(path, self.model, replace(self.meta, planner=self.planner_cfg), **kwargs)
        if self.cost_probe is not None:  # re-tied to the weights just written
            save_cost_probe(path, self.cost_probe[0].cpu().numpy(), self.cost_probe[1])
        if self.actor is not None:
            save_actor(path, self.actor[0], self.actor[1])

    # ---------------------------------------------------------------- state
    def reset(self, indices: int | list[int] | np.ndarray | None = None) -> None:
        """Forget plans and history: of every sub-env (None) or of the given sub-env indices.

        Also re-seeds the planner when everything is reset, so that an episode's actions
        depend only on the seed and the observations.
        """
        if indices is None:
            self._envs = []
            self._shape = None
            self.planner.seed(self._seed)
            return
        for i in np.atleast_1d(np.asarray(indices, dtype=np.int64)):
            if not 0 <= i < len(self._envs):
                raise ValueError(f"reset: sub-env index {i} out of range [0, {len(self._envs)})")
            self._envs[i] = self._new_subenv()

    def _new_subenv(self) -> _SubEnv:
        h = self.cfg.history
        return _SubEnv(frames=deque(maxlen=h), blocks=deque(maxlen=max(h - 1, 0)))

    # ------------------------------------------------------------------ act
    def act(self, obs: Mapping, episode_start: np.ndarray | None = None,
            active: np.ndarray | None = None) -> np.ndarray:
        """One observation dict -> action (action_dim,); a vector-env batch -> (N, action_dim).

        `episode_start[i]` true (or a changed goal image) clears sub-env i's plan and history.
        `active[i]` false skips sub-env i (finished episodes in a batched evaluation): it is
        neither planned nor advanced, and its action is zeros.
        """
        if not isinstance(obs, Mapping):
            raise ValueError(f"obs: expected a dict with 'pixels' and 'goal', got {type(obs).__name__}")
        pixels, goal = _image_batch(obs, "pixels"), _image_batch(obs, "goal")
        if pixels.shape != goal.shape:
            raise ValueError(f"obs['goal']: shape {goal.shape} differs from obs['pixels'] shape {pixels.shape}")
        single = pixels.ndim == 3
        if self._vector_shapes is None:  # the env's declared vectors, once (it imports the env's module)
            self._vector_shapes = vector_shapes(self.meta.env_id)
        check_vectors(obs, self._vector_shapes, self.meta.env_id, batched=not single)
        if single:
            pixels, goal = pixels[None], goal[None]
        n = len(pixels)
        if not self._envs:
            self._envs = [self._new_subenv() for _ in range(n)]
        if n != len(self._envs):
            raise ValueError(f"obs['pixels']: batch of {n} sub-envs but the agent tracks {len(self._envs)}; "
                             "call agent.reset() when the number of envs changes")
        if episode_start is not None:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
            if len(starts) != n:
                raise ValueError(f"episode_start: expected {n} flags, got {len(starts)}")
            self.reset(np.flatnonzero(starts))
        if self._shape is not None and pixels.shape[1:] != self._shape:
            raise ValueError(f"obs['pixels']: image shape {pixels.shape[1:]} changed from {self._shape} "
                             "mid-episode; call agent.reset() first")
        self._shape = pixels.shape[1:]
        on = np.ones(n, bool) if active is None else np.asarray(active, dtype=bool).reshape(-1)
        if len(on) != n:
            raise ValueError(f"active: expected {n} flags, got {len(on)}")
        for i, env in enumerate(self._envs):
            if not on[i]:
                continue
            if env.goal is not None and not np.array_equal(env.goal, goal[i]):
                env = self._envs[i] = self._new_subenv()  # new task: old plan and history are stale
            env.goal = goal[i].copy()
            if env.step_in_block == 0:  # block boundary: this frame enters the history
                if env.current is not None:
                    env.blocks.append(self._normalize(env.current))
                env.frames.append(pixels[i].copy())
        self._plan([i for i, env in enumerate(self._envs) if on[i] and env.step_in_block == 0 and not env.queue])
        actions = np.zeros((n, self.cfg.action_dim), np.float32)
        for i, env in enumerate(self._envs):
            if not on[i]:
                continue
            if env.step_in_block == 0:
                env.current = env.queue.popleft()
            actions[i] = env.current[env.step_in_block]
            env.step_in_block = (env.step_in_block + 1) % self.cfg.frameskip
        return actions[0] if single else actions

    def predict(self, observation: Mapping, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """stable-baselines3 policy interface (`evaluate_policy` calls this).

        The planner is seeded, so `deterministic` changes nothing; the agent keeps its
        state internally, so `state` is ignored and None is returned.
        """
        return self.act(observation, episode_start=episode_start), None

    # ----------------------------------------------------------------- plan
    def _plan(self, todo: list[int]) -> None:
        # Sub-envs with the same context length share one batched plan (normally all of them).
        by_len: dict[int, list[int]] = {}
        for i in todo:
            by_len.setdefault(len(self._envs[i].frames), []).append(i)
        r = self.receding_horizon
        for indices in by_len.values():
            envs = [self._envs[i] for i in indices]
            self.precision_choice  # noqa: B018  measured (CPU, "auto") before the clock starts: once per process
            t0 = time.perf_counter()
            plans = self._solve(envs)  # (n, H, A) normalized
            self.solve_seconds.append(time.perf_counter() - t0)
            if self.recorder is not None:
                self._record(indices, envs, plans[:, :r])
            for env, plan in zip(envs, plans):
                env.queue.extend(self.denormalize(blk) for blk in plan[:r])
                env.plan_tail = plan[r:]

    @staticmethod
    def _inputs(envs: list[_SubEnv]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The sub-envs' (context frames, goal images, context blocks) as `plan` takes them."""
        blocks = np.stack([np.stack(e.blocks) for e in envs]) if len(envs[0].frames) > 1 else None
        return np.stack([np.stack(e.frames) for e in envs]), np.stack([e.goal for e in envs]), blocks

    @property
    def receding_horizon(self) -> int:
        """Blocks executed per plan: the actor alone replans at every block (its plan costs one forward pass)."""
        return 1 if self.planner_kind == "policy" else self.planner_cfg.receding_horizon

    def _solve(self, envs: list[_SubEnv]) -> np.ndarray:
        r, a = self.receding_horizon, self.cfg.action_block_dim
        init = None
        if self.planner_cfg.warm_start and all(e.plan_tail is not None for e in envs):
            init = np.stack([np.concatenate([e.plan_tail, np.zeros((r, a), np.float32)]) for e in envs])
        return self.plan(*self._inputs(envs), init)

    @torch.inference_mode()
    def _record(self, indices: list[int], envs: list[_SubEnv], executed: np.ndarray) -> None:
        """Diagnostics: what the model predicts at the end of the executed blocks (n, R, A), next to the goal."""
        ctx, goal_emb, ctx_act = self._embed(*self._inputs(envs))
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self._bf16):  # as the planner saw it
            z = self.model.rollout(ctx, torch.from_numpy(executed).to(self.device)[:, None], ctx_act)[:, 0, -1]
        self.recorder.extend(zip(indices, z.float().cpu().numpy(), goal_emb.float().cpu().numpy()))

    def _embed(self, context: np.ndarray, goal: np.ndarray, context_blocks: np.ndarray | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Context embeddings (n, Tc, D), goal embeddings (n, D) and context blocks on the device."""
        tc = context.shape[1]
        frames = np.concatenate([context, goal[:, None]], 1)                     # (n, Tc+1, H, W, 3)
        emb = self.model.encode(torch.from_numpy(frames).to(self.device))        # encoded once per plan
        ctx_act = None if context_blocks is None else torch.from_numpy(context_blocks).to(self.device)
        return emb[:, :tc], emb[:, tc], ctx_act

    @torch.inference_mode()
    def plan(self, context: np.ndarray, goal: np.ndarray, context_blocks: np.ndarray | None = None,
             init: np.ndarray | None = None) -> np.ndarray:
        """One batched CEM solve: the normalized action blocks (n, H, A) that lead towards `goal`.

        context: uint8 (n, Tc, H, W, 3) block-boundary frames, the last one "now";
        goal: uint8 (n, H, W, 3); context_blocks: (n, Tc-1, A) normalized blocks executed
        between the context frames; init: (n, H, A) warm start.
        """
        self.precision_choice  # noqa: B018  resolved outside any compiled or captured region
        ctx, goal_emb, ctx_act = self._embed(context, goal, context_blocks)
        init_t = None if init is None else torch.from_numpy(init).to(self.device)
        return self._plan_latent(ctx, goal_emb, ctx_act, init_t).float().cpu().numpy()

    def _plan_latent(self, ctx: torch.Tensor, goal_emb: torch.Tensor, ctx_act: torch.Tensor | None,
                     init: torch.Tensor | None) -> torch.Tensor:
        """The planner kind's plan (n, H, A) from embedded inputs: CEM, the actor's, or CEM from the actor's."""
        if self.planner_kind == "cem":
            return self._solve_latent(ctx, goal_emb, ctx_act, init)
        proposal = self.propose(ctx[:, -1], goal_emb)  # replaces any warm start
        return proposal if self.planner_kind == "policy" else self._solve_latent(ctx, goal_emb, ctx_act, proposal)

    def propose(self, z: torch.Tensor, goal_emb: torch.Tensor) -> torch.Tensor:
        """The actor's plan (n, H, A) for embeddings (n, D) now and of the goal, within the action bounds."""
        plan = fit_horizon(self.actor[0](z.float(), goal_emb.float()), self.planner_cfg.horizon)
        return plan.clamp(min=self.normalized_low, max=self.normalized_high).float()

    def _cem(self, ctx: torch.Tensor, goal_emb: torch.Tensor, ctx_act: torch.Tensor | None,
             init: torch.Tensor | None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """CEM on embedded inputs: (n, Tc, D) context, (n, D) goal -> plan (n, H, A)."""
        n = len(ctx)
        # On CPU, envs are imagined in chunks of at most CPU_CHUNK sequences: one huge batch
        # (e.g. 50 envs x 300 samples) runs slower per env than chunks that stay in cache (README, Speed).
        step = n if self.device.type != "cpu" else max(1, CPU_CHUNK // self.planner_cfg.num_samples)

        def cost_fn(actions: torch.Tensor) -> torch.Tensor:  # (n, S, H, A) -> (n, S)
            costs = []
            for i in range(0, n, step):
                past = None if ctx_act is None else ctx_act[i:i + step]
                if self.compile in COMPILE_MODES:
                    torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs are consumed
                costs.append(self._imagine(ctx[i:i + step], actions[i:i + step], past, goal_emb[i:i + step]))
            return torch.cat(costs)

        # policy+cem: init is the actor's plan, kept among the samples and returned unless beaten
        seeded = {"keep": init, "return_best": True} if self.planner_kind == "policy+cem" else {}
        return self.planner.plan(cost_fn, n, init, self.normalized_low, self.normalized_high, noise, **seeded)

    def _imagined_cost(self, ctx: torch.Tensor, actions: torch.Tensor, past: torch.Tensor | None,
                       goal_emb: torch.Tensor) -> torch.Tensor:
        """Squared latent distance to the goal of each candidate's imagined frames (plus the weighted
        cost probe's, where set): (n, S), the final frame's (paper) or the nearest over the horizon
        (`cost="min"`)."""
        # No autocast weight cache under CUDA-graph capture: cached casts would live outside the graph.
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self._bf16,
                            cache_enabled=self.compile != CUDA_GRAPH):
            z = self.model.rollout(ctx, actions, past)                                  # (n, S, H, D)
        if self.planner_cfg.cost == "final":
            z = z[:, :, -1:]
        diff = z.float() - goal_emb[:, None, None]
        cost = diff.pow(2).sum(-1)                                                      # (n, S, H)
        if self.cost_probe is not None and self.planner_cfg.probe_weight > 0:
            cost = cost + self.planner_cfg.probe_weight * (diff @ self.cost_probe[0]).pow(2).sum(-1)
        return cost.amin(-1)

    @torch.inference_mode()
    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 embeddings (N, D), as the planner encodes (fp32)."""
        out = [self.model.encode(torch.from_numpy(frames[i:i + ENCODE_CHUNK, None]).to(self.device))[:, 0]
               for i in range(0, len(frames), ENCODE_CHUNK)]
        return torch.cat(out).float().cpu().numpy()

    def denormalize(self, block: np.ndarray) -> np.ndarray:
        """A normalized action block (frameskip * action_dim,) -> env actions (frameskip, action_dim),
        clipped to the action space."""
        steps = block.reshape(self.cfg.frameskip, self.cfg.action_dim) * self.action_std + self.action_mean
        return np.clip(steps, self.action_low, self.action_high).astype(np.float32)

    def _normalize(self, steps: np.ndarray) -> np.ndarray:
        return ((steps - self.action_mean) / self.action_std).reshape(-1).astype(np.float32)
