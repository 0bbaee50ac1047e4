"""Canonical JSON: the exact bytes that the ledger hashes and signs.

A value has exactly one canonical encoding:

- UTF-8, no byte order mark, no whitespace outside strings, separators ``,`` and ``:``;
- object keys are strings, sorted by Unicode code point, each at most once;
- strings are written as themselves except ``"`` -> ``\\"``, ``\\`` -> ``\\\\``, and the
  control characters below U+0020 (``\\b \\f \\n \\r \\t`` in short form, the others as
  ``\\u00xx`` in lower-case hex); no ``\\/``, no other ``\\u`` escapes;
- integers in plain decimal; ``true``, ``false``, ``null``;
- floats in the shortest form that round-trips, as orjson (ryu) writes them: ``1.5``,
  ``-0.0``, ``1e-7``, ``0.000025``, ``1e+16``; NaN and Infinity do not exist. Manifests
  never contain floats; Slack entries might. Leaves are hashed over the stored bytes, so
  an auditor never needs to re-create a float's spelling to check a proof.

Example: ``{"b": [1, true, null], "a": "é\\n"}`` is the 30 bytes
``{"a":"é\\n","b":[1,true,null]}`` (``é`` is two bytes, ``\\n`` two characters).

When verifying, :func:`parse_canonical` refuses any input that is not already canonical, so
one value can never hide behind two different signed byte strings (reordered keys,
whitespace, escape variants, duplicate keys, a trailing newline).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from audit_pipeline.ledger.errors import MalformedError

_SORTED = orjson.OPT_SORT_KEYS


def canonical_json(obj: Any) -> bytes:
    """canonical_json returns the canonical encoding of a JSON value (dict, list or tuple,
    str, int, float, bool, None); MalformedError names anything that has no encoding."""
    if not _is_plain_json(obj):
        _check_value(obj, "$")
    return _encode(obj)


def canonical_json_parsed(obj: Any) -> bytes:
    """canonical_json_parsed is canonical_json without the walk over the value, for values a
    JSON parser just produced from text that held no ``NaN``/``Infinity`` token: such
    values are plain JSON by construction, and the walk would cost more than encoding.
    """
    return _encode(obj)


def _encode(obj: Any, big_ints_done: bool = False) -> bytes:
    try:
        return orjson.dumps(obj, option=_SORTED)
    except TypeError as e:
        if "64-bit" in str(e) and not big_ints_done:
            # The value may hold something else without an encoding too (a lone surrogate).
            return _encode(_big_ints_as_fragments(obj), big_ints_done=True)
        if "surrogates" in str(e):
            raise MalformedError("string is not valid Unicode (lone surrogate)") from None
        raise MalformedError(f"value has no JSON encoding: {e}") from None


def _big_ints_as_fragments(value: Any) -> Any:
    """Integers beyond 64 bits, which orjson refuses, as pre-encoded decimal fragments."""
    if isinstance(value, int) and not isinstance(value, bool):
        return orjson.Fragment(str(value).encode()) if abs(value) >= 2**63 else value
    if isinstance(value, dict):
        return {k: _big_ints_as_fragments(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_as_fragments(v) for v in value]
    return value


def parse_canonical(data: bytes) -> Any:
    """parse_canonical returns the value encoded by ``data``, which must be canonical JSON
    byte for byte; MalformedError says what is wrong otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedError(f"canonical JSON must be bytes, got {type(data).__name__}")
    data = bytes(data)
    try:  # fast path: bytes that orjson reads and writes back unchanged are canonical
        value = orjson.loads(data)
        if _encode(value) == data:
            return value
    except (orjson.JSONDecodeError, MalformedError):
        pass  # the strict path below says what is wrong
    value = parse_json_strict(data)
    try:
        canonical = canonical_json(value)
    except MalformedError as e:
        raise MalformedError(f"JSON has no canonical form: {e}") from None
    if canonical != data:
        raise MalformedError(f"JSON is not canonical: {_first_difference(data, canonical)}")
    return value


def parse_json_strict(data: bytes | str) -> Any:
    """parse_json_strict returns the value of a JSON document, refusing invalid UTF-8,
    duplicate object keys and NaN/Infinity; whitespace and key order are free."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedError(f"JSON is not valid UTF-8 at byte {e.start}") from None
    elif isinstance(data, str):
        text = data
    else:
        raise MalformedError(f"JSON must be bytes or str, got {type(data).__name__}")
    try:
        return json.loads(
            text, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constant
        )
    except json.JSONDecodeError as e:
        raise MalformedError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise MalformedError("invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer longer than Python's digit limit
        raise MalformedError(f"invalid JSON: {e}") from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise MalformedError(f"duplicate JSON object key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise MalformedError(f"JSON number {name} is not allowed")


_SCALAR_TYPES = frozenset({str, int, bool, type(None)})


def _is_plain_json(value: Any) -> bool:
    """_is_plain_json is the fast check (about half the cost of encoding): exact built-in
    types, string keys, finite floats. Anything else goes to _check_value for a message."""
    stack = [value]
    pop, push, scalars = stack.pop, stack.extend, _SCALAR_TYPES
    while stack:
        item = pop()
        kind = type(item)
        if kind in scalars:
            continue
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            push(item.values())
        elif kind is list or kind is tuple:
            push(item)
        elif kind is not float or not math.isfinite(item):
            return False
    return True


def _check_value(value: Any, where: str) -> None:
    """_check_value walks the value and names the first thing JSON cannot represent
    exactly (json.dumps would silently turn int keys into strings, or write NaN)."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedError(f"{where}: {value} has no JSON encoding")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedError(
                    f"{where}: object key {key!r} is {type(key).__name__}, JSON keys are strings"
                )
            _check_value(item, f"{where}.{key}")
        return
    raise MalformedError(f"{where}: {type(value).__name__} has no JSON encoding")


def _first_difference(data: bytes, canonical: bytes) -> str:
    if data.rstrip(b" \t\r\n") == canonical:
        return "trailing whitespace or newline"
    i = next(
        (i for i, (a, b) in enumerate(zip(data, canonical, strict=False)) if a != b),
        min(len(data), len(canonical)),
    )
    got, want = data[i : i + 12], canonical[i : i + 12]
    return f"at byte {i} found {got!r}, canonical form has {want!r}"
