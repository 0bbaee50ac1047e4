"""A local stand-in for Slack's Audit Logs API (``/audit/v1/``) that behaves like the live one.

It serves ``GET logs``, ``GET schemas`` and ``GET actions`` over real HTTP so the unmodified
``slack_sdk.audit_logs.AuditLogsClient(base_url=emulator.base_url)`` works against it, with the
behaviours a collector must survive:

- entries newest first; ``oldest``/``latest`` inclusive; ``limit`` capped at 9,999; the
  entries of one ``date_create`` second never split across pages (a page may exceed ``limit``);
- ``cursor``: opaque, HMAC-protected base64 (often ending in ``=``) holding a position and
  *not* the filters, so a client that drops ``oldest`` on page two pages on through all
  history; tampered or garbage cursors get ``invalid_cursor``; the end of data is
  alternately ``"next_cursor": ""`` and no ``response_metadata`` at all;
- ``logs`` needs ``Authorization: Bearer <token>`` (401 with an empty body otherwise);
  ``schemas``/``actions`` need none; success bodies carry no ``ok``; errors are
  ``{"ok": false, "error": ...}`` with a 4xx status, never a 500 with a trace;
- an org-wide token bucket (429, integer ``Retry-After``, ``rate_limited``);
- faults, random (seeded, ``fault_rate``) or scripted: 5xx, connection resets (RST),
  slow responses, truncated bodies, 429 storms, spurious ``invalid_cursor``;
- late arrivals: with ``late_delay`` > 0, some entries stay hidden until ``late_delay``
  seconds after the first response whose window covered their second, so a collector that
  never re-reads a past hour loses them; entries whose ``date_create`` is after the clock's
  now are never served.

Entries come from the seeded generator (rendered to JSON bytes once per hour, on first use,
in a bounded cache) or from an events file, and more can be added while it runs, through
``add_entries`` or ``POST /_emulator/entries``. The admin paths under ``/_emulator/`` need the
same bearer token and never collide with the API.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import json.encoder
import logging
import operator
import os
import random
import re
import socket
import struct
import threading
import time
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.slack import catalogue
from audit_pipeline.slack.generator import HOUR, generate_hour
from audit_pipeline.slack.page_bytes import PageSyntaxError, split_page

logger = logging.getLogger(__name__)

DEFAULT_TOKEN = "xoxp-emulator-token"
API_PREFIX = "/audit/v1/"
ADMIN_PREFIX = "/_emulator/"
MAX_LIMIT = 9999
MAX_ACTIONS = 30
# Slack keeps no audit data from before March 2018.
HISTORY_START = 1519862400
DEFAULT_RANGE_HOURS = 7 * 24

FAULT_KINDS = (
    "ok",
    "500",
    "502",
    "503",
    "reset",
    "slow",
    "truncated",
    "truncated_json",
    "429",
    "429_storm",
    "invalid_cursor",
)
# Share of each kind among random faults; a storm then queues ``storm_length`` 429s.
_RANDOM_FAULT_WEIGHTS = (
    ("500", 3),
    ("502", 1),
    ("503", 3),
    ("reset", 3),
    ("slow", 1),
    ("truncated", 2),
    ("truncated_json", 1),
    ("429_storm", 2),
)
_LOGS_PARAMS = frozenset({"oldest", "latest", "limit", "action", "actor", "entity", "cursor"})
_DIGITS = re.compile(r"[0-9]{1,12}")
_CURSOR_BODY = re.compile(rb"([0-9]{1,12}):([0-9]{1,9})")
_MAC_BYTES = 13
_MAX_ADMIN_BODY = 512 * 1024 * 1024


def _reject(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


# One reusable C encoder: the per-call set-up of json.dumps costs as much as the encoding.
# No circular-reference check, so it is only used on entries the generator built.
_fast_encode = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _reject, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
)


def render_entry(entry: dict) -> bytes:
    """render_entry returns ``entry`` as the live API writes it: compact, ASCII, ``\\/``.

    Raises ``ValueError``/``TypeError`` for values JSON cannot carry (NaN, sets, objects).
    """
    text = json.dumps(entry, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("/", "\\/").encode("ascii")


def _render_trusted(entry: dict) -> bytes:
    return "".join(_fast_encode(entry, 0)).replace("/", "\\/").encode("ascii")


@dataclass
class EmulatorConfig:
    """EmulatorConfig holds everything that shapes one emulator; times are Unix seconds.

    ``start``/``end`` bound the generated range ``[start, end)`` (hour aligned; default: the
    week up to the end of the clock's current hour). ``events_file`` replaces generated
    entries with the file's. ``rate_limit_per_min=0`` turns the rate limit off.
    ``late_delay=0`` means no late arrivals. ``prerender`` renders the whole range in
    ``start()`` (for benchmarks: serving then never waits on the generator); ``warm`` does
    it in a background thread after ``start()``, newest hours first, up to the cache bound
    (for an emulator in its own process, where that thread uses an otherwise idle core).
    """

    host: str = "127.0.0.1"
    port: int = 0
    token: str = field(default=DEFAULT_TOKEN, repr=False)
    seed: int = 1
    start: int | None = None
    end: int | None = None
    events_per_hour: int = 600
    events_file: Path | None = None
    rate_limit_per_min: int = 50
    burst: int = 5
    late_delay: float = 0.0
    late_fraction: float = 0.02
    fault_rate: float = 0.0
    slow_seconds: float = 2.0
    storm_length: int = 5
    default_limit: int = 100
    cache_entries: int = 1_000_000
    prerender: bool = False
    warm: bool = False
    clock: Callable[[], float] = time.time
    # admin.apps.activities.list (slack/activities_emulator.py): its own token and budget.
    activities_token: str = field(default="xoxp-emulator-activities-token", repr=False)
    workflow_runs_per_hour: int = 0
    activities_file: Path | None = None
    activities_rate_limit_per_min: int = 50

    def validate(self) -> None:
        """validate raises ``ConfigurationError`` naming the first bad field."""

        def bad(name: str, why: str) -> ConfigurationError:
            return ConfigurationError(f"emulator {name} {why}, got {getattr(self, name)!r}")

        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise bad("port", "must be an integer in 0..65535")
        if (
            not isinstance(self.token, str)
            or not self.token
            or any(c.isspace() for c in self.token)
        ):
            raise ConfigurationError("emulator token must be a non-empty string without spaces")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value % HOUR):
                raise bad(name, "must be Unix seconds aligned to a UTC hour")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ConfigurationError(
                f"emulator start ({self.start}) must be before end ({self.end})"
            )
        checks = (
            ("events_per_hour", self.events_per_hour >= 0, "must be >= 0"),
            ("rate_limit_per_min", self.rate_limit_per_min >= 0, "must be >= 0 (0 = off)"),
            ("burst", self.burst >= 1, "must be >= 1"),
            ("late_delay", self.late_delay >= 0, "must be >= 0 seconds"),
            ("late_fraction", 0 <= self.late_fraction <= 1, "must be within [0, 1]"),
            ("fault_rate", 0 <= self.fault_rate <= 1, "must be within [0, 1]"),
            ("slow_seconds", self.slow_seconds >= 0, "must be >= 0"),
            ("storm_length", self.storm_length >= 1, "must be >= 1"),
            ("default_limit", 1 <= self.default_limit <= MAX_LIMIT, f"must be in 1..{MAX_LIMIT}"),
            ("cache_entries", self.cache_entries >= 1, "must be >= 1"),
        )
        for name, ok, why in checks:
            if not ok:
                raise bad(name, why)


# --- entries ----------------------------------------------------------------------------


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"an entry must be a JSON object, got {type(entry).__name__}"
    entry_id = entry.get("id")
    if not isinstance(entry_id, str) or not entry_id:
        return "entry 'id' must be a non-empty string"
    date_create = entry.get("date_create")
    if isinstance(date_create, bool) or not isinstance(date_create, int) or date_create < 0:
        return f"entry {entry_id}: 'date_create' must be non-negative int Unix seconds"
    action = entry.get("action")
    if not isinstance(action, str) or not action:
        return f"entry {entry_id}: 'action' must be a non-empty string"
    return None


def _actor_id(entry: dict) -> str | None:
    actor = entry.get("actor")
    user = actor.get("user") if isinstance(actor, dict) else None
    value = user.get("id") if isinstance(user, dict) else None
    return value if isinstance(value, str) else None


def _entity_id(entry: dict) -> str | None:
    entity = entry.get("entity")
    if not isinstance(entity, dict):
        return None
    obj = entity.get(entity.get("type")) if isinstance(entity.get("type"), str) else None
    value = obj.get("id") if isinstance(obj, dict) else None
    if value is None or isinstance(value, bool):
        return None
    return str(value)


# (date_create, bytes, action, actor id, entity id, entry id, late)
_Row = tuple[int, bytes, str, "str | None", "str | None", str, bool]


def _row(entry: dict, blob: bytes, late: bool) -> _Row:
    return (
        entry["date_create"],
        blob,
        entry["action"],
        _actor_id(entry),
        _entity_id(entry),
        entry["id"],
        late,
    )


class _Bucket:
    """One UTC hour's servable entries, newest first, as parallel lists of plain values."""

    __slots__ = ("actions", "actors", "blobs", "entities", "ids", "late_pos", "secs")

    def __init__(self, rows: list[_Row]):
        rows.sort(key=operator.itemgetter(0))
        rows.reverse()
        self.secs = [r[0] for r in rows]
        self.blobs = [r[1] for r in rows]
        self.actions = [r[2] for r in rows]
        self.actors = [r[3] for r in rows]
        self.entities = [r[4] for r in rows]
        self.ids = [r[5] for r in rows]
        self.late_pos = [i for i, r in enumerate(rows) if r[6]]

    def __len__(self) -> int:
        return len(self.secs)


@dataclass(frozen=True)
class _Filters:
    actions: frozenset[str] | None
    actor: str | None
    entity: str | None

    def __call__(self, bucket: _Bucket, pos: int) -> bool:
        if self.actions is not None and bucket.actions[pos] not in self.actions:
            return False
        if self.actor is not None and bucket.actors[pos] != self.actor:
            return False
        return self.entity is None or bucket.entities[pos] == self.entity


def _load_events_file(path: Path) -> list[bytes]:
    """Reads a replay file as the exact bytes of each entry: JSONL (one entry a line), a
    JSON list, or saved ``{"entries": [...]}`` pages. Entries are not judged: an odd one
    (duplicate keys, ``1e400``, invalid UTF-8, no id) is served as it is, as the live API
    might; only a file whose list structure cannot be followed is refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read events file {path}: {exc.strerror}") from exc
    try:
        return entry_blobs(data)
    except PageSyntaxError as exc:
        raise ConfigurationError(f"{path}: the JSON list cannot be followed: {exc}") from exc


def entry_blobs(data: bytes) -> list[bytes]:
    """entry_blobs cuts JSONL, a JSON list or saved pages into each entry's exact bytes;
    PageSyntaxError when a JSON list's structure cannot be followed."""
    stripped = data.lstrip(b" \t\r\n")
    if stripped.startswith(b"["):
        return split_page(b'{"entries":' + stripped + b"}", "entries").items
    blobs: list[bytes] = []
    for line in data.split(b"\n"):
        line = line.strip(b" \t\r")
        if not line:
            continue
        blobs.extend(_page_items(line) or [line])
    return blobs


def _page_items(line: bytes) -> list[bytes] | None:
    """The entries of a line that is a saved page (``{"entries": [...]}``, no ``id``)."""
    if not line.startswith(b"{") or b'"entries"' not in line:
        return None
    try:
        page = split_page(line, "entries")
    except PageSyntaxError:
        return None
    if not page.has_list or "id" in page.members:
        return None
    return page.items


_DATE_CREATE_BYTES = re.compile(rb'"date_create"\s*:\s*([0-9]{1,12})(?![0-9.eE])')


def _lenient(blob: bytes) -> Any:
    """What a forgiving parser makes of an entry's bytes (None if nothing)."""
    try:
        return json.loads(blob.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None


def raw_rows(blobs: list[bytes], *, late: bool = False) -> list[_Row]:
    """raw_rows makes servable rows of entries given as exact bytes, served verbatim.

    Each entry is filed under its ``date_create`` (read leniently, or found in its bytes);
    an entry with none at all is filed beside the entry before it (the one after it if it
    comes first), as replay files are in time order. Raises ValueError only when no entry
    has a ``date_create``.
    """
    rows: list[_Row | None] = []
    dated: list[int | None] = []
    for index, blob in enumerate(blobs):
        entry = _lenient(blob)
        obj = entry if isinstance(entry, dict) else {}
        date = obj.get("date_create")
        if not (isinstance(date, int) and not isinstance(date, bool) and date >= 0):
            found = _DATE_CREATE_BYTES.search(blob)
            date = int(found.group(1)) if found else None
        dated.append(date)
        action = obj.get("action") if isinstance(obj.get("action"), str) else ""
        entry_id = obj.get("id") if isinstance(obj.get("id"), str) else f"raw-entry-{index}"
        rows.append((0, blob, action, _actor_id(obj), _entity_id(obj), entry_id, late))
    known = [d for d in dated if d is not None]
    if blobs and not known:
        raise ValueError("no entry has a date_create: nothing can be placed in time")
    previous = known[0] if known else 0
    out: list[_Row] = []
    for row, date in zip(rows, dated, strict=True):
        assert row is not None
        previous = date if date is not None else previous
        out.append((previous, *row[1:]))
    return out


def parse_entries_body(body: bytes) -> list[dict]:
    """parse_entries_body reads a JSON list, one JSON object, or JSONL; ValueError if bad
    (invalid UTF-8 and nesting too deep included)."""
    try:
        return _parse_entries_body(body)
    except RecursionError:
        raise ValueError("nested too deeply to parse") from None


def _parse_entries_body(body: bytes) -> list[dict]:
    text = body.decode("utf-8")
    stripped = text.strip()
    if not stripped:
        return []
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError:
        obj = None
        entries = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {lineno}: not valid JSON: {exc.msg}") from exc
    else:
        if isinstance(obj, list):
            entries = obj
        elif isinstance(obj, dict) and "entries" in obj and "id" not in obj:
            entries = obj["entries"]
        else:
            entries = [obj]
    return entries


# --- the store: generated hours plus added entries ---------------------------------------


class _Store:
    """Everything servable, indexed by UTC hour; callers hold ``lock``."""

    def __init__(self, config: EmulatorConfig, gen_start: int, gen_end: int):
        self.config = config
        self.lock = threading.RLock()
        self.gen_start = gen_start
        self.gen_end = gen_end
        self.generates = config.events_file is None and config.events_per_hour > 0
        self.late_enabled = config.late_delay > 0
        self.cache: OrderedDict[int, _Bucket] = OrderedDict()
        self.cached_entries = 0
        self.cache_bound = config.cache_entries
        self.added: dict[int, list[_Row]] = {}
        self.added_count = 0
        self.added_version = 0
        self.building: set[int] = set()
        self.prefetched = 0
        self.built = threading.Condition(self.lock)
        self.extra_actions: set[str] = set()
        self.reveal: dict[str, float] = {}

    # hours

    def has_content(self, hour: int) -> bool:
        return (self.generates and self.gen_start <= hour < self.gen_end) or hour in self.added

    def lowest_hour(self) -> int | None:
        candidates = list(self.added)
        if self.generates:
            candidates.append(self.gen_start)
        return min(candidates) if candidates else None

    def highest_hour(self) -> int | None:
        candidates = list(self.added)
        if self.generates:
            candidates.append(self.gen_end - HOUR)
        return max(candidates) if candidates else None

    def hours_desc(self, lo: int, hi: int) -> Iterator[int]:
        lowest, highest = self.lowest_hour(), self.highest_hour()
        if lowest is None or highest is None or hi < lo:
            return
        hour = min(hi - hi % HOUR, highest)
        floor = max(lo - lo % HOUR, lowest)
        while hour >= floor:
            if self.has_content(hour):
                yield hour
            hour -= HOUR

    def build(self, hour: int, added: Iterable[_Row] | None = None) -> _Bucket:
        """Generates and renders one hour; pure apart from reading ``added`` (pass a copy
        to build without the lock)."""
        rows: list[_Row] = []
        if self.generates and self.gen_start <= hour < self.gen_end:
            generated = generate_hour(
                self.config.seed,
                hour,
                self.config.events_per_hour,
                late_fraction=self.config.late_fraction if self.late_enabled else 0.0,
            )
            late_ids = generated.late_ids
            rows = [_row(e, _render_trusted(e), e["id"] in late_ids) for e in generated]
        rows.extend(self.added.get(hour, ()) if added is None else added)
        return _Bucket(rows)

    def bucket(self, hour: int) -> _Bucket:
        while hour in self.building:
            self.built.wait()  # the prefetcher is on it; waiting releases the lock
        bucket = self.cache.get(hour)
        if bucket is not None:
            self.cache.move_to_end(hour)
            return bucket
        bucket = self.build(hour)
        self.insert(hour, bucket)
        return bucket

    def insert(self, hour: int, bucket: _Bucket) -> None:
        self.cache[hour] = bucket
        self.cached_entries += len(bucket)
        while self.cached_entries > self.cache_bound and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.cached_entries -= len(old)

    def uncached_below(self, hour: int, floor: int, count: int) -> list[int]:
        """The next ``count`` hours with content below ``hour`` (not below ``floor``)."""
        found = []
        for candidate in self.hours_desc(floor, hour - 1):
            if candidate not in self.cache:
                found.append(candidate)
            if len(found) == count or hour - candidate > 48 * HOUR:
                break
        return found

    def prefetch(self, hour: int) -> None:
        """Builds ``hour`` outside the lock, so serving and generating overlap."""
        with self.lock:
            if hour in self.cache or hour in self.building or not self.has_content(hour):
                return
            added = list(self.added.get(hour, ()))
            version = self.added_version
            self.building.add(hour)
        bucket = None
        try:
            bucket = self.build(hour, added)
        finally:
            with self.lock:
                self.building.discard(hour)
                fresh = hour not in self.cache and version == self.added_version
                if bucket is not None and fresh:
                    self.insert(hour, bucket)
                    self.prefetched += 1
                self.built.notify_all()

    def add(self, rows: list[_Row]) -> None:
        for row in rows:
            hour = row[0] - row[0] % HOUR
            self.added.setdefault(hour, []).append(row)
            if row[2]:
                self.extra_actions.add(row[2])
            old = self.cache.pop(hour, None)
            if old is not None:
                self.cached_entries -= len(old)
        self.added_count += len(rows)
        self.added_version += 1

    # paging

    def page(
        self,
        lo: int,
        hi: int,
        limit: int,
        filters: _Filters | None,
        now: float,
        commit: bool,
    ) -> tuple[list[bytes], int | None, int | None]:
        """Returns the page's entry bytes, the next position (None: no more data) and the
        last hour it looked at.

        A position is the newest second the next page may serve. Whole seconds are served,
        so a position never falls inside a same-second group. With ``commit``, late entries
        in the seconds this page covered start their countdown.
        """
        out: list[bytes] = []
        count = 0
        last_sec = hi
        last_hour = None
        for hour in self.hours_desc(lo, hi):
            if count >= limit:
                return out, last_sec - 1, last_hour
            last_hour = hour
            bucket = self.bucket(hour)
            secs = bucket.secs
            i = bisect_left(secs, -hi, key=operator.neg)
            j = bisect_right(secs, -lo, key=operator.neg)
            if i >= j:
                continue
            hidden = self._hidden(bucket, i, j, now)
            blobs = bucket.blobs
            stop = j
            if filters is None and not hidden:
                need = limit - count
                if j - i <= need:
                    out.extend(blobs[i:j])
                    count += j - i
                    last_sec = secs[j - 1]
                else:
                    k = i + need
                    last_sec = secs[k - 1]
                    while k < j and secs[k] == last_sec:
                        k += 1
                    out.extend(blobs[i:k])
                    count += k - i
                    stop = k
            else:
                for pos in range(i, j):
                    sec = secs[pos]
                    if count >= limit and sec != last_sec:
                        stop = pos
                        break
                    if pos in hidden or (filters is not None and not filters(bucket, pos)):
                        continue
                    out.append(blobs[pos])
                    count += 1
                    last_sec = sec
            if commit and self.late_enabled:
                self._start_countdown(bucket, i, stop, now)
            if stop < j:
                return out, last_sec - 1, last_hour
        return out, None, last_hour

    def _hidden(self, bucket: _Bucket, i: int, j: int, now: float) -> set[int]:
        late = bucket.late_pos
        if not late:
            return set()
        hidden = set()
        reveal = self.reveal
        ids = bucket.ids
        for pos in late[bisect_left(late, i) : bisect_left(late, j)]:
            at = reveal.get(ids[pos])
            if at is None or at > now:
                hidden.add(pos)
        return hidden

    def _start_countdown(self, bucket: _Bucket, i: int, stop: int, now: float) -> None:
        late = bucket.late_pos
        reveal_at = now + self.config.late_delay
        for pos in late[bisect_left(late, i) : bisect_left(late, stop)]:
            self.reveal.setdefault(bucket.ids[pos], reveal_at)

    def all_entries(self) -> list[bytes]:
        out: list[dict] = []
        lowest, highest = self.lowest_hour(), self.highest_hour()
        if lowest is None or highest is None:
            return out
        for hour in self.hours_desc(lowest, highest + HOUR - 1):
            bucket = self.cache.get(hour) or self.build(hour)
            out.extend(blob for blob in bucket.blobs)
        return out


# --- cursors ----------------------------------------------------------------------------


class _Cursors:
    """Opaque cursors: base64(position ":" page || HMAC-SHA256 prefix), unforgeable."""

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, position: int, page: int) -> str:
        # The page number varies the length, so the padding (and a trailing "=") varies.
        body = b"%d:%d" % (position, page)
        return base64.b64encode(body + self._mac(body)).decode("ascii")

    def decode(self, cursor: str) -> tuple[int, int] | None:
        try:
            raw = base64.b64decode(cursor.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            return None
        match = _CURSOR_BODY.fullmatch(body)
        if match is None:
            return None
        return int(match.group(1)), int(match.group(2))


# --- rate limit and faults ----------------------------------------------------------------


class _TokenBucket:
    """The org-wide budget: ``per_min`` calls a minute, at most ``burst`` at once."""

    def __init__(self, per_min: int, burst: int, clock: Callable[[], float]):
        self.rate = per_min / 60.0
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def take(self) -> int | None:
        """take spends one call, or returns the whole seconds until one is available."""
        now = self.clock()
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return max(1, int(-(-(1.0 - self.tokens) // self.rate)))


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    # "send" | "reset" | "truncated" | "truncated_json"
    delivery: str = "send"


def _error(status: int, error: str, message: str | None = None, **extra: Any) -> _Reply:
    doc: dict[str, Any] = {"ok": False, "error": error, **extra}
    if message:
        doc["response_metadata"] = {"messages": [f"[ERROR] {message}"]}
    return _Reply(status, json.dumps(doc, separators=(",", ":")).encode())


def _json_reply(doc: Any, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(doc, separators=(",", ":")).encode())


class _BadRequest(Exception):
    def __init__(self, reply: _Reply):
        super().__init__(reply.status)
        self.reply = reply


class _Prefetcher:
    """Builds the hours a pager will ask for next while it is busy with the current page.

    Matters most when the emulator runs in its own process: generation then overlaps the
    client's work instead of adding to it. Requests beyond a few pending hours are dropped.
    """

    def __init__(self, store: _Store):
        self._store = store
        self._queue: deque[int] = deque()
        self._pending: set[int] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def want(self, hours: list[int]) -> None:
        with self._wake:
            for hour in hours:
                if hour not in self._pending and len(self._pending) < 4:
                    self._pending.add(hour)
                    self._queue.append(hour)
            if self._queue:
                if self._thread is None and not self._stopped:
                    self._thread = threading.Thread(
                        target=self._run, name="slack-audit-emulator-prefetch", daemon=True
                    )
                    self._thread.start()
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                hour = self._queue.popleft()
            try:
                self._store.prefetch(hour)
            except Exception:
                logger.exception("prefetching hour %d failed", hour)
            finally:
                with self._wake:
                    self._pending.discard(hour)

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._queue.clear()
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --- the emulator -------------------------------------------------------------------------


class Emulator:
    """Emulator serves the Audit Logs API for one configuration; ``start``/``stop`` it."""

    def __init__(self, config: EmulatorConfig):
        config.validate()
        self.config = config
        now = config.clock()
        end = config.end
        if end is None:
            end = int(now) - int(now) % HOUR + HOUR
            if config.start is not None and config.start >= end:
                raise ConfigurationError(
                    f"emulator start ({config.start}) is in the future; give an end as well"
                )
        start = config.start if config.start is not None else end - DEFAULT_RANGE_HOURS * HOUR
        self.start_time = start
        self.end_time = end
        self._store = _Store(config, start, end)
        self._prefetcher = _Prefetcher(self._store)
        self._cursors = _Cursors()
        self._limiter = (
            _TokenBucket(config.rate_limit_per_min, config.burst, config.clock)
            if config.rate_limit_per_min
            else None
        )
        self._fault_rng = random.Random(f"audit-pipeline/faults/{config.seed}")
        self._scripted: deque[str] = deque()
        self._pending_random: deque[str] = deque()
        self._stats: Counter[str] = Counter()
        self._statuses: Counter[int | str] = Counter()
        self._fault_counts: Counter[str] = Counter()
        self._end_of_data = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._warmer: threading.Thread | None = None
        self._stopping = threading.Event()
        self.base_url: str | None = None
        if config.events_file is not None:
            self.add_raw_entries(_load_events_file(Path(config.events_file)))
        self._activities_hook()

    def _activities_hook(self) -> None:
        """Mounts ``admin.apps.activities.list``; generated workflow runs come with the
        ``workflow_v2_published`` audit entries of their workflows."""
        from audit_pipeline.slack import activities_emulator, activities_generator

        self.activities = activities_emulator.ActivitiesEndpoint(self)
        if self.config.workflow_runs_per_hour and self.config.events_file is None:
            self.add_entries(
                activities_generator.publish_entries(
                    self.config.seed, self.start_time, self.end_time
                )
            )

    @property
    def token(self) -> str:
        return self.config.token

    # lifecycle

    def start(self) -> str:
        """start binds, serves in a daemon thread, and returns ``base_url`` (ends in "/")."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        if self.config.prerender:
            self._prerender()
        try:
            server = _Server((self.config.host, self.config.port), self)
        except OSError as exc:
            where = f"{self.config.host}:{self.config.port}"
            raise ConfigurationError(f"emulator cannot listen on {where}: {exc.strerror}") from exc
        self._server = server
        self._stopping.clear()
        host, port = server.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        self.base_url = f"http://{shown}:{port}{API_PREFIX}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"slack-audit-emulator:{port}",
            daemon=True,
        )
        self._thread.start()
        if self.config.warm:
            self._warmer = threading.Thread(
                target=self._warm, name="slack-audit-emulator-warm", daemon=True
            )
            self._warmer.start()
        return self.base_url

    def stop(self) -> None:
        """stop ends serving, drops open connections and releases the port; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        self._prefetcher.stop()
        if self._warmer is not None:
            self._warmer.join(timeout=5)
            self._warmer = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _warm(self) -> None:
        store = self._store
        with store.lock:
            lowest, highest = store.lowest_hour(), store.highest_hour()
            if lowest is None or highest is None:
                return
            hours = list(store.hours_desc(lowest, highest))
        for hour in hours:
            with store.lock:
                full = store.cached_entries >= store.cache_bound * 0.9
            if full or self._stopping.is_set():
                return
            store.prefetch(hour)

    def _prerender(self) -> None:
        store = self._store
        with store.lock:
            lowest, highest = store.lowest_hour(), store.highest_hour()
            if lowest is None or highest is None:
                return
            store.cache_bound = 1 << 62
            for hour in store.hours_desc(lowest, highest):
                store.bucket(hour)
            store.cache_bound = max(self.config.cache_entries, store.cached_entries)

    # test and admin operations

    def add_entries(self, entries: Iterable[dict], *, late: bool = False) -> int:
        """add_entries makes entries servable from now on and returns how many were added.

        With ``late=True`` (and ``late_delay`` > 0) they arrive late like generated ones.
        Raises ``ConfigurationError`` naming the first bad entry; nothing is added then.
        """
        rows: list[_Row] = []
        for index, entry in enumerate(entries):
            problem = _entry_problem(entry)
            if problem is None:
                try:
                    blob = render_entry(entry)
                except (TypeError, ValueError, RecursionError) as exc:
                    problem = f"entry {entry.get('id')}: not JSON-serializable: {exc}"
            if problem is not None:
                raise ConfigurationError(f"cannot add entry #{index}: {problem}")
            rows.append(_row(entry, blob, late and self.config.late_delay > 0))
        with self._store.lock:
            self._store.add(rows)
        return len(rows)

    def add_raw_entries(self, blobs: Iterable[bytes], *, late: bool = False) -> int:
        """add_raw_entries serves each byte string verbatim as one entry (see ``raw_rows``);
        nothing about an entry is checked, so tests can feed what real APIs sometimes send.
        """
        try:
            rows = raw_rows(list(blobs), late=late and self.config.late_delay > 0)
        except ValueError as exc:
            raise ConfigurationError(f"cannot add raw entries: {exc}") from None
        with self._store.lock:
            self._store.add(rows)
        return len(rows)

    def script_faults(self, faults: Iterable[str]) -> None:
        """script_faults sets what the next ``/logs`` requests get, in order (``[]`` clears).

        Kinds: ok (served normally), 500, 502 (HTML body), 503, reset (TCP RST, no
        response), slow (``slow_seconds`` late), truncated (body cut short of its
        Content-Length), truncated_json (half the JSON, consistent length), 429,
        429_storm (``storm_length`` 429s in a row), invalid_cursor.
        """
        kinds = list(faults)
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ConfigurationError(
                    f"unknown fault {kind!r}; expected one of {', '.join(FAULT_KINDS)}"
                )
        with self._store.lock:
            self._scripted.clear()
            for kind in kinds:
                if kind == "429_storm":
                    self._scripted.extend(["429"] * self.config.storm_length)
                else:
                    self._scripted.append(kind)

    def stats(self) -> dict[str, Any]:
        """stats returns counters: requests, entries served, 429s, faults, statuses, late."""
        with self._store.lock:
            now = self.config.clock()
            reveal = self._store.reveal
            return {
                **{
                    key: self._stats[key]
                    for key in (
                        "requests",
                        "logs_requests",
                        "pages",
                        "entries_served",
                        "rate_limited",
                        "unauthorized",
                        "bad_requests",
                        "schemas_requests",
                        "actions_requests",
                        "admin_requests",
                    )
                },
                "faults": dict(self._fault_counts),
                "statuses": {str(k): v for k, v in self._statuses.items()},
                "faults_queued": len(self._scripted) + len(self._pending_random),
                "entries_added": self._store.added_count,
                "late_countdowns": len(reveal),
                "late_revealed": sum(1 for at in reveal.values() if at <= now),
                "cached_hours": len(self._store.cache),
                "cached_entries": self._store.cached_entries,
                "prefetched_hours": self._store.prefetched,
            }

    def entries(self) -> list[dict]:
        """entries returns every entry this emulator can ever serve, newest first.

        That includes entries still hidden as late arrivals or dated after the clock's now:
        the ground truth a complete collector must end up with.
        """
        with self._store.lock:
            blobs = self._store.all_entries()
        return [e for e in map(_lenient, blobs) if isinstance(e, dict)]

    def entry_bytes(self) -> list[bytes]:
        """entry_bytes returns every servable entry's exact bytes, newest first (odd entries
        that ``entries`` cannot show as objects included)."""
        with self._store.lock:
            return self._store.all_entries()

    # request handling (called from server threads)

    def _count(self, key: str, n: int = 1) -> None:
        self._stats[key] += n

    def handle(self, method: str, target: str, authorization: str | None, body: bytes) -> _Reply:
        parts = urlsplit(target)
        path = parts.path
        with self._store.lock:
            self._count("requests")
        if path.startswith(("/api/", ADMIN_PREFIX + "activities")):
            reply = self.activities.handle(method, path, parts.query, authorization, body)
        elif path.startswith(ADMIN_PREFIX):
            reply = self._admin(method, path, parts.query, authorization, body)
        elif path == API_PREFIX + "logs":
            reply = self._logs(method, parts.query, authorization)
        elif path in (API_PREFIX + "schemas", API_PREFIX + "actions"):
            name = path.rsplit("/", 1)[1]
            if method != "GET":
                reply = _error(405, "method_not_allowed")
            else:
                with self._store.lock:
                    self._count(f"{name}_requests")
                payload = (
                    catalogue.schemas_body() if name == "schemas" else catalogue.actions_body()
                )
                reply = _Reply(200, payload)
        else:
            reply = _error(404, "bad_endpoint", f"no such endpoint: {path}")
        with self._store.lock:
            self._statuses["reset" if reply.delivery == "reset" else reply.status] += 1
        return reply

    def _authorized(self, authorization: str | None) -> bool:
        expected = f"Bearer {self.config.token}"
        return authorization is not None and hmac.compare_digest(
            authorization.strip().encode("utf-8", "replace"), expected.encode("utf-8")
        )

    def _next_fault(self) -> str | None:
        if self._scripted:
            return self._scripted.popleft()
        if self._pending_random:
            return self._pending_random.popleft()
        rate = self.config.fault_rate
        if rate and self._fault_rng.random() < rate:
            kinds, weights = zip(*_RANDOM_FAULT_WEIGHTS, strict=True)
            kind = self._fault_rng.choices(kinds, weights)[0]
            if kind == "429_storm":
                self._pending_random.extend(["429"] * (self.config.storm_length - 1))
                return "429"
            return kind
        return None

    def _logs(self, method: str, query: str, authorization: str | None) -> _Reply:
        store = self._store
        if not self._authorized(authorization):
            with store.lock:
                self._count("unauthorized")
            return _Reply(401)
        if method != "GET":
            return _error(405, "method_not_allowed")
        with store.lock:
            self._count("logs_requests")
            fault = self._next_fault()
            if fault == "ok":
                fault = None
            if fault is not None:
                self._fault_counts[fault] += 1
        if fault == "slow":
            self._stopping.wait(self.config.slow_seconds)
        elif fault in ("500", "502", "503", "429", "invalid_cursor", "reset"):
            return self._fault_reply(fault)
        with store.lock:
            if self._limiter is not None and fault is None:
                wait = self._limiter.take()
                if wait is not None:
                    self._count("rate_limited")
                    reply = _error(429, "rate_limited")
                    reply.headers = (("Retry-After", str(wait)),)
                    return reply
            commit = fault not in ("truncated", "truncated_json")
            try:
                reply = self._serve_logs(query, commit)
            except _BadRequest as bad:
                self._count("bad_requests")
                return bad.reply
        if not commit:
            reply.delivery = fault  # type: ignore[assignment]
        return reply

    def _fault_reply(self, fault: str) -> _Reply:
        if fault == "reset":
            return _Reply(0, delivery="reset")
        if fault == "429":
            with self._store.lock:
                self._count("rate_limited")
            reply = _error(429, "rate_limited")
            reply.headers = (("Retry-After", "1"),)
            return reply
        if fault == "invalid_cursor":
            return _error(400, "invalid_cursor")
        if fault == "502":
            html = (
                b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"
            )
            return _Reply(502, html, (("Content-Type", "text/html"),))
        if fault == "503":
            return _error(503, "service_unavailable")
        return _error(500, "internal_error")

    def _serve_logs(self, query: str, commit: bool) -> _Reply:
        """Builds one page; runs under the store lock."""
        params = self._parse_params(query)
        now = self.config.clock()
        oldest = params.get("oldest")
        latest = params.get("latest")
        if oldest is not None and latest is not None and latest < oldest:
            raise _BadRequest(
                _error(400, "invalid_range", f"latest ({latest}) is before oldest ({oldest})")
            )
        if latest is not None and latest < HISTORY_START:
            raise _BadRequest(_error(400, "invalid_range", "no audit logs exist before March 2018"))
        if oldest is not None and oldest > now:
            raise _BadRequest(_error(400, "invalid_range", f"oldest ({oldest}) is in the future"))
        page = 0
        hi = int(now)
        if latest is not None:
            hi = min(hi, latest)
        cursor = params.get("cursor")
        if cursor:
            decoded = self._cursors.decode(cursor)
            if decoded is None:
                raise _BadRequest(_error(400, "invalid_cursor"))
            position, page = decoded
            hi = min(hi, position)
        lo = oldest if oldest is not None else 0
        limit = params.get("limit", self.config.default_limit)
        filters = None
        if any(params.get(k) is not None for k in ("action", "actor", "entity")):
            filters = _Filters(params.get("action"), params.get("actor"), params.get("entity"))
        blobs, position, last_hour = self._store.page(lo, hi, limit, filters, now, commit)
        if position is not None and position < 0:
            position = None  # the page ended at second 0: nothing older can exist
        if position is not None and last_hour is not None and commit:
            self._prefetcher.want(self._store.uncached_below(last_hour, lo, 2))
        body = [b'{"entries":[', b",".join(blobs), b"]"]
        if position is not None:
            next_cursor = self._cursors.encode(position, page + 1)
            body.append(b',"response_metadata":{"next_cursor":"%s"}' % next_cursor.encode())
        else:
            # Both endings the live API uses, alternating so every client meets both.
            if commit:
                self._end_of_data += 1
            if self._end_of_data % 2:
                body.append(b',"response_metadata":{"next_cursor":""}')
        body.append(b"}")
        if commit:
            self._count("pages")
            self._count("entries_served", len(blobs))
        return _Reply(200, b"".join(body))

    def _parse_params(self, query: str) -> dict[str, Any]:
        def bad(message: str, error: str = "invalid_arguments") -> _BadRequest:
            return _BadRequest(_error(400, error, message))

        try:
            raw = parse_qs(query, keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad(f"query string is not valid UTF-8: {exc}") from exc
        params: dict[str, Any] = {}
        for name, values in raw.items():
            if name not in _LOGS_PARAMS:
                raise bad(f"unknown parameter '{name}'")
            if len(values) > 1:
                raise bad(f"parameter '{name}' given {len(values)} times")
            value = values[0]
            if name in ("oldest", "latest"):
                if not _DIGITS.fullmatch(value):
                    raise bad(f"{name} must be integer Unix seconds, got '{value[:40]}'")
                params[name] = int(value)
            elif name == "limit":
                if not _DIGITS.fullmatch(value):
                    raise bad(f"limit must be a positive integer, got '{value[:40]}'")
                limit = int(value)
                if limit < 1:
                    raise bad(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
                params[name] = min(limit, MAX_LIMIT)
            elif name == "action":
                params[name] = self._parse_actions(value)
            elif name in ("actor", "entity"):
                if not value:
                    raise bad(f"{name} must not be empty")
                params[name] = value
            elif name == "cursor":
                params[name] = value
        return params

    def _parse_actions(self, value: str) -> frozenset[str]:
        names = value.split(",")
        if len(names) > MAX_ACTIONS:
            raise _BadRequest(
                _error(
                    400,
                    "invalid_arguments",
                    f"action takes at most {MAX_ACTIONS} names, got {len(names)}",
                )
            )
        known = catalogue.known_actions()
        extra = self._store.extra_actions
        for name in names:
            if name not in known and name not in extra:
                shown = name[:80] if name else "(empty)"
                raise _BadRequest(_error(400, "invalid_action", f"unknown action '{shown}'"))
        return frozenset(names)

    def _admin(
        self, method: str, path: str, query: str, authorization: str | None, body: bytes
    ) -> _Reply:
        with self._store.lock:
            self._count("admin_requests")
        if not self._authorized(authorization):
            return _Reply(401)
        route = (method, path[len(ADMIN_PREFIX) :].rstrip("/"))
        if route == ("GET", "stats"):
            return _json_reply(self.stats())
        if route == ("GET", "entries"):
            with self._store.lock:
                blobs = self._store.all_entries()
            return _Reply(200, b"".join(blob + b"\n" for blob in blobs))
        if route == ("POST", "entries"):
            flags = parse_qs(query)
            late = flags.get("late", ["0"])[0].lower() in ("1", "true", "yes")
            if flags.get("raw", ["0"])[0].lower() in ("1", "true", "yes"):
                try:
                    added = self.add_raw_entries(entry_blobs(body), late=late)
                except (PageSyntaxError, ConfigurationError) as exc:
                    return _error(400, "invalid_entries", str(exc))
                return _json_reply({"ok": True, "added": added})
            try:
                added = self.add_entries(parse_entries_body(body), late=late)
            except (ValueError, ConfigurationError, RecursionError) as exc:
                return _error(400, "invalid_entries", str(exc))
            return _json_reply({"ok": True, "added": added})
        if route == ("POST", "faults"):
            try:
                faults = json.loads(body or b"[]")
                if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
                    raise ValueError("body must be a JSON list of fault names")
                self.script_faults(faults)
            except RecursionError:
                return _error(400, "invalid_faults", "nested too deeply to parse")
            except (ValueError, ConfigurationError) as exc:
                return _error(400, "invalid_faults", str(exc))
            return _json_reply({"ok": True, "queued": len(faults)})
        if route[1] in ("stats", "entries", "faults"):
            return _error(405, "method_not_allowed")
        return _error(404, "bad_endpoint", f"no such admin endpoint: {path}")


# --- HTTP ---------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def close_connections(self) -> None:
        """Wakes handler threads idling on keep-alive connections so the port is released."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "audit-pipeline-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        if size < 0 or size > _MAX_ADMIN_BODY:
            return None
        return self.rfile.read(size)

    def _handle(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(_error(400, "invalid_arguments", "bad Content-Length"))
            return
        try:
            reply = self.server.emulator.handle(
                method, self.path, self.headers.get("Authorization"), body
            )
        except Exception:
            logger.exception("emulator failed on %s %s", method, self.path.split("?")[0])
            reply = _error(500, "internal_error")
        try:
            self._send(reply)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _send(self, reply: _Reply) -> None:
        if reply.delivery == "reset":
            self._reset()
            return
        body = reply.body
        if reply.delivery == "truncated_json":
            body = body[: len(body) // 2]
        self.send_response(reply.status)
        headers = dict(reply.headers)
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if reply.delivery == "truncated":
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            self.wfile.write(body)

    def _reset(self) -> None:
        """Closes the socket with SO_LINGER 0: the client gets a TCP RST, no response."""
        conn = self.connection
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        # The buffered files hold references to the socket; the RST goes out on the last close.
        conn.close()
        self.rfile.close()
        self.wfile.close()
        self.rfile = _Closed()  # type: ignore[assignment]
        self.wfile = _Closed()  # type: ignore[assignment]


class _Closed:
    """Stands in for the request's files after a reset, so the server's cleanup is a no-op."""

    closed = True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


# --- convenience ------------------------------------------------------------------------


@contextmanager
def running_emulator(**config_fields: Any) -> Iterator[Emulator]:
    """running_emulator starts an emulator on a free loopback port and stops it on exit."""
    emulator = Emulator(EmulatorConfig(**config_fields))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
