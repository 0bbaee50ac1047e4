"""An object-store data directory as the verifier reads it: LocalStorage's read side on S3.

The ledger verifies through :class:`~audit_pipeline.ledger.storage.LedgerFiles`; this is
that surface over an :class:`~audit_pipeline.store.s3.S3ObjectStore`. Every read takes
the key's *current* version (what pyarrow, DuckDB and every other reader would get) by
one GET, so the bytes checked are one version, never a mix; :attr:`read_versions`
remembers which, with the store's description of it (checksum, retention), so the
version audit needs no second request for a key read here. Readers that open paths (the
Parquet format) get a copy in a private local cache made for this run; the verifier
hashes that copy against the manifest (``regular_path`` fetches, ``path`` names the copy
fetched), so the cache is checked before anything in it is believed.

An object store has no symbolic links, FIFOs or directories: keys are listed, never
followed, and a key whose name is not a clean relative path is listed (so the verifier
names it as a file nobody references) but never copied out.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from audit_pipeline.ledger.layout import CHECKPOINTS, KEYRING, MANIFESTS
from audit_pipeline.ledger.object_ledger import STAGED
from audit_pipeline.ledger.storage import ObjectNotFoundError, StoredObject
from audit_pipeline.store.s3 import S3ObjectStore

# concurrent GETs of one read_all (a boto3 client is thread-safe; its pool holds 10)
READ_JOBS = 8

_KEPT = (f"{MANIFESTS}/", f"{CHECKPOINTS}/", f"{STAGED}/", KEYRING)


@dataclass(frozen=True)
class ReadVersion:
    """ReadVersion is the version of a key the verifier read, with its bytes' digest and
    the store's own description of that version."""

    version_id: str
    sha256: str
    size: int
    stored: StoredObject


class S3DataDirectory:
    """S3DataDirectory reads a ledger kept under ``s3://bucket/prefix`` (a context manager:
    leaving it removes the local cache)."""

    def __init__(self, store: S3ObjectStore, cache_dir: Path | None = None) -> None:
        self.store = store
        self.root = str(store.location)
        self._owned: tempfile.TemporaryDirectory | None = None
        self._cache_dir = None if cache_dir is None else Path(cache_dir)
        self.read_versions: dict[str, ReadVersion] = {}
        self.ledger_bytes: dict[str, bytes] = {}  # manifests, checkpoints, intents, keyring
        self._lock = threading.Lock()

    def __enter__(self) -> S3DataDirectory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def cache_dir(self) -> Path:
        """cache_dir is made on first use (reading manifests needs none)."""
        if self._cache_dir is None:
            self._owned = tempfile.TemporaryDirectory(prefix="audit-pipeline-s3-")
            self._cache_dir = Path(self._owned.name)
        return self._cache_dir

    def close(self) -> None:
        if self._owned is not None:
            self._owned.cleanup()
            self._owned, self._cache_dir = None, None

    def describe(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    # -- LedgerFiles ----------------------------------------------------------------------

    def exists(self, rel: str) -> bool:
        rel = _clean(rel)
        return rel in self.ledger_bytes or self.store.exists(rel)

    def read(self, rel: str) -> bytes:
        """read returns the current version's bytes (FileNotFoundError if there is none); a
        manifest, checkpoint, intent or the keyring (each written once) read before in this
        run is not fetched again: the bytes of the version read then are returned."""
        rel = _clean(rel)
        kept = self.ledger_bytes.get(rel)
        if kept is not None:
            return kept
        try:
            data, stored = self.store.get_described(rel)
        except ObjectNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such object", self.describe(rel)) from None
        with self._lock:
            self.read_versions[rel] = ReadVersion(
                stored.version_id, hashlib.sha256(data).hexdigest(), len(data), stored
            )
            if rel.startswith(_KEPT):
                self.ledger_bytes[rel] = data
        return data

    def read_all(self, rels: list[str]) -> list[bytes]:
        """read_all reads many objects (the manifests after the log's last whole tile) a few
        GETs at a time: each is a round trip; FileNotFoundError names the first missing."""
        if len(rels) < 2:
            return [self.read(rel) for rel in rels]
        with ThreadPoolExecutor(max_workers=READ_JOBS) as pool:
            return list(pool.map(self.read, rels))

    def list_dir(self, rel: str, after: str | None = None) -> list[str]:
        """list_dir names the entries right under ``rel`` (keys, or the next key segment);
        with ``after`` (a name under ``rel``), only those that sort after it, so that a
        verifier from a trusted checkpoint lists what follows it, not the whole history."""
        head = _clean(rel) + "/"
        return self.store.list_children(head, None if after is None else head + after)

    def walk_files(self, rel: str, linked_dirs: list[str] | None = None) -> list[str]:
        return self.store.list_keys(_clean(rel) + "/")

    def linked_directories(self, skip: tuple[str, ...] = ()) -> list[str]:
        return []

    def regular_path(self, rel: str) -> Path:
        """regular_path copies the current version into the run's cache (once) and returns
        the copy; the caller checks its hash against the manifest before trusting it."""
        rel = _clean(rel)
        target = self.cache_dir / rel
        if target.is_file():
            return target
        data = self.read(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(dir=target.parent, prefix=".fetch-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(staged, target)
        return target

    def path(self, rel: str) -> Path:
        """path is where :meth:`regular_path` keeps the copy (nothing is fetched here)."""
        return self.cache_dir / _clean(rel)


def _clean(rel: str) -> str:
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise FileNotFoundError(errno.ENOENT, "not a clean relative key", rel)
    return rel
