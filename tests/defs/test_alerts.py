"""Slack alerts and the checkpoint witness, posted through slack_sdk to a local recorder."""

from __future__ import annotations

import dagster as dg
import pytest

from audit_pipeline.defs.alerts import slack_check_failure_alert, slack_run_failure_alert
from audit_pipeline.defs.resources import (
    SlackAuditResource,
    SlackNotificationError,
    SlackNotifier,
    slack_notifier_from_env,
)

BOT_TOKEN = "xoxb-test-bot-token-not-a-secret-0001"
WEBSERVER = "http://dagster.test:3000"


@pytest.fixture
def notifier(notifier_server) -> SlackNotifier:
    return SlackNotifier(
        bot_token=BOT_TOKEN,
        channel="#audit-alerts",
        base_url=notifier_server.base_url,
        webserver_url=WEBSERVER,
    )


def _status_context(pipeline, outcome, notifier: SlackNotifier, event):
    return dg.build_run_status_sensor_context(
        sensor_name="alert",
        dagster_event=event,
        dagster_instance=pipeline.instance,
        dagster_run=pipeline.instance.get_run_by_id(outcome.run_id),
        resources={"slack_notifier": notifier},
    )


def alert_failure(pipeline, outcome, notifier: SlackNotifier) -> None:
    event = outcome.result.get_run_failure_event()
    slack_run_failure_alert(_status_context(pipeline, outcome, notifier, event).for_run_failure())


def alert_success(pipeline, outcome, notifier: SlackNotifier) -> None:
    event = outcome.result.get_run_success_event()
    slack_check_failure_alert(_status_context(pipeline, outcome, notifier, event))


def test_a_failed_check_posts_the_hour_the_check_and_the_run_link(
    pipeline_factory, notifier, notifier_server
):
    pipeline = pipeline_factory(notifier=notifier)
    assert pipeline.sync(0, 1, 2, 3).success
    injected = pipeline.data_dir / "lake" / "date=2026-11-20" / "hour=02" / "extra.parquet"
    injected.write_bytes(b"PAR1 not really")

    outcome = pipeline.sync(3)
    assert not outcome.success
    alert_failure(pipeline, outcome, notifier)

    [post] = notifier_server.posts
    assert post["path"] == "/api/chat.postMessage"
    assert post["channel"] == "#audit-alerts"
    assert post["authorization"] == f"Bearer {BOT_TOKEN}"
    assert BOT_TOKEN not in post["raw"]
    text = post["text"]
    assert "hour 2026-11-20-03:00 UTC" in text
    assert "ledger_has_no_unreferenced_files" in text
    assert f"{WEBSERVER}/runs/{outcome.run_id}" in text
    block = post["blocks"][0]["text"]["text"]
    assert "lake/date=2026-11-20/hour=02/extra.parquet" in block
    assert f"<{WEBSERVER}/runs/{outcome.run_id}|View run" in block


def test_a_failed_sync_posts_its_error_without_secrets(pipeline_factory, notifier, notifier_server):
    pipeline = pipeline_factory(notifier=notifier)
    wrong_token = "xoxp-wrong-token-0002"
    pipeline.resources["slack_audit"] = SlackAuditResource(
        token=wrong_token,
        base_url=pipeline.resources["slack_audit"].base_url,
        max_calls_per_minute=0,
        max_retries=0,
    )
    outcome = pipeline.sync(1)
    assert not outcome.success
    alert_failure(pipeline, outcome, notifier)

    [post] = notifier_server.posts
    assert "hour 2026-11-20-01:00 UTC" in post["text"]
    assert "failed checks: none" in post["text"]
    assert "Slack refused the token" in post["text"]
    assert wrong_token not in post["raw"]


def test_a_clean_run_posts_nothing(pipeline_factory, notifier, notifier_server):
    pipeline = pipeline_factory(notifier=notifier)
    outcome = pipeline.sync(0, 1, 2, 3)
    assert outcome.success and outcome.failed_checks == set()
    alert_success(pipeline, outcome, notifier)
    assert notifier_server.posts == []


def test_a_failing_non_blocking_check_is_posted_once_until_it_passes(
    pipeline_factory, notifier, notifier_server
):
    pipeline = pipeline_factory(notifier=notifier)
    pipeline.now = pipeline.h0 + 3600 + 20 * 60
    assert pipeline.sync(0).failed_checks == set()
    pipeline.now += 2 * 3600
    gap = pipeline.sync(2)
    assert gap.success and gap.failed_checks == {"ledger_covers_every_hour"}
    alert_success(pipeline, gap, notifier)
    [post] = notifier_server.posts
    assert "check failed" in post["text"] and "ledger_covers_every_hour" in post["text"]
    assert "2026-11-20T01" in post["blocks"][0]["text"]["text"]

    pipeline.now += 3600
    still = pipeline.sync(3)
    assert still.failed_checks == {"ledger_covers_every_hour"}
    alert_success(pipeline, still, notifier)
    assert len(notifier_server.posts) == 1, "the same gap is not posted again"

    filled = pipeline.sync(1)
    assert filled.failed_checks == set()
    alert_success(pipeline, filled, notifier)
    assert len(notifier_server.posts) == 1


def test_alerts_are_off_unless_configured(pipeline, notifier_server):
    assert not slack_notifier_from_env({}).alerts_enabled
    configured = slack_notifier_from_env(
        {"AUDIT_SLACK_BOT_TOKEN": BOT_TOKEN, "AUDIT_SLACK_CHANNEL": "#a"}
    )
    assert configured.alerts_enabled
    assert BOT_TOKEN not in repr(configured), "the token stays an EnvVar reference"

    pipeline.resources["slack_audit"] = SlackAuditResource(
        token="xoxp-wrong", base_url="http://127.0.0.1:9/", max_retries=0
    )
    outcome = pipeline.sync(0)
    assert not outcome.success
    alert_failure(pipeline, outcome, SlackNotifier(base_url=notifier_server.base_url))
    assert notifier_server.posts == []


def test_a_refused_post_names_slacks_error_and_not_the_token(notifier, notifier_server):
    notifier_server.reply = {"ok": False, "error": "channel_not_found"}
    with pytest.raises(SlackNotificationError) as caught:
        notifier.post_alert("hello")
    assert "channel_not_found" in str(caught.value)
    assert BOT_TOKEN not in str(caught.value)


def test_each_new_checkpoint_is_witnessed_in_slack(pipeline_factory, notifier_server):
    witness = SlackNotifier(
        bot_token=BOT_TOKEN,
        checkpoint_channel="#audit-checkpoints",
        base_url=notifier_server.base_url,
    )
    pipeline = pipeline_factory(notifier=witness)
    first = pipeline.sync(0)
    md = first.metadata("audit_ledger")
    [post] = notifier_server.posts
    assert post["channel"] == "#audit-checkpoints"
    assert md["checkpoint"] in post["text"]
    assert md["slack_witness"] == "posted to #audit-checkpoints (ts 1.000)"

    again = pipeline.verify()
    assert "slack_witness" not in again.metadata("audit_ledger"), "unchanged: not posted twice"
    assert len(notifier_server.posts) == 1
