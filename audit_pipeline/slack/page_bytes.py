"""Split a list response's body into the exact bytes of each entry, without parsing them.

An API page is ``{"entries": [ {...}, {...} ], "response_metadata": {...}}``. To keep each
entry exactly as the API sent it (and to keep one odd entry from spoiling its page), the
body is split at the level of bytes: strings and brackets are tracked so that the
separators of the list are found, and each element's bytes (surrounding whitespace
excluded) are handed on unparsed. Only the other top-level members (``response_metadata``,
``ok``, ``error``…) are parsed, because paging needs them.

Source-agnostic: the list key is a parameter (``entries`` for audit logs, ``activities``
for app activities). A body whose structure cannot be followed (not an object, truncated,
unbalanced brackets, an unterminated string, the list key twice) raises
:class:`PageSyntaxError` with the byte offset where following it failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# Runs of bytes that are not brackets, whole strings included (escapes too; bytes, so
# invalid UTF-8 inside passes): one C-level match skips everything between two brackets.
# Strings are matched as "unrolled loops" (a run of plain bytes, then escape and run
# again): a third faster in the regex engine than an alternation tried at every byte.
_SKIP = re.compile(rb'(?:[^"\[\]{}]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+', re.DOTALL)
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_SCALAR = re.compile(rb"[^ \t\r\n,\]}]+")
_SPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"  # RFC 8259 section 8.1: a parser may ignore one before the text


def _nested_pattern(depth: int) -> re.Pattern[bytes]:
    """One container up to ``depth`` levels deep, brackets counted as ``_value_end`` counts
    them (any opener, any closer) and strings skipped whole: a single C-level match instead
    of a Python step per bracket. Built level by level, so it grows linearly with depth."""
    atom = rb'[^"\[\]{}]++|"[^"\\]*+(?:\\.[^"\\]*+)*+"'
    level = rb"[\[{](?:" + atom + rb")*+[\]}]"
    for _ in range(depth - 1):
        level = rb"[\[{](?:" + atom + rb"|" + level + rb")*+[\]}]"
    return re.compile(level, re.DOTALL)


# Real entries are about 5 levels deep; a deeper one (or one the pattern cannot follow:
# truncated, an unterminated string) takes the bracket-by-bracket walk, which says why.
_NESTED = _nested_pattern(16)


class PageSyntaxError(ValueError):
    """The body's structure could not be followed; ``offset`` is where it failed."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte {offset}")
        self.offset = offset


@dataclass(frozen=True)
class SplitPage:
    """The exact bytes of each list element, in order, and the other top-level members."""

    items: list[bytes]
    members: dict[str, Any] = field(default_factory=dict)
    has_list: bool = False


def split_page(body: bytes, list_key: str) -> SplitPage:
    """split_page returns ``body``'s list elements (under ``list_key``) as exact byte strings.

    Members other than the list are parsed as JSON (they must be valid; a member that is not
    raises PageSyntaxError). A missing list gives ``has_list=False`` and no items.
    """
    body = bytes(body)
    n = len(body)
    pos = _skip_space(body, len(_BOM) if body.startswith(_BOM) else 0)
    if pos >= n or body[pos] != ord("{"):
        raise PageSyntaxError("response body is not a JSON object", pos)
    items: list[bytes] = []
    members: dict[str, Any] = {}
    has_list = False
    pos = _skip_space(body, pos + 1)
    if pos < n and body[pos] == ord("}"):
        pos += 1
    else:
        while True:
            key = _STRING.match(body, pos)
            if key is None:
                raise PageSyntaxError("expected a member name", pos)
            name = _member_name(key.group(), pos)
            if name in members or (name == list_key and has_list):
                raise PageSyntaxError(f"member {name!r} appears twice", pos)
            pos = _skip_space(body, key.end())
            if pos >= n or body[pos] != ord(":"):
                raise PageSyntaxError("expected ':' after a member name", pos)
            pos = _skip_space(body, pos + 1)
            if name == list_key and pos < n and body[pos] == ord("["):
                pos = _split_list(body, pos, items)
            else:
                end = _value_end(body, pos)
                members[name] = _parse_member(body, pos, end, name)
                pos = end
            has_list = has_list or name == list_key
            pos = _skip_space(body, pos)
            if pos >= n:
                raise PageSyntaxError("response body ends inside its top-level object", n)
            if body[pos] == ord(","):
                pos = _skip_space(body, pos + 1)
                continue
            if body[pos] == ord("}"):
                pos += 1
                break
            raise PageSyntaxError("expected ',' or '}' after a member", pos)
    trailing = _skip_space(body, pos)
    if trailing != n:
        raise PageSyntaxError("data after the response object", trailing)
    return SplitPage(items, members, has_list)


def _split_list(body: bytes, pos: int, items: list[bytes]) -> int:
    """Cut the list opened at ``pos`` into its elements; return the position after it."""
    n = len(body)
    pos = _skip_space(body, pos + 1)
    if pos < n and body[pos] == ord("]"):
        return pos + 1
    while True:
        if pos >= n:
            raise PageSyntaxError("response body ends inside the list", n)
        if body[pos] in b",]":
            raise PageSyntaxError("empty list element", pos)
        nested = _NESTED.match(body, pos)
        end = nested.end() if nested is not None else _value_end(body, pos)
        items.append(body[pos:end])
        pos = _skip_space(body, end)
        if pos >= n:
            raise PageSyntaxError("response body ends inside the list", n)
        if body[pos] == ord("]"):
            return pos + 1
        if body[pos] != ord(","):
            raise PageSyntaxError("expected ',' or ']' in the list", pos)
        pos = _skip_space(body, pos + 1)


def _value_end(body: bytes, pos: int) -> int:
    """The end of the one JSON value that starts at ``pos`` (containers by bracket depth;
    what is inside is not judged here)."""
    n = len(body)
    if pos >= n:
        raise PageSyntaxError("response body ends where a value was expected", n)
    first = body[pos]
    if first == ord('"'):
        string = _STRING.match(body, pos)
        if string is None:
            raise PageSyntaxError("unterminated string", pos)
        return string.end()
    if first not in b"[{":
        scalar = _SCALAR.match(body, pos)
        if scalar is None:
            raise PageSyntaxError("expected a value", pos)
        return scalar.end()
    depth = 0
    skip = _SKIP.match
    while True:
        c = body[pos] if pos < n else None
        if c is None:
            raise PageSyntaxError("response body ends inside a value", n)
        if c == ord('"'):
            raise PageSyntaxError("unterminated string", pos)
        depth += 1 if c in b"[{" else -1
        pos += 1
        if depth == 0:
            return pos
        pos = skip(body, pos).end()


def _parse_member(body: bytes, start: int, stop: int, name: str) -> Any:
    raw = body[start:stop]
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PageSyntaxError(f"member {name!r} is not valid JSON", start) from None


def _member_name(token: bytes, at: int) -> str:
    try:
        name = json.loads(token.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise PageSyntaxError("member name is not a valid JSON string", at) from None
    return name


def _skip_space(body: bytes, i: int) -> int:
    n = len(body)
    while i < n and body[i] in _SPACE:
        i += 1
    return i
