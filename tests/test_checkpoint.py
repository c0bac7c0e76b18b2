import json

import pytest
import torch
from safetensors.torch import save_file

from lewm_agent import WorldModel, preset
from lewm_agent.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint


def make(tmp_path, **kw):
    cfg = preset("tiny")
    model = WorldModel(cfg)
    meta = CheckpointMeta(cfg, [0.1, -0.2], [0.5, 0.7], [-1, -1], [1, 1], env_id="test/Dot-v0")
    return model, meta, save_checkpoint(tmp_path / "ck", model, meta, card="# card\n", **kw)


def test_round_trip_is_exact_and_pickle_free(tmp_path):
    model, meta, path = make(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded, meta2 = load_checkpoint(path)
    assert meta2 == meta and not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_half_precision_storage_is_dequantized(tmp_path):
    model, _, path = make(tmp_path, weights_dtype="float16")
    loaded, _ = load_checkpoint(path)
    w = loaded.state_dict()["pos_embed"]
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, model.state_dict()["pos_embed"], atol=1e-3, rtol=1e-3)


def edit_config(path, fn):
    cfg = json.loads((path / "config.json").read_text())
    fn(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(format_version=99), "format_version"),
    (lambda c: c.update(bogus=1), "unknown field"),
    (lambda c: c.pop("action_std"), "missing field"),
    (lambda c: c["model"].update(colour=1), "unknown ModelConfig field"),
    (lambda c: c.update(action_mean=[0.0]), "action_mean: expected 2"),
    (lambda c: c["model"].update(latent_dim=48), "does not match"),
])
def test_bad_config_is_named(tmp_path, edit, message):
    _, _, path = make(tmp_path)
    edit_config(path, edit)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    _, _, path = make(tmp_path)
    other = WorldModel(preset("tiny", latent_dim=48)).state_dict()
    embedded = (path / "config.json").read_text()
    save_file(other, str(path / "model.safetensors"), metadata={"config": embedded})
    with pytest.raises(ValueError, match=r"pos_embed: file \(1, 3, 48\) vs config \(1, 3, 32\)"):
        load_checkpoint(path)


def test_mixed_saves_and_missing_files_are_detected(tmp_path):
    _, _, path = make(tmp_path)
    other = WorldModel(preset("tiny", latent_dim=48))
    save_checkpoint(tmp_path / "other", other, CheckpointMeta(other.cfg, [0, 0], [1, 1], [-1, -1], [1, 1]))
    (path / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="different saves"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no such folder, and not a shipped checkpoint name"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path / "empty")


def test_card_section_is_appended_then_replaced_in_place(tmp_path):
    from lewm_agent.checkpoint import write_card_section
    _, _, path = make(tmp_path)
    write_card_section(path, "eval", "## Evaluation\n\nfirst")
    card = (path / "README.md").read_text()
    assert card.startswith("# card\n") and "first" in card
    (path / "README.md").write_text(card + "\nkept after\n")
    write_card_section(path, "eval", "## Evaluation\n\nsecond")
    card = (path / "README.md").read_text()
    assert "first" not in card and card.count("second") == 1 and card.count("## Evaluation") == 1
    assert card.startswith("# card\n") and card.endswith("kept after\n")
