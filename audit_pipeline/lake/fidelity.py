"""Judge one entry's exact bytes: faithful canonical JSON, or a quarantine reason.

An entry is stored as canonical JSON (its Merkle leaf data) only when that JSON means
exactly what the API sent: parsing then re-encoding must lose nothing. Anything a parser
would silently change is a reason to quarantine the entry with its original bytes:

- bytes that are not UTF-8, ``\\u`` escapes that leave a lone surrogate;
- duplicate object keys (a parser keeps one value and drops the other);
- ``NaN``/``Infinity``, numbers beyond a double's range (``1e400``, and ``1e-400``, which
  would become ``0.0``), and decimals a double cannot hold exactly as written
  (``0.1000000000000000055511151231257827``, ``12345678901234567890.5``);
- nesting deeper than :data:`MAX_DEPTH`;
- anything that is not a JSON object, or lacks a usable required field (e.g. an empty
  ``id`` or ``action``).

Integers are kept exactly up to Python's conversion limit (4,300 digits by default; longer
ones are quarantined with that reason). A float is faithful when its shortest
round-trip spelling has the same decimal value as the text sent (``1.50`` is ``1.5``).

Source-agnostic: the required fields and their types are a parameter, so the app
activities source uses the same judge. Nothing here raises for any input.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from audit_pipeline.ledger.canonical import canonical_json, canonical_json_parsed
from audit_pipeline.ledger.errors import MalformedError

# orjson, which writes canonical JSON, refuses to nest deeper than 254 levels: entries are
# held to well below that (real Slack entries are about 5 deep).
MAX_DEPTH = 128

REVISION_PREFIX = "revision-"

AUDIT_ENTRY_FIELDS: Mapping[str, type] = {"id": str, "date_create": int, "action": str}
"""Required fields of an Audit Logs API entry and their JSON types (strings non-empty)."""


@dataclass(frozen=True, slots=True)
class Faithful:
    """An entry whose canonical JSON is exactly what was sent."""

    entry: dict[str, Any]
    canonical: bytes


@dataclass(frozen=True, slots=True)
class Unfaithful:
    """An entry that must be quarantined; ``entry`` is the parsed object when there is one."""

    reason: str
    entry: Any = None


class _Reject(Exception):
    """Internal: the first reason an entry cannot be stored faithfully."""


def judge_entry(
    data: bytes, required: Mapping[str, type] = AUDIT_ENTRY_FIELDS
) -> Faithful | Unfaithful:
    """judge_entry returns the faithful canonical form of ``data``, or why there is none.

    ``required`` maps each field that must be present to its type: ``str`` means a
    non-empty string, ``int`` an integer (never a bool).
    """
    data = bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Unfaithful(f"invalid UTF-8 at byte {exc.start} of the entry")
    if len(text) - len(text.lstrip("\ufeff")):
        return Unfaithful("entry starts with a byte order mark")
    try:
        value, canonical = _parsed(data, text)
    except _Reject as exc:
        return Unfaithful(str(exc))
    except RecursionError:
        return Unfaithful(f"nested more than {MAX_DEPTH} levels deep")
    except json.JSONDecodeError as exc:
        return Unfaithful(f"invalid JSON: {exc.msg} at byte {_byte_offset(text, exc.pos)}")
    except ValueError as exc:
        if "digits" in str(exc):  # Python converts at most sys.get_int_max_str_digits()
            limit = sys.get_int_max_str_digits()
            return Unfaithful(f"integer of more than {limit} digits (cannot be kept exactly)")
        return Unfaithful(f"invalid JSON: {exc}")
    if not isinstance(value, dict):
        return Unfaithful(f"entry is a JSON {_json_type(value)}, not an object")
    # Depth needs that many brackets: counting them (in C) spares the walk almost always.
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        return Unfaithful(f"nested more than {MAX_DEPTH} levels deep", value)
    try:
        # The hooks above refused NaN/Infinity and every float a double cannot hold, so the
        # value is plain JSON: the encoder's own walk over it is not needed.
        canonical = canonical or canonical_json_parsed(value)
    except MalformedError as exc:
        reason = str(exc)
        if "surrogate" in reason:
            reason = "invalid Unicode: a string holds a lone surrogate"
        return Unfaithful(f"no canonical JSON: {reason}", value)
    for name, kind in required.items():
        field = value.get(name)
        if field.__class__ is kind and (kind is not str or field.strip()):
            continue  # the usual case, checked without a call
        problem = _field_problem(value, name, kind)
        if problem:
            return Unfaithful(problem, value)
    return Faithful(value, canonical)


def _parsed(data: bytes, text: str) -> tuple[Any, bytes | None]:
    """The value of ``text`` (the entry ``data``, decoded), and its canonical JSON when that
    was needed to find it; raises as ``_DECODER`` does, for the same first reason.

    Usually parsed without the per-object hook (the C scanner builds each dict itself,
    keeping the last of a repeated key), then checked for a repeated key by counting colons:
    outside strings one follows each key, and canonical JSON writes every string's colons
    as themselves, so with no colon written as an escape in ``data`` the two hold as many
    colons exactly when no member was lost. Anything else (a repeat, an escape, any error,
    a value with no canonical JSON) is parsed again with the hook, which names the problem.
    """
    if _ESCAPED_COLON not in data:
        try:
            value = _PLAIN_DECODER.decode(text)
            canonical = canonical_json_parsed(value)
        except (_Reject, ValueError, RecursionError, MalformedError):
            pass
        else:
            if data.count(b":") == canonical.count(b":"):
                return value, canonical
    return _DECODER.decode(text), None


def quarantine_leaf(
    data: bytes, reason: str, date_create: int, *, prefix: str = "quarantine-"
) -> tuple[str, bytes]:
    """quarantine_leaf returns the synthetic id and leaf data that cover ``data`` exactly.

    The leaf is ``{"date_create": …, "id": "quarantine-<first 32 hex of SHA-256(data)>",
    "quarantine": {"entry_base64": <data, base64>, "reason": …}}`` in canonical JSON: the
    original bytes, whatever they are, inside a document the ledger can read.
    """
    event_id = prefix + hashlib.sha256(data).hexdigest()[:32]
    body = {"entry_base64": base64.b64encode(data).decode("ascii"), "reason": reason}
    leaf = canonical_json({"date_create": date_create, "id": event_id, "quarantine": body})
    return event_id, leaf


def revision_leaf(entry: dict[str, Any], of_id: str, of_leaf_hash: bytes) -> tuple[str, bytes]:
    """revision_leaf returns the synthetic id and leaf data of a changed entry.

    An id already committed that comes back with different content is kept as a revision:
    ``{"date_create": …, "id": "revision-<first 32 hex of SHA-256(entry's canonical JSON)>",
    "revision": {"entry": <the new entry>, "of_id": <the committed id>,
    "of_leaf_hash": <hex leaf hash of the committed version>}}``.
    """
    canonical = canonical_json(entry)
    event_id = REVISION_PREFIX + hashlib.sha256(canonical).hexdigest()[:32]
    body = {"entry": entry, "of_id": of_id, "of_leaf_hash": of_leaf_hash.hex()}
    leaf = canonical_json({"date_create": entry["date_create"], "id": event_id, "revision": body})
    return event_id, leaf


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(f"duplicate key {key!r} in an object")
            seen.add(key)
    return obj


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Reject(f"number {_short(text)} is out of range for a double")
    try:
        exact = Decimal(text)
    except InvalidOperation:  # pragma: no cover - json only hands over valid numbers
        raise _Reject(f"number {_short(text)} is not a decimal") from None
    if Decimal(repr(value)) != exact:
        if value == 0.0 and exact != 0:
            raise _Reject(f"number {_short(text)} is out of range for a double (underflow)")
        raise _Reject(f"number {_short(text)} loses precision as a double ({value!r})")
    return value


def _constant(name: str) -> Any:
    raise _Reject(f"non-finite number {name}")


# One decoder for every entry (json.loads would build one per call when given hooks).
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_float=_float, parse_constant=_constant)
# The same without the per-object hook (see _parsed).
_PLAIN_DECODER = json.JSONDecoder(parse_float=_float, parse_constant=_constant)
_ESCAPED_COLON = b"\\u003"  # \u003a or \u003A (and, harmlessly, \u0030 to \u003f)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item if isinstance(v, dict | list))
    return False


def _field_problem(entry: dict[str, Any], name: str, kind: type) -> str | None:
    if name not in entry:
        return f"no {name}"
    value = entry[name]
    if kind is str:
        if not isinstance(value, str):
            return f"{name} is a JSON {_json_type(value)}, not a string"
        if not value.strip():
            return f"{name} is an empty string" if not value else f"{name} is only whitespace"
    elif kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{name} is a JSON {_json_type(value)}, not an integer"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _byte_offset(text: str, pos: int) -> int:
    return len(text[:pos].encode("utf-8", "surrogatepass"))
