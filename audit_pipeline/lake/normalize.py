"""Normalize raw Audit Logs API entries of one window into rows of ``EVENT_SCHEMA``.

The API's shapes drift (new actions, new entity types, ``details`` keys that change type),
so nothing here rejects an entry for having unexpected fields: the normalized columns are
best-effort, and the whole entry is kept as canonical JSON. Only an entry without a usable
``id``, ``date_create`` or ``action``, or one outside the window it was asked for, is
quarantined, as a row with a reason, never dropped.

Within a window, the same ``id`` may come back more than once (a restarted window after
``invalid_cursor``, overlapping retries): an identical repeat is counted and skipped; a
repeat with different content is quarantined so that the conflict is visible.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from audit_pipeline.lake.schema import DATE_TYPE, EVENT_SCHEMA
from audit_pipeline.ledger.canonical import canonical_json, canonical_json_parsed
from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.merkle import leaf_hash

_EMPTY: dict[str, Any] = {}
_NAMES = tuple(f.name for f in EVENT_SCHEMA)
_EVENT_ID, _DATE_CREATE, _RAW_JSON, _LEAF_HASH, _QUARANTINE = (
    _NAMES.index(n)
    for n in ("event_id", "date_create", "raw_json", "leaf_hash", "quarantine_reason")
)
_TEXT = object()
# Columns whose API values may arrive as non-text (ids as ints, bools...): rendered as text.
_COLUMN_KINDS = tuple(
    (f.name, _TEXT if pa.types.is_string(f.type) and f.name not in ("raw_json",) else None)
    for f in EVENT_SCHEMA
)


@dataclass(frozen=True)
class NormalizedWindow:
    """The rows of one window, sorted by (``date_create``, ``event_id``)."""

    table: pa.Table
    quarantined: int
    duplicates_skipped: int

    @property
    def row_count(self) -> int:
        return self.table.num_rows


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _text(value: Any) -> str | None:
    """Render a scalar as text (ids arrive as str or int); containers as canonical JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return canonical_json(value).decode()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class WindowNormalizer:
    """Accumulates the entries of one window, page by page, into column lists.

    ``window_start`` and ``window_end`` are Unix seconds, end exclusive. Feed pages with
    :meth:`add`, then call :meth:`finish` once.
    """

    def __init__(self, window_start: int, window_end: int) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self._rows: list[tuple[Any, ...]] = []
        self._seen: dict[str, bytes] = {}
        self.quarantined = 0
        self.duplicates_skipped = 0

    def add(self, entries: Iterable[Any], *, plain_json: bool = False) -> None:
        """add takes one page. ``plain_json``: the values came from a JSON parser over text
        without ``NaN``/``Infinity`` tokens, so the encoder may skip its value walk."""
        encode = canonical_json_parsed if plain_json else canonical_json
        for entry in entries:
            self._add_one(entry, encode)

    def _add_one(self, entry: Any, encode: Callable[[Any], bytes]) -> None:
        try:
            raw = encode(entry)
        except MalformedError as exc:
            self._add_quarantined(entry, None, f"no canonical JSON: {exc}")
            return
        leaf = leaf_hash(raw)
        reason = self._quarantine_reason(entry)
        if reason is None:
            event_id = entry["id"]
            previous = self._seen.get(event_id)
            if previous == leaf:
                self.duplicates_skipped += 1
                return
            if previous is not None:
                reason = f"id {event_id!r} seen earlier in this window with different content"
        if reason is not None:
            self._add_quarantined(entry, raw, reason)
            return
        self._seen[event_id] = leaf
        self._append_event(entry, raw, leaf, encode)

    def _quarantine_reason(self, entry: Any) -> str | None:
        if not isinstance(entry, dict):
            return f"entry is a JSON {type(entry).__name__}, not an object"
        event_id = entry.get("id")
        if not isinstance(event_id, str) or not event_id:
            return "missing or non-string id"
        date_create = entry.get("date_create")
        if not _is_int(date_create):
            return "missing or non-integer date_create"
        if not self.window_start <= date_create < self.window_end:
            return (
                f"date_create {date_create} outside the requested window "
                f"[{self.window_start}, {self.window_end})"
            )
        if not isinstance(entry.get("action"), str):
            return "missing or non-string action"
        return None

    def _add_quarantined(self, entry: Any, canonical: bytes | None, reason: str) -> None:
        """Keep an unusable entry as a row whose leaf wraps it with the reason.

        The wrapper carries its own ``id`` and ``date_create`` (so the ledger's row/leaf
        consistency holds) and the entry itself, or, when it has no canonical JSON (NaN, a
        lone surrogate), a faithful text rendering of it.
        """
        if canonical is None:
            text = json.dumps(entry, sort_keys=True, default=repr)
            body: dict[str, Any] = {"reason": reason, "entry_text": text}
            digest = hashlib.sha256(text.encode()).hexdigest()
        else:
            body = {"reason": reason, "entry": entry}
            digest = hashlib.sha256(canonical).hexdigest()
        synthetic_id = "quarantine-" + digest[:32]
        if synthetic_id in self._seen:
            self.duplicates_skipped += 1
            return
        date_create = _obj(entry).get("date_create")
        if not (_is_int(date_create) and self.window_start <= date_create < self.window_end):
            date_create = self.window_start
        raw = canonical_json({"id": synthetic_id, "date_create": date_create, "quarantine": body})
        leaf = leaf_hash(raw)
        self._seen[synthetic_id] = leaf
        self.quarantined += 1
        row: list[Any] = [None] * len(_NAMES)
        row[_EVENT_ID], row[_DATE_CREATE] = synthetic_id, date_create
        row[_RAW_JSON], row[_LEAF_HASH], row[_QUARANTINE] = raw.decode(), leaf, reason
        self._rows.append(tuple(row))

    def _append_event(
        self, entry: dict[str, Any], raw: bytes, leaf: bytes, encode: Callable[[Any], bytes]
    ) -> None:
        # The hot path of ingest: one tuple per event, in EVENT_SCHEMA order; values that
        # are not text yet (ints, bools, objects) are rendered in finish().
        actor = _obj(entry.get("actor"))
        user = _obj(actor.get("user"))
        entity = _obj(entry.get("entity"))
        entity_type = entity.get("type")
        target = _obj(entity.get(entity_type)) if entity_type.__class__ is str else _EMPTY
        context = _obj(entry.get("context"))
        location = _obj(context.get("location"))
        details = entry.get("details")
        name = target.get("name")
        if name is None:
            name = target.get("title")
            if name is None:
                name = target.get("template_name")
        self._rows.append(
            (
                entry["id"],
                entry["date_create"],
                entry["action"],
                actor.get("type"),
                user.get("id"),
                user.get("name"),
                user.get("email"),
                user.get("team"),
                entity_type,
                target.get("id"),
                name,
                location.get("type"),
                location.get("id"),
                location.get("name"),
                location.get("domain"),
                context.get("ip_address"),
                context.get("ua"),
                context.get("session_id"),
                _obj(context.get("app")).get("id"),
                None if details is None else encode(details).decode(),
                raw.decode(),
                leaf,
                None,
            )
        )

    def finish(self) -> NormalizedWindow:
        columns = list(zip(*self._rows, strict=True)) or [() for _ in _NAMES]
        self._rows = []
        arrays: dict[str, Any] = {}
        for i, (name, kind) in enumerate(_COLUMN_KINDS):
            values = columns[i]
            if kind is _TEXT:
                values = [v if v is None or v.__class__ is str else _text(v) for v in values]
            arrays[name] = values
        seconds = pa.array(arrays["date_create"], pa.int64())
        arrays["date_create"] = pc.multiply(seconds, 1000).cast(DATE_TYPE)
        table = pa.Table.from_pydict(arrays, schema=EVENT_SCHEMA)
        table = table.sort_by([("date_create", "ascending"), ("event_id", "ascending")])
        return NormalizedWindow(table, self.quarantined, self.duplicates_skipped)


def normalize_entries(
    entries: Iterable[Any], *, window_start: int, window_end: int
) -> NormalizedWindow:
    """normalize_entries returns the sorted rows of one window's entries (see module doc)."""
    normalizer = WindowNormalizer(window_start, window_end)
    normalizer.add(entries)
    return normalizer.finish()
