"""The dataset's seal: what a build was made from, and a digest of the file it published.

A DuckDB file can be edited in place by anyone who can write it (``UPDATE audit_events
...``), and every reader would then show forged values. Each build therefore writes, beside
the dataset, ``<dataset>.seal`` (canonical JSON, mode 0444)::

    {"built_at":1764550805,"checkpoint":"<signed note text>","dataset_sha256":"<hex>",
     "dataset_size":123456,"origin":"audit-pipeline/ledger","root_hash":"<hex>",
     "schema":"audit_pipeline.dataset-seal/v1","tree_size":8,"verification_run_id":"..."}

:func:`check_seal` hashes the file (no row is re-verified: the cost is one sequential
read) and compares it with the seal, and, given the data directory, checks that the
ledger's manifests still have the sealed root at the sealed size (the ledger grown since is
said; the ledger changed since is a failure). ``query``, the notebook and the report refuse
a dataset that does not match its seal, an incremental build never reuses one, and
``verify`` reports it.

A build seals the new file before renaming it into place (a crash in between leaves the
old file under a new seal: refused until the next build, which then builds in full), and a
reader that sees a mismatch checks once more, so a build running while someone queries is
not mistaken for tampering.

What it cannot do: the seal lives beside the dataset, so an insider who rewrites the file
*and* its seal (recomputing the digest) is not caught by the seal alone. The
``audit_dataset`` asset also records the digest in Dagster's event log, outside the data
directory, and rebuilds in full when the seal disagrees with it; ``dataset build --full``
replaces the file from the verified ledger whatever it held; and the sealed checkpoint is
checked against the ledger, so forged rows cannot claim a log the verifier does not hold.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_pipeline.errors import AuditPipelineError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.canonical import canonical_json, parse_canonical
from audit_pipeline.ledger.commit import file_digest
from audit_pipeline.ledger.layout import (
    DATA_MODE,
    LocalStorage,
    NotRegularFileError,
    manifest_path,
    resolve_data_dir,
)

SEAL_SCHEMA = "audit_pipeline.dataset-seal/v1"
SEAL_SUFFIX = ".seal"
DATASET_FILENAME = "audit.duckdb"
DATASET_ENV = "AUDIT_DATASET"


def dataset_path(data_dir: str | Path | None = None, explicit: str | Path | None = None) -> Path:
    """dataset_path: ``explicit``, else ``$AUDIT_DATASET``, else ``<data dir>/audit.duckdb``.
    Here, without DuckDB, so that the verifier-only install's ``verify`` checks the seal."""
    chosen = explicit or os.environ.get(DATASET_ENV)
    if chosen:
        return Path(chosen).expanduser()
    return resolve_data_dir(data_dir) / DATASET_FILENAME


class DatasetTamperedError(AuditPipelineError):
    """The dataset no longer matches its seal (or has none): it is not shown."""

    exit_code = 1


@dataclass(frozen=True)
class Seal:
    """Seal is what one build published: the file's digest and the checkpoint it was built
    from."""

    dataset_sha256: str
    dataset_size: int
    origin: str | None
    tree_size: int
    root_hash: str | None
    checkpoint: str | None
    built_at: int
    verification_run_id: str

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "built_at": self.built_at,
                "checkpoint": self.checkpoint,
                "dataset_sha256": self.dataset_sha256,
                "dataset_size": self.dataset_size,
                "origin": self.origin,
                "root_hash": self.root_hash,
                "schema": SEAL_SCHEMA,
                "tree_size": self.tree_size,
                "verification_run_id": self.verification_run_id,
            }
        )


@dataclass(frozen=True)
class SealStatus:
    """SealStatus is the outcome of one check: ``problem`` None means the file is the one
    sealed; ``ledger_note`` says how the ledger relates to what the dataset was built from."""

    path: Path
    seal: Seal | None
    problem: str | None
    ledger_size: int | None = None
    ledger_note: str | None = None
    checked_at: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def ledger_changed(self) -> bool:
        """ledger_changed: the ledger's prefix no longer has the sealed root."""
        return self.ledger_note is not None and self.ledger_note.startswith("changed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sealed": self.ok,
            "problem": self.problem,
            "built_from_tree_size": self.seal.tree_size if self.seal else None,
            "built_at": self.seal.built_at if self.seal else None,
            "ledger_tree_size": self.ledger_size,
            "ledger": self.ledger_note,
            "checked_at": self.checked_at,
        }

    def line(self) -> str:
        if self.problem:
            return f"dataset {self.path}: NOT SEALED: {self.problem}"
        assert self.seal is not None
        built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.seal.built_at))
        note = f"; ledger {self.ledger_note}" if self.ledger_note else ""
        return (
            f"dataset {self.path}: matches its seal (built {built} from the verified ledger "
            f"of size {self.seal.tree_size}){note}"
        )

    def require(self) -> None:
        """require raises DatasetTamperedError unless the file is the sealed one and the
        ledger still holds what it was built from."""
        if self.problem:
            raise DatasetTamperedError(
                f"{self.problem}; refusing to show it: rebuild it with 'audit-pipeline "
                "dataset build --full'"
            )
        if self.ledger_changed:
            raise DatasetTamperedError(
                f"dataset {self.path}: the ledger {self.ledger_note}; refusing to show it: "
                "run 'audit-pipeline verify'"
            )


def seal_path(dataset: Path) -> Path:
    return Path(dataset).with_name(Path(dataset).name + SEAL_SUFFIX)


def write_seal(
    dataset: Path,
    *,
    origin: str | None,
    tree_size: int,
    root_hash: str | None,
    checkpoint: str | None,
    verification_run_id: str,
    built: Path | None = None,
) -> Seal:
    """write_seal seals ``dataset`` (atomically, mode 0444) with the digest of ``built``,
    the file about to be renamed to it (default: ``dataset`` itself)."""
    size, sha256 = file_digest(built or dataset)
    seal = Seal(
        sha256,
        size,
        origin,
        tree_size,
        root_hash,
        checkpoint,
        int(time.time()),
        verification_run_id,
    )
    target = seal_path(dataset)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, DATA_MODE)
    try:
        os.fchmod(fd, DATA_MODE)
        os.write(fd, seal.to_bytes())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    return seal


def read_seal(dataset: Path) -> Seal:
    """read_seal parses the seal (ValueError naming why it cannot be used)."""
    try:
        raw = LocalStorage(seal_path(dataset).parent).read(seal_path(dataset).name)
    except FileNotFoundError:
        raise ValueError(
            "it has no seal (built by an older version, or the seal was removed)"
        ) from None
    except NotRegularFileError as exc:
        raise ValueError(f"its seal is unusable: {exc}") from None
    try:
        doc = parse_canonical(raw)
        if doc.get("schema") != SEAL_SCHEMA:
            raise ValueError("unknown schema")
        return Seal(
            dataset_sha256=str(doc["dataset_sha256"]),
            dataset_size=int(doc["dataset_size"]),
            origin=doc["origin"],
            tree_size=int(doc["tree_size"]),
            root_hash=doc["root_hash"],
            checkpoint=doc["checkpoint"],
            built_at=int(doc["built_at"]),
            verification_run_id=str(doc["verification_run_id"]),
        )
    except Exception as exc:
        raise ValueError(f"its seal is malformed ({exc})") from None


def check_seal(dataset: Path, data_dir: Path | None = None) -> SealStatus:
    """check_seal compares the dataset file with its seal and, given ``data_dir``, the
    sealed root with the ledger's manifests now.

    A build writes the new seal, then renames the new file over the old one: a reader
    between the two sees a mismatch for a moment, so a mismatch is checked once more.
    """
    status = _check_seal(Path(dataset), data_dir)
    if status.problem and status.seal is not None:
        time.sleep(0.05)
        status = _check_seal(Path(dataset), data_dir)
    return status


def _check_seal(dataset: Path, data_dir: Path | None) -> SealStatus:
    now = int(time.time())
    try:
        seal = read_seal(dataset)
    except ValueError as exc:
        return SealStatus(dataset, None, f"dataset {dataset}: {exc}", checked_at=now)
    try:
        size, sha256 = file_digest(dataset)
    except (OSError, NotRegularFileError) as exc:
        return SealStatus(dataset, seal, f"dataset {dataset} cannot be read: {exc}", checked_at=now)
    if dataset.with_name(dataset.name + ".wal").exists():
        return SealStatus(
            dataset,
            seal,
            f"dataset {dataset} has a write-ahead log: it was written to",
            checked_at=now,
        )
    if (size, sha256) != (seal.dataset_size, seal.dataset_sha256):
        return SealStatus(
            dataset,
            seal,
            f"dataset {dataset} was changed after it was built: its SHA-256 is {sha256}, "
            f"its seal says {seal.dataset_sha256}",
            checked_at=now,
        )
    if data_dir is None:
        return SealStatus(dataset, seal, None, checked_at=now)
    ledger_size, note = _ledger_against(Path(data_dir), seal)
    return SealStatus(dataset, seal, None, ledger_size, note, checked_at=now)


def _ledger_against(data_dir: Path, seal: Seal) -> tuple[int | None, str | None]:
    """_ledger_against hashes the manifests of the sealed prefix (kilobytes each) and says
    whether the ledger still has the sealed root, and how far it has grown since."""
    storage = LocalStorage(data_dir)
    names = storage.list_dir("ledger/manifests")
    size = sum(1 for n in names if n.endswith(".json") and not n.startswith("."))
    if seal.tree_size == 0 or seal.root_hash is None:
        return size, None
    try:
        raws = storage.read_all([manifest_path(s) for s in range(seal.tree_size)])
    except (FileNotFoundError, NotRegularFileError):
        return size, (
            f"changed since the build: manifests of the {seal.tree_size} batches it was "
            "built from are missing"
        )
    root = merkle.root_hash([merkle.leaf_hash(raw) for raw in raws])
    if root.hex() != seal.root_hash:
        return size, (
            f"changed since the build: its first {seal.tree_size} manifests no longer have "
            "the root the dataset was built from"
        )
    if size > seal.tree_size:
        return size, f"has grown since the build: {size - seal.tree_size} batches not in it"
    return size, None
