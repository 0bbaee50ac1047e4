"""The human lines of a verification report: one line per cause, with a count.

A year's gap is one cause, not 8,760 lines, and one rewritten manifest that breaks every
later checkpoint is one cause with its first instance shown. Every finding stays in the
JSON report; the lines here say where to look and, for missing hours, the command that
fills them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from audit_pipeline.ledger.layout import HOUR, format_hour
from audit_pipeline.text import plural

MAX_GAP_COMMANDS = 3


class _Finding(Protocol):
    code: object
    location: str

    def line(self) -> str: ...


def _code(finding: _Finding) -> str:
    return str(getattr(finding.code, "value", finding.code))


def _hour_of(location: str) -> int | None:
    """_hour_of reads the hour back from an ``hour 2026-12-02T03:00Z`` location."""
    try:
        moment = datetime.strptime(location.removeprefix("hour "), "%Y-%m-%dT%H:00Z")
    except ValueError:
        return None
    return int(moment.replace(tzinfo=UTC).timestamp())


def hour_runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """hour_runs folds hour starts into ``[start, end)`` runs of consecutive hours."""
    runs: list[tuple[int, int]] = []
    for hour in sorted(set(hours)):
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR)
        else:
            runs.append((hour, hour + HOUR))
    return runs


def _gap_lines(findings: Sequence[_Finding]) -> list[str]:
    hours = [h for h in (_hour_of(f.location) for f in findings) if h is not None]
    runs = hour_runs(hours)
    spans = ", ".join(
        f"{format_hour(a)}..{format_hour(b - HOUR)}" if b - a > HOUR else format_hour(a)
        for a, b in runs[:MAX_GAP_COMMANDS]
    )
    more = f" and {plural(len(runs) - MAX_GAP_COMMANDS, 'more gap')}" if len(runs) > 3 else ""
    lines = [
        f"hour_missing: {plural(len(findings), 'hour')} without a batch, in "
        f"{plural(len(runs), 'gap')}: {spans}{more}"
    ]
    lines += [
        f"  fill with: audit-pipeline sync --start {format_hour(a)} --end {format_hour(b)}"
        for a, b in runs[:MAX_GAP_COMMANDS]
    ]
    return lines


def finding_lines(findings: Sequence[_Finding]) -> list[str]:
    """finding_lines gives one line per finding code (in order of first appearance): the
    count, and the first instance, or for missing hours the gaps and how to fill them."""
    by_code: dict[str, list[_Finding]] = defaultdict(list)
    for finding in findings:
        by_code[_code(finding)].append(finding)
    lines: list[str] = []
    for code, group in by_code.items():
        if code == "hour_missing":
            lines.extend(_gap_lines(group))
        elif len(group) == 1:
            lines.append(group[0].line())
        else:
            lines.append(
                f"{code} x{len(group)}, first: {group[0].line().removeprefix(code + ': ')} "
                f"(all {len(group)} in --json)"
            )
    return lines
