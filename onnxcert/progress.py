"""Progress for logs and CI: plain lines instead of a terminal bar, and an early estimate.

When stderr is not a terminal (CI, ``nohup``, a pipe), ``PlainProgress`` writes one line every
``every`` seconds: inputs done, samples/s and the ETA. In either case, a run whose second batch
says it will take longer than ``long_after`` seconds gets one line with its estimated duration,
so that an n = 100,000 run on a slow model is noticed before it has taken hours. The rate is
measured after the first batch, which carries the session's warm-up (on the sample model it made
a 20 s run look like 2 minutes).

In a sequential run (``run --sequential``) an input may stop at any look, so n0 + n samples per
input is only the most it can take: each finished input gives back the samples it did not draw
(``drawn``), and the estimate says "at most".
"""

from __future__ import annotations

import time
from typing import Any, Callable

LONG_RUN_S = 60.0
EVERY_S = 10.0


def duration(seconds: float) -> str:
    """3 s, 4 min 10 s, 2 h 05 min."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class PlainProgress:
    """Callbacks for ``pipeline.certify`` (``on_batch``, ``on_record``) that write plain lines.

    ``lines``: write the periodic progress lines (off when a terminal bar shows the same).
    ``echo`` receives each line; ``clock`` is a monotonic clock in seconds (both injectable for
    tests). ``drawn(record)``, for sequential runs, is the number of samples a finished input
    took; the rest of its ``samples_per_input`` leaves the samples still to do (``todo``).
    """

    def __init__(self, inputs: int, samples_per_input: int, *, done: int = 0, lines: bool = True,
                 every: float | None = None, long_after: float | None = None,
                 echo: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
                 drawn: Callable[[Any], int] | None = None):
        self.total, self.per_input, self.done = inputs, samples_per_input, done
        self.lines = lines
        self.every = EVERY_S if every is None else every
        self.long_after = LONG_RUN_S if long_after is None else long_after
        self.echo, self.clock = echo, clock
        self.start = clock()
        self.last = self.start
        self.samples = 0
        self.todo = (inputs - done) * samples_per_input  # samples this session will draw
        self.drawn = drawn
        self.estimated = False
        self.first: tuple[float, int] | None = None  # (time, samples) at the end of the first batch

    def rate(self) -> float:
        elapsed = self.clock() - self.start
        return self.samples / elapsed if elapsed > 0 else 0.0

    def on_batch(self, count: int) -> None:
        self.samples += count
        now = self.clock()
        if self.first is None:
            self.first = (now, self.samples)
        elif not self.estimated:
            self.estimated = True
            self._estimate(now)
        if self.lines and now - self.last >= self.every:
            self.last = now
            self.echo(self.line())

    def on_record(self, record=None) -> int:
        """Count a finished input; returns the samples it left undrawn (sequential runs)."""
        self.done += 1
        unused = 0
        if self.drawn is not None and record is not None:
            unused = max(0, self.per_input - int(self.drawn(record)))
            self.todo -= unused
        return unused

    def line(self) -> str:
        rate = self.rate()
        left = max(0, self.todo - self.samples)
        eta = duration(left / rate) if rate > 0 else "unknown"
        return (f"progress: {self.done}/{self.total} inputs, {self.samples:,} samples, {rate:,.0f} samples/s, "
                f"eta {eta}")

    def _estimate(self, now: float) -> None:
        t1, s1 = self.first
        if now <= t1 or self.samples <= s1:
            return
        rate = (self.samples - s1) / (now - t1)
        seconds = (now - self.start) + max(0, self.todo - self.samples) / rate
        if seconds >= self.long_after:
            most = "at most " if self.drawn is not None else ""
            self.echo(f"this run will take {most}about {duration(seconds)} ({self.total - self.done} input(s) x "
                      f"{most}{self.per_input:,} samples at {rate:,.0f} samples/s, measured after the first batch); "
                      "--n, --limit and --skip make it shorter")
