"""Steps on distributed workers: Dagster's Celery executor when a broker is configured.

With ``AUDIT_CELERY_BROKER`` set (``pyamqp://USER:PASSWORD@HOST:5672//`` for RabbitMQ) every
job of this code location, the hourly schedule, the gap-filling sensor and backfills
included, sends its steps to a Celery queue; ``dagster-celery worker start`` processes on
any machine take them, sharing only the broker, the instance database and the data
directory. Unset (``make dev``, tests), jobs keep Dagster's default in-host executor.

The broker URL may carry a password: the executor gets it as ``{"env": ...}``, resolved in
the run, so it never appears in run config, the UI or the event log.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_celery import celery_executor

BROKER_ENV = "AUDIT_CELERY_BROKER"
BACKEND_ENV = "AUDIT_CELERY_BACKEND"  # default rpc://: results ride back on the broker
QUEUE_ENV = "AUDIT_CELERY_QUEUE"  # default "dagster"; workers listen with -q NAME


def distributed_executor() -> dg.ExecutorDefinition | None:
    """distributed_executor is the Celery executor if a broker is configured, else None."""
    if not os.environ.get(BROKER_ENV, "").strip():
        return None
    config: dict = {"broker": {"env": BROKER_ENV}}
    if os.environ.get(BACKEND_ENV, "").strip():
        config["backend"] = {"env": BACKEND_ENV}
    queue = os.environ.get(QUEUE_ENV, "").strip()
    if queue:
        config["config_source"] = {"task_default_queue": queue}
    return celery_executor.configured(config, name="audit_celery")


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=distributed_executor())
