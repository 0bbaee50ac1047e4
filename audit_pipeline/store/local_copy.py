"""A local, hash-checked copy of an ``s3://`` ledger for the auditors' dataset.

``dataset build`` on an object store first verifies the store (versions included), then
copies what the dataset is made of into a local directory beside the database file: every
manifest, checkpoint and witnessed checkpoint, the keyring, and exactly the data objects
the manifests reference (never a listing's stray object). The build then verifies that
copy as any local data directory, hashing every data file against its manifest, and
loads the very bytes it hashed: what DuckDB holds is what was verified, and the copy is a
cache, never trusted for being there.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import (
    CHECKPOINTS,
    DATA_MODE,
    KEYS,
    MANIFESTS,
    make_dirs,
)
from audit_pipeline.ledger.manifest import parse_manifest
from audit_pipeline.ledger.witnessed import WITNESSED
from audit_pipeline.store.data_dir import S3DataDirectory
from audit_pipeline.store.s3 import S3ObjectStore
from audit_pipeline.store.settings import S3Settings


def local_copy_path(database: Path) -> Path:
    """local_copy_path is where the copy of the ledger a dataset is built from lives."""
    database = Path(database)
    return database.with_name(f"{database.stem}.ledger")


def copy_ledger(settings: S3Settings, target: Path) -> int:
    """copy_ledger brings ``target`` up to the store's current objects (see above) and
    returns how many objects it fetched (a data object already copied with the size its
    manifest pins is not fetched again: the build hashes it anyway)."""
    store = S3ObjectStore(settings)
    fetched = 0
    with S3DataDirectory(store) as files:
        keys = [
            key
            for prefix in (MANIFESTS, CHECKPOINTS, KEYS, WITNESSED)
            for key in store.list_keys(f"{prefix}/")
        ]
        wanted: dict[str, int | None] = dict.fromkeys(keys)
        for key in keys:
            if key.startswith(f"{MANIFESTS}/"):
                with contextlib.suppress(LedgerError, FileNotFoundError):
                    data = parse_manifest(files.read(key)).manifest.data
                    if data is not None:
                        wanted[data.path] = data.size
        for key, size in sorted(wanted.items()):
            local = target / key
            if size is not None and local.is_file() and local.stat().st_size == size:
                continue
            try:
                body = files.read(key)  # a manifest read above is not fetched again
            except FileNotFoundError:
                continue  # the build's verification names what is missing
            _write(local, body, mode=DATA_MODE if size is not None else 0o644)
            fetched += 1
    return fetched


def _write(path: Path, data: bytes, *, mode: int) -> None:
    make_dirs(path.parent)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(staged, mode)
    os.replace(staged, path)
