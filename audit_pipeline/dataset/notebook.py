"""Display helpers for notebooks: query results as HTML tables, charts as inline SVG.

Objects here implement ``_repr_html_`` (Jupyter renders them) and a plain ``__repr__``
(terminals and executed-notebook logs stay readable), so the notebook needs neither
pandas nor a plotting library.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import duckdb

from audit_pipeline.dataset import charts
from audit_pipeline.dataset.query import QueryResult, cell_text, format_result, run_query

_MAX_CELL = 120


class Table:
    """Table is a query result that renders as an HTML table in a notebook."""

    def __init__(self, result: QueryResult, *, title: str | None = None) -> None:
        self.result = result
        self.title = title

    @property
    def columns(self) -> list[str]:
        return self.result.columns

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        return self.result.rows

    def __len__(self) -> int:
        return len(self.result.rows)

    def _repr_html_(self) -> str:
        def cell(value: Any) -> str:
            text = cell_text(value)
            if len(text) > _MAX_CELL:
                text = text[: _MAX_CELL - 1] + "…"
            return html.escape(text)

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.result.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
            for row in self.result.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        count = len(self.result.rows)
        return (
            f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p><small>{count} row{'s' if count != 1 else ''}</small></p>"
        )

    def __repr__(self) -> str:
        text = format_result(self.result, "table")
        return f"{self.title}\n{text}" if self.title else text


class Chart:
    """Chart wraps an SVG string for inline display."""

    def __init__(self, svg: str, *, title: str) -> None:
        self.svg = svg
        self.title = title

    def _repr_html_(self) -> str:
        return f"<h4>{html.escape(self.title)}</h4>{self.svg}"

    def __repr__(self) -> str:
        return f"<chart: {self.title}>"


def show(con: duckdb.DuckDBPyConnection, sql: str, *, title: str | None = None) -> Table:
    """show runs SQL and returns a displayable table."""
    return Table(run_query(con, sql), title=title)


def time_chart(
    con: duckdb.DuckDBPyConnection, sql: str, *, title: str, unit_seconds: int = charts.HOUR
) -> Chart:
    """time_chart draws bars from a query returning (timestamp, count) rows."""
    points: Sequence[tuple[Any, Any]] = run_query(con, sql).rows
    data = [(int(t.timestamp()), int(n)) for t, n in points if t is not None]
    return Chart(charts.bar_chart(data, label=title, unit_seconds=unit_seconds), title=title)


def top_chart(con: duckdb.DuckDBPyConnection, sql: str, *, title: str) -> Chart:
    """top_chart draws horizontal bars from a query returning (label, count) rows."""
    items = [(str(a), int(n)) for a, n in run_query(con, sql).rows]
    rows = charts.hbar_rows(items)
    style = (
        "<style>.hbar{height:12px;background:#3b6fb6;border-radius:2px}"
        "td.barcell{width:50%}</style>"
    )
    return Chart(f"{style}<table>{rows}</table>", title=title)
