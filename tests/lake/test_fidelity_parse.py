"""The judge's cheaper parse (no per-object hook, repeated keys found by counting colons)
gives exactly the verdicts of parsing every entry with the hook.

``fidelity._parsed`` parses without the hook and checks for a repeated key by comparing
the colons of the entry and of its canonical JSON; these tests compare its verdicts with
those of the hooked parse alone, on entries built to sit at that check's edges (repeated
keys, colons written as escapes, doubles, integers beyond 64 bits, escaped quotes and
backslashes, unicode, whitespace, depth), and check that the cheaper parse does carry the
usual entries, so the comparison is not vacuous.
"""

from __future__ import annotations

import json
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.lake import fidelity
from audit_pipeline.lake.fidelity import MAX_DEPTH, Faithful, judge_entry
from audit_pipeline.slack.emulator import render_entry
from audit_pipeline.slack.generator import generate_hour

HOUR_START = 1795860000
BASE = b'"id":"E1","date_create":1795860000,"action":"user_login"'


def entry(extra: bytes) -> bytes:
    return b"{" + BASE + b"," + extra + b"}"


def hooked_only(data: bytes) -> fidelity.Faithful | fidelity.Unfaithful:
    """The verdict when every entry is parsed with the per-object hook."""
    with mock.patch.object(
        fidelity, "_parsed", lambda data, text: (fidelity._DECODER.decode(text), None)
    ):
        return judge_entry(data)


def same_verdict(data: bytes) -> None:
    assert judge_entry(data) == hooked_only(data)


@pytest.mark.parametrize(
    "data",
    [
        entry(b'"details":{"a":1,"a":2}'),
        entry(b'"details":{"a:b":1,"a:b":2}'),
        entry(b'"details":{"\\u003a":1,":":2}'),
        entry(b'"details":{"\\u003A":1,":":2}'),
        entry(b'"details":{"a":"\\u003a","a":1}'),
        entry(b'"details":{"a":1,"a":"x:y"}'),
        entry(b'"details":{"a\\"":1,"a\\u0022":2}'),
        entry(b'"details":{"a\\\\":1,"a\\u005c":2}'),
        entry(b'"details":{"n":18446744073709551616}'),
        entry(b'"details":{"n":-9223372036854775809}'),
        entry(b'"details":{"n":18446744073709551615,"m":-9223372036854775808}'),
        entry(b'"details":{"n":1.5,"s":"true false"}'),
        entry(b'"details":{"n":1e5}'),
        entry(b'"details":{"n":-0,"z":0}'),
        entry(b'"details":{"n":0.1000000000000000055511151231257827}'),
        entry(b'"details":{"s":"\\ud800"}'),
        entry(b'"details":{"s":"\\ud83d\\ude00 \\u00e9 \xc3\xa9 \xe2\x80\xa8 \x7f"}'),
        entry(b'"details":{"s":"\\/path\\/x","t":"a\\nb\\u0000"}'),
        entry(b'"details":{"s":"\xef\xbf\xbf"}'),
        b" \t\n{" + BASE + b"}\r\n",
        b"\xef\xbb\xbf{" + BASE + b"}",
        b'{ "id" : "E1" , "date_create" : 1795860000 , "action" : "x" }',
        b'{"id":"E1","date_create":1795860000,"action":"x","id":"E2"}',
        b'{"id":"E1","date_create":1795860000.0,"action":"x"}',
        b'{"id":"E1","date_create":true,"action":"x"}',
        b'{"id":" ","date_create":1795860000,"action":"x"}',
        b'{"id":"E1","date_create":1795860000}',
        entry(b'"d":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)),
        entry(b'"d":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH),
        entry(b'"d":"' + b"[" * 200 + b'"'),
        entry(b'"d":"\xff"'),
        entry(b'"d":NaN'),
        b"[1]",
        b"{}",
    ],
)
def test_edges_of_the_colon_count_get_the_hooked_verdict(data: bytes) -> None:
    same_verdict(data)


def test_a_repeated_key_is_always_parsed_again_with_the_hook() -> None:
    for extra in (
        b'"details":{"a":1,"a":2}',
        b'"details":{"a":1,"a":1}',
        b'"details":{"\\u003a":1,":":2}',
        b'"details":{"a":"\\u003a","a":1}',
    ):
        with mock.patch.object(fidelity, "_DECODER", wraps=fidelity._DECODER) as hooked:
            verdict = judge_entry(entry(extra))
        assert hooked.decode.called and "duplicate key" in verdict.reason


def test_the_cheaper_parse_carries_the_usual_entries() -> None:
    entries = [render_entry(e) for e in generate_hour(3, HOUR_START, 2000)]
    with mock.patch.object(fidelity, "_DECODER", wraps=fidelity._DECODER) as hooked:
        verdicts = [judge_entry(d) for d in entries]
    assert hooked.decode.call_count < 0.1 * len(entries)
    assert all(isinstance(v, Faithful) for v in verdicts)
    assert verdicts == [hooked_only(d) for d in entries]


keys = st.sampled_from(["a", "b", ":", "a:b", 'q"', "\\", "é", "id", "x y", ""]) | st.text(
    max_size=4
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["a:b", "true", "1.5", '"', "\\", "\u2028", "\ud83d\ude00"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(st.tuples(keys, inner), max_size=4).map(lambda pairs: ("obj", pairs))
    ),
    max_leaves=12,
)


def encode(value: object, ascii_only: bool, slash: bool, spaced: bool) -> str:
    """JSON text of ``value``, where ``("obj", pairs)`` is an object that may repeat keys."""
    if isinstance(value, tuple):
        sep = ": " if spaced else ":"
        members = [
            json.dumps(k, ensure_ascii=ascii_only) + sep + encode(v, ascii_only, slash, spaced)
            for k, v in value[1]
        ]
        return "{" + ", ".join(members) + "}" if spaced else "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v, ascii_only, slash, spaced) for v in value) + "]"
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.replace("/", "\\/") if slash else text


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(keys, values), max_size=5),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_fuzz_the_cheaper_parse_agrees_with_the_hooked_one(pairs, ascii_only, slash, spaced):
    body = encode(("obj", pairs), ascii_only, slash, spaced)[1:]
    head = '{"id":"E1","date_create":1795860000,"action":"a"' + ("," if pairs else "")
    data = (head + body).encode("utf-8", "surrogatepass")
    same_verdict(data)
