"""precision="auto" on a CPU: bf16 only where measured clearly faster and agreeing with fp32."""
from __future__ import annotations

import json
import time

import pytest
import torch

import lewm_agent.precision as precision
from lewm_agent.precision import choose, close, measure
from lewm_agent.training.train import TrainConfig, train

CPU = torch.device("cpu")


def slow_when(slow_bf16: bool, delay: float = 0.02, offset: float = 0.0):
    calls = []

    def work(bf16: bool) -> torch.Tensor:
        calls.append(bf16)
        time.sleep(delay if bf16 == slow_bf16 else 0.0)
        return torch.tensor([1.0 + (offset if bf16 else 0.0)])
    return work, calls


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(precision, "_CACHE", {})


def test_a_slow_bf16_probe_keeps_fp32_and_says_why():
    work, calls = slow_when(slow_bf16=True)
    choice = choose("auto", CPU, "slow", work, close(0.01))
    assert choice.precision == "fp32" and not choice.bf16
    assert "x the speed of fp32" in choice.reason and choice.bf16_ms > choice.fp32_ms
    assert True in calls and False in calls
    # Clearly slower: it stops after the first round instead of spending all of them.
    assert len(calls) == 4


def test_a_fast_bf16_probe_picks_bf16():
    work, _ = slow_when(slow_bf16=False)
    choice = choose("auto", CPU, "fast", work, close(0.01))
    assert choice.precision == "bf16" and "faster than fp32" in choice.reason
    assert choice.fp32_ms / choice.bf16_ms >= precision.MIN_SPEEDUP


def test_bf16_that_disagrees_with_fp32_is_refused_even_when_faster():
    work, _ = slow_when(slow_bf16=False, offset=0.5)
    assert choose("auto", CPU, "wrong", work, close(0.05)).precision == "fp32"
    assert "disagree" in measure(work, close(0.05)).reason


def test_measured_once_per_key_and_forced_values_are_not_measured():
    work, calls = slow_when(slow_bf16=True)
    first = choose("auto", CPU, "k", work, close(0.01))
    n = len(calls)
    assert choose("auto", CPU, "k", work, close(0.01)) is first and len(calls) == n
    assert choose("bf16", CPU, "k2", work, close(0.01)).precision == "bf16"
    assert choose("fp32", CPU, "k3", work, close(0.01)).precision == "fp32" and len(calls) == n
    with pytest.raises(ValueError, match="^precision:"):
        choose("fp16", CPU, "k", work, close(0.01))


def test_the_trainer_records_and_logs_its_choice(dot_dataset, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level("INFO", logger="lewm_agent.training.train"):
        train(TrainConfig(data=str(dot_dataset), out=str(out), preset="tiny", steps=4, batch_size=16,
                          warmup_steps=1, eval_interval=4, ckpt_interval=4, val_windows=32, num_projections=32,
                          progress=False))
    recorded = json.loads((out / "config.json").read_text())["training"]["precision"]
    assert recorded["precision"] in ("fp32", "bf16") and recorded["reason"].startswith("auto: ")
    assert any(f"precision {recorded['precision']}: auto" in r.getMessage() for r in caplog.records)
    assert f"precision {recorded['precision']} (auto: " in (out / "README.md").read_text()


def test_a_resumed_auto_run_keeps_the_precision_it_started_with(dot_dataset, tmp_path, monkeypatch):
    import lewm_agent.training.train as train_mod
    kw = dict(data=str(dot_dataset), out=str(tmp_path / "run"), preset="tiny", batch_size=16, warmup_steps=1,
              eval_interval=2, ckpt_interval=2, val_windows=32, num_projections=32, progress=False)
    train(TrainConfig(steps=2, **kw))
    first = json.loads((tmp_path / "run" / "config.json").read_text())["training"]["precision"]

    def must_not_measure(*args, **kwargs):
        raise AssertionError("a resumed run measured again and might switch precision mid-run")
    monkeypatch.setattr(train_mod, "choose", must_not_measure)
    train(TrainConfig(steps=4, **kw))
    kept = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert kept["steps"] == 4 and kept["precision"]["precision"] == first["precision"]
    assert kept["precision"]["reason"].startswith("kept from the run's start (auto: ")


def test_the_agent_measures_once_at_its_first_plan_and_says_what_it_chose(trained_checkpoint):
    from lewm_agent import LeWMAgent
    agent = LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", num_samples=16, num_elites=4, num_iterations=2)
    assert agent._choice is None                       # loading measures nothing
    original = agent._imagined_cost

    def slow_bf16(*args):                              # a forced slow bf16 probe
        if agent._bf16:
            time.sleep(0.02)
        return original(*args)
    agent._imagined_cost = slow_bf16
    choice = agent.precision_choice
    assert choice.precision == "fp32" and choice.reason.startswith("auto: bf16 measured")
    assert agent.precision_choice is choice and not agent.bf16
    assert f"precision=fp32 ({choice.reason})" in repr(agent)
    forced = LeWMAgent.from_pretrained(trained_checkpoint, device="cpu", precision="bf16")
    assert forced.bf16 and forced.precision_choice.reason == "bf16 asked for"
