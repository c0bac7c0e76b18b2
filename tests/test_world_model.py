import pytest
import torch

from lewm_agent import ModelConfig, WorldModel, preset


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = WorldModel(preset("tiny"))
    # Leave AdaLN-zero's identity start: random modulation makes the action conditioning matter.
    for block in m.blocks:
        torch.nn.init.normal_(block.modulation.weight, std=0.2)
    return m.eval()


def rand_emb(b, t, d=32, seed=0):
    return torch.randn(b, t, d, generator=torch.Generator().manual_seed(seed))


def rand_act(b, t, a=10, seed=1):
    return torch.randn(b, t, a, generator=torch.Generator().manual_seed(seed))


def test_paper_config_has_paper_size():
    counts = WorldModel(ModelConfig()).num_parameters()
    assert 17.0e6 < counts["total"] < 19.0e6
    assert 5.3e6 < counts["encoder"] < 5.7e6      # ViT-Tiny/14
    assert 10.5e6 < counts["predictor"] < 11.2e6


def test_residual_cnn_widens_what_each_feature_sees():
    x = torch.zeros(1, 3, 32, 32)
    x[..., 0:4, 0:4] = 1.0  # a patch in one corner

    def reach(cfg):  # (4, 4) map of the last conv features the patch moves
        torch.manual_seed(0)
        convs = WorldModel(cfg).eval().encoder.convs
        for name, m in list(convs.named_modules()):  # GroupNorm's statistics span the whole map:
            if isinstance(m, torch.nn.GroupNorm):     # leave them out to see the convs' own reach
                parent, _, leaf = name.rpartition(".")
                setattr(convs.get_submodule(parent) if parent else convs, leaf, torch.nn.Identity())
        with torch.no_grad():
            return (convs(x) - convs(torch.zeros_like(x))).abs().sum(1)[0]
    assert reach(preset("tiny"))[-1, -1] == 0  # plain: the far corner's feature never sees it
    assert reach(preset("tiny", cnn_residual=True))[-1, -1] > 0  # 3x3 blocks at 8 and 4 px carry it
    model = WorldModel(preset("tiny", cnn_residual=True)).eval()
    assert model.encode(torch.zeros(2, 1, 32, 32, 3, dtype=torch.uint8)).shape == (2, 1, 32)


def test_encode_shapes_and_uint8_float_agree(model):
    px = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)
    z = model.encode(px)
    assert z.shape == (2, 3, 32)
    zf = model.encode(px.permute(0, 1, 4, 2, 3).float() / 255)
    torch.testing.assert_close(z, zf, atol=1e-5, rtol=1e-5)
    big = torch.randint(0, 256, (1, 2, 64, 64, 3), dtype=torch.uint8)  # resized by the model
    assert model.encode(big).shape == (1, 2, 32)


@pytest.mark.parametrize("t_change", [1, 2])
def test_predictor_is_causal(model, t_change):
    emb, act = rand_emb(2, 3), rand_act(2, 3)
    base = model.predict(emb, act)
    act2, emb2 = act.clone(), emb.clone()
    # random perturbations: a constant shift of a token would vanish in the LayerNorms
    act2[:, t_change] += torch.randn(2, 10)
    emb2[:, t_change] += torch.randn(2, 32)
    for changed in (model.predict(emb, act2), model.predict(emb2, act)):
        torch.testing.assert_close(changed[:, :t_change], base[:, :t_change])
        assert not torch.allclose(changed[:, t_change], base[:, t_change])


def test_history_window_is_respected(model):
    h = model.cfg.history
    emb, act = rand_emb(2, 7), rand_act(2, 7)
    base = model.predict(emb, act)
    emb2 = emb.clone()
    emb2[:, 2] += torch.randn(2, 32)  # frame 2 is visible to outputs 2 .. 2+h-1 only
    out = model.predict(emb2, act)
    torch.testing.assert_close(out[:, :2], base[:, :2])
    assert not torch.allclose(out[:, 2 + h - 1], base[:, 2 + h - 1])
    torch.testing.assert_close(out[:, 2 + h:], base[:, 2 + h:])


@pytest.mark.parametrize("tc", [1, 2, 3, 5])
def test_rollout_equals_step_by_step_predict(model, tc):
    b, s, horizon = 2, 4, 5
    ctx, ctx_act = rand_emb(b, tc), rand_act(b, tc - 1) if tc > 1 else None
    cand = torch.randn(b, s, horizon, 10, generator=torch.Generator().manual_seed(3))
    out = model.rollout(ctx, cand, ctx_act)
    assert out.shape == (b, s, horizon, 32)
    for j in range(s):
        seq = ctx
        acts = cand[:, j] if ctx_act is None else torch.cat([ctx_act, cand[:, j]], 1)
        for _ in range(horizon):
            nxt = model.predict(seq, acts[:, :seq.shape[1]])[:, -1:]
            seq = torch.cat([seq, nxt], 1)
        torch.testing.assert_close(out[:, j], seq[:, tc:], atol=1e-5, rtol=1e-5)


def test_surprise_is_per_step_prediction_error(model):
    px = torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8)
    act = rand_act(2, 3)
    s = model.surprise(px, act)
    assert s.shape == (2, 3) and (s >= 0).all()
    emb = model.encode(px)
    expected = (model.predict(emb[:, :-1], act) - emb[:, 1:]).pow(2).sum(-1)
    torch.testing.assert_close(s, expected)


def test_bad_input_raises_with_field_names(model):
    with pytest.raises(ValueError, match="pixels"):
        model.encode(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        model.encode(torch.full((1, 1, 3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="actions"):
        model.predict(rand_emb(2, 3), rand_act(2, 3, a=4))
    with pytest.raises(ValueError, match="context_actions"):
        model.rollout(rand_emb(1, 2), torch.zeros(1, 3, 5, 10))
    with pytest.raises(ValueError, match="NaN"):
        model.surprise(torch.zeros(1, 3, 32, 32, 3, dtype=torch.uint8), torch.full((1, 2, 10), float("nan")))
    with pytest.raises(ValueError, match="image_size"):
        ModelConfig(image_size=100, patch_size=14)
