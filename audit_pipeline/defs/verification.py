"""Verifying the ledger for Dagster: the recorded state, the anchors, one result per check.

``audit_ledger`` runs this on every materialization, and the sync step runs it when the
ledger refuses a commit (so the checks show the finding, not their last green result).
The state Dagster recorded last time (checkpoint, last full verification, whether that
verification failed) is validated before it is used; see :func:`plan_verification` and
:mod:`audit_pipeline.defs.anchors`.
"""

# No ``from __future__ import annotations`` here: Dagster reads the ``config`` parameter's
# annotation (VerifyConfig) without resolving strings.

from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from audit_pipeline.dataset import history
from audit_pipeline.defs import env_int
from audit_pipeline.defs.anchors import (
    Anchor,
    checkpoint_body,
    checkpoint_tree_size,
    committed_by_this_instance,
    events_anchors,
    external_anchors,
    impossible_time,
    review_anchors,
    verified_run_tags,
    verified_runs_anchors,
)
from audit_pipeline.defs.checks import (
    LEDGER_ASSET,
    LEDGER_CHECK_SPECS,
    Coverage,
    ledger_check_results,
    verification_depth,
)
from audit_pipeline.defs.partitions import START_HOUR
from audit_pipeline.defs.resources import LedgerResource, SlackNotificationError, SlackNotifier
from audit_pipeline.defs.schedules import SYNC_MINUTE
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.errors import AuditPipelineError
from audit_pipeline.ingest import HOUR
from audit_pipeline.ledger import LedgerError, VerifyReport
from audit_pipeline.ledger.layout import MANIFESTS
from audit_pipeline.ledger.manifest import AUDIT_LOGS_SOURCE, parse_manifest, source_name
from audit_pipeline.ledger.signer_state import signer_state_path
from audit_pipeline.ledger.storage import LedgerFiles
from audit_pipeline.ledger.witnessed import WitnessVerdict
from audit_pipeline.witness.config import WitnessPolicy

FRESHNESS_HOURS = env_int("AUDIT_FRESHNESS_HOURS", 2, minimum=1)
FULL_VERIFY_EVERY_HOURS = env_int("AUDIT_FULL_VERIFY_HOURS", 24, minimum=1)
COVERAGE_TOLERANCE_HOURS = env_int("AUDIT_COVERAGE_TOLERANCE_HOURS", 6, minimum=0)
PASSED, FAILED = "passed", "failed"  # audit_ledger's recorded verification_status
HISTORY_ERROR = "history_error"  # metadata key: the verification history was not written


class VerifyConfig(dg.Config):
    """Run configuration of ``audit_ledger``."""

    full: bool = Field(
        default=False,
        description="Re-derive the rows of every data file (row level), not only of those "
        "committed since the checkpoint Dagster recorded; every run checks every file's size "
        f"and SHA-256 anyway (file level). Done every {FULL_VERIFY_EVERY_HOURS} hours, and on "
        "every run after a failed verification until a full one passes.",
    )
    adopt_unrecorded_ledger: bool = Field(
        default=False,
        description="Accept that Dagster's recorded checkpoint is missing, smaller than "
        "another anchor or rewritten (a new Dagster instance over an existing ledger, or "
        "after a wipe you have investigated): verifies fully and records the result. Never "
        "accepts a ledger smaller than an anchor has seen.",
    )


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


def committed_hours(storage: LedgerFiles, source: str = AUDIT_LOGS_SOURCE) -> set[int]:
    """committed_hours lists the windows of every readable manifest of ``source`` in a data
    directory (a local one or an object store's read side)."""
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


@dataclass(frozen=True)
class VerificationSettings:
    """VerificationSettings are the deployment's knobs for one verification."""

    now: float
    coverage_start: int = START_HOUR
    settle_minutes: int = SYNC_MINUTE
    freshness_hours: int = FRESHNESS_HOURS
    full_every_hours: int = FULL_VERIFY_EVERY_HOURS
    coverage_tolerance_hours: int = COVERAGE_TOLERANCE_HOURS
    covered_sources: tuple[str, ...] = (AUDIT_LOGS_SOURCE,)  # each must hold every hour


def verification_result(
    context: dg.AssetExecutionContext,
    config: VerifyConfig,
    ledger: LedgerResource,
    slack_notifier: SlackNotifier,
    *,
    settings: VerificationSettings,
    witnesses: WitnessSetResource | None = None,
) -> tuple[dict[str, Any], list[dg.AssetCheckResult]]:
    """verification_result verifies the ledger against the recorded state and the anchors;
    returns audit_ledger's materialization metadata and one result per ledger check."""
    now = settings.now
    recorded = recorded_verification(context.instance)
    plan = plan_verification(config, recorded, now=now, full_every_hours=settings.full_every_hours)
    context.log.info(f"verifying {plan.describe(recorded)}")
    policy = witnesses.policy() if witnesses is not None else None
    report = run_verification(ledger, plan.trusted, full=plan.full, witnesses=policy)
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
        anchors=current_anchors(context.instance, ledger, report.witnesses),
        ledger_size=report.tree_size,
        first_verification_here=recorded.checkpoint is None
        and first_verification_here(context.instance, ledger),
        now=now,
        adopt=config.adopt_unrecorded_ledger,
    )
    for problem in review.problems:
        context.log.error(problem)

    through = last_settled_hour(now, settings.settle_minutes)
    files = ledger.reader().storage
    coverage = Coverage.of_sources(
        {source: committed_hours(files, source) for source in settings.covered_sources},
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
        "verification_depth": verification_depth(report),
        "tree_size": report.tree_size,
        "findings": len(report.findings),
        "integrity_findings": len(report.integrity_findings),
        "anchor_problems": len(review.problems),
        "keys": report.keyring_source
        + ("" if report.trusted_keys else " (the data directory's own: unanchored)"),
        "events_checked": report.checked.get("events", 0),
        "data_files_checked": report.checked.get("data_files", 0),
        "bytes_hashed": report.checked.get("bytes_hashed", 0),
        # Ids committed in more than one hour (a notice; details in the report).
        "batches_with_ids_in_several_hours": sum(
            n.code == "event_id_in_several_hours" for n in report.notices
        ),
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
    if impossible_time(last_full, now):
        last_full = None
    reasons = [
        (config.full, "requested"),
        (config.adopt_unrecorded_ledger, "adopting the ledger"),
        (trusted is None, "no usable recorded checkpoint"),
        (recorded.failed, "the last verification failed; full until one passes"),
        (
            recorded.last_full_verification is not None and last_full is None,
            "the recorded last full verification is in the future or not a time",
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


def run_verification(
    ledger: LedgerResource,
    trusted: bytes | None,
    *,
    full: bool,
    witnesses: WitnessPolicy | None = None,
) -> VerifyReport:
    """run_verification runs the verifier (with the witness keys, when witnesses are
    configured); what stops it reaches the UI as one message."""
    witnessed: dict[str, Any] = {}
    if witnesses is not None and witnesses.keys:
        witnessed = {"witness_keys": witnesses.keys, "witness_quorum": witnesses.quorum}
    try:
        # Row level for the new batches (all of them on a full run), file level for the
        # data files the recorded checkpoint covers: each run re-hashes every file.
        return ledger.verify(
            trusted_checkpoint=trusted,
            incremental=not full,
            recheck_trusted_files=not full,
            **witnessed,
        )
    except AuditPipelineError as exc:
        raise dg.Failure(
            description=f"the ledger could not be verified: {exc}",
            metadata={"error": type(exc).__name__, "data_dir": ledger.location()},
        ) from None


def current_anchors(
    instance: dg.DagsterInstance,
    ledger: LedgerResource,
    witnesses: WitnessVerdict | None = None,
) -> list[Anchor]:
    """current_anchors: every anchor as of now, the signer's state and witnesses among them."""
    try:
        return external_anchors(
            instance,
            signer_state=signer_state_path(ledger.signing_key_path()),
            witnesses=witnesses,
        )
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
    if ledger.object_store_url() is not None:
        context.log.info(
            "not recorded in a verification history: the pipeline writes nothing but ledger "
            "records to an object-store data directory (this run's metadata keeps the verdict)"
        )
        return None, None
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
