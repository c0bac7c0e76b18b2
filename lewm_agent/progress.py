"""Progress for long jobs that stays readable in logs.

tqdm draws a bar on a terminal, but switches itself off when stderr is not one (CI logs,
`nohup`, `setsid ... > log`), so a 20-minute evaluation printed nothing. Off a terminal this
prints one plain line every `interval` seconds instead: done/total, rate, elapsed and ETA.
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """`update(n)`, `set_postfix(**values)`, `close()`; a context manager.

    enabled: False prints nothing. interval: seconds between plain lines off a terminal.
    """

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True,
                 interval: float = 30.0, stream: TextIO | None = None):
        self.total, self.desc, self.unit, self.done = int(total), desc, unit, int(initial)
        self.stream = stream or sys.stderr
        self.interval, self.postfix = float(interval), ""
        self._bar = None
        self._plain = enabled and not (hasattr(self.stream, "isatty") and self.stream.isatty())
        if enabled and not self._plain:
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True)
        self._t0 = self._last = time.monotonic()
        self._start = self.done

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._plain and time.monotonic() - self._last >= self.interval:
            self._print()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def line(self) -> str:
        """The plain progress line: what off-terminal logs show."""
        elapsed = time.monotonic() - self._t0
        rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        text = (f"{self.desc}: {self.done}/{self.total} {self.unit}{share}, {rate:.3g} {self.unit}/s, "
                f"elapsed {_clock(elapsed)}, eta {eta}")
        return f"{text}, {self.postfix}" if self.postfix else text

    def _print(self) -> None:
        self._last = time.monotonic()
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._plain and self.done > self._start:
            self._print()  # the final count, however short the job
            self._plain = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
