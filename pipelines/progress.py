"""Progress as log lines: what a non-interactive run (``ray job submit``, cron, CI) shows instead of redrawn bars.

One line when the work passes each tenth of its total and at the end, and at most ``every_s`` apart otherwise —
``shard: 1,200/12,000 files (10%), 85.3 files/s, ETA 2:06`` — so a log grows with the work done, not with seconds.
Ray Data's own progress bars are for terminals only (:func:`bars_for_terminal_only`).
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger(__name__)


def bars_for_terminal_only() -> None:
    """Ray Data's progress bars off unless stderr is a terminal (they redraw many times a second: a log full of
    them); the variable reaches the worker processes a local cluster starts from here."""
    if sys.stderr.isatty():
        return
    import ray.data

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.data.DataContext.get_current().enable_progress_bars = False


def duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``."""
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Stdout:
    """A logger stand-in for Ray tasks and actors (whose logging is not configured): lines on the process's own
    stdout, which Ray copies to the driver's log."""

    @staticmethod
    def info(text: str) -> None:
        print(text, file=sys.__stdout__ or sys.stdout, flush=True)


STDOUT = _Stdout()


class Progress:
    """Counts ``total`` units of work and logs ``what: done/total unit (pct), rate, ETA`` lines (see module)."""

    def __init__(self, what: str, total: int, unit: str, *, every_s: float = 300.0,
                 logger: logging.Logger | _Stdout = log):
        self.what, self.total, self.unit, self.every_s, self.log = what, max(0, total), unit, every_s, logger
        self.done, self.start = 0, time.monotonic()
        self._last_time, self._last_tenth = self.start, 0

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.what}: {self.done:,}/{self.total:,} {self.unit}"
        if self.total:
            text += f" ({100 * self.done // self.total}%)"
        text += f", {rate:.3g} {self.unit}/s"
        if 0 < self.done < self.total and rate > 0:
            text += f", ETA {duration((self.total - self.done) / rate)}"
        return text + (f", done in {duration(elapsed)}" if self.done >= self.total else "")

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        tenth = 10 * self.done // self.total if self.total else 10
        if tenth > self._last_tenth or now - self._last_time >= self.every_s:
            self._last_tenth, self._last_time = tenth, now
            self.log.info(self.line())
