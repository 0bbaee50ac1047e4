"""The hourly schedule targets the hour just closed; the gap-filling sensor asks for exactly
the hours that are missing, once, oldest first, and catches up after a day of downtime."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import dagster as dg
import pytest

from audit_pipeline.definitions import defs as load_defs
from audit_pipeline.defs.schedules import SYNC_MINUTE, hourly_sync_schedule
from audit_pipeline.defs.sensors import (
    Attempts,
    RetryPolicy,
    build_missing_hours_sensor,
    parse_cursor,
    plan_gap_fill,
)

HOUR = 3600
H0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
PARTITIONS = dg.HourlyPartitionsDefinition(
    start_date=datetime.fromtimestamp(H0, UTC), timezone="UTC"
)
EVENTS = dg.AssetKey("slack_audit_events")


def key(index: int) -> str:
    return datetime.fromtimestamp(H0 + index * HOUR, UTC).strftime("%Y-%m-%d-%H:%M")


# -- schedule --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def code_location() -> dg.Definitions:
    return load_defs()


@pytest.fixture(scope="module")
def schedule_instance():
    with dg.instance_for_test() as instance:  # schedule contexts need a persistent instance
        yield instance


@pytest.mark.parametrize(
    ("tick", "hour"),
    [
        (datetime(2026, 11, 28, 5, SYNC_MINUTE, tzinfo=UTC), "2026-11-28-04:00"),
        (datetime(2026, 11, 28, 0, SYNC_MINUTE, tzinfo=UTC), "2026-11-27-23:00"),
    ],
)
def test_the_schedule_syncs_the_hour_that_just_closed(code_location, schedule_instance, tick, hour):
    schedule = code_location.resolve_schedule_def(hourly_sync_schedule.name)
    assert schedule.cron_schedule == f"{SYNC_MINUTE} * * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "hourly_sync"
    context = dg.build_schedule_context(
        instance=schedule_instance,
        scheduled_execution_time=tick,
        repository_def=code_location.get_repository_def(),
    )
    data = schedule.evaluate_tick(context)
    assert [(r.partition_key, r.run_key) for r in data.run_requests or []] == [(hour, hour)]


# -- the gap planner -------------------------------------------------------------------------


RETRY = RetryPolicy(first_delay=600, max_attempts=3)


def test_plan_skips_materialized_in_flight_and_already_requested_hours():
    now = H0 + 10 * HOUR
    plan = plan_gap_fill(
        wanted=[key(i) for i in range(8)],
        materialized={key(0), key(3)},
        in_flight={key(1)},
        # 2 failed 5 minutes ago (retry due after 10); 3 has since materialized
        requested_before={key(2): Attempts(1, now - 300), key(3): Attempts(1, now - 300)},
        max_runs=3,
        now=now,
        retry=RETRY,
    )
    assert plan.to_request == [(key(4), 1), (key(5), 1), (key(6), 1)]
    assert plan.waiting == [(key(2), now + 300)]
    assert plan.missing == 5  # hours 1, 2, 4, 5, 6, 7 less the one in flight
    assert set(parse_cursor(plan.cursor())) == {key(2), key(4), key(5), key(6)}


def test_failed_hours_are_retried_with_doubling_backoff_up_to_a_cap():
    now = H0 + 10 * HOUR
    cursor = {key(0): Attempts(1, now - 600), key(1): Attempts(2, now - 600)}
    plan = plan_gap_fill(
        wanted=[key(0), key(1), key(2)],
        materialized=set(),
        in_flight=set(),
        requested_before={**cursor, key(2): Attempts(3, now - 10 * HOUR)},
        max_runs=24,
        now=now,
        retry=RETRY,
    )
    # 0: first retry due after 10 min; 1: second retry due after 20; 2: out of attempts.
    assert plan.to_request == [(key(0), 2)]
    assert plan.waiting == [(key(1), now + 600)]
    assert plan.given_up == [key(2)]
    assert parse_cursor(plan.cursor())[key(0)] == Attempts(2, now)


@pytest.mark.parametrize("cursor", [None, "", "not json", "[1, 2]", '{"requested": 3}'])
def test_an_unreadable_cursor_means_nothing_was_requested(cursor):
    assert parse_cursor(cursor) == {}


def test_an_older_list_cursor_counts_one_attempt_each():
    assert parse_cursor('{"requested": ["a", 1]}') == {"a": Attempts(1, 0.0)}


# -- the sensor, against a real instance ------------------------------------------------------


class SensorHarness:
    """SensorHarness evaluates the gap-filling sensor tick by tick at a chosen time."""

    def __init__(self, instance: dg.DagsterInstance, *, max_runs: int = 24) -> None:
        self.instance = instance
        self.now = float(H0)
        self.cursor: str | None = None
        job = dg.define_asset_job("hourly_sync", selection=[EVENTS])
        self.sensor = build_missing_hours_sensor(
            job=job,
            partitions_def=PARTITIONS,
            settle_minutes=10,
            max_runs_per_tick=max_runs,
            clock=lambda: self.now,
        )

        @dg.asset(key=EVENTS, partitions_def=PARTITIONS)
        def events() -> None:
            """Stands in for the events asset: the sensor only reads its partitions."""

        self.repository = dg.Definitions(
            assets=[events], jobs=[job], sensors=[self.sensor]
        ).get_repository_def()

    def materialize(self, *indexes: int) -> None:
        for i in indexes:
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=EVENTS, partition=key(i))
            )

    def tick(self) -> tuple[list[str], str | None]:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, repository_def=self.repository
        )
        data = self.sensor.evaluate_tick(context)
        requests = data.run_requests or []
        for r in requests:
            attempt = int(r.tags["audit_pipeline/gap_fill_attempt"])
            expected = r.partition_key if attempt == 1 else f"{r.partition_key}/attempt-{attempt}"
            assert r.run_key == expected
        self.cursor = data.cursor
        return [r.partition_key for r in requests], data.skip_message


@pytest.fixture
def harness():
    return SensorHarness(dg.DagsterInstance.ephemeral())


def test_the_sensor_requests_exactly_the_missing_hours(harness):
    harness.materialize(0, 2, 3)
    harness.now = H0 + 6 * HOUR + 9 * 60  # hour 5 closed 9 min ago: not settled yet
    requested, _ = harness.tick()
    assert requested == [key(1), key(4)]

    harness.now += 2 * 60  # now hour 5 is settled
    requested, _ = harness.tick()
    assert requested == [key(5)], "hours requested on the last tick are not asked again"


def test_queued_or_running_hours_are_not_requested(harness):
    harness.instance.add_run(
        dg.DagsterRun(
            job_name="hourly_sync",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags={"dagster/partition": key(1)},
        )
    )
    harness.instance.add_run(
        dg.DagsterRun(
            job_name="hourly_sync",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={
                "dagster/asset_partition_range_start": key(2),
                "dagster/asset_partition_range_end": key(3),
            },
        )
    )
    harness.now = H0 + 5 * HOUR + 15 * 60
    requested, _ = harness.tick()
    assert requested == [key(0), key(4)]


def test_a_day_of_downtime_is_caught_up_oldest_first(harness):
    harness.now = H0 + 30 * HOUR + 15 * 60  # 30 closed hours, nothing synced
    first, _ = harness.tick()
    assert first == [key(i) for i in range(24)]
    second, _ = harness.tick()
    assert second == [key(i) for i in range(24, 30)]

    # Runs for most of them succeed; the two that failed are named and retried later.
    harness.materialize(*[i for i in range(30) if i not in (7, 29)])
    third, skip = harness.tick()
    assert third == []
    assert skip is not None and key(7) in skip and key(29) in skip
    assert "2 hours failed and will be retried" in skip
    assert set(parse_cursor(harness.cursor)) == {key(7), key(29)}

    # After the backoff both are asked again (new run keys); the next hour as usual.
    harness.now += HOUR
    fourth, _ = harness.tick()
    assert fourth == [key(7), key(29), key(30)]
    assert parse_cursor(harness.cursor)[key(7)].count == 2


def test_nothing_to_do_is_a_skip(harness):
    harness.now = H0 + 2 * HOUR + 15 * 60
    harness.materialize(0, 1)
    requested, skip = harness.tick()
    assert requested == [] and skip == "no missing hours"
