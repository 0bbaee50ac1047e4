"""The production-shaped stack end to end: PostgreSQL instance, daemon, Celery worker.

A queued run of ``hourly_sync`` for the last closed hour is dequeued by ``dagster-daemon``
from the instance on a fresh PostgreSQL database, its steps (the sync first) run in a
``dagster-celery`` worker process fed through RabbitMQ, its checks pass, and the webserver's
GraphQL shows all of it. Skips without PostgreSQL or RabbitMQ unless
``AUDIT_PIPELINE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit_pipeline.cli.dev import dagster_environment
from audit_pipeline.cli.stack import (
    BROKER_ENV,
    PG_URL_ENV,
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

LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
  }
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


def _runs_in(url: str) -> dict[str, str]:
    from audit_pipeline.cli.stack import _pg_connect, database_name

    conn = _pg_connect(url, database_name(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, status FROM runs")
            return dict(cur.fetchall())
    finally:
        conn.close()


def test_a_queued_hour_runs_through_the_daemon_with_steps_on_a_celery_worker(
    instance_db: str, tmp_path: Path
) -> None:
    now = time.time()
    hour = last_closed_hour(now)
    partition = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%d-%H:%M")
    data_dir = tmp_path / "data"
    prepare_demo_data_dir(data_dir, now=now)
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
                "AUDIT_AUTOMATION": "off",  # only the run this test queues
                PG_URL_ENV: instance_db,
                BROKER_ENV: BROKER,
            }
        )
        stack = start_stack(env, home, port=port, queue=queue)
        try:
            assert stack.graphql(INSTANCE)["instance"]["runQueuingSupported"]
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
            assert launched["run"]["status"] == "QUEUED"  # the daemon, not the webserver, starts it

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

            kinds = [e["__typename"] for e in events]
            # queued by the webserver, then started by the daemon's run queue
            assert kinds.index("RunEnqueuedEvent") < kinds.index("RunStartingEvent")
            daemons = stack.graphql(INSTANCE)["instance"]["daemonHealth"]["allDaemonStatuses"]
            assert {"daemonType": "QUEUED_RUN_COORDINATOR", "healthy": True} in daemons
            in_worker = [e for e in events if "in celery worker" in (e["message"] or "")]
            assert any(e["stepKey"] == "slack_audit_events" for e in in_worker), events
            successes = {
                e["stepKey"] for e in events if e["__typename"] == "ExecutionStepSuccessEvent"
            }
            assert "slack_audit_events" in successes
            assert successes <= {e["stepKey"] for e in in_worker}  # every step ran on Celery
            assert "succeeded in" in logs["celery-worker"]  # the worker process did the work

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
    assert _runs_in(instance_db) == {run_id: "SUCCESS"}  # the instance lives in PostgreSQL
    assert list((data_dir / "ledger" / "manifests").iterdir())  # the hour was committed
