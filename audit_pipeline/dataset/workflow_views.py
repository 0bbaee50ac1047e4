"""Workflow runs for auditors: the ``workflow_activity`` table and the views over it.

``workflow_activity`` holds every committed row of the ``slack_app_activities`` source
(``lake/activities.py``), read from the verified batch files (each file's bytes checked
against its signed manifest as it is loaded). It is small next to the audit events, so
every build loads it whole. The views group the records of one run by ``trace_id`` and
tie each run to the audit log's ``workflow_v2_published`` event of its workflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from audit_pipeline.dataset.views import coverage_sql
from audit_pipeline.lake.activities import ACTIVITY_COLUMN_DOCS, ACTIVITY_SCHEMA
from audit_pipeline.ledger.manifest import SignedManifest, source_name

ACTIVITIES_SOURCE = "slack_app_activities"
TABLE = "workflow_activity"
_JSON = frozenset({"inputs", "outputs", "payload", "raw_json"})


class ActivityFileChanged(Exception):
    """A workflow activity file no longer matches its signed manifest."""


def _ddl_type(field: pa.Field) -> str:
    if field.name in _JSON:
        return "JSON"
    if pa.types.is_timestamp(field.type):
        return "TIMESTAMPTZ"
    if pa.types.is_binary(field.type) or pa.types.is_fixed_size_binary(field.type):
        return "BLOB"
    if pa.types.is_integer(field.type):
        return "BIGINT"
    return "VARCHAR"


COLUMNS = tuple(f.name for f in ACTIVITY_SCHEMA)
TABLE_DDL = (
    f"CREATE TABLE {TABLE} ("
    + ", ".join(
        f"{f.name} {_ddl_type(f)}{'' if f.nullable else ' NOT NULL'}" for f in ACTIVITY_SCHEMA
    )
    + ", batch_sequence BIGINT NOT NULL, row_index BIGINT NOT NULL)"
)
TABLE_COMMENT = (
    "Every committed record of admin.apps.activities.list (workflow and function runs), "
    "exactly the rows of the verified slack_app_activities batch files, quarantined ones "
    "included (quarantine_reason not null). raw_bytes are the bytes Slack sent."
)


def comment_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"COMMENT ON TABLE {TABLE} IS {_q(TABLE_COMMENT)}")
    for name, doc in ACTIVITY_COLUMN_DOCS.items():
        con.execute(f"COMMENT ON COLUMN {TABLE}.{name} IS {_q(doc)}")


def load_workflow_activity(
    con: duckdb.DuckDBPyConnection, data_dir: Path, chain: Sequence[SignedManifest]
) -> int:
    """load_workflow_activity fills the (empty) table from the verified activity batches."""
    loaded = 0
    for signed in chain:
        data = signed.manifest.data
        if data is None or source_name(signed.manifest) != ACTIVITIES_SOURCE:
            continue
        raw = (data_dir / data.path).read_bytes()
        if len(raw) != data.size or hashlib.sha256(raw).hexdigest() != data.sha256:
            raise ActivityFileChanged(
                f"{data.path} (batch {signed.sequence}) changed after verification"
            )
        table = pq.read_table(pa.BufferReader(raw))
        if not table.schema.equals(ACTIVITY_SCHEMA, check_metadata=False):
            raise ActivityFileChanged(f"{data.path}: not a workflow activity file")
        n = table.num_rows
        table = table.append_column("batch_sequence", pa.array([signed.sequence] * n, pa.int64()))
        table = table.append_column("row_index", pa.array(range(n), pa.int64()))
        con.register("_activities", table)
        try:
            con.execute(f"INSERT INTO {TABLE} SELECT * FROM _activities")
        finally:
            con.unregister("_activities")
        loaded += n
    # batches.quarantined of these batches (the audit rows' loader counts only its own).
    con.execute(
        f"UPDATE batches SET quarantined = q.n FROM (SELECT batch_sequence, "
        f"count(*) FILTER (WHERE quarantine_reason IS NOT NULL) AS n FROM {TABLE} "
        "GROUP BY batch_sequence) AS q WHERE batches.sequence = q.batch_sequence"
    )
    return loaded


@dataclass(frozen=True)
class View:
    name: str
    comment: str
    sql: str


def _ts(column: str) -> str:
    return f"timezone('UTC', make_timestamp({column}))"


_OK = f"(SELECT * FROM {TABLE} WHERE quarantine_reason IS NULL AND trace_id IS NOT NULL)"

VIEWS: tuple[View, ...] = (
    View(
        "workflow_coverage",
        "One row per UTC hour from the first to the last committed hour of the workflow "
        "activity source (slack_app_activities): its batches, records and quarantined rows; "
        "committed is false for a gap.",
        coverage_sql(ACTIVITIES_SOURCE),
    ),
    View(
        "workflow_runs",
        "One row per workflow run (records sharing a trace_id): workflow, trigger, who "
        "started it, start, end, duration, outcome (Success, Error, Pending; null when the "
        "result record is not committed yet), error and steps.",
        f"""
        SELECT trace_id,
               any_value(workflow_id) AS workflow_id,
               any_value(workflow_name) FILTER (WHERE event_type IN
                   ('workflow_execution_started', 'workflow_execution_result',
                    'trigger_executed')) AS workflow_name,
               any_value(app_id) AS app_id,
               any_value(team_id) AS team_id,
               any_value(parent_execution_id) AS execution_id,
               any_value(trigger_id) AS trigger_id,
               any_value(trigger_type) AS trigger_type,
               any_value(trip_user_id) AS trip_user_id,
               any_value(trip_channel_id) AS trip_channel_id,
               coalesce(any_value(actor) FILTER (WHERE event_type = 'workflow_execution_started'),
                        any_value(trip_user_id)) AS started_by,
               {_ts("min(created_us)")} AS started_at,
               {_ts("max(created_us) FILTER (WHERE event_type = 'workflow_execution_result')")}
                   AS ended_at,
               (max(created_us) FILTER (WHERE event_type = 'workflow_execution_result')
                - min(created_us)) // 1000 AS duration_ms,
               arg_max(exec_outcome, created_us)
                   FILTER (WHERE event_type = 'workflow_execution_result') AS outcome,
               arg_max(error, created_us)
                   FILTER (WHERE event_type = 'workflow_execution_result') AS error,
               arg_max(error_stage, created_us)
                   FILTER (WHERE event_type = 'workflow_execution_result') AS error_stage,
               max(total_steps) AS total_steps,
               count(*) FILTER (WHERE event_type = 'workflow_step_execution_result')
                   AS steps_finished,
               count(*) AS records,
               min(batch_sequence) AS first_batch
        FROM {_OK}
        GROUP BY trace_id
        HAVING count(*) FILTER (WHERE component_type = 'workflows') > 0
        """,
    ),
    View(
        "workflow_steps",
        "One row per step execution (function_execution_id) of a run, in step order, with "
        "its inputs and outputs as Slack logged them.",
        f"""
        SELECT trace_id,
               any_value(workflow_id) AS workflow_id,
               any_value(parent_execution_id) AS run_execution_id,
               function_execution_id,
               any_value(function_id) AS function_id,
               any_value(function_name) AS function_name,
               max(current_step) AS step,
               max(total_steps) AS total_steps,
               {_ts("min(created_us) FILTER (WHERE event_type = 'workflow_step_started')")}
                   AS started_at,
               {_ts("max(created_us) FILTER (WHERE event_type = 'workflow_step_execution_result')")}
                   AS finished_at,
               arg_max(exec_outcome, created_us) FILTER (WHERE event_type =
                   'workflow_step_execution_result') AS outcome,
               arg_max(inputs, created_us) FILTER (WHERE inputs IS NOT NULL) AS inputs,
               arg_max(outputs, created_us) FILTER (WHERE outputs IS NOT NULL) AS outputs,
               arg_max(error, created_us) FILTER (WHERE error IS NOT NULL) AS error
        FROM {_OK}
        WHERE event_type IN ('workflow_step_started', 'workflow_step_execution_result')
          AND function_execution_id IS NOT NULL
        GROUP BY trace_id, function_execution_id
        """,
    ),
    View(
        "workflow_approvals",
        "Approval steps with approver, decision and time. Limits of what Slack exposes: "
        "admin.apps.activities.list has no approval record of its own; the approver and the "
        "decision appear only when the workflow passes them as the step's inputs/outputs "
        "(keys approver and decision), so approvals made in steps that do not are missing "
        "or have null fields; decided_at is the time of the step's result record, not of "
        "the click; a pending approval has outcome Pending and no decision.",
        """
        SELECT s.trace_id, s.workflow_id, r.workflow_name, s.function_execution_id,
               s.function_name, s.step,
               coalesce(s.outputs->>'$.approver', s.inputs->>'$.approver') AS approver,
               s.outputs->>'$.decision' AS decision,
               s.finished_at AS decided_at, s.outcome, r.started_by AS requested_by,
               r.started_at AS run_started_at
        FROM workflow_steps s LEFT JOIN workflow_runs r USING (trace_id)
        WHERE s.outputs->>'$.decision' IS NOT NULL OR s.inputs->>'$.approver' IS NOT NULL
           OR lower(s.function_name) LIKE '%approv%'
        """,
    ),
    View(
        "workflow_failures",
        "Runs that ended in Error, with the error, its stage and the first failed step.",
        """
        SELECT r.trace_id, r.workflow_id, r.workflow_name, r.started_by, r.started_at,
               r.ended_at, r.error, r.error_stage,
               (SELECT arg_min(s.function_name, s.step) FROM workflow_steps s
                WHERE s.trace_id = r.trace_id AND s.outcome = 'Error') AS failed_step
        FROM workflow_runs r
        WHERE r.outcome = 'Error'
        """,
    ),
    View(
        "workflow_run_configuration",
        "Each run joined to the audit log's latest workflow_v2_published event of the same "
        "workflow at or before the run's start: who published the version that ran (null "
        "when that event is not in the ledger, e.g. published before the first synced hour).",
        """
        SELECT r.trace_id, r.workflow_id, r.workflow_name, r.app_id, r.started_at, r.outcome,
               p.event_id AS publish_event_id, p.date_create AS published_at,
               p.actor_user_id AS published_by, p.actor_user_name AS published_by_name,
               p.actor_user_email AS published_by_email, p.app_id AS published_app_id
        FROM workflow_runs r ASOF LEFT JOIN (
            SELECT raw_json->>'$.entity.workflow_v2.id' AS workflow_id,
                   coalesce(raw_json->>'$.entity.workflow_v2.app_id', context_app_id) AS app_id,
                   date_create, actor_user_id, actor_user_name, actor_user_email, event_id
            FROM audit_events WHERE action = 'workflow_v2_published'
        ) p ON r.workflow_id = p.workflow_id AND r.started_at >= p.date_create
        """,
    ),
)


def create_workflow_views(con: duckdb.DuckDBPyConnection) -> None:
    """create_workflow_views defines the workflow views with their comments."""
    for view in VIEWS:
        con.execute(f"CREATE VIEW {view.name} AS {view.sql}")
        con.execute(f"COMMENT ON VIEW {view.name} IS {_q(view.comment)}")


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
