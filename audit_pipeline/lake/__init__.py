"""The lake: one fixed event schema, normalization, and write-once Parquet batch files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit_pipeline.lake.parquet import (
    PARQUET_FORMAT,
    ParquetBatchFormat,
    events_from_table,
    read_batch_table,
    write_batch_file,
)
from audit_pipeline.lake.schema import COLUMN_DOCS, EVENT_SCHEMA, SCHEMA_VERSION
from audit_pipeline.ledger.events import EventRecord

if TYPE_CHECKING:
    from audit_pipeline.lake.normalize import NormalizedWindow, WindowNormalizer, normalize_entries

# Normalizing is imported when first used: reading batch files (prove, verify) does not
# pay for it at start-up.
_NORMALIZE = {"NormalizedWindow", "WindowNormalizer", "normalize_entries"}


def __getattr__(name: str) -> Any:
    if name in _NORMALIZE:
        from audit_pipeline.lake import normalize

        return getattr(normalize, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COLUMN_DOCS",
    "EVENT_SCHEMA",
    "PARQUET_FORMAT",
    "SCHEMA_VERSION",
    "NormalizedWindow",
    "ParquetBatchFormat",
    "WindowNormalizer",
    "events_from_table",
    "normalize_entries",
    "read_batch_table",
    "write_batch_file",
    "write_events",
]


def write_events(events: Sequence[EventRecord], path: Path, *, window: tuple[int, int]) -> None:
    """write_events writes ledger ``EventRecord``s (whose leaf data is an API entry) as a batch.

    A convenience for tools and tests that hold records rather than a normalized table.
    """
    from audit_pipeline.lake.normalize import normalize_entries

    rows = normalize_entries(
        (json.loads(e.leaf_data) for e in events), window_start=window[0], window_end=window[1]
    )
    write_batch_file(rows.table, path)
