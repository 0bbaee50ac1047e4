"""Slack alerts: failed runs, and checks that fail in runs that succeed.

Dagster's built-in check alerts are a Dagster+ feature, so two run-status sensors do it:

- ``slack_run_failure_alert``: every failed run (an exception, or a blocking integrity
  check that failed) posts the hours it covered, the checks that failed with what they
  found, the error, and a link to the run;
- ``slack_check_failure_alert``: a run that succeeded but had a non-blocking check fail
  (a gap in hourly coverage, a stale ledger) posts it, once per check until it passes
  again, so a day of catch-up runs does not post the same gap 24 times.

Both post through ``slack_sdk.WebClient`` (the ``slack_notifier`` resource). They start
running only when ``AUDIT_SLACK_BOT_TOKEN`` and ``AUDIT_SLACK_CHANNEL`` are set; a post
Slack refuses fails the tick (shown in the UI) and is retried on the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

# Not exported from the top-level package in 1.13.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from audit_pipeline.defs.resources import SlackNotifier, slack_notifier_from_env
from audit_pipeline.defs.sensors import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG

MAX_CHECKS_SHOWN = 10
MAX_ERROR_CHARS = 400


@dataclass(frozen=True)
class FailedCheck:
    """FailedCheck is one failed check evaluation of a run, as an alert shows it."""

    asset: str
    check_name: str
    severity: str
    blocking: bool
    summary: str

    @property
    def key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(dg.AssetKey.from_user_string(self.asset), self.check_name)


def hours_of_run(run: dg.DagsterRun) -> str:
    """hours_of_run names the partition (hour) or range of hours a run covered."""
    tags = run.tags
    if PARTITION_TAG in tags:
        return f"hour {tags[PARTITION_TAG]} UTC"
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return f"hours {tags[RANGE_START_TAG]} to {tags[RANGE_END_TAG]} UTC"
    return "no partition (whole ledger)"


def _summary(evaluation: Any) -> str:
    metadata = evaluation.metadata or {}
    first = metadata.get("first_failure")
    if first is not None:
        return str(first.value)
    if evaluation.description:
        return str(evaluation.description)
    return "failed"


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[FailedCheck]:
    """failed_checks returns the run's check evaluations that did not pass."""
    connection = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    )
    failed = []
    for record in connection.records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if evaluation is None or evaluation.passed:
            continue
        failed.append(
            FailedCheck(
                asset=evaluation.asset_key.to_user_string(),
                check_name=evaluation.check_name,
                severity=evaluation.severity.value,
                blocking=bool(evaluation.blocking),
                summary=_summary(evaluation),
            )
        )
    return failed


def step_errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """step_errors returns the first line of each failed step's root error."""
    connection = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    errors = []
    for record in connection.records:
        event = record.event_log_entry.dagster_event
        data = event.step_failure_data if event else None
        if data is None or data.error is None:
            continue
        error = data.error
        while error.cause is not None:  # Dagster wraps the user's exception
            error = error.cause
        message = error.message.strip().splitlines()[0] if error.message else error.cls_name
        errors.append(f"{event.step_key}: {message}"[:MAX_ERROR_CHARS])
    return errors


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alert_message(
    *,
    headline: str,
    run: dg.DagsterRun,
    checks: Sequence[FailedCheck],
    errors: Sequence[str],
    run_url: str,
) -> tuple[str, list[dict[str, Any]]]:
    """alert_message returns the plain text and the Block Kit blocks of one alert."""
    hours = hours_of_run(run)
    lines = [f"*{_escape(headline)}*: {_escape(hours)}, job `{_escape(run.job_name)}`"]
    for check in checks[:MAX_CHECKS_SHOWN]:
        kind = "blocking" if check.blocking else check.severity.lower()
        lines.append(
            f"• check `{_escape(check.check_name)}` on `{_escape(check.asset)}` failed "
            f"({kind}): {_escape(check.summary)}"
        )
    if len(checks) > MAX_CHECKS_SHOWN:
        lines.append(f"• … and {len(checks) - MAX_CHECKS_SHOWN} more failed checks")
    if errors and not checks:
        lines.extend(f"• error in {_escape(e)}" for e in errors[:3])
    lines.append(f"<{run_url}|View run {run.run_id[:8]}>")
    names = ", ".join(c.check_name for c in checks) or "none"
    text = f"{headline}: {hours}; failed checks: {names}; run {run_url}" + (
        f"; error: {errors[0]}" if errors and not checks else ""
    )
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}]
    return text, blocks


def _notifier_status() -> dg.DefaultSensorStatus:
    configured = slack_notifier_from_env().alerts_enabled
    return dg.DefaultSensorStatus.RUNNING if configured else dg.DefaultSensorStatus.STOPPED


@dg.run_failure_sensor(
    name="slack_run_failure_alert",
    minimum_interval_seconds=30,
    default_status=_notifier_status(),
    description="Posts every failed run to the Slack alert channel: its hours, the checks "
    "that failed and what they found, and a link to the run.",
)
def slack_run_failure_alert(
    context: dg.RunFailureSensorContext, slack_notifier: SlackNotifier
) -> None:
    if not slack_notifier.alerts_enabled:
        context.log.info("Slack alerts are not configured: nothing posted")
        return
    run = context.dagster_run
    text, blocks = alert_message(
        headline="audit_pipeline run failed",
        run=run,
        checks=failed_checks(context.instance, run.run_id),
        errors=step_errors(context.instance, run.run_id),
        run_url=slack_notifier.run_url(run.run_id),
    )
    slack_notifier.post_alert(text, blocks)


def _previously_failed(instance: dg.DagsterInstance, check: FailedCheck, run_id: str) -> bool:
    """_previously_failed: the last evaluation of the check before this run failed too."""
    history = instance.event_log_storage.get_asset_check_execution_history(check.key, limit=20)
    for record in history:  # newest first
        if record.run_id == run_id:
            continue
        if record.status in (
            AssetCheckExecutionRecordStatus.SUCCEEDED,
            AssetCheckExecutionRecordStatus.FAILED,
        ):
            return record.status == AssetCheckExecutionRecordStatus.FAILED
    return False


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="slack_check_failure_alert",
    minimum_interval_seconds=30,
    default_status=_notifier_status(),
    description="Posts checks that fail in runs that succeed (coverage gaps, a stale "
    "ledger) to the Slack alert channel, once until they pass again.",
)
def slack_check_failure_alert(
    context: dg.RunStatusSensorContext, slack_notifier: SlackNotifier
) -> None:
    if not slack_notifier.alerts_enabled:
        return
    run = context.dagster_run
    checks = [
        c
        for c in failed_checks(context.instance, run.run_id)
        if not _previously_failed(context.instance, c, run.run_id)
    ]
    if not checks:
        return
    text, blocks = alert_message(
        headline="audit_pipeline check failed",
        run=run,
        checks=checks,
        errors=[],
        run_url=slack_notifier.run_url(run.run_id),
    )
    slack_notifier.post_alert(text, blocks)
