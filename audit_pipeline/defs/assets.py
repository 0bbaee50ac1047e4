"""The assets: ``slack_audit_events`` (hourly, from the API into the ledger) and
``audit_ledger`` (verification of the whole ledger, with its checks).

Both are thin: they read the partition window or the recorded checkpoint, call
:func:`audit_pipeline.ingest.sync_hours` or the ledger verifier, and report what happened as
materialization metadata. The factories exist so tests can build the same assets with
their own partition start and clock; the code location uses the module-level instances.
"""

# No ``from __future__ import annotations`` here: Dagster 1.13 reads the ``config``
# parameter's annotation without resolving strings, so it must be the class itself.

import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from audit_pipeline.dataset import history
from audit_pipeline.defs import env_int
from audit_pipeline.defs.checks import (
    LEDGER_ASSET,
    LEDGER_CHECK_SPECS,
    Coverage,
    ledger_check_results,
)
from audit_pipeline.defs.partitions import START_HOUR, hourly_partition, hours_of_window
from audit_pipeline.defs.resources import (
    LedgerResource,
    SlackAuditResource,
    SlackNotificationError,
    SlackNotifier,
)
from audit_pipeline.defs.schedules import COVERED_SOURCES, SYNC_MINUTE
from audit_pipeline.ingest import DEFAULT_LOOKBACK_HOURS, HOUR, SyncReport, format_hour, sync_hours
from audit_pipeline.lake import COLUMN_DOCS, EVENT_SCHEMA
from audit_pipeline.ledger import Checkpoint, LedgerError, VerifyReport, parse_checkpoint
from audit_pipeline.ledger.layout import MANIFESTS, LocalStorage
from audit_pipeline.ledger.manifest import AUDIT_LOGS_SOURCE, parse_manifest, source_name

OWNERS = ["team:security"]
GROUP = "audit"
SYNC_POOL = "slack_audit_api"
BACKFILL_HOURS_PER_RUN = env_int("AUDIT_BACKFILL_HOURS_PER_RUN", 24, minimum=1)
FRESHNESS_HOURS = env_int("AUDIT_FRESHNESS_HOURS", 2, minimum=1)
FULL_VERIFY_EVERY_HOURS = env_int("AUDIT_FULL_VERIFY_HOURS", 24, minimum=1)
MAX_TABLE_ROWS = 30

EVENTS_DESCRIPTION = (
    "Every Slack Enterprise Grid audit event of one UTC hour, read from the Audit Logs API "
    "and committed exactly once as a write-once Parquet batch in the signed ledger. Each run "
    "also re-reads the preceding hours the ledger holds (the lookback, 6 by default) because "
    "Slack can publish events late; those land as 'late' batches. Reruns are idempotent: "
    "event ids already committed are never written again."
)
LEDGER_DESCRIPTION = (
    "The signed, hash-linked ledger of every batch, verified. Each materialization verifies "
    "incrementally from the signed checkpoint recorded by the previous one (fully every "
    "{full_every_hours} hours or on request) and records the new checkpoint: Dagster's event "
    "log is a witness the ledger on disk cannot rewrite. When a Slack channel is configured, "
    "each new checkpoint is posted there too."
)

EVENTS_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            name=f.name,
            type=str(f.type),
            description=COLUMN_DOCS.get(f.name),
            constraints=dg.TableColumnConstraints(nullable=f.nullable),
        )
        for f in EVENT_SCHEMA
    ]
)


@contextmanager
def _beta_apis() -> Iterator[None]:
    """backfill_policy, freshness policies and code references are beta in Dagster 1.13;
    they are used on purpose, so their warnings are not repeated on every load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        yield


class SyncConfig(dg.Config):
    """Run configuration of ``slack_audit_events`` (the launchpad shows it)."""

    lookback_hours: int = Field(
        default=DEFAULT_LOOKBACK_HOURS,
        ge=0,
        le=24 * 7,
        description="Hours before the partition that the ledger already holds and are read "
        "again for events Slack published late (committed as 'late' batches).",
    )


class VerifyConfig(dg.Config):
    """Run configuration of ``audit_ledger``."""

    full: bool = Field(
        default=False,
        description="Re-hash every data file, not only those committed since the checkpoint "
        f"Dagster recorded (done anyway every {FULL_VERIFY_EVERY_HOURS} hours).",
    )


def _markdown_table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows[:MAX_TABLE_ROWS]]
    if len(rows) > MAX_TABLE_ROWS:
        lines.append(f"\n… and {len(rows) - MAX_TABLE_ROWS} more")
    return "\n".join(lines)


def action_histogram(actions: Counter[str]) -> dg.MetadataValue:
    rows = [(action, count) for action, count in actions.most_common()]
    if not rows:
        return dg.MetadataValue.md("no events committed")
    return dg.MetadataValue.md(_markdown_table(("action", "events"), rows))


def sync_metadata(report: SyncReport, *, start: int, end: int, rows_held: int) -> dict[str, Any]:
    """sync_metadata is what one sync tells the UI about the hours it covered."""
    batches = report.batches
    metadata: dict[str, Any] = {
        "dagster/row_count": rows_held,
        "dagster/column_schema": EVENTS_TABLE_SCHEMA,
        "hours": (end - start) // HOUR,
        "first_hour": format_hour(start),
        "last_hour": format_hour(end - HOUR),
        "events_committed": report.events_committed,
        "late_events": report.late_events,
        "quarantined": report.quarantined,
        "batches_committed": len(batches),
        "batch_sequences": dg.MetadataValue.json([w.sequence for w in batches]),
        "batches": dg.MetadataValue.md(
            _markdown_table(
                ("batch", "hour", "kind", "events", "quarantined"),
                [(w.sequence, w.hour, w.kind, w.events_committed, w.quarantined) for w in batches],
            )
            if batches
            else "nothing new to commit"
        ),
        "actions": action_histogram(report.actions),
        "api_requests": report.stats.requests,
        "api_pages": report.stats.pages,
        "api_retries": report.stats.retries,
        "api_rate_limited": report.stats.rate_limited,
        "api_window_restarts": report.stats.window_restarts,
        "missing_from_source": len(report.missing_from_source),
        "revisions": len(report.revisions),
        "revised_events": dg.MetadataValue.md(
            _markdown_table(("hour", "event id"), report.revisions)
            if report.revisions
            else "no committed event came back changed"
        ),
    }
    if report.checkpoint:
        metadata["checkpoint"] = dg.MetadataValue.text(report.checkpoint.decode())
    return metadata


def raise_for_failed_hours(report: SyncReport) -> None:
    """raise_for_failed_hours fails the run when some hours could not be committed.

    The other hours are committed; failing the run keeps these partitions unmaterialized
    so the gap-filling sensor and the next run retry them."""
    if not report.failed:
        return
    raise dg.Failure(
        description="hours not committed (a page the API sent cannot be "
        "parsed; raw pages kept in the data directory): "
        + "; ".join(f"{f.hour}: {f.message}" for f in report.failed),
        metadata={
            "failed_hours": dg.MetadataValue.json(
                [
                    {"hour": f.hour, "offset": f.offset, "saved_page": f.saved_page}
                    for f in report.failed
                ]
            ),
            "events_committed": report.events_committed,
        },
    )


def build_slack_audit_events(
    *,
    partitions_def: dg.TimeWindowPartitionsDefinition = hourly_partition,
    backfill_hours_per_run: int = BACKFILL_HOURS_PER_RUN,
    freshness_hours: int = FRESHNESS_HOURS,
) -> dg.AssetsDefinition:
    """build_slack_audit_events makes the hourly events asset."""

    with _beta_apis():

        @dg.asset(
            name="slack_audit_events",
            partitions_def=partitions_def,
            backfill_policy=dg.BackfillPolicy.multi_run(
                max_partitions_per_run=backfill_hours_per_run
            ),
            pool=SYNC_POOL,
            kinds={"slack", "parquet"},
            owners=OWNERS,
            group_name=GROUP,
            tags={"layer": "raw", "source": "slack_audit_logs_api"},
            metadata={"dagster/column_schema": EVENTS_TABLE_SCHEMA},
            freshness_policy=dg.FreshnessPolicy.time_window(
                fail_window=timedelta(hours=freshness_hours)
            ),
            description=EVENTS_DESCRIPTION,
        )
        def slack_audit_events(
            context: dg.AssetExecutionContext,
            config: SyncConfig,
            slack_audit: SlackAuditResource,
            ledger: LedgerResource,
        ) -> dg.MaterializeResult:
            start, end = hours_of_window(context.partition_time_window)
            writer = ledger.writer()
            report = sync_hours(
                start=start,
                end=end,
                source=slack_audit.source(),
                ledger=writer,
                run_id=context.run.run_id,
                lookback_hours=config.lookback_hours,
                progress=context.log.info,
            )
            context.log.info(report.summary())
            raise_for_failed_hours(report)
            rows_held = sum(
                m.manifest.event_count
                for m in writer.manifests()
                if start <= m.manifest.window_start < end
                and source_name(m.manifest) == AUDIT_LOGS_SOURCE
            )
            return dg.MaterializeResult(
                metadata=sync_metadata(report, start=start, end=end, rows_held=rows_held)
            )

    return slack_audit_events


# -- audit_ledger ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedVerification:
    """RecordedVerification is what the last ``audit_ledger`` materialization recorded."""

    checkpoint: bytes | None = None
    last_full_verification: float | None = None

    @property
    def tree_size(self) -> int | None:
        return None if self.checkpoint is None else checkpoint_tree_size(self.checkpoint)


def checkpoint_body(signed: bytes) -> Checkpoint | None:
    """checkpoint_body parses the text of a signed checkpoint (its signature unchecked)."""
    text, sep, _ = signed.decode("utf-8", "replace").partition("\n\n")
    try:
        return parse_checkpoint(text + "\n") if sep else None
    except LedgerError:
        return None


def checkpoint_tree_size(signed: bytes) -> int | None:
    body = checkpoint_body(signed)
    return None if body is None else body.tree_size


def recorded_verification(instance: dg.DagsterInstance) -> RecordedVerification:
    """recorded_verification reads the checkpoint Dagster's event log holds for the ledger."""
    event = instance.get_latest_materialization_event(LEDGER_ASSET)
    materialization = event.asset_materialization if event else None
    if materialization is None:
        return RecordedVerification()
    metadata = materialization.metadata
    checkpoint = metadata.get("checkpoint")
    last_full = metadata.get("last_full_verification")
    return RecordedVerification(
        checkpoint=(
            checkpoint.value.encode() if isinstance(checkpoint, dg.TextMetadataValue) else None
        ),
        last_full_verification=(
            float(last_full.value) if isinstance(last_full, dg.TimestampMetadataValue) else None
        ),
    )


def committed_hours(data_dir: Path, source: str = AUDIT_LOGS_SOURCE) -> set[int]:
    """committed_hours lists the windows of every readable manifest of ``source``."""
    storage = LocalStorage(data_dir)
    hours = set()
    for name in storage.list_dir(MANIFESTS):
        try:
            manifest = parse_manifest(storage.read(f"{MANIFESTS}/{name}")).manifest
        except (LedgerError, OSError):
            continue  # the verifier reports unreadable manifests
        if source_name(manifest) == source:
            hours.add(manifest.window_start)
    return hours


def last_settled_hour(now: float, settle_minutes: int) -> int:
    """last_settled_hour is the newest hour that ended at least ``settle_minutes`` ago."""
    return int((now - settle_minutes * 60) // HOUR) * HOUR - HOUR


def build_audit_ledger(
    *,
    coverage_start: int = START_HOUR,
    settle_minutes: int = SYNC_MINUTE,
    freshness_hours: int = FRESHNESS_HOURS,
    full_every_hours: int = FULL_VERIFY_EVERY_HOURS,
    clock: Callable[[], float] = time.time,
    covered_sources: tuple[str, ...] = COVERED_SOURCES,
) -> dg.AssetsDefinition:
    """build_audit_ledger makes the ledger asset and its checks (coverage per source)."""

    with _beta_apis():

        @dg.asset(
            name="audit_ledger",
            deps=["slack_audit_events", "slack_workflow_activity"],
            check_specs=LEDGER_CHECK_SPECS,
            kinds={"python"},
            owners=OWNERS,
            group_name=GROUP,
            tags={"layer": "ledger"},
            description=LEDGER_DESCRIPTION.format(full_every_hours=full_every_hours),
        )
        def audit_ledger(
            context: dg.AssetExecutionContext,
            config: VerifyConfig,
            ledger: LedgerResource,
            slack_notifier: SlackNotifier,
        ) -> dg.MaterializeResult:
            now = clock()
            recorded = recorded_verification(context.instance)
            trusted = recorded.checkpoint
            full = (
                config.full
                or trusted is None
                or recorded.last_full_verification is None
                or now - recorded.last_full_verification >= full_every_hours * HOUR
            )
            context.log.info(
                "verifying %s from %s",
                "fully" if full else "incrementally",
                "scratch"
                if trusted is None
                else f"recorded checkpoint of size {recorded.tree_size}",
            )
            report = ledger.verify(trusted_checkpoint=trusted, incremental=not full)
            context.log.info(report.summary())
            history_run = _record_in_history(context, ledger, report)

            through = last_settled_hour(now, settle_minutes)
            coverage = Coverage.of_sources(
                {s: committed_hours(ledger.resolved_data_dir(), s) for s in covered_sources},
                start=coverage_start,
                through=through if through >= coverage_start else None,
            )
            checks = ledger_check_results(
                report,
                coverage=coverage,
                freshness_limit_hours=freshness_hours,
                now=now,
                recorded_checkpoint_size=recorded.tree_size,
            )
            new_checkpoint = report.checkpoint if report.intact else None
            witnessed = new_checkpoint or recorded.checkpoint
            metadata: dict[str, Any] = {
                "verified": new_checkpoint is not None,
                "verification": "full"
                if full
                else f"incremental from batch {report.incremental_from}",
                "tree_size": report.tree_size,
                "findings": len(report.findings),
                "integrity_findings": len(report.integrity_findings),
                "events_checked": report.checked.get("events", 0),
                "data_files_checked": report.checked.get("data_files", 0),
                "bytes_hashed": report.checked.get("bytes_hashed", 0),
                "verified_at": dg.MetadataValue.timestamp(float(now)),
                "report": dg.MetadataValue.json(_trimmed_report(report)),
                "verification_run_id": history_run,
                # Ids committed in more than one hour (a notice; details in the report).
                "batches_with_ids_in_several_hours": sum(
                    n.code == "event_id_in_several_hours" for n in report.notices
                ),
            }
            last_full = (
                now if full and new_checkpoint is not None else recorded.last_full_verification
            )
            if last_full is not None:
                metadata["last_full_verification"] = dg.MetadataValue.timestamp(float(last_full))
            if witnessed is not None:
                # The checkpoint the next verification trusts: the new one when this run
                # verified, else the last one that did (a failed run must not reset the witness).
                metadata["checkpoint"] = dg.MetadataValue.text(witnessed.decode())
                metadata["checkpoint_tree_size"] = checkpoint_tree_size(witnessed) or 0
            if report.root_hash is not None:
                metadata["root_hash"] = report.root_hash.hex()
            if (
                new_checkpoint is not None
                and new_checkpoint != recorded.checkpoint
                and slack_notifier.checkpoints_enabled
            ):
                metadata["slack_witness"] = _post_checkpoint(
                    context, slack_notifier, new_checkpoint
                )
            return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return audit_ledger


def _record_in_history(
    context: dg.AssetExecutionContext, ledger: LedgerResource, report: VerifyReport
) -> str:
    """_record_in_history appends the run to the verification history auditors query
    (``verification_runs``); a history that cannot be written is a warning, not a failure."""
    trigger = f"dagster audit_ledger run {context.run.run_id}"
    try:
        return history.record(ledger.resolved_data_dir(), report, trigger=trigger).run_id
    except history.HistoryError as exc:
        context.log.warning(f"verification not recorded in the history: {exc}")
        return f"not recorded: {exc}"


def _trimmed_report(report: VerifyReport) -> dict[str, Any]:
    data = report.to_json()
    data["findings"] = data["findings"][:50]
    data["notices"] = data["notices"][:50]
    return data


def _post_checkpoint(
    context: dg.AssetExecutionContext, notifier: SlackNotifier, checkpoint: bytes
) -> str:
    text = (
        f"audit ledger verified at tree size {checkpoint_tree_size(checkpoint)}; "
        f"signed checkpoint:\n```{checkpoint.decode()}```"
    )
    try:
        ts = notifier.post(str(notifier.checkpoint_channel), text)
    except SlackNotificationError as exc:
        context.log.warning(f"checkpoint not posted to Slack: {exc}")
        return f"not posted: {exc}"
    return f"posted to {notifier.checkpoint_channel} (ts {ts})"


with _beta_apis():
    slack_audit_events, audit_ledger = dg.with_source_code_references(
        [build_slack_audit_events(), build_audit_ledger()]
    )
