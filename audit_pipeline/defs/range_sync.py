"""Syncing a run's hours one at a time, so one hour's failure costs only that hour.

A run of ``slack_audit_events`` may cover many hours (a backfill). Each hour is read and
committed on its own: an hour the API would not serve is recorded as failed and the run
goes on with the next, so every hour that can be committed is, and exactly those are
marked materialized (the gap-filling sensor retries the others). Two things stop the run
at once, since every later hour would meet them too: the ledger refusing a commit (its
chain or a data file on disk is not what it signed: any ledger error) and a configuration
error (a refused token, a
ledger opened without its key).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.ingest import (
    HOUR,
    SyncReport,
    WindowResult,
    check_range,
    format_hour,
    sync_hours,
    sync_window,
)
from audit_pipeline.ledger import Ledger, LedgerError
from audit_pipeline.slack.client import AuditLogSource, SlackApiError


@dataclass(frozen=True)
class HourSync:
    """HourSync is one committed hour: what its sync did and the events the ledger holds."""

    hour: int
    report: SyncReport
    rows_held: int = 0


@dataclass
class RangeSync:
    """RangeSync is the outcome of a run's hours: committed, failed, and why it stopped."""

    committed: list[HourSync] = field(default_factory=list)
    lookback_committed: list[HourSync] = field(default_factory=list)  # earlier hours added to
    failed: dict[int, str] = field(default_factory=dict)  # hour -> why it was not committed
    lookback: SyncReport = field(default_factory=SyncReport)
    lookback_failed: dict[int, str] = field(default_factory=dict)
    refused: LedgerError | None = None  # the ledger on disk refused a commit (or a read)
    stopped_by: str | None = None  # why the remaining hours were not attempted

    def refuse(self, exc: LedgerError) -> None:
        """refuse records that the ledger refused to be extended: nothing more is tried."""
        self.refused = exc
        self.stopped_by = f"the ledger refused the commit ({exc})"

    @property
    def complete(self) -> bool:
        return not self.failed

    def failed_lines(self) -> list[str]:
        return [f"{format_hour(h)}: {why}" for h, why in sorted(self.failed.items())]


def sync_range(
    *,
    start: int,
    end: int,
    source: AuditLogSource,
    ledger: Ledger,
    run_id: str,
    lookback_hours: int,
    progress: Callable[[str], None] | None = None,
    on_commit: Callable[[WindowResult], None] | None = None,
) -> RangeSync:
    """sync_range re-reads the lookback hours the ledger holds, then syncs each hour."""
    check_range(start, end, lookback_hours)
    outcome = RangeSync(lookback=SyncReport(stats=source.stats))
    try:
        held = ledger.committed_windows()
    except LedgerError as exc:
        held = set()
        outcome.refuse(exc)
    for hour in range(start - lookback_hours * HOUR, start, HOUR):
        if hour not in held or outcome.stopped_by is not None:
            continue
        try:
            outcome.lookback.windows.append(
                sync_window(
                    hour,
                    source=source,
                    ledger=ledger,
                    run_id=run_id,
                    lookback=True,
                    actions=outcome.lookback.actions,
                )
            )
            result = outcome.lookback.windows[-1]
            if on_commit is not None and result.sequence is not None:
                on_commit(result)
        except LedgerError as exc:
            outcome.refuse(exc)
        except SlackApiError as exc:
            if isinstance(exc, ConfigurationError):
                raise
            outcome.lookback_failed[hour] = str(exc)
    for hour in range(start, end, HOUR):
        if outcome.stopped_by is not None:
            outcome.failed[hour] = f"not attempted: {outcome.stopped_by}"
            continue
        try:
            report = sync_hours(
                start=hour,
                end=hour + HOUR,
                source=source,
                ledger=ledger,
                run_id=run_id,
                lookback_hours=0,
                progress=progress,
                on_commit=on_commit,
            )
        except LedgerError as exc:
            outcome.refuse(exc)
            outcome.failed[hour] = str(outcome.stopped_by)
        except SlackApiError as exc:
            if isinstance(exc, ConfigurationError):
                raise
            outcome.failed[hour] = f"the Audit Logs API failed: {exc}"
        except ConfigurationError:
            raise
        except (AuditPipelineError, OSError) as exc:
            outcome.stopped_by = f"{type(exc).__name__}: {exc}"
            outcome.failed[hour] = outcome.stopped_by
        else:
            if report.failed:
                # A page the API sent cannot be parsed: this hour alone is not committed
                # (its raw page is kept); the next run or the gap-filling sensor retries it.
                outcome.failed[hour] = "; ".join(
                    f"a page cannot be parsed: {f.message} (page kept in {f.saved_page})"
                    for f in report.failed
                )
                continue
            outcome.committed.append(HourSync(hour, report))
    rows = Counter[int]()
    first = start - lookback_hours * HOUR
    try:
        for entry in ledger.manifests():
            if first <= entry.manifest.window_start < end:
                rows[entry.manifest.window_start] += entry.manifest.event_count
    except (LedgerError, OSError) as exc:  # the verification that follows names the damage
        outcome.stopped_by = outcome.stopped_by or f"the ledger cannot be read: {exc}"
    outcome.committed = [HourSync(h.hour, h.report, rows[h.hour]) for h in outcome.committed]
    # An earlier hour the lookback added to (late events, revisions) changed too: it gets a
    # materialization of its own, with only what this run added to it.
    outcome.lookback_committed = [
        HourSync(w.window_start, SyncReport(windows=[w]), rows[w.window_start])
        for w in outcome.lookback.windows
        if w.sequence is not None
    ]
    return outcome
