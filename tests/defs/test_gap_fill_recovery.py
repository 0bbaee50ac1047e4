"""A two-hour API outage, then recovery: the gap-filling sensor retries the failed hours
with backoff and every hour is filled without a person (real runs, scripted API faults)."""

from __future__ import annotations

import dagster as dg

from audit_pipeline.defs.partitions import hour_for_partition_key
from audit_pipeline.defs.resources import SlackAuditResource
from audit_pipeline.defs.sensors import build_missing_hours_sensor, parse_cursor

EVENTS = dg.AssetKey("slack_audit_events")
MINUTE = 60


def test_hours_failed_in_a_two_hour_outage_are_filled_by_the_sensor(pipeline, emulator):
    pipeline.resources["slack_audit"] = SlackAuditResource(
        token=emulator.token, base_url=emulator.base_url, max_calls_per_minute=0, max_retries=0
    )
    job = dg.define_asset_job("hourly_sync", selection=[pipeline.events.key])
    sensor = build_missing_hours_sensor(
        job=job,
        partitions_def=pipeline.events.partitions_def,
        settle_minutes=10,
        retry_minutes=10,
        max_attempts=6,
        clock=lambda: pipeline.now,
    )
    repository = dg.Definitions(
        assets=[pipeline.events, pipeline.ledger, pipeline.published],
        jobs=[job],
        sensors=[sensor],
        resources=pipeline.resources,
    ).get_repository_def()

    start = pipeline.h0 + 2 * 3600 + 20 * MINUTE  # hours 0 and 1 have closed and settled
    outage_end = start + 2 * 3600
    pipeline.now = start
    cursor: str | None = None
    attempts: dict[str, list[bool]] = {}
    skips: list[str] = []
    try:
        while pipeline.now <= pipeline.h0 + 5 * 3600 + 30 * MINUTE:  # hours 0..4 settle
            context = dg.build_sensor_context(
                instance=pipeline.instance, cursor=cursor, repository_def=repository
            )
            data = sensor.evaluate_tick(context)
            cursor = data.cursor
            if data.skip_message:
                skips.append(data.skip_message)
            for request in data.run_requests or []:
                # The daemon would launch this run; while the API is down it fails.
                emulator.script_faults(["503"] if pipeline.now < outage_end else [])
                index = (hour_for_partition_key(request.partition_key) - pipeline.h0) // 3600
                outcome = pipeline.sync(index)
                attempts.setdefault(request.partition_key, []).append(outcome.success)
            pipeline.now += 10 * MINUTE
    finally:
        emulator.script_faults([])

    keys = [pipeline.key(i) for i in range(5)]
    assert pipeline.instance.get_materialized_partitions(EVENTS) == set(keys)
    assert pipeline.ledger_windows() == {pipeline.h0 + i * 3600 for i in range(5)}
    # The hours of the outage failed several times, then succeeded once, with no person.
    assert attempts[keys[0]][-1] is True and attempts[keys[0]].count(False) >= 3
    assert attempts[keys[1]][-1] is True and False in attempts[keys[1]]
    assert all(results.count(True) == 1 for results in attempts.values())
    assert any("failed and will be retried" in s for s in skips)
    assert parse_cursor(cursor) == {}, "nothing left pending"
    # Backoff: hour 0 was not asked on every tick of the outage (12 ticks), but ~4 times.
    assert len(attempts[keys[0]]) <= 5

    final = pipeline.verify()
    assert final.success
    assert final.checks["ledger_covers_every_hour"].passed
