"""The commit point on an object store: the create-only write of the next manifest.

Committers on different machines share no lock, only the store. Each one lists
``ledger/manifests/`` to find the head ``N-1``, builds manifest ``N`` on top of it and
writes ``ledger/manifests/<N>.json`` only if absent:

- the write succeeds: this committer owns ``N`` and the store holds it under Object Lock;
- the key exists (S3 412): another writer won ``N``; re-read the head and rebuild on top
  of the winner (rebase), then try ``N+1``;
- a conflicting conditional write is in flight (S3 409): retry the same ``N`` after a
  short, jittered pause.

The chain that results is linear with no duplicates because exactly one create of each
key can succeed. A listing of zero-padded names is strongly consistent on S3, so the head
a committer sees is never older than a commit that finished before it listed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import (
    MANIFEST_SUFFIX,
    MANIFESTS,
    manifest_path,
    parse_numbered_name,
)
from audit_pipeline.ledger.storage import (
    ObjectExistsError,
    ObjectStore,
    StorageError,
    StoredObject,
    WriteConflictError,
)

MAX_CONFLICT_RETRIES = 8
MAX_REBASES = 1000


@dataclass(frozen=True)
class Head:
    """Head is the newest committed manifest: its sequence number and bytes."""

    seq: int
    data: bytes
    version_id: str


@dataclass(frozen=True)
class CommitPoint:
    """CommitPoint is the manifest this committer created: its sequence and pinned version."""

    seq: int
    stored: StoredObject
    rebases: int


class ChainGapError(LedgerError):
    """ChainGapError: the manifest listing is not ``0..n-1`` (a manifest is missing)."""


def manifest_numbers(store: ObjectStore) -> list[int]:
    """manifest_numbers lists the committed sequence numbers, sorted, refusing a gap."""
    numbers = []
    for key in store.list_keys(f"{MANIFESTS}/"):
        number = parse_numbered_name(key.rpartition("/")[2], MANIFEST_SUFFIX)
        if number is not None and key == manifest_path(number):
            numbers.append(number)
    numbers.sort()
    if numbers != list(range(len(numbers))):
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
        raise ChainGapError(f"manifest chain has a gap: {manifest_path(missing[0])} is missing")
    return numbers


def read_head(store: ObjectStore) -> Head | None:
    """read_head returns the newest manifest, or None for an empty ledger."""
    numbers = manifest_numbers(store)
    if not numbers:
        return None
    key = manifest_path(numbers[-1])
    stored = store.head(key)
    if stored is None:
        raise StorageError(f"{key} vanished while the head was read")
    return Head(numbers[-1], store.get(key, stored.version_id), stored.version_id)


def commit_next(
    store: ObjectStore,
    build: Callable[[int, Head | None], bytes],
    *,
    pause: Callable[[float], None] = time.sleep,
    base_delay: float = 0.05,
) -> CommitPoint:
    """commit_next creates the next manifest; ``build(seq, head)`` makes its bytes.

    ``build`` is called again after every lost race, with the new head, so a manifest
    always links to the one before it; ``build`` raising :class:`ObjectExistsError` (a
    create-only write of its own found the key taken) counts as a lost race too. Raises
    :class:`StorageError` when 409 conflicts persist past ``MAX_CONFLICT_RETRIES`` for one
    sequence number.
    """
    rebases = 0
    while rebases <= MAX_REBASES:
        head = read_head(store)
        seq = 0 if head is None else head.seq + 1
        try:
            data = build(seq, head)
        except ObjectExistsError:
            rebases += 1  # a key of this attempt was taken: another writer is at ``seq``
            continue
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                stored = store.put_new(manifest_path(seq), data)
            except WriteConflictError:
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
                pause(base_delay * (2**attempt) * (0.5 + random.random()))
                continue
            except ObjectExistsError:
                rebases += 1
                break
            return CommitPoint(seq, stored, rebases)
    raise StorageError(f"gave up after {MAX_REBASES} lost commit races")
