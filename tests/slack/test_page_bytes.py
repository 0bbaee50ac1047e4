"""The wire-level page splitter: each list element's exact bytes, or a syntax error offset."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.slack.page_bytes import _NESTED, PageSyntaxError, _value_end, split_page


def test_elements_keep_their_exact_bytes() -> None:
    one = b'{"id":"a","s":"x]}\\"\\\\","n":1e400}'
    two = b'{"id": "b", "id": "c", "bad": "\xff\xfe"}'
    body = (
        b' {"entries": [ ' + one + b" ,\n\t" + two + b", 3, [1, {}] ],"
        b' "response_metadata": {"next_cursor": "abc"}} '
    )
    page = split_page(body, "entries")
    assert page.items == [one, two, b"3", b"[1, {}]"]
    assert page.members == {"response_metadata": {"next_cursor": "abc"}}
    assert page.has_list


def test_the_list_key_is_a_parameter() -> None:
    page = split_page(b'{"ok":true,"activities":[{"a":1}],"entries":[2]}', "activities")
    assert page.items == [b'{"a":1}']
    assert page.members == {"ok": True, "entries": [2]}


@pytest.mark.parametrize(
    ("body", "offset"),
    [
        (b"", 0),
        (b"[1]", 0),
        (b'{"entries":[{"a":1}', 19),
        (b'{"entries":[1,]}', 14),
        (b'{"entries":[1],}', 15),
        (b'{"entries":["abc]}', 12),
        (b'{"entries":[1]} x', 16),
        (b'{"entries":[1],"entries":[2]}', 15),
        (b'{"entries":[1],"response_metadata":{"a":\xff}}', 35),
    ],
)
def test_unfollowable_bodies_name_the_offset(body: bytes, offset: int) -> None:
    with pytest.raises(PageSyntaxError) as caught:
        split_page(body, "entries")
    assert caught.value.offset == offset
    assert f"at byte {offset}" in str(caught.value)


def test_missing_or_empty_list() -> None:
    assert split_page(b'{"ok":false,"error":"x"}', "entries").has_list is False
    assert split_page(b'{"entries":[]}', "entries").items == []


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=6), st.sampled_from(["", " ", "\n  "]))
def test_split_matches_a_parser_on_valid_pages(entries: list, space: str) -> None:
    parts = [json.dumps(e, ensure_ascii=bool(len(entries) % 2)) for e in entries]
    body = ('{"entries":[' + space + ("," + space).join(parts) + space + '],"x":{}}').encode()
    page = split_page(body, "entries")
    assert [json.loads(item) for item in page.items] == entries
    assert page.items == [p.encode() for p in parts]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_split_raises_only_page_syntax_errors(body: bytes) -> None:
    try:
        page = split_page(b'{"entries":[' + body + b"]}", "entries")
    except PageSyntaxError as exc:
        assert 0 <= exc.offset <= len(body) + 14
    else:
        assert all(item == item.strip(b" \t\r\n") and item for item in page.items)


nested_bytes = st.lists(
    st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b'\\"', b"a", b",", b":", b" ", b'"x"']),
    max_size=60,
).map(lambda parts: b"{" + b"".join(parts))


@settings(max_examples=400, deadline=None)
@given(st.one_of(nested_bytes, values.map(lambda v: json.dumps([v]).encode())))
def test_one_match_finds_the_same_end_as_the_bracket_walk(body: bytes) -> None:
    """The single-regex fast path ends a container exactly where the walk does, or defers."""
    found = _NESTED.match(body, 0)
    if found is None:
        return
    assert found.end() == _value_end(body, 0)


def test_containers_deeper_than_the_pattern_still_split() -> None:
    deep = b"[" * 40 + b"]" * 40
    body = b'{"entries":[{"d":' + deep + b'},{"e":1}]}'
    assert _NESTED.match(body, 12) is None
    assert split_page(body, "entries").items == [b'{"d":' + deep + b"}", b'{"e":1}']


def test_a_byte_order_mark_before_the_page_is_ignored() -> None:
    """RFC 8259 section 8.1 lets a parser ignore a leading BOM; refusing it would fail every
    page of a proxy that adds one (the hour could never be committed). Entries keep their
    exact bytes; a BOM anywhere else is still a syntax error."""
    page = split_page(b'\xef\xbb\xbf{"entries":[{"id":"a"} ,2]}', "entries")
    assert page.items == [b'{"id":"a"}', b"2"]
    with pytest.raises(PageSyntaxError):
        split_page(b'{"entries":[\xef\xbb\xbf{"id":"a"}]}', "entries")
