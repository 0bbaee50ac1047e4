"""The object-store seam: what the ledger needs from write-once storage, with no vendor in it.

The ledger's own operations (``layout.LocalStorage``) are create-if-absent, read, list a
directory, walk a prefix, stat and remove leftovers. On an object store with Object Lock
the same work becomes the :class:`ObjectStore` protocol below:

- :meth:`~ObjectStore.put_new` creates a key only if it is absent, with a SHA-256 the
  server verifies and the bucket's retention, and returns the version it made; a manifest
  pins that version id, because Object Lock protects versions, not keys;
- :meth:`~ObjectStore.get`, :meth:`~ObjectStore.head` and :meth:`~ObjectStore.exists`
  read a key's current version or a pinned one;
- :meth:`~ObjectStore.list_keys` lists current keys under a prefix (the manifests' head);
- :meth:`~ObjectStore.list_versions` lists every version and delete marker under a prefix,
  which is what tamper detection compares against the pins.

Keys are relative, POSIX style, exactly the paths ``layout`` produces (``lake/...``,
``ledger/manifests/...``); a store maps them under its own root. Nothing here deletes: a
store the ledger writes to is one it cannot take anything away from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from audit_pipeline.errors import AuditPipelineError

COMPLIANCE = "COMPLIANCE"


class StorageError(AuditPipelineError):
    """StorageError: the store could not do what was asked (I/O, network, refused)."""

    exit_code = 3


class ObjectExistsError(StorageError):
    """ObjectExistsError: a create-only write found the key taken (S3: 412)."""


class WriteConflictError(StorageError):
    """WriteConflictError: a concurrent conditional write to the same key is in flight
    (S3: 409 ConditionalRequestConflict); the same write may be retried after a pause."""


class ObjectNotFoundError(StorageError):
    """ObjectNotFoundError: no such key, or no such version of it."""


class ChecksumRejectedError(StorageError):
    """ChecksumRejectedError: the server received bytes whose SHA-256 is not the one sent."""


@dataclass(frozen=True)
class StoredObject:
    """One version of one key as the store describes it (HEAD).

    ``sha256`` is the server-side checksum in hex, None if the store holds none;
    ``retain_until``/``lock_mode`` are the version's Object Lock retention, None if it has
    none.
    """

    key: str
    version_id: str
    size: int
    sha256: str | None
    last_modified: datetime | None
    lock_mode: str | None
    retain_until: datetime | None


@dataclass(frozen=True)
class ObjectVersion:
    """One entry of a version listing: a version or a delete marker of a key."""

    key: str
    version_id: str
    is_latest: bool
    is_delete_marker: bool
    size: int
    last_modified: datetime | None


@runtime_checkable
class ObjectStore(Protocol):
    """ObjectStore is write-once storage with versions: create-only, never overwrite."""

    def put_new(self, key: str, data: bytes) -> StoredObject:
        """put_new creates ``key`` holding ``data`` only if no current version exists.

        Raises :class:`ObjectExistsError` if it does, :class:`WriteConflictError` if a
        concurrent conditional write is in flight, :class:`ChecksumRejectedError` if the
        server saw other bytes.
        """
        ...

    def get(self, key: str, version_id: str | None = None) -> bytes:
        """get returns the bytes of the current (or the given) version of ``key``."""
        ...

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        """head describes the current (or the given) version; None if there is none."""
        ...

    def exists(self, key: str) -> bool:
        """exists tells whether ``key`` has a current version (not a delete marker)."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """list_keys returns the sorted keys with a current version under ``prefix``."""
        ...

    def list_versions(self, prefix: str, after: str | None = None) -> list[ObjectVersion]:
        """list_versions returns every version and delete marker under ``prefix`` (with
        ``after``: of the keys that sort after it)."""
        ...


@runtime_checkable
class LedgerFiles(Protocol):
    """LedgerFiles is what the verifier reads a data directory through: ``layout``'s
    ``LocalStorage``, or an object store's read side. Paths are relative, POSIX style;
    a missing file raises FileNotFoundError. ``regular_path`` gives a local path holding
    the file's bytes (for readers that open paths, such as the Parquet format), ``path``
    the same for a file already checked."""

    def exists(self, rel: str) -> bool: ...

    def read(self, rel: str) -> bytes: ...

    def list_dir(self, rel: str, after: str | None = None) -> list[str]: ...

    def walk_files(self, rel: str, linked_dirs: list[str] | None = None) -> list[str]: ...

    def linked_directories(self, skip: tuple[str, ...] = ()) -> list[str]: ...

    def regular_path(self, rel: str) -> Any: ...

    def path(self, rel: str) -> Any: ...
