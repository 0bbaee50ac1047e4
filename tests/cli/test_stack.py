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

import os
import secrets
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from audit_pipeline.cli.dev import dagster_environment
from audit_pipeline.cli.stack import (
    BROKER_ENV,
    PG_URL_ENV,
    _pg_connect,
    database_name,
    drop_database,
    ensure_database,
    free_port,
    start_stack,
)
from audit_pipeline.cli.sync import DEMO_KEY_FILE, DEMO_ORIGIN, prepare_demo_data_dir
from audit_pipeline.ingest import HOUR, last_closed_hour
from audit_pipeline.slack.emulator import running_emulator
from tests.defs.test_assets import LEDGER_CHECKS

pytestmark = pytest.mark.e2e

BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
RUN_TIMEOUT = 300.0
# The schedule's minute is the first that starts at least this long after the test does:
# time for the stack to come up (about 15 s here) before the tick, with room for a loaded
# machine. Its wait (up to a minute more) is the price of a real tick.
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
    __typename ... on MessageEvent { message stepKey } } } }
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


def _next_tick(now: float) -> float:
    """_next_tick: the first minute that starts at least STARTUP_MARGIN after ``now``."""
    return (int(now + STARTUP_MARGIN) // MINUTE + 1) * MINUTE


def _wait_for_scheduled_run(stack, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    tags = [{"key": "dagster/schedule_name", "value": SCHEDULE}]
    while True:
        stack.check_alive()
        runs = stack.graphql(SCHEDULED_RUNS, {"tags": tags})["runsOrError"]["results"]
        if runs:
            return runs[0]
        assert time.monotonic() < deadline, "the schedule made no run"
        time.sleep(1)


def test_a_scheduled_hour_runs_through_the_daemon_with_steps_on_a_celery_worker(
    instance_db: str, tmp_path: Path
) -> None:
    tick = _next_tick(time.time())
    hour = last_closed_hour(tick)  # the hour the schedule's tick asks for
    partition = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%d-%H:%M")
    data_dir = tmp_path / "data"
    prepare_demo_data_dir(data_dir, now=time.time())
    home = tmp_path / "dagster_home"
    queue = f"audit-e2e-{secrets.token_hex(4)}"  # no other stack's worker takes our steps
    with running_emulator(
        start=hour - 24 * HOUR,
        end=hour + 24 * HOUR,
        events_per_hour=40,
        seed=13,
        rate_limit_per_min=0,
    ) as emulator:
        port = free_port()
        env = dagster_environment(
            dict(os.environ),
            data_dir=data_dir,
            dagster_home=home,
            key_path=data_dir / DEMO_KEY_FILE,
            emulator_url=emulator.base_url,
            emulator_token=emulator.token,
            start_hour=hour,
            port=port,
        )
        env.update(
            {
                "AUDIT_LOG_ORIGIN": DEMO_ORIGIN,
                # schedule and sensor stopped: the schedule is started below, the
                # gap-filling sensor stays off so the schedule's is the only run
                "AUDIT_AUTOMATION": "off",
                "AUDIT_SYNC_MINUTE": str(datetime.fromtimestamp(tick, UTC).minute),
                PG_URL_ENV: instance_db,
                BROKER_ENV: BROKER,
            }
        )
        stack = start_stack(env, home, port=port, queue=queue)
        try:
            assert stack.graphql(INSTANCE)["instance"]["runQueuingSupported"]
            selector = {
                "repositoryLocationName": "audit_pipeline",
                "repositoryName": "__repository__",
                "scheduleName": SCHEDULE,
            }
            started = stack.graphql(START_SCHEDULE, {"selector": selector})["startSchedule"]
            assert started["__typename"] == "ScheduleStateResult", started
            assert started["scheduleState"]["status"] == "RUNNING"
            if time.time() >= tick - 1:
                pytest.fail(
                    f"the stack took until after the schedule's minute to come up; raise "
                    f"STARTUP_MARGIN ({STARTUP_MARGIN:.0f} s)"
                )

            scheduled = _wait_for_scheduled_run(stack, tick - time.time() + 120)
            run_id = scheduled["runId"]
            tags = {t["key"]: t["value"] for t in scheduled["tags"]}
            assert tags["dagster/schedule_name"] == SCHEDULE
            assert tags["dagster/partition"] == partition

            deadline = time.monotonic() + RUN_TIMEOUT
            while True:
                stack.check_alive()
                answer = stack.graphql(RUN, {"id": run_id})
                run = answer["runOrError"]
                if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                    break
                assert time.monotonic() < deadline, "run did not finish"
                time.sleep(1)
            events = answer["logsForRun"]["events"]
            logs = {
                name: stack.log_path(name).read_text(errors="replace")[-3000:]
                for name in stack.processes
            }
            assert run["status"] == "SUCCESS", (events[-10:], logs)
            assert "Evaluating schedule" in stack.log_path("daemon").read_text(errors="replace")

            kinds = [e["__typename"] for e in events]
            # queued by the scheduler, then started by the daemon's run queue
            assert kinds.index("RunEnqueuedEvent") < kinds.index("RunStartingEvent")
            daemons = stack.graphql(INSTANCE)["instance"]["daemonHealth"]["allDaemonStatuses"]
            for daemon in ("SCHEDULER", "QUEUED_RUN_COORDINATOR"):
                assert {"daemonType": daemon, "healthy": True} in daemons
            in_worker = [e for e in events if "in celery worker" in (e["message"] or "")]
            assert any(e["stepKey"] == "slack_audit_events" for e in in_worker), events
            successes = {
                e["stepKey"] for e in events if e["__typename"] == "ExecutionStepSuccessEvent"
            }
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
        finally:
            stack.stop()
    # the instance lives in PostgreSQL: the one run, made by the schedule's tick
    assert dict(_query(instance_db, "SELECT run_id, status FROM runs")) == {run_id: "SUCCESS"}
    ticks = _query(instance_db, "SELECT status FROM job_ticks")
    assert ("SUCCESS",) in ticks, ticks
    assert list((data_dir / "ledger" / "manifests").iterdir())  # the hour was committed
