"""The batch index: which hour and source each batch covers, 256 batches a file, signed.

A commit must know which batches hold an hour (to drop ids already committed and to pick
the kind), and ``committed_windows`` every hour committed; a verification the batches of
the hours it checks. Reading every manifest for that grows with history, so each time
the log reaches a multiple of 256 batches the committer writes, once::

    ledger/index/<first sequence, 8 digits>.json

canonical JSON, signed by the log's key like an intent (context
``audit_pipeline.batch-index/v1\\x00``)::

    {"signatures":[{"key_id":..,"name":..,"sig":..}],
     "signed":{"batches":[["<source>",<window start>,"<kind>"], ... 256 entries],
               "created":<signing time>,"format":"audit_pipeline.batch-index/v1",
               "origin":..,"size":<tree size when signed>,"start":<first sequence>}}

A reader accepts a file only when its signature verifies with a keyring key valid at
position ``size - 1`` and time ``created``, and it names this origin and start with 256
entries; anything else (absent, altered, a key not trusted there) is read from the
manifests instead, and a full ``verify`` compares every stored file with the manifests
(``log_tile_mismatch``).
The signature is what makes a missing entry impossible to hide: an index is only as
trustworthy as the key that signs manifests, no more.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from audit_pipeline.ledger.canonical import canonical_json, parse_canonical
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.keys import Keyring, KeyStatus, signed_envelope
from audit_pipeline.ledger.manifest import SignedManifest, source_name
from audit_pipeline.ledger.note import Signer
from audit_pipeline.ledger.tiles import TILE_WIDTH

INDEX = "ledger/index"
INDEX_FORMAT = "audit_pipeline.batch-index/v1"
_CONTEXT = INDEX_FORMAT.encode() + b"\x00"


@dataclass(frozen=True)
class BatchRef:
    """What the index says of one batch: its sequence number, source, hour and kind."""

    seq: int
    source: str
    window_start: int
    kind: str

    @staticmethod
    def of(signed: SignedManifest) -> BatchRef:
        m = signed.manifest
        return BatchRef(signed.sequence, source_name(m), m.window_start, m.kind)


def index_path(start: int) -> str:
    """index_path is the file of batches ``start .. start + 255`` (``start`` % 256 == 0)."""
    return f"{INDEX}/{start:08d}.json"


def sign_index(
    signer: Signer, origin: str, size: int, created: int, refs: Sequence[BatchRef]
) -> bytes:
    """sign_index is the signed index file of 256 consecutive batches."""
    start = refs[0].seq
    body = {
        "batches": [[r.source, r.window_start, r.kind] for r in refs],
        "created": created,
        "format": INDEX_FORMAT,
        "origin": origin,
        "size": size,
        "start": start,
    }
    return signed_envelope(signer, _CONTEXT, body)


def open_index(raw: bytes, keyring: Keyring, origin: str, start: int) -> list[BatchRef] | None:
    """open_index returns the batches of a stored index file, or None when it cannot be
    trusted (malformed, another origin or range, a signature that does not verify with a
    key valid at the position it was signed)."""
    try:
        doc = parse_canonical(raw)
        (entry,) = doc["signatures"]
        body = doc["signed"]
        if set(doc) != {"signatures", "signed"} or body.get("format") != INDEX_FORMAT:
            return None
        if (body["origin"], body["start"]) != (origin, start):
            return None
        size, batches = body["size"], body["batches"]
        if type(size) is not int or size < start + TILE_WIDTH or len(batches) != TILE_WIDTH:
            return None
        name, hash_id = str(entry["name"]), int(str(entry["key_id"]), 16)
        key = keyring.find(name, hash_id)
        sig = base64.b64decode(entry["sig"], validate=True)
        if key is None or not key.verifier.verify(_CONTEXT + canonical_json(body), sig):
            return None
        created = body["created"]
        if type(created) is not int or key.status_at(created, size - 1) is not KeyStatus.VALID:
            return None
        refs = []
        for offset, (source, window, kind) in enumerate(batches):
            if not (isinstance(source, str) and type(window) is int and isinstance(kind, str)):
                return None
            refs.append(BatchRef(start + offset, source, window, kind))
    except (LedgerError, KeyError, TypeError, ValueError, AttributeError, binascii.Error):
        return None
    return refs
