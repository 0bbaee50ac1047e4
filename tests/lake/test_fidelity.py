"""The per-entry fidelity judge: faithful canonical JSON or a named quarantine reason."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.lake.fidelity import (
    MAX_DEPTH,
    Faithful,
    Unfaithful,
    judge_entry,
    quarantine_leaf,
)
from audit_pipeline.ledger.canonical import parse_canonical

BASE = b'"id":"E1","date_create":1795860000,"action":"user_login"'


def entry(extra: bytes = b"") -> bytes:
    return b"{" + BASE + (b"," + extra if extra else b"") + b"}"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (entry(b'"details":{"n":1e400}'), "out of range for a double"),
        (entry(b'"details":{"n":-1e400}'), "out of range for a double"),
        (entry(b'"details":{"n":1e-400}'), "underflow"),
        (entry(b'"details":{"n":0.1000000000000000055511151231257827}'), "loses precision"),
        (entry(b'"details":{"n":12345678901234567890.5}'), "loses precision"),
        (entry(b'"details":{"n":NaN}'), "non-finite number NaN"),
        (entry(b'"details":{"n":-Infinity}'), "non-finite number -Infinity"),
        (entry(b'"details":{"a":1,"a":2}'), "duplicate key 'a'"),
        (b'{"id":"E1","id":"E2","date_create":1795860000,"action":"x"}', "duplicate key 'id'"),
        (entry(b'"details":' + b"[" * 3000 + b"]" * 3000), "nested more than 128 levels deep"),
        (entry(b'"details":' + b"[" * 200 + b"]" * 200), "nested more than 128 levels deep"),
        (entry(b'"details":"\xff"'), "invalid UTF-8 at byte"),
        (entry(b'"details":"\\ud800"'), "lone surrogate"),
        (b"[1,2]", "entry is a JSON array, not an object"),
        (b'"text"', "entry is a JSON string, not an object"),
        (b'{"date_create":1795860000,"action":"user_login"}', "no id"),
        (b'{"id":"","date_create":1795860000,"action":"user_login"}', "id is an empty string"),
        (b'{"id":"E1","date_create":1795860000,"action":""}', "action is an empty string"),
        (b'{"id":"E1","date_create":1795860000,"action":" \\t"}', "action is only whitespace"),
        (b'{"id":"E1","date_create":"1795860000","action":"x"}', "date_create is a JSON string"),
        (b'{"id":"E1","date_create":true,"action":"x"}', "date_create is a JSON boolean"),
        (b'{"id":7,"date_create":1795860000,"action":"x"}', "id is a JSON number"),
        (b'{"id":"E1",', "invalid JSON"),
        (entry(b'"details":' + b"9" * 5000), "integer of more than 4300 digits"),
        # What orjson alone would accept silently (it keeps the last repeated key and turns
        # big integers into doubles): whatever parses entries must still refuse these.
        (entry(b'"details":{"a:b":1,"a:b":2}'), "duplicate key 'a:b'"),
        (entry(b'"details":{"\\u003a":1,":":2,"x":"a:b"}'), "duplicate key ':'"),
        (entry(b'"details":{"n":[ 0.1000000000000000055511151231257827]}'), "loses precision"),
        (entry(b'"details":{"s":"x:1","n":123456789012345678901.5}'), "loses precision"),
        (entry(b'"details":{"n":1,"n":1}'), "duplicate key 'n'"),
        (entry(b'"details":{"n":123456789012345678901,"s":"\\ud800"}'), "lone surrogate"),
    ],
)
def test_unfaithful_entries_are_named(data: bytes, reason: str) -> None:
    verdict = judge_entry(data)
    assert isinstance(verdict, Unfaithful)
    assert reason in verdict.reason


def test_big_integers_and_exact_floats_are_faithful() -> None:
    big = b"1" + b"0" * 400
    verdict = judge_entry(entry(b'"details":{"big":' + big + b',"f":1.50,"g":-0.0,"h":1E5}'))
    assert isinstance(verdict, Faithful)
    assert verdict.entry["details"]["big"] == 10**400
    assert big in verdict.canonical
    assert b'"f":1.5' in verdict.canonical
    assert parse_canonical(verdict.canonical) == verdict.entry


@pytest.mark.parametrize(
    "extra",
    [
        b'"details":{"n":123456789012345678901234567890,"m":-9223372036854775809}',
        b'"details":{"f":1.5,"g":[2.5e-3],"h":-0.0,"s":"a:1.5"}',
        b'"details":{"s":"\\u003a\\/x","t":"\\u00e9"}',
        b'"details":{"x":{"a":1},"y":{"a":1}}',
    ],
)
def test_entries_near_the_parsers_limits_are_stored_as_read(extra: bytes) -> None:
    """Entries near the parsers' limits are stored exactly as the stdlib parse reads them."""
    verdict = judge_entry(entry(extra))
    assert isinstance(verdict, Faithful)
    assert verdict.entry == json.loads(entry(extra))
    assert parse_canonical(verdict.canonical) == verdict.entry


def test_depth_limit_is_inclusive() -> None:
    nested = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    assert isinstance(judge_entry(entry(b'"d":' + nested)), Faithful)


def test_required_fields_are_a_parameter() -> None:
    data = b'{"id":"A1","date_create":5}'
    assert isinstance(judge_entry(data, {"id": str, "date_create": int}), Faithful)
    assert judge_entry(data).reason == "no action"


def test_quarantine_leaf_covers_the_original_bytes() -> None:
    data = entry(b'"details":"\xff"')
    event_id, leaf = quarantine_leaf(data, "invalid UTF-8", 1795860000)
    doc = parse_canonical(leaf)
    assert doc["id"] == event_id and event_id.startswith("quarantine-")
    assert base64.b64decode(doc["quarantine"]["entry_base64"]) == data
    assert doc["quarantine"]["reason"] == "invalid UTF-8"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
fragments = st.sampled_from(
    [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"d800", b"1e400", b"-", b".",
     b"0", b"NaN", b"\xff", b"\xc3", b'"id"', b'"action"', b'"date_create"', b" ", b"true"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(fragments, max_size=40).map(b"".join),
        st.tuples(json_values, st.lists(fragments, max_size=6)).map(
            lambda t: entry(b'"d":' + json.dumps(t[0]).encode() + b"".join(t[1]))
        ),
    )
)
def test_fuzz_every_input_is_stored_or_quarantined(data: bytes) -> None:
    verdict = judge_entry(data)
    if isinstance(verdict, Faithful):
        assert parse_canonical(verdict.canonical) == verdict.entry
        assert json.loads(data) == verdict.entry
    else:
        assert isinstance(verdict, Unfaithful) and verdict.reason
        _, leaf = quarantine_leaf(data, verdict.reason, 0)
        assert base64.b64decode(parse_canonical(leaf)["quarantine"]["entry_base64"]) == data
