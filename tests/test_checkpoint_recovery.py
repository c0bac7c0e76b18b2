"""A checkpoint folder after a crash, a torn write or a bad config.json: loadable, or one
line that names the problem."""
import json
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lewm_agent.checkpoint as ckpt_mod
from lewm_agent import WorldModel, preset
from lewm_agent.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint


def meta_of(model):
    return CheckpointMeta(model.cfg, [0.0, 0.0], [1.0, 1.0], [-1, -1], [1, 1], env_id="test/Dot-v0")


def test_a_save_killed_between_its_weights_and_its_config_rolls_forward(tmp_path, monkeypatch):
    old, new = WorldModel(preset("tiny")), WorldModel(preset("tiny", latent_dim=48))
    save_checkpoint(tmp_path / "ck", old, meta_of(old))
    real_replace = os.replace

    def killed(src, dst):  # the process dies right before the config is renamed into place
        if str(src).endswith(ckpt_mod.NEXT_CONFIG):
            raise KeyboardInterrupt
        real_replace(src, dst)
    monkeypatch.setattr(ckpt_mod.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ck", new, meta_of(new))
    monkeypatch.setattr(ckpt_mod.os, "replace", real_replace)
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["model"]["latent_dim"] == 32  # torn state
    model, meta = load_checkpoint(tmp_path / "ck")  # finishes the save: the new weights with their config
    assert model.cfg.latent_dim == 48 and meta.model.latent_dim == 48
    assert not (tmp_path / "ck" / ckpt_mod.NEXT_CONFIG).exists()
    for k, v in new.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_unloadable_weights_are_one_clear_error(tmp_path):
    model = WorldModel(preset("tiny"))
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan", model, meta_of(model))
    with pytest.raises(ValueError, match="NaN or inf in"):
        load_checkpoint(tmp_path / "nan")
    save_checkpoint(tmp_path / "torn", model, meta_of(model))
    weights = tmp_path / "torn" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "torn")


def test_a_run_before_its_first_checkpoint_says_so(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"step": 50, "train/loss": 1.0}\n')
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        load_checkpoint(tmp_path)


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["model", "planner", "action_mean", "action_std", "env_id", "env_kwargs"]),
       value=st.one_of(st.none(), st.text(max_size=4), st.integers(), st.lists(st.text(max_size=2), max_size=3)))
def test_a_config_json_with_wrong_types_is_one_line(tmp_path_factory, key, value):
    model = WorldModel(preset("tiny", action_dim=2))
    folder = tmp_path_factory.mktemp("ck")
    save_checkpoint(folder, model, meta_of(model))
    cfg = json.loads((folder / "config.json").read_text())
    if key == "env_id" and (value is None or isinstance(value, str)):
        return  # both are valid
    if key == "planner" and value is None:
        return  # unchanged default
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=f"config.json: .*{key}"):
        load_checkpoint(folder)
