"""Sync of the second source: workflow activities from ``admin.apps.activities.list``.

The same window discipline as the audit logs (``ingest.py``): hour H is the API window
``min_date_created = H * 10**6``, ``max_date_created = (H + 1h) * 10**6 - 1`` (microseconds,
both inclusive), read completely (one whole pass) before anything is committed; the
ledger drops every identity it already holds for that hour of this source, under its
lock; the ``lookback`` hours before the range that the ledger holds for this source are
read again and what is new is committed as ``late`` batches. Identities are
``activity-<SHA-256 of the exact bytes>-<occurrence>`` (``lake/activities.py``), so
rereading a window gives the same ids and adds nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from audit_pipeline.ingest import (
    SyncReport,
    WindowResult,
    check_range,
    format_hour,
    run_windows,
)
from audit_pipeline.lake.activities import MICROS, normalize_activities, write_activity_file
from audit_pipeline.lake.parquet import event_leaves_from_table
from audit_pipeline.ledger import EventRecord, Ledger
from audit_pipeline.ledger.layout import HOUR
from audit_pipeline.slack.activities_client import SOURCE_NAME, ActivitySource

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK_HOURS = 6


class _ActivityWriter:
    """The ledger's ``write_data`` callback for one window's activity rows."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.quarantined = 0

    def __call__(self, new_events: Sequence[EventRecord], path: Path) -> None:
        rows = self.table
        if len(new_events) != rows.num_rows:
            wanted = pa.array([e.event_id for e in new_events], pa.string())
            rows = rows.filter(pc.is_in(rows["event_id"], value_set=wanted))
        write_activity_file(rows, path)
        reasons = rows.column("quarantine_reason")
        self.quarantined = len(reasons) - reasons.null_count


def sync_activity_window(
    window_start: int,
    *,
    source: ActivitySource,
    ledger: Ledger,
    run_id: str,
    lookback: bool = False,
) -> WindowResult:
    """sync_activity_window reads one hour of activities completely, then commits what is new."""
    lo, hi = window_start * MICROS, (window_start + HOUR) * MICROS - 1
    pages_before = source.stats.pages
    items = source.read_window(lo, hi)
    table = normalize_activities(items, window_start)
    writer = _ActivityWriter(table)
    result = ledger.commit_batch(
        window_start=window_start,
        window_end=window_start + HOUR,
        events=event_leaves_from_table(table),
        write_data=writer,
        source={
            "name": SOURCE_NAME,
            "api_url": source.method_url,
            "min_date_created": lo,
            "max_date_created": hi,
            "min_log_level": "trace",
            "pages": source.stats.pages - pages_before,
            "entries_returned": len(items),
        },
        run_id=run_id,
    )
    for event_id in result.missing_from_source:
        log.warning(
            "%s: committed activity %s is no longer returned by the API (kept, not deleted)",
            format_hour(window_start),
            event_id,
        )
    return WindowResult(
        window_start=window_start,
        lookback=lookback,
        fetched=len(items),
        sequence=result.sequence,
        kind=result.kind,
        events_committed=result.events_committed,
        quarantined=writer.quarantined,
        duplicates_skipped=result.duplicates_skipped,
        missing_from_source=tuple(result.missing_from_source),
    )


def sync_activity_hours(
    *,
    start: int,
    end: int,
    source: ActivitySource,
    ledger: Ledger,
    run_id: str,
    lookback_hours: int = DEFAULT_LOOKBACK_HOURS,
    progress: Callable[[str], None] | None = None,
    on_commit: Callable[[WindowResult], None] | None = None,
) -> SyncReport:
    """sync_activity_hours syncs hours ``[start, end)`` of activities plus the lookback;
    ``on_commit`` runs after each window that committed a batch (the witnesses' turn)."""
    check_range(start, end, lookback_hours)
    held = ledger.committed_windows(SOURCE_NAME)
    plan = [(h, True) for h in range(start - lookback_hours * HOUR, start, HOUR) if h in held]
    plan += [(h, False) for h in range(start, end, HOUR)]
    return run_windows(
        plan,
        lambda hour, is_lookback: sync_activity_window(
            hour, source=source, ledger=ledger, run_id=run_id, lookback=is_lookback
        ),
        ledger=ledger,
        report=SyncReport(stats=source.stats),
        progress=progress,
        on_commit=on_commit,
        label="activities ",
    )
