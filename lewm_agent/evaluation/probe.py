"""`lewm probe`: how much of the physical state a model's latent holds (the paper's Table 1).

Each env declares its physical quantities from the rollout file's `state`/`observation`
columns (`probe_quantities`, e.g. Push-T: agent xy, block xy, block angle as sin/cos).
A ridge (linear) probe and a small MLP probe map embeddings to each quantity; they are fit
on the frames of some episodes and scored on the frames of the others (a split by episode,
so neighbouring frames of one episode never sit on both sides). Scores: Pearson r (mean over
the quantity's components), R² (pooled over them) and the median error in env units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lewm_envs import check_pixel_settings, env_class

from ..checkpoint import load_checkpoint, read_meta
from ..config import fields_from_dict
from ..data.damage import reading
from ..data.rollouts import RolloutFile
from ..data.windows import split_episodes
from ..device import resolve_device
from ..flags import CHECKPOINT_HELP, check_ranges, option
from ..model.encoders import preprocess
from ..model.losses import embedding_stats
from ..model.world_model import WorldModel

FEATURES = ("latent", "encoder")


@dataclass(frozen=True)
class ProbeConfig:
    checkpoint: str = option(help=CHECKPOINT_HELP)
    data: str = option(help="rollout file of the checkpoint's env (with its state column)")
    frames: int = option(20_000, "frames sampled (default %(default)s)", low=10)  # evenly over the file's episodes
    val_fraction: float = option(0.2, "share of episodes the probes are scored on (default %(default)s)",
                                 above=0, below=1)
    seed: int = option(0, "episode split seed", low=0)
    ridge: float = 1e-2              # ridge penalty on standardized embeddings, per frame
    mlp_hidden: int = 256
    mlp_steps: int = option(1500, "MLP probe steps (default %(default)s)", low=0)
    features: str = option("latent", "latent: the embeddings the predictor and planner use; encoder: the "
                                     "encoder's output before the projector (what the projector keeps of it)",
                           choices=list(FEATURES))
    untrained: bool = option(False, "probe the checkpoint's architecture at a random initialisation (torch seed "
                                    "--seed) instead of its weights: what the features hold before any training")
    device: str = option("auto")

    from_dict = classmethod(fields_from_dict)  # the JSON reader of every config (config.py)

    def __post_init__(self) -> None:
        check_ranges(self)  # the options' declared ranges (flags.py)
        if not self.ridge > 0:
            raise ValueError(f"--ridge: must be > 0, got {self.ridge}")
        if self.mlp_hidden < 1:
            raise ValueError(f"--mlp-hidden: must be >= 1, got {self.mlp_hidden}")


def probe_env_class(env_id: str) -> type:
    """The registered env class of `env_id`, which must declare `probe_quantities`."""
    try:
        entry = env_class(env_id)
    except gym.error.Error as e:
        raise ValueError(f"env {env_id!r} is not a registered env ({e})") from None
    if not hasattr(entry, "probe_quantities"):
        raise ValueError(f"env {env_id!r} declares no probe_quantities")
    return entry


def env_quantities(env_id: str, state: np.ndarray, observation: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
    """The env class's `probe_quantities` for these rows: {name: ((N, k) values, unit)}."""
    return probe_env_class(env_id).probe_quantities(state, observation)


# ------------------------------------------------------------------ probes
def fit_ridge(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, alpha: float) -> np.ndarray:
    """Linear probe: ridge regression on standardized inputs, closed form; returns predictions on x_te."""
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
    a, b = (x_tr - mu) / sd, (x_te - mu) / sd
    y_mu = y_tr.mean(0)
    w = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]), a.T @ (y_tr - y_mu))
    return b @ w + y_mu


def fit_mlp(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, hidden: int, steps: int,
            seed: int) -> np.ndarray:
    """Nonlinear probe: one hidden layer, full-batch Adam on standardized inputs and targets."""
    g = torch.Generator().manual_seed(seed)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
    y_mu, y_sd = y_tr.mean(0), y_tr.std(0) + 1e-8
    x = torch.as_tensor((x_tr - mu) / sd, dtype=torch.float32)
    y = torch.as_tensor((y_tr - y_mu) / y_sd, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, y.shape[1]))
    for p in net.parameters():  # seeded init: the same call gives the same numbers
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=1.0 / math.sqrt(p.shape[-1]), generator=g)
        else:
            torch.nn.init.zeros_(p)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = net(torch.as_tensor((x_te - mu) / sd, dtype=torch.float32)).numpy()
    return out * y_sd + y_mu


def score(y_true: np.ndarray, y_pred: np.ndarray, unit: str) -> dict[str, float]:
    """Pearson r (mean over components), pooled R² and the median error in the quantity's unit.

    For "angle" quantities (sin, cos) the error is the angle between atan2 of both, in degrees.
    """
    rs = [float(np.corrcoef(y_true[:, k], y_pred[:, k])[0, 1]) if y_true[:, k].std() > 0 and y_pred[:, k].std() > 0
          else 0.0 for k in range(y_true.shape[1])]
    total = float(((y_true - y_true.mean(0)) ** 2).sum())
    # a constant quantity: nothing to explain
    r2 = 1.0 - float(((y_true - y_pred) ** 2).sum()) / total if total > 0 else 0.0
    if unit == "angle":
        diff = np.arctan2(y_pred[:, 0], y_pred[:, 1]) - np.arctan2(y_true[:, 0], y_true[:, 1])
        err, unit = np.degrees(np.abs((diff + np.pi) % (2 * np.pi) - np.pi)), "deg"
    else:
        err = np.linalg.norm(y_true - y_pred, axis=1)
    return {"r": float(np.mean(rs)), "r2": r2, "median_error": float(np.median(err)), "unit": unit}


# ------------------------------------------------------------------ data
def sample_rows(rf: RolloutFile, episodes: np.ndarray, n: int) -> np.ndarray:
    """About n frame rows spread evenly over the frames of `episodes` (sorted, for fast HDF5 reads)."""
    rows = np.concatenate([np.arange(rf.episode_starts[e], rf.episode_ends[e]) for e in episodes])
    if len(rows) > n:
        rows = rows[np.linspace(0, len(rows) - 1, n).round().astype(np.int64)]
    return np.sort(rows)


@torch.no_grad()
def embed_rows(model: torch.nn.Module, rf: RolloutFile, rows: np.ndarray, device: torch.device,
               batch: int = 512, features: str = "latent") -> np.ndarray:
    """Embeddings (N, D) of the frames at `rows` (`features` "encoder": the encoder's (N, width) output)."""
    pix = rf.column("pixels")
    out = []
    for i in range(0, len(rows), batch):
        with reading(rf, "pixels", int(rows[i]), int(rows[min(i + batch, len(rows)) - 1]) + 1):
            frames = torch.from_numpy(pix[rows[i:i + batch]]).to(device)   # (n, H, W, 3) uint8
        if features == "encoder":
            out.append(model.encoder(preprocess(frames, model.cfg.image_size)).float().cpu())  # (n, width)
        else:
            out.append(model.encode(frames[:, None]).squeeze(1).float().cpu())  # (n, D)
    return torch.cat(out).numpy().astype(np.float64)


def check_labelled_file(rf: RolloutFile, meta: Any, data: str) -> None:
    """Refuse a rollout file a probe cannot use with this checkpoint: another env, other pixels,
    an env without probe quantities, no simulator state."""
    if (rf.env_id or meta.env_id) != meta.env_id:  # a reference-layout file names no env: the checkpoint's
        raise ValueError(f"--data: {data} holds {rf.env_id!r} episodes, the checkpoint is for {meta.env_id!r}")
    settings = rf.env_kwargs if rf.env_id else meta.env_kwargs
    check_pixel_settings(meta.env_id, settings, meta.env_kwargs, f"--data: {data}")
    probe_env_class(meta.env_id)  # refuse an env without probe quantities before embedding any frame
    for col in ("state", "observation"):
        try:
            rf.column(col)  # a reference-layout file calls `observation` `proprio`
        except KeyError:
            raise ValueError(f"--data: {data} has no {col!r} column; probes need the simulator state") from None


def _model(cfg: ProbeConfig, device: torch.device) -> tuple[WorldModel, Any]:
    """The checkpoint's model, or with `untrained` its architecture at a seeded random init (the
    weights file is then never read: only config.json names the architecture)."""
    if not cfg.untrained:
        return load_checkpoint(cfg.checkpoint, device)
    meta = read_meta(cfg.checkpoint)
    with torch.random.fork_rng(devices=[]):  # seeded here without moving the caller's generator
        torch.manual_seed(cfg.seed)
        model = WorldModel(meta.model)
    return model.to(device).eval(), meta


def probe(cfg: ProbeConfig) -> dict[str, Any]:
    """Fit and score every probe; returns the report (JSON-able)."""
    device = resolve_device(cfg.device)
    model, meta = _model(cfg, device)
    with RolloutFile(cfg.data) as rf:
        check_labelled_file(rf, meta, cfg.data)
        if rf.num_episodes < 2:
            raise ValueError(f"--data: {cfg.data} holds {rf.num_episodes} episode; probes need >= 2 to split by "
                             "episode")
        split = split_episodes(rf.num_episodes, cfg.val_fraction, cfg.seed)
        if len(split.train_episodes) == 0 or len(split.val_episodes) == 0:
            raise ValueError(f"--val-fraction {cfg.val_fraction}: leaves no episode on one side of the split")
        n_val = max(1, round(cfg.frames * cfg.val_fraction))
        parts = {}
        for side, eps, n in (("fit", split.train_episodes, cfg.frames - n_val), ("score", split.val_episodes, n_val)):
            rows = sample_rows(rf, np.sort(eps), n)
            parts[side] = (embed_rows(model, rf, rows, device, features=cfg.features), rf.column("state")[rows],
                           rf.column("observation")[rows])
    (x_tr, s_tr, o_tr), (x_te, s_te, o_te) = parts["fit"], parts["score"]
    q_tr, q_te = env_quantities(meta.env_id, s_tr, o_tr), env_quantities(meta.env_id, s_te, o_te)
    results = {}
    for name, (y_tr, unit) in q_tr.items():
        y_te = q_te[name][0]
        results[name] = {"linear": score(y_te, fit_ridge(x_tr, y_tr, x_te, cfg.ridge), unit),
                         "mlp": score(y_te, fit_mlp(x_tr, y_tr, x_te, cfg.mlp_hidden, cfg.mlp_steps, cfg.seed), unit)}
    stats = embedding_stats(torch.as_tensor(x_te, dtype=torch.float32))
    return {"checkpoint": cfg.checkpoint, "data": cfg.data, "env_id": meta.env_id, "features": cfg.features,
            "untrained": cfg.untrained, "seed": cfg.seed, "fit_frames": len(x_tr),
            "score_frames": len(x_te), "fit_episodes": len(split.train_episodes),
            "score_episodes": len(split.val_episodes), "latent_dim": int(x_tr.shape[1]), **stats,
            "quantities": results}


def _what(report: dict[str, Any]) -> str:
    what = "encoder output (before the projector)" if report.get("features") == "encoder" else "latent"
    return f"untrained (seed {report.get('seed', 0)}) {what}" if report.get("untrained") else what


def probe_markdown(report: dict[str, Any]) -> str:
    lines = [f"Probes of `{report['checkpoint']}` on `{report['data']}`: fit on {report['fit_frames']} frames of "
             f"{report['fit_episodes']} episodes, scored on {report['score_frames']} frames of "
             f"{report['score_episodes']} other episodes; {_what(report)} effective rank {report['emb_rank']:.1f} "
             f"of {report['latent_dim']}.", "",
             "| quantity | linear r | linear R² | linear median error | MLP r | MLP R² | MLP median error |",
             "|---|---|---|---|---|---|---|"]
    for name, res in report["quantities"].items():
        lin, mlp = res["linear"], res["mlp"]
        lines.append(f"| {name} | {lin['r']:.3f} | {lin['r2']:.3f} | {lin['median_error']:.3g} {lin['unit']} | "
                     f"{mlp['r']:.3f} | {mlp['r2']:.3f} | {mlp['median_error']:.3g} {mlp['unit']} |")
    return "\n".join(lines) + "\n"
