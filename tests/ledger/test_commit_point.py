"""commit_next's retry rules, driven by an in-memory ObjectStore that can answer 409.

SeaweedFS (tests/store/test_commit_point.py) exercises the 412 race for real but cannot be
made to answer 409 ConditionalRequestConflict on demand; this store can.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime

import pytest

from audit_pipeline.ledger.commit_point import MAX_CONFLICT_RETRIES, commit_next, read_head
from audit_pipeline.ledger.layout import manifest_path
from audit_pipeline.ledger.storage import (
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectStore,
    ObjectVersion,
    StoredObject,
    WriteConflictError,
)


class MemoryStore:
    """A versioned, create-only store in a dict; ``conflicts`` 409s precede the next put."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str, bytes]] = {}
        self.conflicts = 0
        self.puts: list[str] = []
        self._ids = itertools.count(1)

    def put_new(self, key: str, data: bytes) -> StoredObject:
        self.puts.append(key)
        if self.conflicts:
            self.conflicts -= 1
            raise WriteConflictError(key)
        if key in self.objects:
            raise ObjectExistsError(key)
        version = f"v{next(self._ids)}"
        self.objects[key] = (version, data)
        return self._stored(key)

    def _stored(self, key: str) -> StoredObject:
        version, data = self.objects[key]
        return StoredObject(
            key, version, len(data), hashlib.sha256(data).hexdigest(), datetime.now(UTC), None, None
        )

    def get(self, key: str, version_id: str | None = None) -> bytes:
        if key not in self.objects or version_id not in (None, self.objects[key][0]):
            raise ObjectNotFoundError(key)
        return self.objects[key][1]

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        if key not in self.objects or version_id not in (None, self.objects[key][0]):
            return None
        return self._stored(key)

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def list_versions(self, prefix: str, after: str | None = None) -> list[ObjectVersion]:
        return [
            ObjectVersion(k, v, True, False, len(d), None)
            for k, (v, d) in sorted(self.objects.items())
            if k.startswith(prefix) and (after is None or k > after)
        ]


def _build(seq: int, head) -> bytes:
    return f'{{"seq":{seq},"prev":"{head.version_id if head else ""}"}}'.encode()


def test_the_memory_store_is_an_object_store() -> None:
    assert isinstance(MemoryStore(), ObjectStore)


def test_a_409_retries_the_same_number_with_growing_pauses() -> None:
    store = MemoryStore()
    commit_next(store, _build)
    store.conflicts = 3
    pauses: list[float] = []
    point = commit_next(store, _build, pause=pauses.append, base_delay=1.0)
    assert point.seq == 1 and point.rebases == 0
    assert store.puts[1:] == [manifest_path(1)] * 4  # same key, no rebase
    assert len(pauses) == 3
    assert all(
        lo <= p < hi for p, (lo, hi) in zip(pauses, [(0.5, 1.5), (1, 3), (2, 6)], strict=True)
    )
    head = read_head(store)
    assert head is not None and head.data == b'{"seq":1,"prev":"v1"}'


def test_conflicts_that_never_clear_give_up_with_the_error() -> None:
    store = MemoryStore()
    store.conflicts = MAX_CONFLICT_RETRIES + 1
    with pytest.raises(WriteConflictError):
        commit_next(store, _build, pause=lambda _: None)
    assert store.objects == {}
