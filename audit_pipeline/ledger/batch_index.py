"""The batch index: which hour and source each batch covers, 256 batches a file, signed.

A commit must know which batches hold an hour (to drop ids already committed and to pick
the kind), and ``committed_windows`` every hour committed; a verification the batches of
the hours it checks. Reading every manifest for that grows with history, so each time
the log reaches a multiple of 256 batches the committer writes, once,
``ledger/index/<first sequence, 8 digits>.idx``: a C2SP signed note (as checkpoints are)
signed by the log's key, whose text is::

    audit_pipeline.batch-index/v1
    <origin>
    <start> <size> <created> <earliest window start> <latest window start>
    <source> <window start> <kind>          one line per batch, 256 lines

``size`` is the tree size when it was signed and ``created`` the signing time (Unix
seconds). A reader accepts a file only when its signature verifies with a keyring key
valid at position ``size - 1`` and time ``created`` and it names this origin and start
with 256 lines; anything else (absent, altered, a key not trusted there) is read from the
manifests instead, and a full ``verify`` compares every stored file with the manifests
(``log_tile_mismatch``). The signature is what makes a missing entry hard to hide: an
index is as trustworthy as the key that signs manifests, no more, so an incremental
verification also reads everything when the index disagrees with the manifests and lake
partitions it reads anyway (FORMAT.md, "What verify --incremental trusts"). The window range on
the third line lets a reader skip files that cannot hold an hour.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.keys import Keyring, KeyStatus
from audit_pipeline.ledger.layout import HOUR
from audit_pipeline.ledger.manifest import SignedManifest, source_name
from audit_pipeline.ledger.note import Signer, open_note, sign_note
from audit_pipeline.ledger.tiles import TILE_WIDTH

INDEX = "ledger/index"
INDEX_FORMAT = "audit_pipeline.batch-index/v1"
INDEX_SUFFIX = ".idx"
_KINDS = frozenset({"hour", "empty", "late"})
_LINES = re.compile(r"(?:[a-z0-9_]+ [0-9]+ (?:hour|empty|late)\n)+")


class BatchRef(NamedTuple):
    """What the index says of one batch: its sequence number, source, hour and kind."""

    seq: int
    source: str
    window_start: int
    kind: str

    @staticmethod
    def of(signed: SignedManifest) -> BatchRef:
        m = signed.manifest
        return BatchRef(signed.sequence, source_name(m), m.window_start, m.kind)


class IndexFile:
    """IndexFile is one verified index file; its lines are parsed when first needed."""

    def __init__(self, start: int, first: int, last: int, lines: list[str]) -> None:
        self.start, self.first, self.last = start, first, last
        self._lines: list[str] | None = lines
        self._refs: list[BatchRef] | None = None

    def refs(self) -> list[BatchRef]:
        """The 256 batches (MalformedIndex if a line is not ``<source> <window> <kind>``)."""
        if self._refs is None:
            assert self._lines is not None
            refs = []
            for offset, line in enumerate(self._lines):
                source, window, kind = line.split(" ")
                if kind not in _KINDS or not window.isdigit() or not source:
                    raise ValueError(f"line {offset} is not a batch")
                refs.append(BatchRef(self.start + offset, source, int(window), kind))
            self._refs, self._lines = refs, None
        return self._refs

    def extremes(self) -> list[BatchRef]:
        """The batches that decide hour coverage: per source, at least those with the
        earliest and latest window and whole hour (ValueError as :meth:`refs`).
        Coverage needs no more of a file, and building all 256 refs of every file of a
        long history is most of an incremental verification's time: a file of one source
        whose signed window range is whole hours (every file a healthy ledger writes) is
        checked with one regular expression and searched, not parsed line by line."""
        if self._refs is not None:  # parsed already: all of them say no less
            return self._refs
        lines = self._lines
        assert lines is not None
        text = "\n".join(lines) + "\n"
        source = lines[0].split(" ", 1)[0]
        if _LINES.fullmatch(text) is None or text.count(f"\n{source} ") != len(lines) - 1:
            return self.refs()  # several sources or an odd line: every ref (or ValueError)
        # The signed window range (third line) names the extremes; their lines are found
        # by text search (a range no line has, or not whole hours: every ref instead).
        offsets = set()
        for window in (self.first, self.last):
            at = f"\n{text}".find(f"\n{source} {window} ")
            if at < 0 or window % HOUR:
                return self.refs()
            offsets.add(text.count("\n", 0, at))
        return [self._ref(lines, offset) for offset in sorted(offsets)]

    def _ref(self, lines: list[str], offset: int) -> BatchRef:
        source, window, kind = lines[offset].split(" ")
        return BatchRef(self.start + offset, source, int(window), kind)


def index_path(start: int) -> str:
    """index_path is the file of batches ``start .. start + 255`` (``start`` % 256 == 0)."""
    return f"{INDEX}/{start:08d}{INDEX_SUFFIX}"


def sign_index(
    signer: Signer, origin: str, size: int, created: int, refs: Sequence[BatchRef]
) -> bytes:
    """sign_index is the signed index file of 256 consecutive batches."""
    windows = [r.window_start for r in refs]
    lines = [
        INDEX_FORMAT,
        origin,
        f"{refs[0].seq} {size} {created} {min(windows)} {max(windows)}",
        *(f"{r.source} {r.window_start} {r.kind}" for r in refs),
    ]
    return sign_note("\n".join(lines) + "\n", signer)


def open_index(raw: bytes, keyring: Keyring, origin: str, start: int) -> IndexFile | None:
    """open_index returns a stored index file, or None when it cannot be trusted
    (malformed, another origin or range, no signature by a key valid where it was
    signed)."""
    try:
        note = open_note(raw, keyring.verifiers())
        lines = note.text[:-1].split("\n")
        if len(lines) != 3 + TILE_WIDTH or lines[:2] != [INDEX_FORMAT, origin]:
            return None
        first_seq, size, created, first, last = (int(x) for x in lines[2].split(" "))
        if first_seq != start or size < start + TILE_WIDTH:
            return None
        if not any(
            keyring.status(sig.name, sig.key_hash, created, size - 1) is KeyStatus.VALID
            for sig in note.sigs
        ):
            return None
    except (LedgerError, ValueError):
        return None
    return IndexFile(start, first, last, lines[3:])
