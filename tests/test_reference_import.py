"""Reference LeWM checkpoints (stable-worldmodel) imported: the same encode / predict / CEM cost.

The committed fixture (tests/fixtures/reference_lewm, made by its make_fixture.py with the reference
installed) holds a tiny reference model saved both ways the reference saves, and the reference's
own outputs; it is imported here without the reference package. With the package installed the same
comparison is also made live, against the reference model built in this process.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lewm_agent import LeWMAgent, ModelConfig
from lewm_agent.checkpoint import load_checkpoint
from lewm_agent.interop.reference_checkpoint import load_reference, read, to_model
from lewm_agent.model.world_model import WorldModel

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "reference_lewm"
STATS = dict(action_mean=[0.1, -0.2], action_std=[0.5, 2.0], action_low=[-1.0, -1.0], action_high=[1.0, 1.0])
TOL = 1e-5


def ours(model, x: dict[str, torch.Tensor], agent: LeWMAgent | None = None) -> dict[str, torch.Tensor]:
    """Our model's encode / predict / imagined cost on the inputs the reference saw (pixels in [0, 1])."""
    with torch.no_grad():
        emb = model.encode(x["pixels"])
        pred = model.predict(emb, x["actions"])
        now, goal = model.encode(x["now"][:, None]), model.encode(x["goal"][:, None])[:, 0]
        cost = agent._imagined_cost(now, x["candidates"], None, goal) if agent is not None else None
    return {"emb": emb, "pred": pred, "cost": cost}


def assert_match(got: dict, expected: dict) -> dict[str, float]:
    diffs = {k: (got[k] - expected[k]).abs().max().item() for k in ("emb", "pred", "cost") if got[k] is not None}
    scale = {k: expected[k].abs().max().item() for k in diffs}
    assert all(diffs[k] <= TOL * max(1.0, scale[k]) for k in diffs), (diffs, scale)
    return diffs


@pytest.mark.parametrize("form", ["lewm_object.ckpt", "weights.pt"])
def test_fixture_imports_with_the_references_outputs(form: str) -> None:
    expected = load_file(str(FIXTURE / "expected.safetensors"))
    agent = LeWMAgent.from_reference(FIXTURE / form, device="cpu", precision="fp32", num_samples=5, num_elites=2,
                                     horizon=4, receding_horizon=4, **STATS)
    assert agent.cfg.layer_norms == "reference" and agent.cfg.frameskip == 2 and agent.cfg.encoder_heads == 2
    assert_match(ours(agent.model, expected, agent), expected)
    # not vacuous: the same weights with our default LayerNorms compute something else
    state, sizes = read(FIXTURE / form)
    plain = to_model(state, sizes, 2)
    plain_cfg = ModelConfig(**{**plain.cfg.to_dict(), "layer_norms": "lewm"})
    other = type(plain)(plain_cfg)
    other.load_state_dict({k: v for k, v in plain.state_dict().items() if "attn_norm" not in k and "mlp_norm" not in k})
    assert (ours(other.eval(), expected)["pred"] - expected["pred"]).abs().max() > 1e-3


def test_import_writes_our_folder_and_cli(tmp_path: Path) -> None:
    out = tmp_path / "imported"
    cmd = [sys.executable, "-m", "lewm_agent", "import", "--reference", str(FIXTURE / "weights.pt"), "--out", str(out),
           "--action-mean", "0.1,-0.2", "--action-std", "0.5,2", "--action-low=-1,-1", "--action-high=1,1"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    model, meta = load_checkpoint(out)
    assert meta.action_std == (0.5, 2.0) and meta.training["source"].startswith("stable-worldmodel")
    expected = load_file(str(FIXTURE / "expected.safetensors"))
    assert_match(ours(model, expected), expected)
    agent = LeWMAgent.from_pretrained(out, device="cpu", precision="fp32", num_samples=8, num_elites=2, horizon=2,
                                      receding_horizon=2)
    obs = {"pixels": np.zeros((14, 14, 3), np.uint8), "goal": np.full((14, 14, 3), 200, np.uint8)}
    assert agent.act(obs).shape == (2,)
    # no statistics: refused in one line naming the flag, exit 2
    r = subprocess.run(cmd[:7] + [str(tmp_path / "other"), "--action-low=-1,-1"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and "action_mean" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_pusht_import_records_the_reference_pictures(tmp_path: Path) -> None:
    """With --env lewm/PushT-v0 the checkpoint records render_style="reference", physics="reference"
    and the model's image size, so `lewm eval --checkpoint` (and make_env) play it in the pictures and
    the physics it was trained on."""
    from lewm_agent.checkpoint import make_env
    from lewm_agent.evaluation.evaluate import EvalConfig, _env_of
    out = tmp_path / "pusht"
    cmd = [sys.executable, "-m", "lewm_agent", "import", "--reference", str(FIXTURE / "weights.pt"), "--out", str(out),
           "--action-mean", "0,0", "--action-std", "1,1", "--env", "lewm/PushT-v0"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    meta = load_checkpoint(out)[1]
    assert meta.env_kwargs == {"image_size": 14, "render_style": "reference", "physics": "reference"}
    env = make_env(out)
    assert env.unwrapped.render_style == env.unwrapped.physics == "reference"
    assert env.reset(seed=0)[0]["pixels"].shape == (14, 14, 3)
    env_id, kwargs = _env_of(EvalConfig(checkpoint=str(out), env_id="lewm/PushT-v0"), meta, None)
    assert (env_id, kwargs["render_style"], kwargs["physics"]) == ("lewm/PushT-v0", "reference", "reference")
    # --env-kwargs overrides the defaults; a key the env does not take is refused naming the flag
    _, meta = load_reference(FIXTURE / "weights.pt", [0, 0], [1, 1], env_id="lewm/PushT-v0",
                             env_kwargs={"render_style": "lewm", "physics": "lewm"})
    assert (meta.env_kwargs["render_style"], meta.env_kwargs["physics"]) == ("lewm", "lewm")
    with pytest.raises(ValueError, match="--env-kwargs"):
        load_reference(FIXTURE / "weights.pt", [0, 0], [1, 1], env_id="lewm/PushT-v0", env_kwargs={"style": 1})
    _, meta = load_reference(FIXTURE / "weights.pt", [0, 0], [1, 1], [-1, -1], [1, 1])
    assert meta.env_kwargs == {}  # no env: nothing recorded


def test_unmappable_keys_are_refused_by_name(tmp_path: Path) -> None:
    state, sizes = read(FIXTURE / "lewm_object.ckpt")
    extra = {**state, "predictor.transformer.input_proj.weight": torch.zeros(8, 8)}
    with pytest.raises(ValueError, match=r"'predictor\.transformer\.input_proj\.weight': no counterpart"):
        to_model(extra, sizes, 2)
    layer_norm_projector = {k: v for k, v in state.items() if not k.startswith("projector.net.1.running")}
    with pytest.raises(ValueError, match=r"projector\.net\.1\.running_mean"):
        to_model(layer_norm_projector, sizes, 2)
    missing = {k: v for k, v in state.items() if k != "predictor.transformer.norm.weight"}
    with pytest.raises(ValueError, match=r"missing key 'predictor\.transformer\.norm\.weight'"):
        to_model(missing, sizes, 2)
    with pytest.raises(ValueError, match="predictor_heads: the reference checkpoint does not record it"):
        to_model(state, {}, 2, encoder_heads=2)
    with pytest.raises(ValueError, match="action_dim: 3 does not divide"):
        to_model(state, sizes, 3)
    with pytest.raises(ValueError, match=r"encoder\.config\.hidden_act"):
        to_model(state, {**sizes, "vit": {"hidden_act": "relu"}}, 2)
    with pytest.raises(ValueError, match="action_low, action_high"):
        load_reference(FIXTURE / "weights.pt", action_mean=[0, 0], action_std=[1, 1])
    torch.save({"encoder.x": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="expected one LeWM predictor"):
        read(tmp_path / "w.pt")


def test_live_against_the_installed_reference(tmp_path: Path) -> None:
    """The reference built here (both save forms written now, by this transformers version)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(FIXTURE))
    import reference
    if reference.missing():
        pytest.skip(reference.missing())
    import make_fixture
    expected = make_fixture.write(tmp_path, make_fixture.build(seed=3))
    for form in ("lewm_object.ckpt", "weights.pt"):
        agent = LeWMAgent.from_reference(tmp_path / form, device="cpu", precision="fp32", num_samples=5,
                                         num_elites=2, horizon=4, receding_horizon=4, **STATS)
        assert_match(ours(agent.model, expected, agent), expected)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_runs_nothing_it_names(tmp_path: Path) -> None:
    """A saved module is read with stand-ins for its classes: a callable the file names is not called."""
    marker = tmp_path / "ran"
    torch.save({"model": _Evil(marker)}, tmp_path / "evil_object.ckpt")
    with pytest.raises(ValueError, match="expected a saved module or a state dict"):
        read(tmp_path / "evil_object.ckpt")
    assert not marker.exists()


def test_default_layer_norms_keep_old_checkpoint_keys() -> None:
    cfg = ModelConfig(**{**ModelConfig().to_dict(), "image_size": 28, "encoder_depth": 1, "predictor_depth": 1})
    keys = set(WorldModel(cfg).state_dict())
    assert cfg.layer_norms == "lewm" and not any("attn_norm" in k or "mlp_norm" in k for k in keys)
    with pytest.raises(ValueError, match="ModelConfig.layer_norms"):
        ModelConfig(layer_norms="other")
