"""Events as the ledger sees them, and the seam through which it reads batch data files.

The ledger never parses Parquet itself: a batch's data file is read through a
:class:`BatchFileFormat` (the lake provides the Parquet one; tests use JSON lines). Each
row becomes an :class:`EventRecord` whose ``leaf_data`` is the canonical JSON of the whole
API entry; the batch's event tree is the RFC 6962 tree over ``leaf_hash(leaf_data)`` in
row order, so an auditor can recompute any leaf from one row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import orjson

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.canonical import canonical_json
from audit_pipeline.ledger.errors import MalformedError


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One audit event: its id, its ``date_create`` (Unix seconds) and its leaf bytes."""

    event_id: str
    date_create: int
    leaf_data: bytes

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.leaf_data)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> EventRecord:
        """from_entry builds the record of one API entry (needs ``id`` and ``date_create``)."""
        event_id, date_create = entry.get("id"), entry.get("date_create")
        if not isinstance(event_id, str) or not event_id:
            raise MalformedError(f"audit entry has no string id: {event_id!r}")
        if not isinstance(date_create, int) or isinstance(date_create, bool):
            raise MalformedError(f"audit entry {event_id}: date_create is not an integer")
        return cls(event_id, date_create, canonical_json(entry))


@dataclass(frozen=True, slots=True)
class EventLeaf:
    """What a commit needs of one event: its id, its ``date_create`` and its leaf hash.

    A writer that holds the leaf bytes elsewhere (the lake's Arrow buffers) hands these to
    ``commit_batch`` instead of :class:`EventRecord`: the ledger checks the file read back
    against the hashes, so the leaf bytes are not held twice.
    """

    event_id: str
    date_create: int
    leaf_hash: bytes


_E = TypeVar("_E", "EventRecord", "EventLeaf")


@runtime_checkable
class BatchFileFormat(Protocol):
    """How the ledger reads one batch data file (the lake implements it for Parquet)."""

    suffix: str

    def read_events(self, path: Path) -> list[EventRecord]:
        """read_events returns the file's rows in row order; MalformedError if unreadable."""
        ...

    def read_leaf_hashes(self, path: Path) -> list[bytes]:
        """read_leaf_hashes returns the stored leaf hashes in row order (a fast path; callers
        compare the resulting root with the manifest before trusting it)."""
        ...


def read_event_chunks(file_format: BatchFileFormat, path: Path) -> Iterator[list[EventRecord]]:
    """read_event_chunks yields a file's rows in row order, a part at a time when the format
    can (its optional ``iter_events``: one Parquet row group each), else all at once."""
    parts = getattr(file_format, "iter_events", None)
    if parts is None:
        yield file_format.read_events(path)
    else:
        yield from parts(path)


def events_root(events: Iterable[EventRecord]) -> bytes:
    """events_root returns the RFC 6962 root over the events' leaves, in the given order."""
    return merkle.root_hash([merkle.leaf_hash(e.leaf_data) for e in events])


def record_mismatch(event: EventRecord) -> str | None:
    """record_mismatch says how a row's id/time columns disagree with its leaf JSON, if they do.

    Formats store ``event_id`` and ``date_create`` beside the leaf bytes for speed; only the
    leaf is hashed, so the columns must be checked against it.
    """
    try:
        entry = orjson.loads(event.leaf_data)  # ~3x the stdlib parser: verify reads every row
    except orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits, which JSON (and the API) allow.
        try:
            entry = json.loads(event.leaf_data)
        except (ValueError, RecursionError):
            return "leaf data is not JSON"
    if not isinstance(entry, dict):
        return "leaf data is not a JSON object"
    if entry.get("id") != event.event_id:
        return f"leaf id {entry.get('id')!r} != row event_id {event.event_id!r}"
    if entry.get("date_create") != event.date_create:
        return f"leaf date_create {entry.get('date_create')!r} != row {event.date_create!r}"
    return None


def unique_events(events: Sequence[_E]) -> tuple[list[_E], int]:
    """unique_events keeps the first record of each id; returns them and the drop count."""
    seen: set[str] = set()
    kept: list[_E] = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            kept.append(event)
    return kept, len(events) - len(kept)
