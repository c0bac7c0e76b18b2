"""Every config class: one JSON convention (`from_dict`); unknown keys and wrong types refused by name."""
import dataclasses
import json
import math
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lewm_agent import ModelConfig, PlannerConfig, preset


def test_planner_and_model_json_share_one_convention_and_refuse_unknown_keys(capsys, tmp_path):
    from lewm_agent.cli import main
    out = tmp_path / "ev"
    assert main(["eval", "--checkpoint", "two_room", "--env", "lewm/TwoRoom-v0", "--episodes", "2", "--seeds", "0",
                 "--no-baselines", "--no-progress",
                 "--planner", '{"num_samples": 8, "num_elites": 4, "num_iterations": 2}',
                 "--num-iterations", "1", "--out", str(out)]) == 0
    planner = json.loads((out / "eval.json").read_text())["planner"]
    assert planner["num_samples"] == 8 and planner["num_iterations"] == 1  # JSON, then the flag over it
    assert main(["eval", "--checkpoint", "two_room", "--env", "lewm/TwoRoom-v0", "--planner", '{"samples": 8}']) == 2
    assert "--planner: unknown key(s) ['samples']" in capsys.readouterr().err
    assert main(["train", "--data", "x.h5", "--out", str(tmp_path / "t"), "--model", '{"latent": 3}']) == 2
    assert "--model: unknown key(s) ['latent']" in capsys.readouterr().err


# Values of the wrong JSON type for any config field: each must be refused by name, never as a TypeError.


_WRONG = st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
                   st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not math.isfinite(x)))


@settings(max_examples=60, deadline=None)
@given(cls=st.sampled_from([ModelConfig, PlannerConfig]), data=st.data())
def test_config_fields_of_the_wrong_type_are_refused_by_name(cls, data):
    field = data.draw(st.sampled_from([f.name for f in fields(cls)]))
    value = data.draw(_WRONG)
    base = preset("tiny").to_dict() if cls is ModelConfig else PlannerConfig().to_dict()
    if isinstance(value, list) and field == "cnn_channels" and value and all(v >= 1 for v in value):
        return  # a valid channel list
    with pytest.raises(ValueError, match=field):
        cls.from_dict({**base, field: value})


def _configs():
    from lewm_agent.data.collect import CollectConfig
    from lewm_agent.evaluation.evaluate import EvalConfig
    from lewm_agent.evaluation.probe import ProbeConfig
    from lewm_agent.training.config import TrainConfig
    return [(ModelConfig, {}), (PlannerConfig, {}), (TrainConfig, {"data": "x.h5", "out": "o"}),
            (EvalConfig, {"checkpoint": "c", "env_id": "lewm/TwoRoom-v0"}),
            (ProbeConfig, {"checkpoint": "c", "data": "x.h5"}),
            (CollectConfig, {"env_id": "lewm/TwoRoom-v0", "episodes": 2, "out": "o.h5"})]


@pytest.mark.parametrize("index", range(6))
def test_every_config_reads_its_json_through_one_from_dict(index):
    from lewm_agent.config import fields_from_dict
    cls, given = _configs()[index]
    assert cls.from_dict.__func__ is fields_from_dict  # one reader, one convention
    cfg = cls(**given)
    assert cls.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg  # JSON lists back to tuples
    with pytest.raises(ValueError, match=f"unknown {cls.__name__} field"):
        cls.from_dict({**given, "nonsense": 1})
