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

# One token: a whole string (escapes included; bytes, so invalid UTF-8 inside passes), an
# unterminated string, or a structural byte. Everything else (scalars, whitespace) is skipped.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|"|[\[\]{},:]', re.DOTALL)
_SPACE = b" \t\r\n"


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
    start = _skip_space(body, 0)
    if start >= len(body) or body[start] != ord("{"):
        raise PageSyntaxError("response body is not a JSON object", start)
    items: list[bytes] = []
    members: dict[str, Any] = {}
    has_list = False
    tokens = _TOKEN.finditer(body, start + 1)
    gap_start = start + 1  # just after '{' or after the ',' ending the previous member
    first = True
    while True:
        token = next(tokens, None)
        if token is None:
            raise PageSyntaxError("response body ends inside its top-level object", len(body))
        text, at = token.group(), token.start()
        _check_only_space(body, gap_start, at)
        if text == b"}" and first:
            end = at + 1
            break
        if not (text[:1] == b'"' and len(text) > 1):
            raise PageSyntaxError("expected a member name", at)
        first = False
        colon = next(tokens, None)
        if colon is None or colon.group() != b":":
            raise PageSyntaxError("expected ':' after a member name", _where(colon, body))
        _check_only_space(body, token.end(), colon.start())
        name = _member_name(text, at)
        if name in members or (name == list_key and has_list):
            raise PageSyntaxError(f"member {name!r} appears twice", at)
        value_start = _skip_space(body, colon.end())
        if name == list_key and value_start < len(body) and body[value_start] == ord("["):
            has_list = True
            stop = _split_list(body, value_start, tokens, items)
        else:
            stop = _value_end(body, value_start, tokens)
            members[name] = _parse_member(body, value_start, stop.start(), name)
            if name == list_key:
                has_list = True  # present but not a list: the caller decides
        if stop.group() == b"}":
            end = stop.end()
            break
        gap_start = stop.end()
    trailing = _skip_space(body, end)
    if trailing != len(body):
        raise PageSyntaxError("data after the response object", trailing)
    return SplitPage(items, members, has_list)


def _split_list(body: bytes, open_at: int, tokens: Any, items: list[bytes]) -> re.Match[bytes]:
    """Cut the list opened at ``open_at`` into its elements; return the token after it."""
    opener = next(tokens, None)
    if opener is None or opener.start() != open_at:
        raise PageSyntaxError("expected '['", open_at)
    depth = 0
    element_start = open_at + 1
    for token in tokens:
        text = token.group()
        if text[:1] == b'"':
            if len(text) == 1:
                raise PageSyntaxError("unterminated string", token.start())
            continue
        if text in (b"[", b"{"):
            depth += 1
            continue
        if text in (b"]", b"}"):
            if depth == 0:
                if text != b"]":
                    raise PageSyntaxError("unbalanced '}' in the list", token.start())
                element = body[element_start : token.start()].strip(_SPACE)
                if element:
                    items.append(element)
                elif items:
                    raise PageSyntaxError("empty element before ']'", token.start())
                return _next_separator(body, token.end(), tokens)
            depth -= 1
            continue
        if text == b"," and depth == 0:
            element = body[element_start : token.start()].strip(_SPACE)
            if not element:
                raise PageSyntaxError("empty list element", token.start())
            items.append(element)
            element_start = token.end()
    raise PageSyntaxError("response body ends inside the list", len(body))


def _value_end(body: bytes, value_start: int, tokens: Any) -> re.Match[bytes]:
    """Skip one member value; return the ',' or '}' token that ends it."""
    depth = 0
    for token in tokens:
        text = token.group()
        if text[:1] == b'"':
            if len(text) == 1:
                raise PageSyntaxError("unterminated string", token.start())
            continue
        if text in (b"[", b"{"):
            depth += 1
        elif text in (b"]", b"}"):
            if depth == 0:
                if text == b"}":
                    return token
                raise PageSyntaxError("unbalanced ']'", token.start())
            depth -= 1
        elif text == b"," and depth == 0:
            return token
    raise PageSyntaxError("response body ends inside a member", len(body))


def _next_separator(body: bytes, after: int, tokens: Any) -> re.Match[bytes]:
    token = next(tokens, None)
    if token is None or token.group() not in (b",", b"}"):
        raise PageSyntaxError("expected ',' or '}' after the list", _where(token, body))
    _check_only_space(body, after, token.start())
    return token


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


def _check_only_space(body: bytes, start: int, stop: int) -> None:
    i = _skip_space(body, start)
    if i < stop:
        raise PageSyntaxError("unexpected data", i)


def _skip_space(body: bytes, i: int) -> int:
    n = len(body)
    while i < n and body[i] in _SPACE:
        i += 1
    return i


def _where(token: re.Match[bytes] | None, body: bytes) -> int:
    return len(body) if token is None else token.start()
