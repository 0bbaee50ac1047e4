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
from audit_pipeline.defs.anchors import (
    CLOCK_SKEW_SECONDS,
    Anchor,
    checkpoint_body,
    checkpoint_tree_size,
    committed_by_this_instance,
    events_anchors,
    external_anchors,
    review_anchors,
    verified_run_tags,
    verified_runs_anchors,
)
from audit_pipeline.defs.checks import (
    LEDGER_ASSET,
    LEDGER_CHECK_SPECS,
    Coverage,
    ledger_check_results,
)
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
    SlackNotificationError,
    SlackNotifier,
)
from audit_pipeline.defs.schedules import SYNC_MINUTE
from audit_pipeline.errors import AuditPipelineError
from audit_pipeline.ingest import DEFAULT_LOOKBACK_HOURS, HOUR, format_hour
from audit_pipeline.lake import COLUMN_DOCS, EVENT_SCHEMA
from audit_pipeline.ledger import LedgerError, VerifyReport
from audit_pipeline.ledger.layout import MANIFESTS, LocalStorage
from audit_pipeline.ledger.manifest import parse_manifest
from audit_pipeline.ledger.signer_state import signer_state_path
from audit_pipeline.slack.client import FetchStats

OWNERS = ["team:security"]
GROUP = "audit"
SYNC_POOL = "slack_audit_api"
BACKFILL_HOURS_PER_RUN = env_int("AUDIT_BACKFILL_HOURS_PER_RUN", 24, minimum=1)
FRESHNESS_HOURS = env_int("AUDIT_FRESHNESS_HOURS", 2, minimum=1)
FULL_VERIFY_EVERY_HOURS = env_int("AUDIT_FULL_VERIFY_HOURS", 24, minimum=1)
COVERAGE_TOLERANCE_HOURS = env_int("AUDIT_COVERAGE_TOLERANCE_HOURS", 6, minimum=0)
RUN_TAG_PREFIX = "audit_pipeline/"  # run totals of a sync, as run tags
MAX_TABLE_ROWS = 30
PASSED, FAILED = "passed", "failed"  # audit_ledger's recorded verification_status
HISTORY_ERROR = "history_error"  # metadata key: the verification history was not written

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
        f"Dagster recorded (done anyway every {FULL_VERIFY_EVERY_HOURS} hours, and on every "
        "run after a failed verification until a full one passes).",
    )
    adopt_unrecorded_ledger: bool = Field(
        default=False,
        description="Accept that Dagster's recorded checkpoint is missing, smaller than "
        "another anchor or rewritten (a new Dagster instance over an existing ledger, or "
        "after a wipe you have investigated): verifies fully and records the result. Never "
        "accepts a ledger smaller than an anchor has seen.",
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


def hour_metadata(synced: HourSync) -> dict[str, Any]:
    """hour_metadata is what one hour's partition tells the UI: its own events and batches."""
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
    }
    if synced.report.checkpoint:
        metadata["checkpoint"] = dg.MetadataValue.text(synced.report.checkpoint.decode())
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
            "lookback_hours_failed": len(outcome.lookback_failed),
            "api_requests": stats.requests,
            "api_pages": stats.pages,
            "api_retries": stats.retries,
            "api_rate_limited": stats.rate_limited,
        }.items()
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
            source = slack_audit.source()
            try:
                outcome = sync_range(
                    start=start,
                    end=end,
                    source=source,
                    ledger=ledger.writer(),
                    run_id=context.run.run_id,
                    lookback_hours=config.lookback_hours,
                    progress=context.log.info,
                )
            except AuditPipelineError as exc:
                raise dg.Failure(
                    description=f"the sync could not start: {exc}",
                    metadata={"error": type(exc).__name__},
                ) from None
            context.instance.add_run_tags(context.run.run_id, run_totals(outcome, source.stats))
            for hour, why in sorted(outcome.lookback_failed.items()):
                context.log.warning(f"lookback hour {format_hour(hour)} not re-read: {why}")
            if outcome.complete:
                for synced in outcome.committed:
                    context.add_asset_metadata(
                        hour_metadata(synced), partition_key=partition_key_for_hour(synced.hour)
                    )
                return dg.MaterializeResult()
            # Only the committed hours are materialized; the run fails naming the others.
            for synced in outcome.committed:
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=context.asset_key,
                        partition=partition_key_for_hour(synced.hour),
                        metadata=hour_metadata(synced),
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


@dataclass(frozen=True)
class RecordedVerification:
    """RecordedVerification is what the last ``audit_ledger`` materialization recorded."""

    checkpoint: bytes | None = None
    last_full_verification: float | None = None
    failed: bool = False  # that verification found something: the next one is full
    storage_id: int | None = None  # where the record sits in the event log

    @property
    def tree_size(self) -> int | None:
        return None if self.checkpoint is None else checkpoint_tree_size(self.checkpoint)


def recorded_verification(instance: dg.DagsterInstance) -> RecordedVerification:
    """recorded_verification reads the checkpoint Dagster's event log holds for the ledger."""
    records = instance.fetch_materializations(LEDGER_ASSET, limit=1).records
    record = records[0] if records else None
    materialization = record.asset_materialization if record else None
    if record is None or materialization is None:
        return RecordedVerification()
    metadata = materialization.metadata
    checkpoint = metadata.get("checkpoint")
    last_full = metadata.get("last_full_verification")
    status = metadata.get("verification_status")
    return RecordedVerification(
        checkpoint=(
            checkpoint.value.encode() if isinstance(checkpoint, dg.TextMetadataValue) else None
        ),
        last_full_verification=(
            float(last_full.value) if isinstance(last_full, dg.TimestampMetadataValue) else None
        ),
        failed=isinstance(status, dg.TextMetadataValue) and status.value == FAILED,
        storage_id=record.storage_id,
    )


def committed_hours(data_dir: Path) -> set[int]:
    """committed_hours lists the windows of every readable manifest, gaps or not."""
    storage = LocalStorage(data_dir)
    hours = set()
    for name in storage.list_dir(MANIFESTS):
        try:
            hours.add(parse_manifest(storage.read(f"{MANIFESTS}/{name}")).manifest.window_start)
        except (LedgerError, OSError):
            continue  # the verifier reports unreadable manifests
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
    coverage_tolerance_hours: int = COVERAGE_TOLERANCE_HOURS,
    clock: Callable[[], float] = time.time,
) -> dg.AssetsDefinition:
    """build_audit_ledger makes the ledger asset and its checks."""

    with _beta_apis():

        @dg.asset(
            name="audit_ledger",
            deps=["slack_audit_events"],
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
            metadata, checks = verification_result(
                context,
                config,
                ledger,
                slack_notifier,
                settings=VerificationSettings(
                    coverage_start=coverage_start,
                    settle_minutes=settle_minutes,
                    freshness_hours=freshness_hours,
                    full_every_hours=full_every_hours,
                    coverage_tolerance_hours=coverage_tolerance_hours,
                    now=clock(),
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


@dataclass(frozen=True)
class VerificationSettings:
    """VerificationSettings are the deployment's knobs for one verification."""

    now: float
    coverage_start: int = START_HOUR
    settle_minutes: int = SYNC_MINUTE
    freshness_hours: int = FRESHNESS_HOURS
    full_every_hours: int = FULL_VERIFY_EVERY_HOURS
    coverage_tolerance_hours: int = COVERAGE_TOLERANCE_HOURS


def verification_result(
    context: dg.AssetExecutionContext,
    config: VerifyConfig,
    ledger: LedgerResource,
    slack_notifier: SlackNotifier,
    *,
    settings: VerificationSettings,
) -> tuple[dict[str, Any], list[dg.AssetCheckResult]]:
    """verification_result verifies the ledger against the recorded state and the anchors;
    returns audit_ledger's materialization metadata and one result per ledger check."""
    now = settings.now
    recorded = recorded_verification(context.instance)
    plan = plan_verification(config, recorded, now=now, full_every_hours=settings.full_every_hours)
    context.log.info(f"verifying {plan.describe(recorded)}")
    report = run_verification(ledger, plan.trusted, full=plan.full)
    context.log.info(report.summary())
    history_run, history_error = _record_in_history(context, ledger, report)
    review = review_anchors(
        recorded_checkpoint=recorded.checkpoint,
        last_full_verification=recorded.last_full_verification,
        anchors_before_record=(
            []
            if recorded.storage_id is None
            else [
                *events_anchors(context.instance, before_storage_id=recorded.storage_id),
                *verified_runs_anchors(context.instance),
            ]
        ),
        anchors=current_anchors(context.instance, ledger),
        ledger_size=report.tree_size,
        first_verification_here=recorded.checkpoint is None
        and first_verification_here(context.instance, ledger),
        now=now,
        adopt=config.adopt_unrecorded_ledger,
    )
    for problem in review.problems:
        context.log.error(problem)

    through = last_settled_hour(now, settings.settle_minutes)
    coverage = Coverage.of(
        committed_hours(ledger.resolved_data_dir()),
        start=settings.coverage_start,
        through=through if through >= settings.coverage_start else None,
    )
    checks = ledger_check_results(
        report,
        coverage=coverage,
        freshness_limit_hours=settings.freshness_hours,
        coverage_tolerance_hours=settings.coverage_tolerance_hours,
        now=now,
        anchors=review,
    )
    verified = report.intact and not review.problems
    new_checkpoint = report.checkpoint if verified else None
    witnessed = new_checkpoint or recorded.checkpoint
    metadata: dict[str, Any] = {
        "verified": new_checkpoint is not None,
        "verification_status": PASSED if verified else FAILED,
        "verification": "full"
        if plan.full
        else f"incremental from batch {report.incremental_from}",
        "verification_reason": plan.reason,
        "tree_size": report.tree_size,
        "findings": len(report.findings),
        "integrity_findings": len(report.integrity_findings),
        "anchor_problems": len(review.problems),
        "keys": report.keyring_source
        + ("" if report.trusted_keys else " (the data directory's own: unanchored)"),
        "events_checked": report.checked.get("events", 0),
        "data_files_checked": report.checked.get("data_files", 0),
        "bytes_hashed": report.checked.get("bytes_hashed", 0),
        "verified_at": dg.MetadataValue.timestamp(float(now)),
        "report": dg.MetadataValue.json(_trimmed_report(report)),
        "verification_run_id": history_run or "not recorded",
    }
    if history_error is not None:
        metadata[HISTORY_ERROR] = history_error
    if verified and report.checkpoint is not None:
        context.instance.add_run_tags(context.run.run_id, verified_run_tags(report.tree_size))
    last_full = now if plan.full and verified else plan.valid_last_full
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
        metadata["slack_witness"] = _post_checkpoint(context, slack_notifier, new_checkpoint)
    return metadata, checks


def log_ledger_verification(
    context: dg.AssetExecutionContext,
    metadata: dict[str, Any],
    checks: list[dg.AssetCheckResult],
) -> None:
    """log_ledger_verification records a verification made outside audit_ledger's own step
    (the sync step, when the ledger refused a commit) so its checks show what was found."""
    context.log_event(dg.AssetMaterialization(asset_key=LEDGER_ASSET, metadata=metadata))
    blocking = {spec.name: spec.blocking for spec in LEDGER_CHECK_SPECS}
    for result in checks:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=LEDGER_ASSET,
                check_name=str(result.check_name),
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
                blocking=blocking.get(str(result.check_name)),
            )
        )


@dataclass(frozen=True)
class VerificationPlan:
    """VerificationPlan is how this run verifies, decided from the validated record."""

    full: bool
    reason: str
    trusted: bytes | None  # the recorded checkpoint, when it can be parsed
    valid_last_full: float | None  # the recorded time, unless it is in the future

    def describe(self, recorded: RecordedVerification) -> str:
        how = "fully" if self.full else "incrementally"
        start = (
            "scratch"
            if self.trusted is None
            else f"recorded checkpoint of size {recorded.tree_size}"
        )
        return f"{how} from {start} ({self.reason})"


def plan_verification(
    config: VerifyConfig, recorded: RecordedVerification, *, now: float, full_every_hours: int
) -> VerificationPlan:
    """plan_verification chooses full or incremental; recorded state is never taken on faith.

    A failed verification keeps every later run full until one passes, and a last full
    verification time in the future (impossible, so rewritten) counts as none.
    """
    trusted = recorded.checkpoint
    if trusted is not None and checkpoint_body(trusted) is None:
        trusted = None  # unreadable: reported by the anchor review
    last_full = recorded.last_full_verification
    if last_full is not None and last_full > now + CLOCK_SKEW_SECONDS:
        last_full = None
    reasons = [
        (config.full, "requested"),
        (config.adopt_unrecorded_ledger, "adopting the ledger"),
        (trusted is None, "no usable recorded checkpoint"),
        (recorded.failed, "the last verification failed; full until one passes"),
        (
            recorded.last_full_verification is not None and last_full is None,
            "the recorded last full verification is in the future",
        ),
        (last_full is None, "no full verification recorded"),
        (
            last_full is not None and now - last_full >= full_every_hours * HOUR,
            f"the last full verification is over {full_every_hours} hours old",
        ),
    ]
    reason = next((why for due, why in reasons if due), None)
    return VerificationPlan(
        full=reason is not None,
        reason=reason or f"a full verification passed within {full_every_hours} hours",
        trusted=trusted,
        valid_last_full=last_full,
    )


def run_verification(ledger: LedgerResource, trusted: bytes | None, *, full: bool) -> VerifyReport:
    """run_verification runs the verifier; what stops it reaches the UI as one message."""
    try:
        return ledger.verify(trusted_checkpoint=trusted, incremental=not full)
    except AuditPipelineError as exc:
        raise dg.Failure(
            description=f"the ledger could not be verified: {exc}",
            metadata={"error": type(exc).__name__, "data_dir": str(ledger.resolved_data_dir())},
        ) from None


def current_anchors(instance: dg.DagsterInstance, ledger: LedgerResource) -> list[Anchor]:
    """current_anchors: every anchor as of now, the signer's state among them."""
    try:
        return external_anchors(instance, signer_state=signer_state_path(ledger.signing_key_path()))
    except AuditPipelineError as exc:
        raise dg.Failure(
            description=f"an anchor of the ledger could not be read: {exc}",
            metadata={"error": type(exc).__name__},
        ) from None


def first_verification_here(instance: dg.DagsterInstance, ledger: LedgerResource) -> bool:
    """first_verification_here: no run of this instance ever verified the ledger, and this
    instance's runs committed every batch (a new deployment: the one case where no recorded
    checkpoint is expected)."""
    if verified_runs_anchors(instance):
        return False
    try:
        run_ids = {m.manifest.run_id for m in ledger.reader().manifests()}
    except (LedgerError, OSError):
        return False
    return committed_by_this_instance(instance, run_ids)


def _record_in_history(
    context: dg.AssetExecutionContext, ledger: LedgerResource, report: VerifyReport
) -> tuple[str | None, str | None]:
    """_record_in_history appends the run to the verification history auditors query
    (``verification_runs``); returns (run id, None) or (None, why it could not)."""
    trigger = f"dagster audit_ledger run {context.run.run_id}"
    try:
        return history.record(ledger.resolved_data_dir(), report, trigger=trigger).run_id, None
    except history.HistoryError as exc:
        context.log.error(f"verification not recorded in the history: {exc}")
        return None, str(exc)


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
