"""Canonical JSON: one value, one byte string; every other spelling of it is refused.

Pins attack 6 of the matrix (duplicate keys, reordered keys, whitespace, escape and Unicode
variants, line endings) at the byte level, and the code-point key order (which differs
from RFC 8785's UTF-16 order for characters outside the Basic Multilingual Plane).
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.ledger.canonical import canonical_json, parse_canonical, parse_json_strict
from audit_pipeline.ledger.errors import MalformedError

ENCODINGS = [
    ({"b": [1, True, None], "a": "é\n"}, b'{"a":"\xc3\xa9\\n","b":[1,true,null]}'),
    ({}, b"{}"),
    ([], b"[]"),
    ("", b'""'),
    (0, b"0"),
    (-17, b"-17"),
    (2**70, b"1180591620717411303424"),
    (False, b"false"),
    (None, b"null"),
    (1.5, b"1.5"),
    (1e-07, b"1e-7"),
    (2.5e-05, b"0.000025"),
    ({"big": -(2**64), "f": 1e-07}, b'{"big":-18446744073709551616,"f":1e-7}'),
    (1e16, b"1e+16"),
    (-0.0, b"-0.0"),
    (1.0, b"1.0"),
    ("a/b", b'"a/b"'),
    ('q"b\\s', b'"q\\"b\\\\s"'),
    ("\x00\x1f\x7f", b'"\\u0000\\u001f\x7f"'),
    ("\b\f\n\r\t", b'"\\b\\f\\n\\r\\t"'),
    ("\u2028\u2029", '"\u2028\u2029"'.encode()),
    ("😀", '"😀"'.encode()),
    ({"é": 1, "e": 2, "z": 3, "Z": 4}, '{"Z":4,"e":2,"z":3,"é":1}'.encode()),
    # Code point order: U+FFFF sorts before U+10000 (UTF-16 order would say the reverse).
    ({"\U00010000": 1, "\uffff": 2}, '{"\uffff":2,"\U00010000":1}'.encode()),
    ({"outer": {"b": 1, "a": [{"d": 1, "c": 2}]}}, b'{"outer":{"a":[{"c":2,"d":1}],"b":1}}'),
    ((1, "two"), b'[1,"two"]'),
]


@pytest.mark.parametrize(("value", "encoded"), ENCODINGS, ids=[repr(v)[:30] for v, _ in ENCODINGS])
def test_encoding(value: object, encoded: bytes) -> None:
    assert canonical_json(value) == encoded
    parsed = parse_canonical(encoded)
    assert canonical_json(parsed) == encoded
    if not isinstance(value, tuple):
        assert parsed == value


def test_docstring_example_is_thirty_bytes() -> None:
    assert len(canonical_json({"b": [1, True, None], "a": "é\n"})) == 30


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), r"\$: nan has no JSON encoding"),
        ({"a": [1, float("inf")]}, r"\$\.a\[1\]: inf has no JSON encoding"),
        ({1: "x"}, r"object key 1 is int, JSON keys are strings"),
        ({"a": {None: 1}}, r"\$\.a: object key None is NoneType"),
        ({"a": b"bytes"}, r"\$\.a: bytes has no JSON encoding"),
        ({"a": {1, 2}}, r"\$\.a: set has no JSON encoding"),
        ("\ud800", r"lone surrogate"),
    ],
)
def test_unencodable_values_are_named(value: object, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        canonical_json(value)


CANONICAL = b'{"a":"\xc3\xa9","b":[1,2.5,true,null],"c":{"d":"x/y"}}'


@pytest.mark.parametrize(
    ("variant", "problem"),
    [
        (b'{"b":[1,2.5,true,null],"a":"\xc3\xa9","c":{"d":"x/y"}}', "not canonical"),
        (b'{"a": "\xc3\xa9","b":[1,2.5,true,null],"c":{"d":"x/y"}}', "not canonical"),
        (b'{"a":"\xc3\xa9",\n"b":[1,2.5,true,null],"c":{"d":"x/y"}}', "not canonical"),
        (CANONICAL + b"\n", "trailing whitespace or newline"),
        (CANONICAL + b"\r\n", "trailing whitespace or newline"),
        (b" " + CANONICAL, "not canonical"),
        (b'{"a":"\\u00e9","b":[1,2.5,true,null],"c":{"d":"x/y"}}', "not canonical"),
        (b'{"a":"\xc3\xa9","b":[1,2.5,true,null],"c":{"d":"x\\/y"}}', "not canonical"),
        (b'{"a":"\xc3\xa9","b":[1,25e-1,true,null],"c":{"d":"x/y"}}', "not canonical"),
        (b'{"a":"\xc3\xa9","b":[1,2.50,true,null],"c":{"d":"x/y"}}', "not canonical"),
        (b'{"a":"\xc3\xa9","a":"\xc3\xa9","b":[1,2.5,true,null],"c":{"d":"x/y"}}', "duplicate"),
        (b'{"a":"\xc3\xa9","b":[1,2.5,true,null],"c":{"d":"x/y","d":"x/y"}}', "duplicate"),
        (b'{"a":"\xc3\xa9","\\u0061":"\xc3\xa9","b":[1,2.5,true,null]}', "duplicate"),
        (b'{"a":"\xc3\xa9","b":[1,NaN,true,null],"c":{"d":"x/y"}}', "NaN is not allowed"),
        (b'{"a":"\xc3\xa9","b":[1,Infinity,true,null],"c":{"d":"x/y"}}', "Infinity"),
        (b'{"a":"\xc3\xa9","b":[1,-Infinity,true,null],"c":{"d":"x/y"}}', "-Infinity"),
        (b'{"a":"\xff","b":[1,2.5,true,null],"c":{"d":"x/y"}}', "not valid UTF-8 at byte 6"),
        (b'{"a":"\xc0\xaf","b":[1,2.5,true,null],"c":{"d":"x/y"}}', "not valid UTF-8"),
        (b'{"a":"e\xcc\x81","b":[1,2.5,true,null],"c":{"d":"x/y"}}', None),  # another value
        (b"\xef\xbb\xbf" + CANONICAL, "invalid JSON"),
        (b'{"a":"\\ud800"}', "no canonical form"),
        (b'{"a":"\\u001F"}', "not canonical"),
        (b"-0", "not canonical"),
        (b"01", "invalid JSON"),
        (b"[1,]", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_non_canonical_spellings_are_refused(variant: bytes, problem: str | None) -> None:
    if problem is None:
        # NFD "é" is a different string, canonical in its own right: it must not equal NFC.
        assert parse_canonical(variant) != parse_canonical(CANONICAL)
        return
    with pytest.raises(MalformedError, match=problem):
        parse_canonical(variant)


def test_canonical_round_trip_of_a_manifest_shape() -> None:
    assert parse_canonical(CANONICAL) == {"a": "é", "b": [1, 2.5, True, None], "c": {"d": "x/y"}}


def test_reordering_error_points_at_the_first_difference() -> None:
    with pytest.raises(MalformedError, match=r"at byte 2 found b'b\"") as caught:
        parse_canonical(b'{"b":1,"a":2}')
    assert "canonical form has b'a\"" in str(caught.value)


def test_parse_canonical_wants_bytes() -> None:
    with pytest.raises(MalformedError, match="must be bytes, got str"):
        parse_canonical('{"a":1}')  # type: ignore[arg-type]
    assert parse_canonical(bytearray(b'{"a":1}')) == {"a": 1}


def test_parse_json_strict_allows_whitespace_but_not_ambiguity() -> None:
    assert parse_json_strict(b' {\n  "b": 1,\r\n  "a": [ 2 ]\n}\n') == {"a": [2], "b": 1}
    assert parse_json_strict('{"a": "\\u00e9"}') == {"a": "é"}
    with pytest.raises(MalformedError, match="duplicate JSON object key 'a'"):
        parse_json_strict('{"a": 1, "a": 2}')
    with pytest.raises(MalformedError, match="NaN"):
        parse_json_strict(b"[NaN]")
    with pytest.raises(MalformedError, match="UTF-8"):
        parse_json_strict(b'["\xfe"]')
    with pytest.raises(MalformedError, match=r"invalid JSON: Expecting value at line 1 column 2"):
        parse_json_strict("[")
    with pytest.raises(MalformedError, match="must be bytes or str"):
        parse_json_strict(12)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_property_round_trip(value: object) -> None:
    encoded = canonical_json(value)
    parsed = parse_canonical(encoded)
    assert canonical_json(parsed) == encoded
    assert _same(parsed, value)
    # Any other spelling of the same value parses strictly and re-encodes identically.
    loose = json.dumps(value, indent=2, ensure_ascii=True, sort_keys=False).encode()
    assert canonical_json(parse_json_strict(loose)) == encoded
    if loose != encoded:
        with pytest.raises(MalformedError):
            parse_canonical(loose)
    for extra in (b" " + encoded, encoded + b"\n", encoded + b" "):
        with pytest.raises(MalformedError):
            parse_canonical(extra)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), st.integers(), min_size=2, max_size=8))
def test_property_key_order_does_not_matter(obj: dict[str, int]) -> None:
    reordered = dict(reversed(list(obj.items())))
    assert canonical_json(reordered) == canonical_json(obj)
    keys = list(parse_canonical(canonical_json(obj)))
    assert keys == sorted(keys, key=lambda k: [ord(c) for c in k])


def _same(a: object, b: object) -> bool:
    """Equality that also tells -0.0 from 0.0 and keeps int and float apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)  # type: ignore[arg-type]
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[union-attr,index]
    return a == b
