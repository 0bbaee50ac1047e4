"""Progress: a bar with rate and time left on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from audit_pipeline.cli.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_one_redrawn_bar_with_rate_and_eta():
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(out, tty=True, clock=clock)
    progress("[1/10] 2026-11-28T00:00Z: 5 read, 5 new")
    clock.now += 2.0
    progress("[5/10] 2026-11-28T04:00Z: 5 read, 5 new")
    text = out.getvalue()
    assert "\n" not in text  # still one line, redrawn with \r
    last = text.split("\r")[-1].removesuffix("\x1b[K")
    assert last.startswith("[############............] 5/10  2.0/s  ETA 0:02")
    assert last.endswith("2026-11-28T04:00Z: 5 read, 5 new")
    clock.now += 2.5
    progress("[10/10] 2026-11-28T09:00Z: 5 read, 5 new")
    assert out.getvalue().endswith("\n")  # the finished bar ends its line
    progress("windows read: 10")
    assert out.getvalue().endswith("windows read: 10\n")


def test_elsewhere_plain_lines_after_the_quiet_time():
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(out, tty=False, quiet_for=2.0, clock=clock)
    progress("checked 100/8760 data files")
    assert out.getvalue() == ""  # short work stays quiet
    clock.now += 3
    progress("checked 200/8760 data files")
    assert out.getvalue() == "checked 200/8760 data files\n"
    assert "\r" not in out.getvalue()
