"""missing_hours_sensor: request every closed hour that has never been synced.

Hourly schedules do not catch up after daemon downtime (dagster-io/dagster issue 10335),
and a run can fail. Every tick this sensor compares the closed, settled hours since
``AUDIT_START_HOUR`` with the partitions of ``slack_audit_events`` that have a
materialization and asks, oldest first, for the ones that have none and are not already
queued or running. ``run_key`` is the partition key (then ``<key>/attempt-N`` for
retries), so Dagster never launches the same attempt twice; the JSON cursor remembers,
per hour requested and not yet materialized, how many attempts it had and when the last
was asked. An hour whose run failed (the API was down, say) is asked again after a
backoff that doubles each time (``AUDIT_GAP_FILL_RETRY_MINUTES``, 10 by default: 10, 20,
40 … minutes) up to ``AUDIT_GAP_FILL_MAX_ATTEMPTS`` (6) attempts; then the sensor stops
and names the hour in every tick's message (a person reruns or backfills it, and the
coverage check shows the gap meanwhile).
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
GAP_FILL_RETRY_MINUTES = env_int("AUDIT_GAP_FILL_RETRY_MINUTES", 10, minimum=1)
GAP_FILL_MAX_ATTEMPTS = env_int("AUDIT_GAP_FILL_MAX_ATTEMPTS", 6, minimum=1)
# Leave the schedule its own tick before treating the newest hour as a gap.
SCHEDULE_GRACE_MINUTES = 5

IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
PARTITION_TAG = "dagster/partition"
ATTEMPT_TAG = "audit_pipeline/gap_fill_attempt"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class Attempts:
    """Attempts is what the cursor remembers of one requested hour."""

    count: int
    last_at: float  # when the last attempt was requested (Unix seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """RetryPolicy: the first retry after ``first_delay`` seconds, doubling each time."""

    first_delay: float
    max_attempts: int

    def due(self, attempts: Attempts) -> float:
        """due is when the next attempt may be requested."""
        return attempts.last_at + self.first_delay * 2 ** (attempts.count - 1)


@dataclass(frozen=True)
class GapPlan:
    """GapPlan is one tick's view: what to request now, what waits, what was given up."""

    to_request: list[tuple[str, int]]  # (hour, attempt number)
    requested: dict[str, Attempts]  # the cursor after this tick
    waiting: list[tuple[str, float]]  # failed, retried at the given time
    given_up: list[str]  # failed max_attempts times: left to a person
    in_flight: int
    missing: int

    def cursor(self) -> str:
        return json.dumps(
            {
                "requested": {
                    k: {"attempts": a.count, "last_at": a.last_at}
                    for k, a in sorted(self.requested.items())
                }
            }
        )


def run_key(partition_key: str, attempt: int) -> str:
    return partition_key if attempt == 1 else f"{partition_key}/attempt-{attempt}"


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


def parse_cursor(cursor: str | None) -> dict[str, Attempts]:
    """parse_cursor reads the hours requested before (an older list-only cursor counts each
    as one attempt made long ago)."""
    if not cursor:
        return {}
    try:
        requested = json.loads(cursor).get("requested", {})
    except (ValueError, AttributeError):
        return {}  # an unreadable cursor only costs run-key lookups, never a duplicate run
    if isinstance(requested, list):
        return {k: Attempts(1, 0.0) for k in requested if isinstance(k, str)}
    if not isinstance(requested, dict):
        return {}
    parsed = {}
    for key, value in requested.items():
        try:
            parsed[key] = Attempts(int(value["attempts"]), float(value["last_at"]))
        except (TypeError, KeyError, ValueError):
            parsed[key] = Attempts(1, 0.0)
    return parsed


def plan_gap_fill(
    *,
    wanted: Iterable[str],
    materialized: set[str],
    in_flight: set[str],
    requested_before: dict[str, Attempts],
    max_runs: int,
    now: float,
    retry: RetryPolicy,
) -> GapPlan:
    """plan_gap_fill picks, oldest first, at most ``max_runs`` hours to request: hours never
    asked, and failed hours whose backoff has passed."""
    missing = [k for k in wanted if k not in materialized and k not in in_flight]
    requested = {k: a for k, a in requested_before.items() if k not in materialized}
    to_request: list[tuple[str, int]] = []
    waiting: list[tuple[str, float]] = []
    given_up: list[str] = []
    for key in missing:
        before = requested.get(key)
        if before is None:
            attempt = 1
        elif before.count >= retry.max_attempts:
            given_up.append(key)
            continue
        elif now < retry.due(before):
            waiting.append((key, retry.due(before)))
            continue
        else:
            attempt = before.count + 1
        if len(to_request) < max_runs:
            to_request.append((key, attempt))
            requested[key] = Attempts(attempt, now)
    return GapPlan(
        to_request=to_request,
        requested=requested,
        waiting=waiting,
        given_up=given_up,
        in_flight=len(in_flight),
        missing=len(missing),
    )


def build_missing_hours_sensor(
    *,
    job: dg.UnresolvedAssetJobDefinition = hourly_sync_job,
    partitions_def: dg.TimeWindowPartitionsDefinition = hourly_partition,
    settle_minutes: int = SYNC_MINUTE + SCHEDULE_GRACE_MINUTES,
    max_runs_per_tick: int = GAP_FILL_MAX_RUNS,
    retry_minutes: int = GAP_FILL_RETRY_MINUTES,
    max_attempts: int = GAP_FILL_MAX_ATTEMPTS,
    clock: Callable[[], float] = time.time,
    default_status: dg.DefaultSensorStatus = (
        dg.DefaultSensorStatus.RUNNING if AUTOMATION_ON else dg.DefaultSensorStatus.STOPPED
    ),
    name: str = "missing_hours_sensor",
    asset_keys: tuple[dg.AssetKey, ...] = SYNC_ASSET_KEYS,
) -> dg.SensorDefinition:
    """build_missing_hours_sensor makes the gap-filling sensor (tests inject the clock)."""
    retry = RetryPolicy(first_delay=retry_minutes * 60.0, max_attempts=max_attempts)

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=60,
        default_status=default_status,
        description=(
            "Requests every closed hour since the first partition that has no "
            f"materialization, oldest first, at most {max_runs_per_tick} per tick "
            "(run key = partition key). Catches up after daemon downtime. Hours whose run "
            f"failed are requested again after {retry_minutes} minutes, doubling each time, "
            f"up to {max_attempts} attempts; then they are named for a person to rerun."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        instance = context.instance
        now = clock()
        plan = plan_gap_fill(
            wanted=settled_hours(partitions_def, now, settle_minutes),
            materialized=set.intersection(
                *(set(instance.get_materialized_partitions(key)) for key in asset_keys)
            ),
            in_flight=in_flight_partitions(instance, partitions_def),
            requested_before=parse_cursor(context.cursor),
            max_runs=max_runs_per_tick,
            now=now,
            retry=retry,
        )
        notes = _plan_notes(plan)
        for note in notes:
            context.log.warning(note)
        if plan.to_request:
            retries = [k for k, attempt in plan.to_request if attempt > 1]
            context.log.info(
                "requesting %d of %d missing hours (%d retries): %s..%s",
                len(plan.to_request),
                plan.missing,
                len(retries),
                plan.to_request[0][0],
                plan.to_request[-1][0],
            )
            return dg.SensorResult(
                run_requests=[
                    dg.RunRequest(
                        run_key=run_key(k, attempt),
                        partition_key=k,
                        tags={ATTEMPT_TAG: str(attempt)},
                    )
                    for k, attempt in plan.to_request
                ],
                cursor=plan.cursor(),
            )
        context.update_cursor(plan.cursor())
        if notes:
            return dg.SkipReason(" ".join(notes))
        return dg.SkipReason(
            f"no missing hours ({plan.in_flight} queued or running)"
            if plan.in_flight
            else "no missing hours"
        )

    return _sensor


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (" …" if len(keys) > 5 else "")


def _plan_notes(plan: GapPlan) -> list[str]:
    """_plan_notes says what the sensor is waiting on and what it gave up on."""
    notes = []
    if plan.waiting:
        first_key, first_due = min(plan.waiting, key=lambda w: w[1])
        due = datetime.fromtimestamp(first_due, UTC).strftime("%Y-%m-%dT%H:%MZ")
        notes.append(
            f"{len(plan.waiting)} hours failed and will be retried with backoff "
            f"(next: {first_key} at {due}): {_shown([k for k, _ in plan.waiting])}."
        )
    if plan.given_up:
        notes.append(
            f"{len(plan.given_up)} hours failed every attempt and are no longer retried "
            f"(rerun or backfill them from the UI): {_shown(plan.given_up)}."
        )
    return notes


missing_hours_sensor = build_missing_hours_sensor()
