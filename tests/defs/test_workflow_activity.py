"""slack_workflow_activity beside slack_audit_events: one ledger, checks per source."""

from __future__ import annotations

import dagster as dg
import pytest

from audit_pipeline.defs.assets import build_audit_ledger, build_slack_audit_events
from audit_pipeline.defs.resources import LedgerResource, SlackAuditResource, SlackNotifier
from audit_pipeline.defs.sensors import build_missing_hours_sensor
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.defs.workflow_activity import (
    SlackActivitiesResource,
    build_slack_workflow_activity,
)
from audit_pipeline.ledger.manifest import source_name
from audit_pipeline.slack.emulator import running_emulator

from .conftest import H0, HOUR, HOURS, Outcome, key_of, test_partitions

SOURCES = ("slack_audit_logs", "slack_app_activities")


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(
        rate_limit_per_min=0,
        activities_rate_limit_per_min=0,
        start=H0,
        end=H0 + HOURS * HOUR,
        events_per_hour=20,
        workflow_runs_per_hour=4,
        seed=7,
    ) as emu:
        yield emu


@pytest.fixture
def assets():
    now = H0 + 2 * HOUR + 20 * 60  # hours 0 and 1 are settled
    return [
        build_slack_audit_events(partitions_def=test_partitions),
        build_slack_workflow_activity(partitions_def=test_partitions),
        build_audit_ledger(coverage_start=H0, clock=lambda: now, covered_sources=SOURCES),
    ]


@pytest.fixture
def resources(emulator, data_dir, key_path, trusted_keys):
    return {
        "slack_audit": SlackAuditResource(
            token=emulator.token, base_url=emulator.base_url, max_calls_per_minute=0
        ),
        "slack_activities": SlackActivitiesResource(
            token=emulator.config.activities_token,
            base_url=emulator.base_url.replace("/audit/v1/", "/api/"),
            max_calls_per_minute=0,
        ),
        "ledger": LedgerResource(
            data_dir=str(data_dir), signing_key=str(key_path), trusted_keys=str(trusted_keys)
        ),
        "slack_notifier": SlackNotifier(),
        "witnesses": WitnessSetResource(witnesses=""),
    }


def run(assets, resources, instance, index: int, selection=None) -> Outcome:
    return Outcome(
        dg.materialize(
            assets,
            partition_key=key_of(index),
            instance=instance,
            resources=resources,
            selection=selection,
            raise_on_error=False,
        )
    )


def test_both_sources_feed_one_verified_ledger_with_coverage_per_source(
    assets, resources, data_dir
):
    instance = dg.DagsterInstance.ephemeral()
    first = run(assets, resources, instance, 0)
    assert first.success
    assert first.metadata("slack_workflow_activity")["events_committed"] > 0
    # Hour 1 of the audit logs only: coverage fails and names the activities source.
    second = run(assets, resources, instance, 1, ["slack_audit_events", "audit_ledger"])
    assert second.success  # coverage is not blocking
    assert "ledger_covers_every_hour" in second.failed_checks
    missing = second.check_metadata("ledger_covers_every_hour")["missing_hours_by_source"]
    assert list(missing) == ["slack_app_activities"]
    third = run(assets, resources, instance, 1, ["slack_workflow_activity", "audit_ledger"])
    assert third.success and not third.failed_checks
    ledger = resources["ledger"].reader()
    assert sorted({source_name(m.manifest) for m in ledger.manifests()}) == sorted(SOURCES)


def test_a_missing_token_fails_the_asset_saying_the_source_is_disabled(
    assets, resources, monkeypatch
):
    monkeypatch.delenv("SLACK_ACTIVITIES_TOKEN", raising=False)
    resources["slack_activities"] = SlackActivitiesResource()
    outcome = run(assets, resources, dg.DagsterInstance.ephemeral(), 0, ["slack_workflow_activity"])
    assert not outcome.success
    failure = next(e for e in outcome.result.all_events if e.is_step_failure)
    assert "SLACK_ACTIVITIES_TOKEN is not set" in str(failure.step_failure_data.error)


def test_the_gap_filling_sensor_wants_an_hour_until_every_source_has_it(assets, resources):
    instance = dg.DagsterInstance.ephemeral()
    run(assets, resources, instance, 0, ["slack_audit_events"])
    keys = (dg.AssetKey("slack_audit_events"), dg.AssetKey("slack_workflow_activity"))
    sensor = build_missing_hours_sensor(
        job=dg.define_asset_job("sync"),
        partitions_def=test_partitions,
        settle_minutes=10,
        clock=lambda: H0 + HOUR + 20 * 60,
        asset_keys=keys,
    )
    result = sensor(dg.build_sensor_context(instance=instance))
    assert [r.partition_key for r in result.run_requests] == [key_of(0)]
    run(assets, resources, instance, 0, ["slack_workflow_activity"])
    again = sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(again, dg.SkipReason)
