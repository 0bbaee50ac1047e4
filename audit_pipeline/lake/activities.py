"""Workflow activity rows: the fixed schema, identity and normalization of one hour.

An activity from ``admin.apps.activities.list`` has no id. Its identity is
``activity-<SHA-256 of its exact bytes>-<n>``, where ``n`` counts the identical activities
(same bytes) before it in the same hour window (0 for the first): rereading a window gives
the same ids, so reruns and overlapping lookbacks add nothing twice, while a function that
logs the same line twice in one microsecond keeps both records.

Its Merkle leaf is the canonical JSON ``{"activity": <the activity>, "date_create":
<created // 10**6>, "id": <identity>}``, which the ledger reads like an audit event (``id``
and ``date_create`` in whole seconds), and which an inclusion proof carries whole. The
exact bytes Slack sent are kept beside it in ``raw_bytes`` (their SHA-256 is in the id).
An activity whose bytes cannot be stored faithfully (``lake/fidelity.py``), or whose
``created`` lies outside the window asked for, is a quarantine row whose leaf carries its
bytes in base64, as for audit entries.

Columns are only ever added at the end, with a new ``ACTIVITY_SCHEMA_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audit_pipeline.lake.fidelity import Faithful, judge_entry, quarantine_leaf
from audit_pipeline.lake.parquet import _WRITE_OPTIONS
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.canonical import canonical_json

ACTIVITY_SCHEMA_VERSION = "1"
MICROS = 1_000_000
HOUR = 3600
ACTIVITY_FIELDS = {"created": int}
DATE_TYPE = pa.timestamp("ms", tz="UTC")
_STR = pa.string()

_COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    ("event_id", _STR, False, "Identity: activity-<SHA-256 of the exact bytes>-<occurrence>."),
    ("date_create", DATE_TYPE, False, "`created` truncated to whole seconds (UTC)."),
    ("created_us", pa.int64(), True, "`created`: when Slack recorded it, epoch microseconds."),
    ("occurrence", pa.int64(), False, "How many identical activities precede it in its hour."),
    ("event_type", _STR, True, "`event_type`, e.g. workflow_step_execution_result."),
    ("level", _STR, True, "`level`: trace, debug, info, warn, error or fatal."),
    ("log_source", _STR, True, "`source`: slack or developer."),
    ("component_type", _STR, True, "`component_type`: workflows, functions, events_api, tables."),
    ("component_id", _STR, True, "`component_id`: the workflow (Wf…) or function (Fn…)."),
    ("app_id", _STR, True, "`app_id`: the app the workflow or function belongs to."),
    ("team_id", _STR, True, "`team_id`: the workspace."),
    ("enterprise_id", _STR, True, "`enterprise_id`."),
    ("trace_id", _STR, True, "`trace_id`: shared by every record of one run."),
    ("parent_execution_id", _STR, True, "`parent_execution_id`: the run's execution id."),
    ("workflow_id", _STR, True, "`component_id` when `component_type` is workflows."),
    ("workflow_name", _STR, True, "`payload.workflow_name` (trigger_executed: function_name)."),
    ("function_id", _STR, True, "`payload.function_id` (functions: `component_id`)."),
    ("function_name", _STR, True, "`payload.function_name`."),
    ("function_type", _STR, True, "`payload.function_type`."),
    ("function_execution_id", _STR, True, "`payload.function_execution_id` (Fx…)."),
    ("exec_outcome", _STR, True, "`payload.exec_outcome`: Success, Error or Pending."),
    ("actor", _STR, True, "`payload.actor`, else `payload.user_id`."),
    ("trigger_id", _STR, True, "`payload.trigger.id` (Ft…)."),
    ("trigger_type", _STR, True, "`payload.trigger.type`: shortcut, event, scheduled, …"),
    ("trip_user_id", _STR, True, "`payload.trigger.trip_information.user_id`."),
    ("trip_channel_id", _STR, True, "`payload.trigger.trip_information.channel_id`."),
    ("current_step", pa.int64(), True, "`payload.current_step`."),
    ("total_steps", pa.int64(), True, "`payload.total_steps`."),
    ("error", _STR, True, "`payload.error`."),
    ("error_stage", _STR, True, "`payload.error_stage`."),
    ("inputs", _STR, True, "`payload.inputs` as canonical JSON."),
    ("outputs", _STR, True, "`payload.outputs` as canonical JSON."),
    ("payload", _STR, True, "`payload` as canonical JSON."),
    ("raw_bytes", pa.binary(), False, "The activity exactly as Slack sent it."),
    ("raw_json", _STR, False, "The Merkle leaf data (canonical JSON, see the module doc)."),
    ("leaf_hash", pa.binary(32), False, "SHA-256(0x00 || raw_json): the RFC 6962 leaf hash."),
    ("quarantine_reason", _STR, True, "Why the activity could not be stored as is (or null)."),
)

ACTIVITY_SCHEMA = pa.schema(
    [
        pa.field(name, dtype, nullable=nullable, metadata={"description": doc})
        for name, dtype, nullable, doc in _COLUMNS
    ],
    metadata={
        "audit_pipeline.schema": "slack_app_activities",
        "audit_pipeline.schema_version": ACTIVITY_SCHEMA_VERSION,
    },
)
ACTIVITY_COLUMN_DOCS: dict[str, str] = {name: doc for name, _, _, doc in _COLUMNS}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json(value: Any) -> str | None:
    return None if value is None else canonical_json(value).decode()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _normalized(activity: dict[str, Any]) -> dict[str, Any]:
    payload = activity.get("payload")
    p = payload if isinstance(payload, dict) else {}
    trigger = p.get("trigger") if isinstance(p.get("trigger"), dict) else {}
    trip = trigger.get("trip_information")
    trip = trip if isinstance(trip, dict) else {}
    component_type = activity.get("component_type")
    event_type = activity.get("event_type")
    workflow_name = p.get("workflow_name")
    if workflow_name is None and event_type == "trigger_executed":
        workflow_name = p.get("function_name")
    function_id = p.get("function_id")
    if function_id is None and component_type == "functions":
        function_id = activity.get("component_id")
    return {
        "created_us": _int(activity.get("created")),
        "event_type": _text(event_type),
        "level": _text(activity.get("level")),
        "log_source": _text(activity.get("source")),
        "component_type": _text(component_type),
        "component_id": _text(activity.get("component_id")),
        "app_id": _text(activity.get("app_id")),
        "team_id": _text(activity.get("team_id")),
        "enterprise_id": _text(activity.get("enterprise_id")),
        "trace_id": _text(activity.get("trace_id")),
        "parent_execution_id": _text(activity.get("parent_execution_id")),
        "workflow_id": _text(activity.get("component_id"))
        if component_type == "workflows"
        else None,
        "workflow_name": _text(workflow_name),
        "function_id": _text(function_id),
        "function_name": _text(p.get("function_name")),
        "function_type": _text(p.get("function_type")),
        "function_execution_id": _text(p.get("function_execution_id")),
        "exec_outcome": _text(p.get("exec_outcome")),
        "actor": _text(p.get("actor") if p.get("actor") is not None else p.get("user_id")),
        "trigger_id": _text(trigger.get("id")),
        "trigger_type": _text(trigger.get("type")),
        "trip_user_id": _text(trip.get("user_id")),
        "trip_channel_id": _text(trip.get("channel_id")),
        "current_step": _int(p.get("current_step")),
        "total_steps": _int(p.get("total_steps")),
        "error": _text(p.get("error")),
        "error_stage": _text(p.get("error_stage")),
        "inputs": _json(p.get("inputs")),
        "outputs": _json(p.get("outputs")),
        "payload": _json(payload),
    }


def activity_id(data: bytes, occurrence: int) -> str:
    """activity_id is the stable identity of the ``occurrence``-th copy of ``data``."""
    return f"activity-{hashlib.sha256(data).hexdigest()}-{occurrence}"


def normalize_activities(items: Sequence[bytes], window_start: int) -> pa.Table:
    """normalize_activities turns one hour's activities (exact bytes, as read) into rows of
    ``ACTIVITY_SCHEMA``, sorted by time then id (the same input gives the same table)."""
    lo, hi = window_start * MICROS, (window_start + HOUR) * MICROS
    seen: Counter[bytes] = Counter()
    rows: list[dict[str, Any]] = []
    for data in items:
        data = bytes(data)
        occurrence = seen[data]
        seen[data] += 1
        verdict = judge_entry(data, ACTIVITY_FIELDS)
        reason = None
        if isinstance(verdict, Faithful) and not lo <= verdict.entry["created"] < hi:
            reason = f"created {verdict.entry['created']} is outside the window asked for"
        if isinstance(verdict, Faithful) and reason is None:
            entry = verdict.entry
            event_id = activity_id(data, occurrence)
            date_create = entry["created"] // MICROS
            leaf = canonical_json({"activity": entry, "date_create": date_create, "id": event_id})
            row = _normalized(entry)
        else:
            reason = reason or verdict.reason  # type: ignore[union-attr]
            date_create = window_start
            event_id, leaf = quarantine_leaf(
                data, reason, date_create, prefix=f"activity-quarantine-{occurrence}-"
            )
            row = {"created_us": None}
        row.update(
            event_id=event_id,
            date_create=date_create * 1000,
            occurrence=occurrence,
            raw_bytes=data,
            raw_json=leaf.decode(),
            leaf_hash=merkle.leaf_hash(leaf),
            quarantine_reason=reason,
        )
        rows.append(row)
    rows.sort(key=lambda r: (r["created_us"] or lo, r["event_id"]))
    columns = {
        f.name: pa.array([r.get(f.name) for r in rows], f.type if f.name != "date_create" else None)
        for f in ACTIVITY_SCHEMA
    }
    columns["date_create"] = pa.array([r["date_create"] for r in rows], pa.int64()).cast(DATE_TYPE)
    return pa.Table.from_pydict(columns, schema=ACTIVITY_SCHEMA)


def write_activity_file(table: pa.Table, path: Path) -> None:
    """write_activity_file writes rows of ``ACTIVITY_SCHEMA`` with the lake's fixed options."""
    if not table.schema.equals(ACTIVITY_SCHEMA, check_metadata=False):
        raise ValueError("activity table does not have ACTIVITY_SCHEMA")
    pq.write_table(table.replace_schema_metadata(ACTIVITY_SCHEMA.metadata), path, **_WRITE_OPTIONS)


def activity_from_leaf(raw_json: str | bytes) -> dict[str, Any] | None:
    """activity_from_leaf returns the activity inside a leaf (None for quarantine leaves).
    The stdlib parser, not orjson: orjson turns integers beyond 64 bits into doubles."""
    doc = json.loads(raw_json)
    return doc.get("activity") if isinstance(doc, dict) else None
