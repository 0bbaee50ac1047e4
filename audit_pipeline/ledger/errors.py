"""Ledger errors, in three tiers (Go's sumdb packages plus transparency-dev/merkle).

- :class:`MalformedError`: bytes that do not parse as the format says (note, key,
  checkpoint, canonical JSON).
- :class:`InvalidProofError`: a Merkle proof that does not prove what it claims; the
  message gives the numbers ("wrong proof size 3, want 4", "index is beyond size: 9 >= 8"),
  and :class:`RootMismatchError` carries both roots when the arithmetic ran but disagreed.
- Key errors carrying the key's name and hash: :class:`UnknownKeyError`,
  :class:`InvalidSignatureError`, :class:`AmbiguousKeyError`.

A broken internal invariant is an ``AssertionError`` ("bad math"), never one of these.
Messages never contain private key material.
"""

from __future__ import annotations

from typing import Any

from audit_pipeline.errors import AuditPipelineError


def _key_text(name: str, key_hash: int) -> str:
    return f"{name}+{key_hash:08x}"


class LedgerError(AuditPipelineError):
    """Base class of everything the ledger primitives raise: an integrity finding."""

    exit_code = 1


class MalformedError(LedgerError):
    """MalformedError: the input violates its format (note, key, checkpoint, JSON)."""


class InvalidProofError(LedgerError):
    """InvalidProofError: a Merkle proof (or its index, size or hashes) is not valid."""


class RootMismatchError(InvalidProofError):
    """RootMismatchError: the proof was well formed but leads to a different root.

    ``expected`` is the root the caller trusts; ``calculated`` is what the proof gives.
    """

    def __init__(self, expected: bytes, calculated: bytes, what: str = "root hash") -> None:
        self.expected = expected
        self.calculated = calculated
        self.what = what
        super().__init__(
            f"{what} mismatch: calculated {calculated.hex()}, expected {expected.hex()}"
        )


class UnknownKeyError(LedgerError):
    """UnknownKeyError: a note is signed by no known key (names the first unknown one).

    ``note`` is the parsed but unverified note when :func:`note.open_note` raised it, so a
    caller can report which signatures were present.
    """

    def __init__(self, name: str, key_hash: int, note: Any = None) -> None:
        self.name = name
        self.key_hash = key_hash
        self.note = note
        what = "note has no verifiable signatures: " if note is not None else ""
        super().__init__(f"{what}unknown key {_key_text(name, key_hash)}")


class InvalidSignatureError(LedgerError):
    """InvalidSignatureError: a known key's signature does not verify."""

    def __init__(self, name: str, key_hash: int) -> None:
        self.name = name
        self.key_hash = key_hash
        super().__init__(f"invalid signature for key {_key_text(name, key_hash)}")


class AmbiguousKeyError(LedgerError):
    """AmbiguousKeyError: two different trusted keys share one name and key hash.

    The trusted key set itself is unusable for that key, so this is a configuration
    problem (exit code 2), raised only when a signature by that (name, hash) is checked.
    """

    exit_code = 2

    def __init__(self, name: str, key_hash: int) -> None:
        self.name = name
        self.key_hash = key_hash
        super().__init__(f"ambiguous key {_key_text(name, key_hash)}: several trusted keys")
