"""The Celery executor is chosen by AUDIT_CELERY_BROKER, and never holds the broker URL."""

from __future__ import annotations

from pathlib import Path

import yaml

from audit_pipeline.defs.executor import BROKER_ENV, QUEUE_ENV, distributed_executor

PRODUCTION = Path(__file__).resolve().parents[2] / "audit_pipeline" / "dagster-production.yaml"


def test_without_a_broker_jobs_keep_the_default_executor(monkeypatch) -> None:
    monkeypatch.delenv(BROKER_ENV, raising=False)
    assert distributed_executor() is None


def test_with_a_broker_steps_go_to_celery_by_reference(monkeypatch) -> None:
    monkeypatch.setenv(BROKER_ENV, "pyamqp://audit:s3cret-pw@mq.internal:5672//")
    monkeypatch.setenv(QUEUE_ENV, "audit-sync")
    executor = distributed_executor()
    assert executor is not None and executor.name == "audit_celery"
    # the URL is read when a run starts, not frozen into the definitions
    monkeypatch.setenv(BROKER_ENV, "pyamqp://audit:rotated-pw@mq.internal:5672//")
    resolved = executor.apply_config_mapping({})
    assert resolved.success
    assert resolved.value["config"]["broker"] == "pyamqp://audit:rotated-pw@mq.internal:5672//"
    assert resolved.value["config"]["config_source"] == {"task_default_queue": "audit-sync"}


def test_the_production_instance_is_postgres_with_a_queue_limit_on_sync_runs() -> None:
    config = yaml.safe_load(PRODUCTION.read_text())
    assert config["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "audit_pipeline/job", "value": "hourly_sync", "limit": 1} in limits
    assert config["telemetry"] == {"enabled": False}
