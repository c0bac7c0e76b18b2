"""The cacheable ("banded") predictor: its cached rollout is step-by-step predict, its band holds."""
import json

import pytest
import torch

from lewm_agent import LeWMAgent, ModelConfig, WorldModel, preset
from lewm_agent.config import sequence_frames
from lewm_agent.training.config import TrainConfig
from lewm_agent.training.train import train


def banded(history: int = 3) -> WorldModel:
    torch.manual_seed(0)
    m = WorldModel(preset("tiny", predictor_attention="banded", history=history))
    for block in m.blocks:  # leave AdaLN-zero's identity start, so attention and actions matter
        torch.nn.init.normal_(block.modulation.weight, std=0.2)
    return m.eval()


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("history", [1, 2, 3])
@pytest.mark.parametrize("tc", [1, 2, 4])
def test_cached_rollout_equals_step_by_step_predict(history, tc):
    model, (b, s, horizon) = banded(history), (2, 3, 5)
    ctx, ctx_act = randn(b, tc, 32), randn(b, tc - 1, 10, seed=1) if tc > 1 else None
    cand = randn(b, s, horizon, 10, seed=2)
    with torch.no_grad():
        out = model.rollout(ctx, cand, ctx_act)
        assert out.shape == (b, s, horizon, 32)
        for j in range(s):
            seq = ctx
            acts = cand[:, j] if ctx_act is None else torch.cat([ctx_act, cand[:, j]], 1)
            for _ in range(horizon):
                seq = torch.cat([seq, model.predict(seq, acts[:, :seq.shape[1]])[:, -1:]], 1)
            torch.testing.assert_close(out[:, j], seq[:, tc:], atol=1e-5, rtol=1e-5)


def test_each_layer_widens_the_band_by_history_minus_one():
    model = banded(history=2)                     # 2 layers: output t sees frames t-2 .. t
    emb, act = randn(1, 8, 32), randn(1, 8, 10, seed=1)
    with torch.no_grad():
        base = model.predict(emb, act)
        emb[:, 2] += randn(1, 32, seed=3)
        out = model.predict(emb, act)
    torch.testing.assert_close(out[:, :2], base[:, :2])           # causal
    assert not torch.allclose(out[:, 4], base[:, 4])              # 2 layers x 1 frame back
    torch.testing.assert_close(out[:, 5:], base[:, 5:])           # and no further


def test_old_configs_are_the_window_predictor_and_bad_values_are_named():
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "predictor_attention"}
    assert ModelConfig.from_dict(old).predictor_attention == "window"
    assert "pos_embed" in dict(WorldModel(preset("tiny")).named_parameters())
    assert "pos_embed" not in dict(banded().named_parameters())
    with pytest.raises(ValueError, match=r"^ModelConfig.predictor_attention: expected one of \('window', 'banded'\)"):
        preset("tiny", predictor_attention="cached")
    with pytest.raises(ValueError, match="^ModelConfig.predictor_head_dim: rotary"):
        preset("tiny", predictor_attention="banded", predictor_head_dim=15)
    with pytest.raises(ValueError, match="^sequence_frames: expected an int >= 2"):
        TrainConfig(data="x", out="y", sequence_frames=1)


def test_a_banded_model_trains_on_longer_windows_when_asked_and_plans(dot_dataset, tmp_path):
    banded = preset("tiny", predictor_attention="banded")
    assert sequence_frames(banded) == sequence_frames(preset("tiny")) == 3 + 1  # by default as the window one
    cfg = TrainConfig(data=str(dot_dataset), out=str(tmp_path / "ck"), preset="tiny", steps=6, batch_size=16,
                      warmup_steps=1, eval_interval=6, ckpt_interval=6, val_windows=16, num_projections=32,
                      precision="fp32", progress=False, sequence_frames=8)
    assert sequence_frames(banded, cfg.sequence_frames) == 8
    out = train(cfg, model_overrides={"predictor_attention": "banded"})
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["predictor_attention"] == "banded"
    agent = LeWMAgent.from_pretrained(out, device="cpu", num_samples=8, num_elites=2, num_iterations=1)
    frames = torch.randint(0, 256, (1, 1, 32, 32, 3), dtype=torch.uint8).numpy()
    plan = agent.plan(frames, frames[:, 0])
    assert plan.shape == (1, agent.planner_cfg.horizon, agent.cfg.action_block_dim)
