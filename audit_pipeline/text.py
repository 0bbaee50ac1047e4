"""Wording shared by every layer's human output (standard library only).

Counts read as people write them ("1 finding", "2 findings"), so no message says
"1 hours" or "after 1 retries".
"""

from __future__ import annotations

_IRREGULAR = {"batch": "batches", "entry": "entries", "retry": "retries", "is": "are"}


def plural(count: int, word: str, many: str | None = None) -> str:
    """plural gives ``"1 hour"``, ``"2 hours"``, ``"0 batches"``: the count and the word in
    the number it needs (``many`` for a plural that is not ``word + "s"`` or listed), with
    thousands separated (``"17,115 events"``)."""
    if count == 1:
        return f"{count} {word}"
    return f"{count:,} {many or _IRREGULAR.get(word) or word + 's'}"
