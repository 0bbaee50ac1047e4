"""The assets: ``slack_audit_events`` (hourly, from the API into the ledger) and
``audit_ledger`` (verification of the whole ledger, with its checks).

Both are thin: they read the partition window, call
:func:`audit_pipeline.defs.range_sync.sync_range` (hour by hour) or
:func:`audit_pipeline.defs.verification.verification_result`, and report what happened as
materialization metadata (each hour its own). The factories exist so tests can build the
same assets with their own partition start and clock; the code location uses the
module-level instances.
"""

# No ``from __future__ import annotations`` here: Dagster 1.13 reads the ``config``
# parameter's annotation without resolving strings, so it must be the class itself.

import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from audit_pipeline.defs import env_int
from audit_pipeline.defs.checks import LEDGER_CHECK_SPECS
from audit_pipeline.defs.partitions import (
    START_HOUR,
    hourly_partition,
    hours_of_window,
    partition_key_for_hour,
)
from audit_pipeline.defs.range_sync import HourSync, RangeSync, sync_range
from audit_pipeline.defs.resources import (
    LedgerResource,
    SlackAuditResource,
    SlackNotifier,
)
from audit_pipeline.defs.schedules import COVERED_SOURCES, SYNC_MINUTE
from audit_pipeline.defs.verification import (
    COVERAGE_TOLERANCE_HOURS,
    FRESHNESS_HOURS,
    FULL_VERIFY_EVERY_HOURS,
    HISTORY_ERROR,
    VerificationSettings,
    VerifyConfig,
    log_ledger_verification,
    verification_result,
)
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.errors import AuditPipelineError
from audit_pipeline.ingest import DEFAULT_LOOKBACK_HOURS, HOUR, WindowResult, format_hour
from audit_pipeline.lake import COLUMN_DOCS, EVENT_SCHEMA
from audit_pipeline.slack.client import FetchStats

OWNERS = ["team:security"]
GROUP = "audit"
SYNC_POOL = "slack_audit_api"
BACKFILL_HOURS_PER_RUN = env_int("AUDIT_BACKFILL_HOURS_PER_RUN", 24, minimum=1)
RUN_TAG_PREFIX = "audit_pipeline/"  # run totals of a sync, as run tags
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


def hour_metadata(synced: HourSync, witnessed: dict[str, Any] | None = None) -> dict[str, Any]:
    """hour_metadata is what one hour's partition tells the UI: its own events and batches
    (and the witnesses' round after its commit, when they were asked)."""
    windows = [w for w in synced.report.windows if w.window_start == synced.hour]
    batches = [w for w in windows if w.sequence is not None]
    metadata: dict[str, Any] = {
        "dagster/row_count": synced.rows_held,
        "dagster/column_schema": EVENTS_TABLE_SCHEMA,
        "hour": format_hour(synced.hour),
        "events_committed": sum(w.events_committed for w in windows),
        "late_events": sum(w.events_committed for w in windows if w.kind == "late"),
        "quarantined": sum(w.quarantined for w in windows),
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
        "actions": action_histogram(synced.report.actions),
        "missing_from_source": sum(len(w.missing_from_source) for w in windows),
        "revisions": len(synced.report.revisions),
        "revised_events": dg.MetadataValue.md(
            _markdown_table(("hour", "event id"), synced.report.revisions)
            if synced.report.revisions
            else "no committed event came back changed"
        ),
    }
    if synced.report.checkpoint:
        metadata["checkpoint"] = dg.MetadataValue.text(synced.report.checkpoint.decode())
    if witnessed is not None:
        metadata["witnesses"] = dg.MetadataValue.json(witnessed)
    return metadata


def run_totals(outcome: RangeSync, stats: FetchStats) -> dict[str, str]:
    """run_totals is what the whole run did, kept on the run (tags), not on each hour."""
    reports = [outcome.lookback, *(h.report for h in outcome.committed)]
    return {
        f"{RUN_TAG_PREFIX}{name}": str(value)
        for name, value in {
            "hours_committed": len(outcome.committed),
            "hours_failed": len(outcome.failed),
            "events_committed": sum(r.events_committed for r in reports),
            "late_events": sum(r.late_events for r in reports),
            "quarantined": sum(r.quarantined for r in reports),
            "batches_committed": sum(len(r.batches) for r in reports),
            "revisions": sum(len(r.revisions) for r in reports),
            "lookback_hours_failed": len(outcome.lookback_failed),
            "api_requests": stats.requests,
            "api_pages": stats.pages,
            "api_retries": stats.retries,
            "api_rate_limited": stats.rate_limited,
        }.items()
    }


def raw_hourly_asset(
    *,
    name: str,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    backfill_hours_per_run: int,
    pool: str,
    api: str,
    column_schema: dg.TableSchema,
    freshness_hours: int,
    description: str,
) -> dict[str, Any]:
    """raw_hourly_asset is the ``dg.asset`` arguments of one source's hourly sync asset:
    every source syncs by the same ranges (so one hourly job runs them all), in its own
    pool of API calls, and is stale after ``freshness_hours``."""
    return {
        "name": name,
        "partitions_def": partitions_def,
        "backfill_policy": dg.BackfillPolicy.multi_run(
            max_partitions_per_run=backfill_hours_per_run
        ),
        "pool": pool,
        "kinds": {"slack", "parquet"},
        "owners": OWNERS,
        "group_name": GROUP,
        "tags": {"layer": "raw", "source": api},
        "metadata": {"dagster/column_schema": column_schema},
        "freshness_policy": dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=freshness_hours)
        ),
        "description": description,
    }


def build_slack_audit_events(
    *,
    partitions_def: dg.TimeWindowPartitionsDefinition = hourly_partition,
    backfill_hours_per_run: int = BACKFILL_HOURS_PER_RUN,
    freshness_hours: int = FRESHNESS_HOURS,
    coverage_start: int = START_HOUR,
    clock: Callable[[], float] = time.time,
) -> dg.AssetsDefinition:
    """build_slack_audit_events makes the hourly events asset (``coverage_start`` and
    ``clock`` are for the verification it runs when the ledger refuses a commit)."""

    with _beta_apis():

        @dg.asset(
            **raw_hourly_asset(
                name="slack_audit_events",
                partitions_def=partitions_def,
                backfill_hours_per_run=backfill_hours_per_run,
                pool=SYNC_POOL,
                api="slack_audit_logs_api",
                column_schema=EVENTS_TABLE_SCHEMA,
                freshness_hours=freshness_hours,
                description=EVENTS_DESCRIPTION,
            )
        )
        def slack_audit_events(
            context: dg.AssetExecutionContext,
            config: SyncConfig,
            slack_audit: SlackAuditResource,
            ledger: LedgerResource,
            witnesses: WitnessSetResource,
        ) -> dg.MaterializeResult:
            start, end = hours_of_window(context.partition_time_window)
            source = slack_audit.source()
            writer = ledger.writer()
            witnessing = witnesses.after_commit(writer, progress=context.log.info)
            rounds: dict[int, dict[str, Any]] = {}  # hour -> the witness round after its commit

            def witness(result: WindowResult) -> None:
                round_ = witnessing(result)
                if round_ is not None:
                    rounds[result.window_start] = round_.to_dict()

            try:
                outcome = sync_range(
                    start=start,
                    end=end,
                    source=source,
                    ledger=writer,
                    run_id=context.run.run_id,
                    lookback_hours=config.lookback_hours,
                    progress=context.log.info,
                    on_commit=witness if witnessing.policy else None,
                )
            except AuditPipelineError as exc:
                raise dg.Failure(
                    description=f"the sync could not start: {exc}",
                    metadata={"error": type(exc).__name__},
                ) from None
            context.instance.add_run_tags(context.run.run_id, run_totals(outcome, source.stats))
            for alarm in witnessing.alarms:
                # An integrity alarm: ledger_witnesses_agree fails on it (refusals are kept).
                context.log.error(f"witness {alarm.label} refused: {alarm.detail}")
            for synced in outcome.lookback_committed:
                if synced.hour < partitions_def.start.timestamp():
                    continue  # before the first partition: nothing to materialize
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=context.asset_key,
                        partition=partition_key_for_hour(synced.hour),
                        metadata=hour_metadata(synced, rounds.get(synced.hour)),
                    )
                )
            for hour, why in sorted(outcome.lookback_failed.items()):
                context.log.warning(f"lookback hour {format_hour(hour)} not re-read: {why}")
            if outcome.complete:
                for synced in outcome.committed:
                    context.add_asset_metadata(
                        hour_metadata(synced, rounds.get(synced.hour)),
                        partition_key=partition_key_for_hour(synced.hour),
                    )
                return dg.MaterializeResult()
            # Only the committed hours are materialized; the run fails naming the others.
            for synced in outcome.committed:
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=context.asset_key,
                        partition=partition_key_for_hour(synced.hour),
                        metadata=hour_metadata(synced, rounds.get(synced.hour)),
                    )
                )
            failure_metadata: dict[str, Any] = {
                "hours_committed": dg.MetadataValue.json(
                    [format_hour(h.hour) for h in outcome.committed]
                ),
                "hours_failed": dg.MetadataValue.json(outcome.failed_lines()),
            }
            if outcome.refused is not None:
                verified, checks = verification_result(
                    context,
                    VerifyConfig(full=True),
                    ledger,
                    SlackNotifier(),
                    witnesses=witnesses,
                    settings=VerificationSettings(
                        coverage_start=coverage_start,
                        freshness_hours=freshness_hours,
                        now=clock(),
                    ),
                )
                log_ledger_verification(context, verified, checks)
                failed = [r for r in checks if not r.passed]
                failure_metadata["failed_checks"] = dg.MetadataValue.json(
                    [r.check_name for r in failed]
                )
                raise dg.Failure(
                    description=f"the ledger refused the commit: {outcome.refused}; the ledger "
                    f"checks ran: {', '.join(r.check_name for r in failed) or 'none failed'}",
                    metadata=failure_metadata,
                )
            raise dg.Failure(
                description=f"{len(outcome.failed)} of {(end - start) // HOUR} hours could not "
                f"be synced (the others were committed and materialized): "
                + "; ".join(outcome.failed_lines()[:5]),
                metadata=failure_metadata,
            )

    return slack_audit_events


# -- audit_ledger ----------------------------------------------------------------------------


def build_audit_ledger(
    *,
    coverage_start: int = START_HOUR,
    settle_minutes: int = SYNC_MINUTE,
    freshness_hours: int = FRESHNESS_HOURS,
    full_every_hours: int = FULL_VERIFY_EVERY_HOURS,
    coverage_tolerance_hours: int = COVERAGE_TOLERANCE_HOURS,
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
            witnesses: WitnessSetResource,
        ) -> dg.MaterializeResult:
            metadata, checks = verification_result(
                context,
                config,
                ledger,
                slack_notifier,
                witnesses=witnesses,
                settings=VerificationSettings(
                    coverage_start=coverage_start,
                    settle_minutes=settle_minutes,
                    freshness_hours=freshness_hours,
                    full_every_hours=full_every_hours,
                    coverage_tolerance_hours=coverage_tolerance_hours,
                    now=clock(),
                    covered_sources=covered_sources,
                ),
            )
            if HISTORY_ERROR in metadata:
                # The checks still show what was found; the run fails like audit_dataset's.
                log_ledger_verification(context, metadata, checks)
                raise dg.Failure(
                    description="the verification could not be recorded in the verification "
                    f"history auditors query: {metadata[HISTORY_ERROR]}",
                    metadata={"error": "HistoryError"},
                )
            return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return audit_ledger


with _beta_apis():
    slack_audit_events, audit_ledger = dg.with_source_code_references(
        [build_slack_audit_events(), build_audit_ledger()]
    )
