import io

import numpy as np

from lewm_agent.progress import Progress


class Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_off_a_terminal_progress_prints_plain_lines_with_eta():
    log = Log()
    with Progress(10, "train", unit="step", interval=0.0, stream=log) as p:
        p.set_postfix(pred="0.5")
        p.update(4)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("train: 4/10 step (40%)") and "eta" in lines[0] and "pred=0.5" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("train: 4/10")  # close() prints the final count once


def test_quiet_when_disabled_or_within_the_interval():
    log = Log()
    with Progress(10, "x", enabled=False, stream=log) as p:
        p.update(10)
    with Progress(10, "y", interval=3600.0, stream=log) as p:
        p.update(3)
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[0]]  # only y's final line
    assert log.getvalue().startswith("y: 3/10")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_eta_before_a_unit_then_the_eta_follows_the_recent_rate(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("lewm_agent.progress.time.monotonic", clock)
    p = Progress(100, "eval", unit="step", interval=0.0, stream=Log())  # rate over the last 10
    clock.now += 300.0  # a slow first unit (warm-up): an average from the start would say 300 s per step
    assert "eta ?" in p.line() and "first step running" in p.line()
    p.update(1)
    for _ in range(30):  # then a step every second
        clock.now += 1.0
        p.update(1)
    assert abs(p.rate() - 1.0) < 0.05
    assert "eta 1:09" in p.line()  # 69 steps left at 1 step/s, not 69 x 10 s
    clock.now += 5.0
    assert "done in 5:35" in p.line(final=True)


def test_a_slow_unit_does_not_silence_the_log():
    import time
    log = Log()
    with Progress(3, "plan", unit="solve", interval=0.2, stream=log):
        time.sleep(0.75)  # one unit that outlasts several intervals, no update at all
    lines = log.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("plan: 0/3 solve") for line in lines)
    assert "eta ?" in lines[0] and "done in" in lines[-1]


def test_a_revised_total_is_marked_as_an_estimate_and_sets_the_eta(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("lewm_agent.progress.time.monotonic", clock)
    p = Progress(100, "eval", unit="pair-step", interval=0.0, stream=Log())
    for _ in range(20):
        clock.now += 1.0
        p.update(1)
    assert "20/100 pair-step" in p.line() and "eta 1:20" in p.line()
    p.set_total(40)  # the phase learned that less work is left: 20 units, not 80
    assert "20/~40 pair-step (50%)" in p.line() and "eta 0:20" in p.line()
    assert "20/40 pair-step" in p.line(final=True)  # the final line gives the count, no estimate


# --------------------------------------------- the eval bar (evaluation/work.py)
def _eta_seconds(line):
    clock = line.split("eta ")[1].split(",")[0]
    if clock == "?":
        return None
    value = 0
    for part in clock.split(":"):
        value = value * 60 + int(part)
    return value


class _Env:
    """A pair that succeeds at its `state[0]`-th step (never if beyond the budget)."""

    def reset(self, options):
        self.at, self.t = int(options["state"][0]), 0
        return {"pixels": np.zeros(1)}, {}

    def step(self, action):
        self.t += 1
        return {"pixels": np.zeros(1)}, 0.0, False, False, {"is_success": self.t >= self.at}


def _simulated_eval(monkeypatch, succeed_at, budget=50, plan_s=0.5, every=5):
    """Seeds played through run_pairs on a fake clock: a plan every `every` steps costs `plan_s` per
    active pair (a batched CEM solve). Returns [(time, eta shown)] at the start of each step, the end, the bar."""
    from lewm_agent.evaluation.pairs import Pair, run_pairs
    from lewm_agent.evaluation.work import PairSteps
    clock = Clock()
    monkeypatch.setattr("lewm_agent.progress.time.monotonic", clock)
    bar = Progress(len(succeed_at) * len(succeed_at[0]) * budget, "eval lewm", unit="pair-step", interval=0.0,
                   stream=Log())
    work, seen = PairSteps(bar, len(succeed_at), len(succeed_at[0]), budget), []

    def policy_for_a_seed():
        steps = iter(range(budget))

        def policy(obs, active):
            seen.append((clock.now, _eta_seconds(bar.line())))
            clock.now += plan_s * active.sum() if next(steps) % every == 0 else 0.01
            return np.zeros((len(active), 1))
        return policy
    for at in succeed_at:
        pairs = [Pair(np.array([a]), np.zeros(1)) for a in at]
        run_pairs(policy_for_a_seed(), pairs, [_Env() for _ in at], budget, progress=work)
    bar.close()
    return seen, clock.now, bar


def test_the_eval_eta_follows_the_work_left_when_pairs_succeed_early(monkeypatch):
    """Every pair succeeds at step 15-35 of a 50-step budget. Counting the budget's lockstep steps
    (the earlier bar), each seed's last 15-35 steps were skipped at once, the steps got cheaper as
    pairs succeeded, and the ETA overshot up to 5x here, as late as the last seed."""
    succeed_at = [np.random.default_rng(s).integers(15, 36, 20) for s in range(3)]
    seen, end, bar = _simulated_eval(monkeypatch, succeed_at)
    start = seen[0][0]

    def ratios(after):  # ETA / real remaining, where a 1 s clock can show it (>= 10 s left)
        return [eta / (end - t) for t, eta in seen if t - start >= after * (end - start) and end - t >= 10]
    assert 0.5 < min(ratios(0.2)) and max(ratios(0.2)) < 2.0, ratios(0.2)  # once pairs of seed 1 succeed
    assert 0.67 < min(ratios(0.4)) and max(ratios(0.4)) < 1.6, ratios(0.4)  # seeds 2-3: seed 1's measured work
    assert bar.done == bar.total == sum(int(a.sum()) for a in succeed_at)  # the pair-steps played, no more


def test_a_resumed_seed_lowers_the_total_and_adds_no_work():
    from lewm_agent.evaluation.work import PairSteps
    bar = Progress(2 * 10 * 50, "eval lewm", unit="pair-step", interval=0.0, stream=Log())
    work = PairSteps(bar, seeds=2, pairs=10, budget=50)
    work.skip()  # seed 0 came from the resume file
    work.step(10, 10)
    assert bar.done == 10 and bar.total == 500  # one seed's bound: no pair has succeeded yet
    for _ in range(9):
        work.step(10, 0 if _ == 8 else 10)  # every pair succeeds at step 10
    assert bar.done == bar.total == 100 and not bar.estimated
