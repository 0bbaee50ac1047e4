"""Small inline SVG charts for the HTML report and the notebook (no plotting library).

Each function returns one ``<svg>`` element as text, sized in CSS pixels, with a
``<title>`` on every mark so a reader hovering over a cell or bar sees its exact value.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence

HOUR = 3600
DAY = 86_400
GAP = "#d7263d"
EMPTY = "#cfe8d5"
LATE = "#1f4e79"
_GREENS = ("#a6dba0", "#5aae61", "#1b7837", "#00441b")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _utc(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _shade(events: int, top: int) -> str:
    if top <= 0:
        return _GREENS[0]
    level = min(len(_GREENS) - 1, int(len(_GREENS) * events / (top + 1)))
    return _GREENS[level]


def _label(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" class="axis" text-anchor="{anchor}">{_e(text)}</text>'


def coverage_calendar(hours: Sequence[Mapping[str, object]]) -> str:
    """coverage_calendar draws one cell per UTC hour: green when committed (darker = more
    events), pale when committed empty, red for a gap; a dark dot marks late batches.

    ``hours`` rows need ``hour`` (Unix seconds), ``committed``, ``events``, ``kinds``.
    Up to 31 days the days are rows; longer spans put days in columns.
    """
    if not hours:
        return '<p class="muted">No committed hours yet.</p>'
    by_hour = {int(h["hour"]): h for h in hours}  # type: ignore[call-overload]
    first, last = min(by_hour), max(by_hour)
    day0 = first - first % DAY
    days = (last - day0) // DAY + 1
    top = max(int(h["events"]) for h in hours)  # type: ignore[call-overload]
    rows_are_days = days <= 31
    if rows_are_days:
        cell_w, cell_h = (36, 26) if days <= 7 else (26, 18)
    else:
        cell_w, cell_h = max(2.0, min(12.0, 1040 / days)), 10
    left, top_pad = (112, 22) if rows_are_days else (34, 22)
    width = left + (24 if rows_are_days else days) * cell_w + 8
    height = top_pad + (days if rows_are_days else 24) * cell_h + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        'role="img" aria-label="Calendar of covered hours" class="calendar">'
    ]
    if rows_are_days:
        for h in range(0, 24, 3):
            x = left + h * cell_w + cell_w / 2
            parts.append(
                f'<text x="{x:.1f}" y="14" class="axis" text-anchor="middle">{h:02d}h</text>'
            )
    else:
        for h in range(0, 24, 6):
            y = top_pad + h * cell_h + cell_h - 1
            parts.append(
                f'<text x="{left - 4}" y="{y:.1f}" class="axis" text-anchor="end">{h:02d}h</text>'
            )
    label_every = 1 if rows_are_days else max(1, days // 12)
    for d in range(days):
        day = day0 + d * DAY
        if d % label_every == 0:
            label = _utc(day).strftime("%a %Y-%m-%d" if rows_are_days else "%m-%d")
            if rows_are_days:
                y = top_pad + d * cell_h + cell_h - 5
                parts.append(_label(left - 6, y, label, "end"))
            else:
                parts.append(_label(left + d * cell_w, 14, label, "start"))
        for h in range(24):
            start = day + h * HOUR
            if not first <= start <= last:
                continue
            x = left + (h if rows_are_days else d) * cell_w
            y = top_pad + (d if rows_are_days else h) * cell_h
            row = by_hour.get(start)
            committed = bool(row and row["committed"])
            events = int(row["events"]) if row else 0  # type: ignore[call-overload]
            kinds = list(row["kinds"]) if row else []  # type: ignore[call-overload]
            if not committed:
                fill, what = GAP, "GAP: no committed batch"
            elif events == 0:
                fill, what = EMPTY, "committed, no events"
            else:
                fill, what = _shade(events, top), f"{events} events"
            if "late" in kinds:
                what += (
                    f" ({kinds.count('late')} late batch{'es' if kinds.count('late') > 1 else ''})"
                )
            title = f"{_utc(start):%Y-%m-%d %H}:00Z: {what}"
            gap = 1 if cell_w >= 4 else 0
            parts.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{cell_w - gap:.2f}" height="{cell_h - 1}" '
                f'fill="{fill}"><title>{_e(title)}</title></rect>'
            )
            if "late" in kinds and rows_are_days:
                parts.append(
                    f'<circle cx="{x + cell_w - 6:.1f}" cy="{y + 5:.1f}" r="2.5" fill="{LATE}"/>'
                )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    points: Sequence[tuple[int, int]], *, label: str, unit_seconds: int = HOUR, width: int = 1040
) -> str:
    """bar_chart draws counts over time; ``points`` are (Unix seconds, count)."""
    if not points:
        return '<p class="muted">No events.</p>'
    height, left, bottom, top_pad = 180, 56, 24, 10
    first = min(t for t, _ in points)
    last = max(t for t, _ in points)
    slots = (last - first) // unit_seconds + 1
    peak = max(c for _, c in points) or 1
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    bar_w = plot_w / slots
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(label)}" class="bars">',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" '
        'class="axisline"/>',
    ]
    for frac in (0.5, 1.0):
        y = top_pad + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
            f"{round(peak * frac):,}</text>"
        )
    fmt = "%Y-%m-%d %H:00Z" if unit_seconds < DAY else "%Y-%m-%d"
    for t, count in points:
        i = (t - first) // unit_seconds
        h = plot_h * count / peak
        x = left + i * bar_w
        parts.append(
            f'<rect x="{x:.2f}" y="{top_pad + plot_h - h:.2f}" width="{max(bar_w - 1, 0.6):.2f}" '
            f'height="{h:.2f}" class="bar"><title>{_utc(t).strftime(fmt)}: {count:,}</title></rect>'
        )
    ticks = min(8, slots)
    for k in range(ticks):
        i = round(k * (slots - 1) / max(ticks - 1, 1))
        t = first + i * unit_seconds
        x = left + i * bar_w + bar_w / 2
        text = _utc(t).strftime("%m-%d %Hh" if unit_seconds < DAY else "%Y-%m-%d")
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" class="axis" text-anchor="middle">{text}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def hbar_rows(items: Sequence[tuple[str, int]]) -> str:
    """hbar_rows returns table rows (name, count, proportional bar) for a top-N list."""
    peak = max((c for _, c in items), default=1) or 1
    rows = []
    for name, count in items:
        pct = 100 * count / peak
        rows.append(
            f'<tr><td class="mono">{_e(name)}</td><td class="num">{count:,}</td>'
            f'<td class="barcell"><div class="hbar" style="width:{pct:.1f}%"></div></td></tr>'
        )
    return "".join(rows)
