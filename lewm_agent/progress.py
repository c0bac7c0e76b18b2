"""Progress for long jobs that stays readable in logs, and whose ETA can be trusted.

tqdm draws a bar on a terminal, but switches itself off when stderr is not one (CI logs,
`nohup`, `setsid ... > log`), so a 20-minute evaluation printed nothing. Off a terminal this
prints one plain line at least every `interval` seconds instead, from a heartbeat thread, so a
single slow unit (one batched CEM solve can take a minute) does not silence the log.

The ETA comes from the rate over the most recent units (a tenth of the first total by default), not
since the start: the first units of a phase are often slow (warm-up, a precision probe,
compilation) and an average from the start overstated the remaining time many-fold. The rate is
measured up to now, so a unit that is taking long raises the ETA while it runs. No ETA is shown
before a unit is done.

A phase whose amount of work is known only as it goes (an evaluation ends a seed when its last
pair succeeds) revises its total with `set_total`; the line then shows the total as `~N`, an
estimate, and the ETA is the estimated units left at the recent rate.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import Any, TextIO

from tqdm import tqdm


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """`update(n)`, `set_postfix(**values)`, `close()`; a context manager.

    enabled: False prints nothing. interval: most seconds between plain lines off a terminal.
    recent: share of `total` (in units, at least one) the rate and ETA are measured over.
    """

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True,
                 interval: float = 30.0, stream: TextIO | None = None, recent: float = 0.1):
        self.total, self.desc, self.unit, self.done = int(total), desc, unit, int(initial)
        self.stream = stream or sys.stderr
        self.interval, self.postfix = float(interval), ""
        self.estimated = False
        self._recent = max(1, int(round(recent * self.total)))
        self._bar, self._beat = None, None
        self._plain = enabled and not (hasattr(self.stream, "isatty") and self.stream.isatty())
        if enabled and not self._plain:
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True)
        self._t0 = self._last = time.monotonic()
        self._start = self.done
        self._seen: deque[tuple[float, int]] = deque([(self._t0, self.done)])  # (time, done) at updates
        self._lock, self._stop = threading.Lock(), threading.Event()
        if self._plain and self.interval > 0:
            self._beat = threading.Thread(target=self._heartbeat, name=f"progress {desc}", daemon=True)
            self._beat.start()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            self._seen.append((time.monotonic(), self.done))
            # keep one sample at or before the window's first unit, so the rate spans `recent` units
            while len(self._seen) > 2 and self._seen[1][1] <= self.done - self._recent:
                self._seen.popleft()
        if self._bar is not None:
            self._bar.update(n)
        elif self._plain and time.monotonic() - self._last >= self.interval:
            self._print()

    def set_total(self, total: int, estimated: bool = True) -> None:
        """Revise the total; `estimated`: the line marks it `~` (not known exactly yet)."""
        # the rate's window keeps its size: shrunk with the total, it spanned less than one batched
        # plan and the cheap steps after it (evaluation), and the ETA swung 0.3-1.6x in a simulation
        self.total, self.estimated = int(total), estimated
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def rate(self) -> float | None:
        """Units per second over the recent units, up to now; None until a unit is done."""
        with self._lock:
            if self.done == self._start:
                return None
            t, done = self._seen[0]
            return (self.done - done) / max(time.monotonic() - t, 1e-9)

    def line(self, final: bool = False) -> str:
        """The plain progress line: what off-terminal logs show."""
        elapsed, rate = time.monotonic() - self._t0, self.rate()
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        speed = f"{rate:.3g} {self.unit}/s" if rate is not None else f"first {self.unit} running"
        if final:
            tail = f"done in {_clock(elapsed)}"
        else:
            eta = _clock(max(self.total - self.done, 0) / rate) if rate else "?"
            tail = f"elapsed {_clock(elapsed)}, eta {eta}"
        total = f"~{self.total}" if self.estimated and not final else str(self.total)
        text = f"{self.desc}: {self.done}/{total} {self.unit}{share}, {speed}, {tail}"
        return f"{text}, {self.postfix}" if self.postfix else text

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            if time.monotonic() - self._last >= self.interval:
                self._print()

    def _print(self, final: bool = False) -> None:
        self._last = time.monotonic()
        print(self.line(final), file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._plain:
            self._print(final=True)  # the final count and the phase's wall time, however short the job
            self._plain = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
