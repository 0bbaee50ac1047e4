"""The report's section on workflow runs (the ``slack_app_activities`` source).

Every number comes from the dataset's workflow views, built from the same verified ledger
as the rest of the report.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import duckdb

LATEST = 15


def _cell(value: Any) -> str:
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return html.escape("" if value is None else str(value), quote=True)


def _table(con: duckdb.DuckDBPyConnection, sql: str, header: tuple[str, ...]) -> str:
    rows = con.sql(sql).fetchall()
    if not rows:
        return "<p class=muted>none</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def workflow_section(con: duckdb.DuckDBPyConnection) -> str:
    """workflow_section renders runs by outcome, the latest runs with who published the
    workflow version that ran, approvals and failures; says so when there are none."""
    ((records,),) = con.sql("SELECT count(*) FROM workflow_activity").fetchall()
    if not records:
        return (
            "<section><h2>Workflow runs</h2><p class=muted>No workflow activity in this "
            "ledger (the slack_app_activities source needs SLACK_ACTIVITIES_TOKEN).</p>"
            "</section>"
        )
    ((quarantined,),) = con.sql(
        "SELECT count(*) FROM workflow_activity WHERE quarantine_reason IS NOT NULL"
    ).fetchall()
    outcomes = _table(
        con,
        "SELECT coalesce(outcome, '(no result yet)'), count(*), count(DISTINCT workflow_id) "
        "FROM workflow_runs GROUP BY ALL ORDER BY 2 DESC",
        ("Outcome", "Runs", "Workflows"),
    )
    latest = _table(
        con,
        "SELECT r.started_at, r.workflow_name, r.trigger_type, r.started_by, r.outcome, "
        "r.duration_ms, c.published_by, c.published_at FROM workflow_runs r "
        "LEFT JOIN workflow_run_configuration c USING (trace_id) "
        f"ORDER BY r.started_at DESC LIMIT {LATEST}",
        (
            "Started",
            "Workflow",
            "Trigger",
            "Started by",
            "Outcome",
            "ms",
            "Version published by",
            "Published",
        ),
    )
    approvals = _table(
        con,
        "SELECT decided_at, workflow_name, approver, decision, requested_by FROM "
        f"workflow_approvals ORDER BY decided_at DESC NULLS FIRST LIMIT {LATEST}",
        ("Decided", "Workflow", "Approver", "Decision", "Requested by"),
    )
    failures = _table(
        con,
        "SELECT started_at, workflow_name, failed_step, error, error_stage FROM "
        f"workflow_failures ORDER BY started_at DESC LIMIT {LATEST}",
        ("Started", "Workflow", "Failed step", "Error", "Stage"),
    )
    return (
        "<section><h2>Workflow runs</h2>"
        f"<p>{records:,} committed records of admin.apps.activities.list"
        f" ({quarantined:,} quarantined).</p>{outcomes}"
        f"<h2 style='margin-top:16px'>Latest runs</h2>{latest}"
        f"<h2 style='margin-top:16px'>Approvals</h2>"
        "<p class=muted>Approver and decision as the workflow passed them to its steps; "
        "Slack has no approval record of its own.</p>"
        f"{approvals}<h2 style='margin-top:16px'>Failed runs</h2>{failures}</section>"
    )
