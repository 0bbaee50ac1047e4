"""hourly_partition: one partition per closed UTC hour, from ``AUDIT_START_HOUR`` on.

A partition key (``2026-11-28-13:00``) is the ledger window ``[13:00, 14:00)`` UTC.
``end_offset=0``: the hour in progress is not a partition until it has closed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ingest import HOUR, parse_hour

START_HOUR_ENV = "AUDIT_START_HOUR"
DEFAULT_START_HOUR = "2026-01-01T00"
PARTITION_KEY_FORMAT = "%Y-%m-%d-%H:%M"


def start_hour_from_env(environ: Mapping[str, str] | None = None) -> int:
    """start_hour_from_env returns the first partition's Unix start from the environment."""
    raw = (os.environ if environ is None else environ).get(START_HOUR_ENV, "").strip()
    try:
        return parse_hour(raw or DEFAULT_START_HOUR)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{START_HOUR_ENV}: {exc}") from None


def partition_key_for_hour(hour_start: int) -> str:
    if hour_start % HOUR:
        raise ValueError(f"{hour_start} is not the start of a UTC hour")
    return datetime.fromtimestamp(hour_start, UTC).strftime(PARTITION_KEY_FORMAT)


def hour_for_partition_key(key: str) -> int:
    """hour_for_partition_key returns the Unix start of the hour a partition key names."""
    moment = datetime.strptime(key, PARTITION_KEY_FORMAT).replace(tzinfo=UTC)
    return int(moment.timestamp())


def hours_of_window(window: dg.TimeWindow) -> tuple[int, int]:
    """hours_of_window returns ``(start, end)`` in Unix seconds of a partition time window."""
    return int(window.start.timestamp()), int(window.end.timestamp())


START_HOUR = start_hour_from_env()

hourly_partition = dg.HourlyPartitionsDefinition(
    start_date=datetime.fromtimestamp(START_HOUR, UTC),
    timezone="UTC",
    end_offset=0,
)

__all__ = [
    "START_HOUR",
    "hour_for_partition_key",
    "hourly_partition",
    "hours_of_window",
    "partition_key_for_hour",
    "start_hour_from_env",
]
