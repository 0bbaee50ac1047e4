"""``POST /api/admin.apps.activities.list`` on the emulator, as the Web API method behaves.

Arguments come form-encoded (what slack-sdk sends), as JSON, or in the query string, with
a bearer token. Success bodies carry ``"ok": true``; errors are HTTP 200
``{"ok": false, "error": …}`` (``not_authed``, ``invalid_auth``, ``missing_scope`` with
``needed``/``provided`` (the audit token has only ``auditlogs:read``), ``invalid_cursor``,
``invalid_arguments``), except ``ratelimited``: HTTP 429 with ``Retry-After``, from this
method's own Tier 3 budget. Every filter of the real method is applied (dates in epoch
microseconds, inclusive); ``min_log_level`` defaults to ``info``, so ``debug`` records are
only returned to a client that asks for them. Cursors are opaque HMAC'd positions
(microsecond and record number) that carry no filters: a client that drops
``min_date_created`` with the cursor pages on past its window. The audit logs' fault kinds
and late arrivals apply, with their own script (``POST /_emulator/activities/faults``).

Activities are kept as the exact bytes served: generated ones are rendered once, replayed
ones (``--activities-file``, ``POST /_emulator/activities``) are served verbatim.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import random
import re
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.slack import emulator as audit_emulator
from audit_pipeline.slack.activities_generator import MICROS, generate_activity_hour

if TYPE_CHECKING:
    from audit_pipeline.slack.emulator import Emulator

WEB_API_PREFIX = "/api/"
METHOD = "admin.apps.activities.list"
ADMIN_PATH = audit_emulator.ADMIN_PREFIX + "activities"
SCOPE = "admin.app_activities:read"
DEFAULT_ACTIVITIES_TOKEN = "xoxp-emulator-activities-token"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
HOUR = 3600
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
COMPONENT_TYPES = ("events_api", "workflows", "functions", "tables")
SOURCES = ("slack", "developer")
_STRING_FILTERS = ("app_id", "team_id", "component_id", "log_event_type", "trace_id")
_ARGS = frozenset(
    {
        *_STRING_FILTERS,
        "component_type",
        "min_log_level",
        "source",
        "min_date_created",
        "max_date_created",
        "sort_direction",
        "cursor",
        "limit",
    }
)
_DIGITS = re.compile(r"[0-9]{1,19}")
_CURSOR = re.compile(rb"(a|d):([0-9]{1,19}):([0-9]{1,12})")


@dataclass(frozen=True, slots=True)
class _Activity:
    created: int
    number: int  # arrival order: the tie-break inside one microsecond
    blob: bytes
    fields: dict[str, Any]
    late: bool


def activity_problem(obj: Any) -> str | None:
    """activity_problem says why an object cannot be served as an activity, if it cannot."""
    if not isinstance(obj, dict):
        return f"an activity must be a JSON object, got {type(obj).__name__}"
    created = obj.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        return "activity 'created' must be non-negative int epoch microseconds"
    return None


def parse_activity_lines(data: bytes, where: str) -> list[tuple[bytes, dict]]:
    """parse_activity_lines reads JSONL, keeping each line's exact bytes (newline removed)."""
    out = []
    for lineno, line in enumerate(data.split(b"\n"), 1):
        blob = line.removesuffix(b"\r")
        if not blob.strip():
            continue
        try:
            # Placed by its fields even when its bytes are not UTF-8: served verbatim.
            obj = json.loads(blob.decode("utf-8", errors="replace"))
        except ValueError as exc:
            raise ConfigurationError(f"{where}:{lineno}: not valid JSON: {exc}") from None
        problem = activity_problem(obj)
        if problem:
            raise ConfigurationError(f"{where}:{lineno}: {problem}")
        out.append((blob, obj))
    return out


def _level_rank(level: Any) -> int:
    return LOG_LEVELS.index(level) if level in LOG_LEVELS else LOG_LEVELS.index("info")


class _ActivityCursors:
    """base64(direction ":" microsecond ":" number || HMAC prefix): opaque, unforgeable."""

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def encode(self, direction: str, created: int, number: int) -> str:
        body = b"%s:%d:%d" % (direction[0].encode(), created, number)
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(body + mac).decode("ascii")

    def decode(self, cursor: str) -> tuple[str, int, int] | None:
        try:
            raw = base64.urlsafe_b64decode(cursor.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        body, mac = raw[:-12], raw[-12:]
        want = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        match = _CURSOR.fullmatch(body)
        if len(raw) <= 12 or not hmac.compare_digest(mac, want) or match is None:
            return None
        return match.group(1).decode(), int(match.group(2)), int(match.group(3))


def _web_error(error: str, status: int = 200, **extra: Any) -> audit_emulator._Reply:
    doc = {"ok": False, "error": error, **extra}
    return audit_emulator._Reply(status, json.dumps(doc, separators=(",", ":")).encode())


class _BadArguments(Exception):
    pass


class ActivitiesEndpoint:
    """The method's state: stored activities by hour, its budget, cursors and faults.

    Called from the emulator's server threads under the emulator's store lock.
    """

    def __init__(self, emulator: Emulator) -> None:
        config = emulator.config
        if config.workflow_runs_per_hour < 0 or config.activities_rate_limit_per_min < 0:
            raise ConfigurationError("emulator workflow runs and activities rate must be >= 0")
        if not config.activities_token or any(c.isspace() for c in config.activities_token):
            raise ConfigurationError("emulator activities token must be non-empty, no spaces")
        self.emulator = emulator
        self.config = config
        self.lock = emulator._store.lock
        self.hours: dict[int, list[_Activity]] = {}
        self.generated: set[int] = set()
        self.first_read: dict[int, float] = {}
        # Hours whose list is in (created, number) order; an insert may break the order.
        self.ordered: set[int] = set()
        self.numbers = 0
        self.cursors = _ActivityCursors()
        self.limiter = (
            audit_emulator._TokenBucket(
                config.activities_rate_limit_per_min, config.burst, config.clock
            )
            if config.activities_rate_limit_per_min
            else None
        )
        self.fault_rng = random.Random(f"audit-pipeline/activities/faults/{config.seed}")
        self.scripted: deque[str] = deque()
        self.stats: Counter[str] = Counter()
        self.late_rng = random.Random(f"audit-pipeline/activities/late/{config.seed}")
        if config.activities_file is not None:
            path = Path(config.activities_file)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read activities file {path}: {exc.strerror}"
                ) from None
            self.add(parse_activity_lines(data, str(path)))

    # -- store ---------------------------------------------------------------------------

    def add(self, items: Iterable[tuple[bytes, dict]], *, late: bool = False) -> int:
        """add stores activities verbatim (``late``: hidden until ``late_delay`` after their
        hour is first read)."""
        count = 0
        with self.lock:
            for blob, obj in items:
                self._insert(blob, obj, late and self.config.late_delay > 0)
                count += 1
        return count

    def _insert(self, blob: bytes, obj: dict, late: bool) -> None:
        created = obj["created"]
        fields = {k: obj.get(k) for k in (*_STRING_FILTERS, "component_type", "source", "level")}
        fields["log_event_type"] = obj.get("event_type")
        self.numbers += 1
        hour = created // MICROS // HOUR * HOUR
        self.hours.setdefault(hour, []).append(_Activity(created, self.numbers, blob, fields, late))
        self.ordered.discard(hour)

    def _in_order(self, hour: int) -> list[_Activity]:
        """The hour's activities oldest first, sorted once after the last insert, so that a
        page costs what it returns rather than a scan of the whole hour."""
        items = self.hours[hour]
        if hour not in self.ordered:
            items.sort(key=_position)
            self.ordered.add(hour)
        return items

    def _generate(self, hour: int) -> None:
        if hour in self.generated or not self.config.workflow_runs_per_hour:
            return
        self.generated.add(hour)
        if not self.emulator.start_time <= hour < self.emulator.end_time:
            return
        late_rng = random.Random(f"audit-pipeline/activities/late/{self.config.seed}/{hour}")
        for activity in generate_activity_hour(
            self.config.seed, hour, self.config.workflow_runs_per_hour
        ):
            late = self.config.late_delay > 0 and late_rng.random() < self.config.late_fraction
            self._insert(audit_emulator.render_entry(activity), activity, late)

    def all_activities(self) -> list[bytes]:
        """all_activities returns every servable activity's bytes, oldest first (generating
        the whole range): the ground truth a complete collector ends up with."""
        with self.lock:
            for hour in range(self.emulator.start_time, self.emulator.end_time, HOUR):
                self._generate(hour)
            rows = sorted(
                (a for items in self.hours.values() for a in items),
                key=lambda a: (a.created, a.number),
            )
            return [a.blob for a in rows]

    # -- requests ------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, authorization: str | None, body: bytes
    ) -> audit_emulator._Reply:
        if path.startswith(ADMIN_PATH):
            return self._admin(method, path, query, authorization, body)
        if path != WEB_API_PREFIX + METHOD:
            return _web_error("unknown_method", 404)
        with self.lock:
            self.stats["requests"] += 1
        token = _bearer(authorization)
        if token is None:
            return _web_error("not_authed")
        if hmac.compare_digest(token.encode(), self.config.token.encode()):
            return _web_error("missing_scope", needed=SCOPE, provided="auditlogs:read")
        if not hmac.compare_digest(token.encode(), self.config.activities_token.encode()):
            return _web_error("invalid_auth")
        if method not in ("POST", "GET"):
            return _web_error("method_not_allowed", 405)
        with self.lock:
            fault = self._next_fault()
            if fault == "ok":
                fault = None
            if fault is not None:
                self.stats[f"fault_{fault}"] += 1
        if fault == "slow":
            self.emulator._stopping.wait(self.config.slow_seconds)
        elif fault is not None and fault not in ("truncated", "truncated_json"):
            return self._fault_reply(fault)
        try:
            args = _parse_args(query, body)
        except _BadArguments as bad:
            return _web_error(
                "invalid_arguments", response_metadata={"messages": [f"[ERROR] {bad}"]}
            )
        with self.lock:
            if self.limiter is not None and fault is None:
                wait = self.limiter.take()
                if wait is not None:
                    self.stats["rate_limited"] += 1
                    reply = _web_error("ratelimited", 429)
                    reply.headers = (("Retry-After", str(wait)),)
                    return reply
            reply = self._page(args, commit=fault is None)
        if fault is not None:
            reply.delivery = fault
        return reply

    def _next_fault(self) -> str | None:
        if self.scripted:
            return self.scripted.popleft()
        rate = self.config.fault_rate
        if rate and self.fault_rng.random() < rate:
            kinds, weights = zip(*audit_emulator._RANDOM_FAULT_WEIGHTS, strict=True)
            kind = self.fault_rng.choices(kinds, weights)[0]
            if kind == "429_storm":
                self.scripted.extend(["429"] * (self.config.storm_length - 1))
                return "429"
            return kind
        return None

    def _fault_reply(self, fault: str) -> audit_emulator._Reply:
        if fault == "429":
            with self.lock:
                self.stats["rate_limited"] += 1
            reply = _web_error("ratelimited", 429)
            reply.headers = (("Retry-After", "1"),)
            return reply
        if fault == "invalid_cursor":
            return _web_error("invalid_cursor")
        return self.emulator._fault_reply(fault)

    def _page(self, args: dict[str, Any], *, commit: bool) -> audit_emulator._Reply:
        """One page; runs under the lock."""
        now = self.config.clock()
        lo = args.get("min_date_created", 0)
        hi = min(args.get("max_date_created", 1 << 62), int(now * MICROS))
        direction = args.get("sort_direction", "desc")
        position = None
        if "cursor" in args:
            decoded = self.cursors.decode(args["cursor"])
            if decoded is None or decoded[0] != direction[0]:
                return _web_error("invalid_cursor")
            position = (decoded[1], decoded[2])
        first = max(lo // MICROS // HOUR * HOUR, self.emulator.start_time - HOUR)
        last = min(hi // MICROS // HOUR * HOUR, self.emulator.end_time)
        for hour in range(first, last + HOUR, HOUR):
            self._generate(hour)
        lo_hour, hi_hour = lo // MICROS // HOUR * HOUR, hi // MICROS // HOUR * HOUR
        hours = [h for h in self.hours if lo_hour <= h <= hi_hour]
        if commit:
            for hour in hours:  # late arrivals count from the first read of their hour
                self.first_read.setdefault(hour, now)
        descending = direction == "desc"
        limit = args.get("limit", DEFAULT_LIMIT)
        page: list[_Activity] = []
        for hour in sorted(hours, reverse=descending):
            items = self._in_order(hour)
            if descending:
                end = (
                    len(items) if position is None else bisect_left(items, position, key=_position)
                )
                walk = (items[i] for i in range(end - 1, -1, -1))
            else:
                start = 0 if position is None else bisect_right(items, position, key=_position)
                walk = (items[i] for i in range(start, len(items)))
            for a in walk:
                if lo <= a.created <= hi and self._visible(a, hour, now) and _matches(a, args):
                    page.append(a)
                    if len(page) > limit:
                        break
            if len(page) > limit:
                break
        more = len(page) > limit
        page = page[:limit]
        next_cursor = ""
        if more:
            tail = page[-1]
            next_cursor = self.cursors.encode(direction, tail.created, tail.number)
        if commit:
            self.stats["pages"] += 1
            self.stats["activities_served"] += len(page)
        body = b"".join(
            [
                b'{"ok":true,"activities":[',
                b",".join(a.blob for a in page),
                b'],"response_metadata":{"next_cursor":"%s"}}' % next_cursor.encode(),
            ]
        )
        return audit_emulator._Reply(200, body)

    def _visible(self, activity: _Activity, hour: int, now: float) -> bool:
        if not activity.late:
            return True
        first = self.first_read.get(hour)
        return first is not None and now >= first + self.config.late_delay

    def _admin(
        self, method: str, path: str, query: str, authorization: str | None, body: bytes
    ) -> audit_emulator._Reply:
        if not self.emulator._authorized(authorization):
            return audit_emulator._Reply(401)
        route = (method, path[len(ADMIN_PATH) :].rstrip("/"))
        if route == ("GET", ""):
            return audit_emulator._Reply(200, b"".join(b + b"\n" for b in self.all_activities()))
        if route == ("GET", "/stats"):
            with self.lock:
                return audit_emulator._json_reply(dict(self.stats))
        if route == ("POST", ""):
            late = parse_qs(query).get("late", ["0"])[0].lower() in ("1", "true", "yes")
            try:
                added = self.add(parse_activity_lines(body, "body"), late=late)
            except ConfigurationError as exc:
                return audit_emulator._error(400, "invalid_activities", str(exc))
            return audit_emulator._json_reply({"ok": True, "added": added})
        if route == ("POST", "/faults"):
            try:
                faults = json.loads(body or b"[]")
                if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
                    raise ValueError("body must be a JSON list of fault names")
                self.script_faults(faults)
            except (ValueError, ConfigurationError) as exc:
                return audit_emulator._error(400, "invalid_faults", str(exc))
            return audit_emulator._json_reply({"ok": True, "queued": len(faults)})
        return audit_emulator._error(404, "bad_endpoint", f"no such admin endpoint: {path}")

    def script_faults(self, faults: Iterable[str]) -> None:
        """script_faults sets what the next calls of the method get (kinds as for /logs)."""
        kinds = list(faults)
        for kind in kinds:
            if kind not in audit_emulator.FAULT_KINDS:
                raise ConfigurationError(f"unknown fault {kind!r}")
        with self.lock:
            self.scripted.clear()
            for kind in kinds:
                self.scripted.extend(
                    ["429"] * self.config.storm_length if kind == "429_storm" else [kind]
                )


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _parse_args(query: str, body: bytes) -> dict[str, Any]:
    """_parse_args merges query-string and body arguments (form-encoded or JSON)."""
    raw: dict[str, Any] = {}
    try:
        for name, values in parse_qs(query, keep_blank_values=True, errors="strict").items():
            raw[name] = values[-1]
        text = body.decode("utf-8").strip()
        if text.startswith("{"):
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise _BadArguments("the JSON body must be an object")
            raw.update(doc)
        elif text:
            for name, values in parse_qs(text, keep_blank_values=True, errors="strict").items():
                raw[name] = values[-1]
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadArguments(f"arguments are not valid form or JSON: {exc}") from None
    args: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _ARGS or value is None or value == "":
            continue  # the Web API ignores arguments it does not know, and empty ones
        if name in ("min_date_created", "max_date_created", "limit"):
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, str) and _DIGITS.fullmatch(value))
            ):
                raise _BadArguments(f"{name} must be an integer, got {str(value)[:40]!r}")
            args[name] = int(value)
            continue
        if not isinstance(value, str):
            raise _BadArguments(f"{name} must be a string")
        choices = {
            "min_log_level": LOG_LEVELS,
            "component_type": COMPONENT_TYPES,
            "source": SOURCES,
            "sort_direction": ("asc", "desc"),
        }.get(name)
        if choices is not None and value not in choices:
            raise _BadArguments(f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}")
        args[name] = value
    if not 1 <= args.get("limit", DEFAULT_LIMIT) <= MAX_LIMIT:
        raise _BadArguments(f"limit must be between 1 and {MAX_LIMIT}")
    if args.get("min_date_created", 0) > args.get("max_date_created", 1 << 62):
        raise _BadArguments("min_date_created is after max_date_created")
    return args


def _position(activity: _Activity) -> tuple[int, int]:
    return activity.created, activity.number


def _matches(activity: _Activity, args: dict[str, Any]) -> bool:
    fields = activity.fields
    for name in (*_STRING_FILTERS, "component_type", "source"):
        if name in args and fields.get(name) != args[name]:
            return False
    minimum = args.get("min_log_level", "info")
    return _level_rank(fields.get("level")) >= LOG_LEVELS.index(minimum)
