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
