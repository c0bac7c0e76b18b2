"""The cost probe: a linear latent -> quantity map fitted offline, weighed into the planner's cost."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from lewm_agent import LeWMAgent
from lewm_agent.checkpoint import load_checkpoint, save_checkpoint
from lewm_agent.cli import main
from lewm_agent.config import PlannerConfig
from lewm_agent.evaluation.cost_probe_fit import _cost_terms, ridge_matrix
from lewm_agent.evaluation.probe import fit_ridge
from lewm_agent.planning.cost_probe import COST_PROBE, load_cost_probe


def test_ridge_matrix_is_the_ridge_probe_as_a_map_of_differences():
    rng = np.random.default_rng(0)
    z = rng.uniform(-np.pi, np.pi, (600, 12))
    x = z @ rng.normal(size=(12, 12))
    y = np.stack([2.0 * z[:, 0] - z[:, 3] + 5.0, 0.5 * z[:, 7]], 1)
    m, offset, scale = ridge_matrix(x, y, alpha=1e-4)
    # Absolute predictions equal the probe's own (same closed form, same standardization).
    np.testing.assert_allclose(x @ m * scale + offset, fit_ridge(x, y, x, alpha=1e-4), rtol=1e-6, atol=1e-6)
    assert scale == pytest.approx(np.sqrt(y.var(0).mean()))
    # A difference of embeddings maps to the quantity's change, in pooled standard deviations.
    d = (x[:300] - x[300:]) @ m
    np.testing.assert_allclose(d * scale, y[:300] - y[300:], atol=0.05 * np.abs(y).max())


def test_cost_terms_by_hand():
    # Two coordinates of the latent: one tracks the quantity, one does not (the "arm").
    moved = np.array([0.0, 1.0, 2.0, 3.0])
    arm = np.array([5.0, 1.0, 4.0, 2.0])
    start = (np.zeros((4, 2)), np.zeros((4, 1)))
    goal = (np.stack([moved, arm], 1), moved[:, None])
    m = np.array([[1.0], [0.0]])                                    # the probe reads the first coordinate
    out = _cost_terms(m, start, goal)
    latent, probed = moved ** 2 + arm ** 2, moved ** 2
    assert out["pairs"] == 4 and out["median_displacement"] == 1.5
    assert out["r_latent_term"] == pytest.approx(np.corrcoef(latent, moved)[0, 1])
    assert out["r_probe_term"] == pytest.approx(np.corrcoef(probed, moved)[0, 1]) and out["r_probe_term"] > 0.95
    assert out["balancing_weight"] == pytest.approx(np.median(latent) / np.median(probed))


def probe_folder(two_room_ck, two_room_data, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copytree(two_room_ck, ck)
    assert main(["probe", "--checkpoint", str(ck), "--data", str(two_room_data), "--frames", "400",
                 "--device", "cpu", "--cost-probe", "agent_xy"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {ck / COST_PROBE}" in out and "held-out" in out
    assert "held-out pairs 25 frames apart" in out and "makes their medians equal" in out
    return ck


def test_cli_fits_and_the_agent_loads_and_saves_it(two_room_ck, two_room_data, tmp_path, capsys):
    ck = probe_folder(two_room_ck, two_room_data, tmp_path, capsys)
    matrix, info = load_cost_probe(ck)
    latent = load_checkpoint(ck)[1].model.latent_dim
    assert matrix.shape == (latent, 2) and torch.isfinite(matrix).all()
    assert info["quantity"] == "agent_xy" and "--cost-probe agent_xy" in info["command"]
    pairs = json.loads(info["pairs"])
    assert pairs["offset"] == 25 and pairs["pairs"] > 1 and pairs["balancing_weight"] > 0
    agent = LeWMAgent.from_pretrained(ck, device="cpu", probe_weight=5.0)
    torch.testing.assert_close(agent.cost_probe[0], matrix)
    agent.save(tmp_path / "saved", weights_dtype="float16")      # other weight bytes: the probe is re-tied to them
    again = LeWMAgent.from_pretrained(tmp_path / "saved", device="cpu")
    torch.testing.assert_close(again.cost_probe[0], matrix)
    assert again.planner_cfg.probe_weight == 5.0


def test_a_probe_beside_other_weights_or_a_missing_probe_is_refused(two_room_ck, two_room_data, tmp_path, capsys):
    ck = probe_folder(two_room_ck, two_room_data, tmp_path, capsys)
    model, meta = load_checkpoint(ck)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_checkpoint(ck, model, meta)                               # retrained weights, old probe beside them
    with pytest.raises(ValueError, match="fitted to other weights"):
        LeWMAgent.from_pretrained(ck, device="cpu", probe_weight=1.0)
    with pytest.warns(UserWarning, match="fitted to other weights"):  # a planner that does not use it still loads
        assert LeWMAgent.from_pretrained(ck, device="cpu").cost_probe is None
    with pytest.raises(ValueError, match="planner.probe_weight"):
        LeWMAgent.from_pretrained(two_room_ck, device="cpu", probe_weight=1.0)
    with pytest.raises(ValueError, match="probe_weight"):
        PlannerConfig(probe_weight=-1.0)
    assert main(["probe", "--checkpoint", str(ck), "--data", str(two_room_data), "--cost-probe", "cube_xyz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cost-probe" in err[0] and "agent_xy" in err[0]


def test_cost_adds_the_weighted_probe_term(two_room_ck):
    model, meta = load_checkpoint(two_room_ck)
    d = model.cfg.latent_dim
    p = torch.randn(d, 3, generator=torch.Generator().manual_seed(0))
    plain = LeWMAgent(model, meta, "cpu", replace(meta.planner, cost="final"), precision="fp32")
    probed = LeWMAgent(model, meta, "cpu", replace(meta.planner, cost="final", probe_weight=2.5), precision="fp32",
                       cost_probe=(p, {}))
    g = torch.Generator().manual_seed(1)
    ctx = torch.randn(2, 1, d, generator=g)
    actions = torch.randn(2, 4, meta.planner.horizon, model.cfg.action_block_dim, generator=g)
    goal = torch.randn(2, d, generator=g)
    with torch.inference_mode():
        z = model.rollout(ctx, actions)[:, :, -1]
        diff = z - goal[:, None]
        expected = diff.pow(2).sum(-1) + 2.5 * (diff @ p).pow(2).sum(-1)
        torch.testing.assert_close(probed._imagined_cost(ctx, actions, None, goal), expected)
        torch.testing.assert_close(plain._imagined_cost(ctx, actions, None, goal), diff.pow(2).sum(-1))
    with pytest.raises(ValueError, match="cost_probe"):
        LeWMAgent(model, meta, "cpu", cost_probe=(torch.zeros(d + 1, 3), {}))
