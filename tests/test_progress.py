import io

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
