"""Every numeric option with a declared range refuses a value outside it, naming the option."""
from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lewm_agent.data.collect import CollectConfig
from lewm_agent.evaluation.evaluate import EvalConfig
from lewm_agent.evaluation.probe import ProbeConfig
from lewm_agent.flags import META, RANGE_KEYS, _flag
from lewm_agent.training.config import TrainConfig
from lewm_agent.training.train_policy import PolicyTrainConfig

BASE = {TrainConfig: dict(data="d.h5", out="o"), EvalConfig: dict(checkpoint="c", data="d.h5"),
        CollectConfig: dict(env_id="lewm/TwoRoom-v0", episodes=1, out="o.h5"),
        ProbeConfig: dict(checkpoint="c", data="d.h5"), PolicyTrainConfig: dict(checkpoint="c", data="d.h5")}
RANGED = [(cls, f) for cls in BASE for f in dataclasses.fields(cls)
          if any(k in f.metadata.get(META, {}) for k in RANGE_KEYS)]


def test_every_numeric_option_declares_a_range():
    for cls in BASE:
        for f in dataclasses.fields(cls):
            numeric = any(t in str(f.type) for t in ("int", "float")) and "dict" not in str(f.type)
            if numeric and META in f.metadata:
                assert any(k in f.metadata[META] for k in RANGE_KEYS), f"{cls.__name__}.{f.name} has no range"
    assert len(RANGED) >= 35


def outside(meta: dict, whole: bool) -> st.SearchStrategy:
    """Values just outside (or far outside) the declared range, and non-finite ones."""
    bad = [st.just(math.nan), st.just(math.inf), st.just(-math.inf)]
    if "low" in meta:
        bad.append(st.integers(max_value=int(math.ceil(meta["low"])) - 1) if whole
                   else st.floats(max_value=meta["low"], exclude_max=True, allow_nan=False))
    if "above" in meta:
        bad.append(st.integers(max_value=int(math.floor(meta["above"]))) if whole
                   else st.floats(max_value=meta["above"], allow_nan=False))
    if "high" in meta:
        bad.append(st.floats(min_value=meta["high"], exclude_min=True, allow_nan=False))
    if "below" in meta:
        bad.append(st.floats(min_value=meta["below"], allow_nan=False))
    return st.one_of(*bad)


@pytest.mark.parametrize("cls,f", RANGED, ids=[f"{c.__name__}.{f.name}" for c, f in RANGED])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_value_outside_the_range_is_refused_naming_the_option(cls, f, data):
    meta = f.metadata[META]
    whole = "int" in str(f.type)
    value = data.draw(outside(meta, whole))
    if "tuple" in str(f.type):
        value = (value,)
    with pytest.raises(ValueError) as e:
        cls(**{**BASE[cls], f.name: value})
    assert str(e.value).split(":")[0] in (_flag(f), f.name, f"--{f.name.replace('_', '-')}")


@pytest.mark.parametrize("cls,f", RANGED, ids=[f"{c.__name__}.{f.name}" for c, f in RANGED])
def test_the_range_s_own_bound_is_accepted(cls, f):
    meta = f.metadata[META]
    edge = meta.get("low", meta.get("above", 0) + (1 if "int" in str(f.type) else 0.5))
    if "below" in meta and edge >= meta["below"]:
        edge = (meta.get("above", meta.get("low", 0)) + meta["below"]) / 2
    if f.name == "episodes" and cls is EvalConfig:
        edge = 1
    value = (edge,) if "tuple" in str(f.type) else edge
    kwargs = {**BASE[cls], f.name: value}
    if cls is EvalConfig and f.name == "goal_steps":  # an --env option
        kwargs = {"checkpoint": "c", "env_id": "lewm/TwoRoom-v0", "goal_steps": value}
    if cls is TrainConfig and f.name == "batch_size":
        kwargs["batch_size"] = 2
    cls(**kwargs)
