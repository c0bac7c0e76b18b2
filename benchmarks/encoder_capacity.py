"""Can an encoder architecture hold each physical quantity at all? Trained supervised, from scratch.

`lewm probe` asks what a trained latent holds; this asks what the architecture can hold when it is
told the answer: the encoder (random init) and a linear head are trained by regression on the
env's probe quantities (standardized, summed) from the frames of some episodes, and scored on the
frames of other episodes with the probe's own scores. A quantity an architecture cannot regress
under supervision will not appear in its self-supervised latent either, whatever the losses do.
Rows alternate by training step, so the machine's load hits every architecture alike.
`--quantities` regresses a subset (e.g. `block_angle` alone: whether it is found without the others).

    python benchmarks/encoder_capacity.py --data data/pusht_pp_test.h5 --preset tiny \\
        --models '{"image_size": 64, "cnn_channels": [16, 32, 64], "encoder_width": 128}' \\
                 '{"image_size": 64, "cnn_channels": [16, 32, 64], "encoder_width": 128, "cnn_residual": true}'
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lewm_agent import preset
from lewm_agent.data.rollouts import RolloutFile
from lewm_agent.data.windows import split_episodes
from lewm_agent.evaluation.probe import env_quantities, sample_rows, score
from lewm_agent.model.encoders import build_encoder, preprocess
from lewm_agent.precision import cpu_capability


def load_split(data: str, frames: int, val_fraction: float, seed: int):
    """Pixels and quantities of ~`frames` rows, fit and scored on disjoint episodes (as `lewm probe`)."""
    with RolloutFile(data) as rf:
        split = split_episodes(rf.num_episodes, val_fraction, seed)
        out = []
        for eps, n in ((split.train_episodes, frames - frames // 5), (split.val_episodes, frames // 5)):
            rows = sample_rows(rf, np.asarray(eps), n)
            q = env_quantities(rf.env_id, rf.column("state")[rows], rf.column("observation")[rows])
            out.append((torch.from_numpy(rf.column("pixels")[rows]), q))
    return out


class Row:
    """One architecture: encoder + linear head on the concatenated, standardized quantities."""

    def __init__(self, model: dict, preset_name: str, targets: np.ndarray, lr: float, seed: int):
        self.cfg = preset(preset_name, **model)
        torch.manual_seed(seed)
        self.encoder = build_encoder(self.cfg)
        self.head = torch.nn.Linear(self.cfg.encoder_width, targets.shape[1])
        self.opt = torch.optim.AdamW([*self.encoder.parameters(), *self.head.parameters()], lr=lr)
        self.seconds = 0.0

    def predict(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(preprocess(pixels, self.cfg.image_size)))

    def step(self, pixels: torch.Tensor, y: torch.Tensor) -> None:
        t0 = time.perf_counter()
        loss = (self.predict(pixels) - y).pow(2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.seconds += time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="rollout file with the env's state column")
    p.add_argument("--preset", default="tiny", help="preset the --models override")
    p.add_argument("--models", nargs="+", default=["{}"], help="ModelConfig overrides (JSON), one row each")
    p.add_argument("--quantities", nargs="+", default=None, help="regress only these (default: all the env's)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--frames", type=int, default=12000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/encoder_capacity.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    (px_tr, q_tr), (px_te, q_te) = load_split(a.data, a.frames, 0.2, a.seed)
    names = list(q_tr) if a.quantities is None else a.quantities
    unknown = sorted(set(names) - set(q_tr))
    if unknown:
        p.error(f"--quantities: unknown {unknown}; this env's are {list(q_tr)}")
    y_tr = np.concatenate([q_tr[k][0] for k in names], 1)
    mu, sd = y_tr.mean(0), y_tr.std(0) + 1e-8
    y = torch.as_tensor((y_tr - mu) / sd, dtype=torch.float32)
    rows = [Row(json.loads(m), a.preset, y_tr, a.lr, a.seed) for m in a.models]
    g = torch.Generator().manual_seed(a.seed)
    for _ in range(a.steps):
        b = torch.randint(0, len(y), (a.batch_size,), generator=g)
        for row in rows:  # the same batch for every row, alternating
            row.step(px_tr[b], y[b])
    results = [evaluate(row, m, px_te, q_te, names, mu, sd) for row, m in zip(rows, a.models)]
    report(results, names, a)


@torch.no_grad()
def evaluate(row: Row, model: str, px_te: torch.Tensor, q_te: dict, names: list, mu: np.ndarray,
             sd: np.ndarray) -> dict:
    row.encoder.eval()
    pred = torch.cat([row.predict(px_te[i:i + 512]) for i in range(0, len(px_te), 512)]).numpy() * sd + mu
    out, col = {}, 0
    for k in names:
        values, unit = q_te[k]
        out[k] = score(values, pred[:, col:col + values.shape[1]], unit)
        col += values.shape[1]
    params = sum(p.numel() for p in row.encoder.parameters())
    return {"model": json.loads(model), "encoder_params": params, "train_seconds": row.seconds, "quantities": out}


def report(results: list, names: list, a: argparse.Namespace) -> None:
    print(f"Supervised from scratch, {a.steps} steps x {a.batch_size} on {a.data}; held-out episodes "
          f"({cpu_capability()}, {a.threads} thread(s)):\n")
    print("| model | encoder params | " + " | ".join(f"{k} r / median error" for k in names) + " | train s |")
    print("|---|---|" + "---|" * len(names) + "---|")
    for r in results:
        cells = [f"{r['quantities'][k]['r']:.3f} / {r['quantities'][k]['median_error']:.1f} "
                 f"{r['quantities'][k]['unit']}" for k in names]
        print(f"| `{json.dumps(r['model'])}` | {r['encoder_params']:,} | " + " | ".join(cells)
              + f" | {r['train_seconds']:.0f} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"data": a.data, "steps": a.steps, "batch_size": a.batch_size,
                                       "device": cpu_capability(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
