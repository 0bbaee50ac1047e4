"""missing_hours_sensor: request every closed hour that has never been synced.

Hourly schedules do not catch up after daemon downtime (dagster-io/dagster issue 10335),
and a run can fail. Every tick this sensor compares the closed, settled hours since
``AUDIT_START_HOUR`` with the partitions of ``slack_audit_events`` that have a
materialization and asks, oldest first, for the ones that have none and are not already
queued or running. ``run_key`` is the partition key, so Dagster never launches the same
hour twice from here; the JSON cursor remembers hours already requested that have not
materialized yet (a failed run stays failed until someone reruns it from the UI, and the
tick's skip message names those hours) so they do not block newer gaps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from audit_pipeline.defs import env_int
from audit_pipeline.defs.partitions import hourly_partition
from audit_pipeline.defs.schedules import AUTOMATION_ON, SYNC_ASSETS, SYNC_MINUTE, hourly_sync_job

EVENTS_ASSET = dg.AssetKey("slack_audit_events")
# An hour is a gap while any synced source lacks it (each source's asset is partitioned).
SYNC_ASSET_KEYS = tuple(dg.AssetKey(name) for name in SYNC_ASSETS)
GAP_FILL_MAX_RUNS = env_int("AUDIT_GAP_FILL_MAX_RUNS", 24, minimum=1)
# Leave the schedule its own tick before treating the newest hour as a gap.
SCHEDULE_GRACE_MINUTES = 5

IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class GapPlan:
    """GapPlan is one tick's view: what to request now and what is stuck."""

    to_request: list[str]
    pending: list[str]  # requested by this sensor before, not materialized yet
    waiting: list[str]  # pending and not queued or running: their runs failed
    in_flight: int
    missing: int

    def cursor(self) -> str:
        return json.dumps({"requested": sorted(set(self.pending) | set(self.to_request))})


def settled_hours(
    partitions_def: dg.TimeWindowPartitionsDefinition, now: float, settle_minutes: int
) -> list[str]:
    """settled_hours returns the keys of hours that ended at least ``settle_minutes`` ago."""
    cutoff = datetime.fromtimestamp(now, UTC) - timedelta(minutes=settle_minutes)
    return list(partitions_def.get_partition_keys(current_time=cutoff))


def in_flight_partitions(
    instance: dg.DagsterInstance, partitions_def: dg.TimeWindowPartitionsDefinition
) -> set[str]:
    """in_flight_partitions returns the hours of runs that are queued or running."""
    keys: set[str] = set()
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=IN_FLIGHT_STATUSES)):
        tags = record.dagster_run.tags
        if PARTITION_TAG in tags:
            keys.add(tags[PARTITION_TAG])
        elif RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            keys.update(
                partitions_def.get_partition_keys_in_range(
                    dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG])
                )
            )
    return keys


def parse_cursor(cursor: str | None) -> set[str]:
    if not cursor:
        return set()
    try:
        requested = json.loads(cursor).get("requested", [])
    except (ValueError, AttributeError):
        return set()  # an unreadable cursor only costs run-key lookups, never a duplicate run
    return {k for k in requested if isinstance(k, str)}


def plan_gap_fill(
    *,
    wanted: Iterable[str],
    materialized: set[str],
    in_flight: set[str],
    requested_before: set[str],
    max_runs: int,
) -> GapPlan:
    """plan_gap_fill picks, oldest first, at most ``max_runs`` hours to request."""
    missing = [k for k in wanted if k not in materialized and k not in in_flight]
    fresh = [k for k in missing if k not in requested_before]
    pending = sorted(k for k in requested_before if k not in materialized)
    return GapPlan(
        to_request=fresh[:max_runs],
        pending=pending,
        waiting=[k for k in pending if k not in in_flight],
        in_flight=len(in_flight),
        missing=len(missing),
    )


def build_missing_hours_sensor(
    *,
    job: dg.UnresolvedAssetJobDefinition = hourly_sync_job,
    partitions_def: dg.TimeWindowPartitionsDefinition = hourly_partition,
    settle_minutes: int = SYNC_MINUTE + SCHEDULE_GRACE_MINUTES,
    max_runs_per_tick: int = GAP_FILL_MAX_RUNS,
    clock: Callable[[], float] = time.time,
    default_status: dg.DefaultSensorStatus = (
        dg.DefaultSensorStatus.RUNNING if AUTOMATION_ON else dg.DefaultSensorStatus.STOPPED
    ),
    name: str = "missing_hours_sensor",
    asset_keys: tuple[dg.AssetKey, ...] = SYNC_ASSET_KEYS,
) -> dg.SensorDefinition:
    """build_missing_hours_sensor makes the gap-filling sensor (tests inject the clock)."""

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=60,
        default_status=default_status,
        description=(
            "Requests every closed hour since the first partition that has no "
            f"materialization, oldest first, at most {max_runs_per_tick} per tick "
            "(run key = partition key). Catches up after daemon downtime."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        instance = context.instance
        plan = plan_gap_fill(
            wanted=settled_hours(partitions_def, clock(), settle_minutes),
            materialized=set.intersection(
                *(set(instance.get_materialized_partitions(key)) for key in asset_keys)
            ),
            in_flight=in_flight_partitions(instance, partitions_def),
            requested_before=parse_cursor(context.cursor),
            max_runs=max_runs_per_tick,
        )
        if plan.to_request:
            context.log.info(
                "requesting %d of %d missing hours: %s..%s",
                len(plan.to_request),
                plan.missing,
                plan.to_request[0],
                plan.to_request[-1],
            )
            return dg.SensorResult(
                run_requests=[dg.RunRequest(run_key=k, partition_key=k) for k in plan.to_request],
                cursor=plan.cursor(),
            )
        context.update_cursor(plan.cursor())
        if plan.waiting:
            shown = ", ".join(plan.waiting[:5]) + (" …" if len(plan.waiting) > 5 else "")
            return dg.SkipReason(
                f"{len(plan.waiting)} hours were requested but never materialized "
                f"(their runs failed; rerun or backfill them from the UI): {shown}"
            )
        return dg.SkipReason(
            f"no missing hours ({plan.in_flight} queued or running)"
            if plan.in_flight
            else "no missing hours"
        )

    return _sensor


missing_hours_sensor = build_missing_hours_sensor()
