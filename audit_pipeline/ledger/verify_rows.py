"""Row-level checks of one data file: every leaf re-derived from its row and checked.

This is what ``verify --depth rows`` adds to the file level (size and SHA-256 against the
signed manifest): the RFC 6962 root over the rows' leaves, the row count, the time range,
each event inside its hour, each row's id/time columns against its leaf JSON and no id
twice in the file. It catches a batch whose signed manifest never matched its rows (a key
holder signing a lie, a commit bug), which the file level cannot: there the signed SHA-256
vouches only that the file is the one the signer pinned.

The checks work on whole columns (:class:`EventColumns`) rather than on one record object
per row, and take the fast path wherever the common case allows (the time range inside the
window, no repeated id, every leaf an object naming the row's id and time); any row the fast
path does not clear is judged by :func:`.events.record_mismatch`, the one definition of a
mismatch, so the fast path can skip work but never decide differently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import orjson

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.events import BatchFileFormat, EventRecord, record_mismatch
from audit_pipeline.ledger.findings import FindingCode, first_items
from audit_pipeline.ledger.layout import format_hour
from audit_pipeline.ledger.manifest import Manifest
from audit_pipeline.text import plural


@dataclass(frozen=True, slots=True)
class EventColumns:
    """A data file's rows as three columns in row order: ids, times (Unix seconds), leaves."""

    ids: list[str]
    times: list[int]
    leaves: list[bytes]


def read_event_columns(file_format: BatchFileFormat, path: Path) -> EventColumns:
    """read_event_columns reads a data file's columns: through the format's own column
    reader when it has one (the lake's Parquet format does), else from ``read_events``."""
    reader = getattr(file_format, "read_event_columns", None)
    if reader is not None:
        ids, times, leaves = reader(path)
        return EventColumns(ids, times, leaves)
    records = file_format.read_events(path)
    ids = [r.event_id for r in records]
    return EventColumns(ids, [r.date_create for r in records], [r.leaf_data for r in records])


def leaf_hashes(leaves: Sequence[bytes]) -> list[bytes]:
    """leaf_hashes: SHA-256(0x00 || leaf) of each leaf, in order (``merkle.leaf_hash``
    inlined: this loop is most of what the row level costs beyond reading the file)."""
    prefix = merkle.LEAF_PREFIX
    return [sha256(prefix + leaf).digest() for leaf in leaves]


def mismatched_rows(columns: EventColumns) -> list[str]:
    """mismatched_rows names each row whose id/time columns disagree with its leaf JSON.

    One orjson parse per row and two comparisons clear the common case; a row that raises
    or compares unequal is judged by ``record_mismatch`` (which also tells why)."""
    loads = orjson.loads
    suspects: list[int] = []
    for index, (leaf, event_id, date_create) in enumerate(
        zip(columns.leaves, columns.ids, columns.times, strict=True)
    ):
        try:
            entry = loads(leaf)
            if (
                type(entry) is dict
                and entry.get("id") == event_id
                and entry.get("date_create") == date_create
            ):
                continue
        except orjson.JSONDecodeError:
            pass
        suspects.append(index)
    found = []
    for index in suspects:
        event_id = columns.ids[index]
        why = record_mismatch(EventRecord(event_id, columns.times[index], columns.leaves[index]))
        if why:
            found.append(f"{event_id} ({why})")
    return found


def check_rows(
    manifest: Manifest,
    columns: EventColumns,
    add: Callable[..., None],
) -> None:
    """check_rows re-derives everything the manifest says about the rows and reports each
    disagreement through ``add(code, detail, expected=None, actual=None)``."""
    m, data = manifest, manifest.data
    assert data is not None
    ids, times = columns.ids, columns.times
    if not len(ids) == len(times) == len(columns.leaves):
        add(FindingCode.UNREADABLE_DATA_FILE, "rows cannot be read: columns differ in length")
        return
    if len(ids) != data.rows:
        add(
            FindingCode.ROW_COUNT_MISMATCH,
            "row count differs from the manifest",
            data.rows,
            len(ids),
        )
    root = merkle.root_hash(leaf_hashes(columns.leaves)).hex()
    if root != m.events_root:
        add(
            FindingCode.EVENTS_ROOT_MISMATCH,
            "Merkle root recomputed from the rows differs from the manifest",
            m.events_root,
            root,
        )
    span = (min(times, default=None), max(times, default=None))
    if span != (m.min_date_create, m.max_date_create):
        add(
            FindingCode.EVENT_RANGE_MISMATCH,
            "event time range differs from the manifest",
            (m.min_date_create, m.max_date_create),
            span,
        )
    first, last = span
    if (
        first is not None
        and last is not None
        and not (m.window_start <= first and last < m.window_end)
    ):
        start, end = m.window_start, m.window_end
        outside = [i for i, t in zip(ids, times, strict=True) if not start <= t < end]
        add(
            FindingCode.EVENT_OUTSIDE_WINDOW,
            f"{len(outside)} events outside {format_hour(m.window_start)}: {first_items(outside)}",
        )
    mismatched = mismatched_rows(columns)
    if mismatched:
        add(
            FindingCode.EVENT_RECORD_MISMATCH,
            f"{plural(len(mismatched), 'row')} whose columns disagree with their leaf: "
            f"{first_items(mismatched)}",
        )
    if len(set(ids)) != len(ids):
        repeated = [i for i, n in Counter(ids).items() if n > 1]
        add(
            FindingCode.DUPLICATE_EVENT_ID,
            f"{len(repeated)} event ids appear twice in the file: {first_items(repeated)}",
        )
