"""Progress of long work (a sync of many hours, verifying or building a year).

The ingest, verifier and dataset builder report progress as text lines that carry a
``done/total`` count ("[3/24] 2026-11-28T03:00Z: …", "checked 500/8760 data files"). On a
terminal this shows them as one redrawn bar with the rate and the time left; elsewhere
(a log file, CI, a pipe) as plain lines, so logs stay readable. Lines without a count
are printed as they are.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

_COUNT = re.compile(r"(\d+)/(\d+)")
BAR_WIDTH = 24
# Work that has run this long is "long": off a terminal its progress lines start to show.
LONG_WORK_SECONDS = 2.0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Progress is a ``progress(message)`` callback (see the module docstring).

    ``quiet_for``: on a non-terminal, lines are held back until the work has run that many
    seconds, so short runs stay quiet and long ones still show they are alive.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        quiet_for: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.quiet_for = quiet_for
        self.clock = clock
        self.started = clock()
        self._first: tuple[float, int] | None = None
        self._bar_open = False

    def __call__(self, message: str) -> None:
        count = _COUNT.search(message)
        if not self.tty or count is None:
            self._end_bar()
            if self.tty or self.clock() - self.started >= self.quiet_for:
                print(message, file=self.stream, flush=True)
            return
        done, total = int(count.group(1)), int(count.group(2))
        self._draw(done, total, message)

    def line(self, done: int, total: int, message: str) -> str:
        """line is the bar for ``done`` of ``total``: bar, count, rate, time left, message."""
        now = self.clock()
        if self._first is None or done < self._first[1]:
            self._first = (now, done)
        since, base = self._first
        rate = (done - base) / (now - since) if now > since and done > base else None
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"
        if rate:
            text += f"  {rate:.1f}/s  ETA {_duration((total - done) / rate)}"
        label = " ".join(_COUNT.sub("", message, count=1).strip(" []:").split())
        return f"{text}  {label}"

    def _draw(self, done: int, total: int, message: str) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        text = self.line(done, total, message)[: width - 1]
        self.stream.write(f"\r{text}\x1b[K")
        self._bar_open = True
        if done >= total:
            self._end_bar()
        self.stream.flush()

    def _end_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_open = False

    def close(self) -> None:
        """close ends a bar left open (work interrupted before its last step)."""
        self._end_bar()
