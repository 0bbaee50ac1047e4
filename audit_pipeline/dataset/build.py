"""Build the auditors' DuckDB dataset from exactly the verified ledger, atomically.

The build:

1. verifies the ledger (``verify_ledger``) and appends the run to the verification history
   (``history.py``); a ledger with any finding is not published: the previous dataset
   file stays as it was, and the error says why;
2. takes the verified tree size and root, re-reads the manifests and checks that their
   Merkle root is that verified root (so a manifest changed after verification is caught);
3. reads each data file those manifests list, and only those (never a glob: a file dropped
   into ``lake/`` is never seen), checks the bytes it read against the manifest's size and
   SHA-256, and loads the rows from those same bytes into native tables, ordered by hour
   window so ``audit_events`` is stored in time order;
4. writes everything into ``<name>.tmp-<pid>`` beside the target and ``os.replace``s it
   over the old file. A reader holding the old file keeps reading it (same inode); new
   readers see the new file; nobody ever waits on DuckDB's file lock.

Events live in a native table (not views over Parquet) because a year is 8,760 small
files: scanning them for every query is slow, a native table is compact and fast, and an
index on ``event_id`` makes a lookup by id a point query.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit_pipeline import __version__
from audit_pipeline.dataset import history
from audit_pipeline.dataset.schema import (
    DATASET_SCHEMA_VERSION,
    EVENT_COLUMNS,
    QUARANTINE_COLUMNS,
    create_tables,
)
from audit_pipeline.dataset.views import create_views
from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.lake import EVENT_SCHEMA, PARQUET_FORMAT, SCHEMA_VERSION
from audit_pipeline.ledger import (
    Keyring,
    Ledger,
    LedgerError,
    SignedManifest,
    VerifyReport,
    load_keyring,
    merkle,
    open_checkpoint,
    resolve_data_dir,
    verify_ledger,
)
from audit_pipeline.ledger.canonical import canonical_json
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    manifest_path,
    parse_numbered_name,
)
from audit_pipeline.ledger.note import parse_vkey

log = logging.getLogger(__name__)

DATASET_FILENAME = "audit.duckdb"
DATASET_ENV = "AUDIT_DATASET"
_FLUSH_ROWS = 200_000


class DatasetIntegrityError(AuditPipelineError):
    """The ledger did not verify, or changed while the dataset was read: nothing published."""

    exit_code = 1


class DatasetMissingError(ConfigurationError):
    """There is no dataset file yet."""


@dataclass(frozen=True)
class BuildResult:
    """What a build published."""

    path: Path
    tree_size: int
    root_hash: str | None
    batches: int
    data_files: int
    events: int
    quarantined: int
    verification_run_id: str
    seconds: float

    def summary(self) -> str:
        return (
            f"dataset {self.path}: {self.events} events, {self.quarantined} quarantined, "
            f"{self.batches} batches ({self.data_files} data files) from the verified ledger "
            f"of size {self.tree_size}; built in {self.seconds:.1f} s"
        )


def dataset_path(data_dir: str | Path | None = None, explicit: str | Path | None = None) -> Path:
    """dataset_path: ``explicit``, else ``$AUDIT_DATASET``, else ``<data dir>/audit.duckdb``."""
    chosen = explicit or os.environ.get(DATASET_ENV)
    if chosen:
        return Path(chosen).expanduser()
    return resolve_data_dir(data_dir) / DATASET_FILENAME


def build_dataset(
    data_dir: str | Path,
    *,
    database: str | Path | None = None,
    keyring: Keyring | None = None,
    trusted_checkpoint: bytes | None = None,
    report: VerifyReport | None = None,
    trigger: str = "dataset build",
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """build_dataset verifies the ledger and publishes a new dataset file built from it.

    ``report`` lets a caller that has just verified (the Dagster asset after its checks)
    pass that report instead of verifying twice; it is recorded in the history either way.
    Raises DatasetIntegrityError (exit 1) when the ledger has findings, leaving the
    previous dataset in place.
    """
    started = time.monotonic()
    say = progress or (lambda _msg: None)
    data_dir = resolve_data_dir(data_dir)
    target = dataset_path(data_dir, database)
    if report is None:
        say(f"verifying the ledger in {data_dir}")
        report = verify_ledger(
            data_dir,
            file_format=PARQUET_FORMAT,
            keyring=keyring,
            trusted_checkpoint=trusted_checkpoint,
        )
    run = history.record(data_dir, report, trigger=trigger)
    if not report.intact:
        # Coverage gaps (hours not synced yet) do not stop the dataset: it shows them in
        # its `gaps` view. Anything about what is committed does.
        findings = report.integrity_findings
        shown = "; ".join(f.line() for f in findings[:5])
        more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
        raise DatasetIntegrityError(
            f"the ledger in {data_dir} did not verify ({len(findings)} findings: "
            f"{shown}{more}); the dataset was not rebuilt. Run 'audit-pipeline verify' for "
            "the full report."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target):
        _remove_stale_temporaries(target)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            counts = _write_database(tmp, data_dir, report, run, say)
            _publish(tmp, target)
        except BaseException:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            raise
    result = BuildResult(
        path=target,
        tree_size=report.tree_size,
        root_hash=run.root_hash,
        verification_run_id=run.run_id,
        seconds=time.monotonic() - started,
        **counts,
    )
    log.info("%s", result.summary())
    return result


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """_build_lock serializes builders of one target (readers never take it)."""
    fd = os.open(target.with_name(target.name + ".build-lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_stale_temporaries(target: Path) -> None:
    for stale in target.parent.glob(f"{target.name}.tmp-*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _publish(tmp: Path, target: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def verified_chain(data_dir: Path, report: VerifyReport) -> list[SignedManifest]:
    """verified_chain returns the manifests the report verified, proven by their root."""
    size = report.tree_size
    if size == 0:
        return []
    try:
        chain = Ledger(data_dir, file_format=PARQUET_FORMAT).manifests()
    except LedgerError as exc:
        raise DatasetIntegrityError(f"the ledger changed after verification: {exc}") from exc
    chain = chain[:size]
    root = merkle.root_hash([m.leaf_hash for m in chain]) if len(chain) == size else None
    if root is None or root != report.root_hash:
        raise DatasetIntegrityError(
            f"the manifests in {data_dir} no longer have the verified root of size {size}: "
            "the ledger changed after verification; nothing was published"
        )
    return chain


def _read_verified_file(data_dir: Path, signed: SignedManifest) -> pa.Table:
    """_read_verified_file reads a data file once and parses the bytes it hashed."""
    data = signed.manifest.data
    assert data is not None
    path = data_dir / data.path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetIntegrityError(
            f"data file of batch {signed.sequence} cannot be read after verification: {exc}"
        ) from exc
    if len(raw) != data.size or hashlib.sha256(raw).hexdigest() != data.sha256:
        raise DatasetIntegrityError(
            f"{data.path} (batch {signed.sequence}) changed after verification: its bytes no "
            "longer match the signed manifest; nothing was published"
        )
    table = pq.read_table(pa.BufferReader(raw))
    if not table.schema.equals(EVENT_SCHEMA, check_metadata=False) or table.num_rows != data.rows:
        raise DatasetIntegrityError(f"{data.path}: not the audit event file its manifest pins")
    return table


def _with_provenance(table: pa.Table, sequence: int) -> pa.Table:
    n = table.num_rows
    table = table.append_column("batch_sequence", pa.array([sequence] * n, pa.int64()))
    return table.append_column("row_index", pa.array(range(n), pa.int64()))


class _Loader:
    """_Loader buffers Arrow tables and inserts them into DuckDB in large chunks."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> None:
        self.con = con
        self.table = table
        self.columns = [*columns, "batch_sequence", "row_index"]
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.total = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.pending.append(table.select(self.columns))
        self.pending_rows += table.num_rows
        if self.pending_rows >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        chunk = pa.concat_tables(self.pending)
        names = ", ".join(self.columns)
        self.con.register("_chunk", chunk)
        try:
            self.con.execute(f"INSERT INTO {self.table} ({names}) SELECT {names} FROM _chunk")
        finally:
            self.con.unregister("_chunk")
        self.total += chunk.num_rows
        self.pending, self.pending_rows = [], 0


def _write_database(
    tmp: Path,
    data_dir: Path,
    report: VerifyReport,
    run: history.VerificationRun,
    say: Callable[[str], None],
) -> dict[str, int]:
    chain = verified_chain(data_dir, report)
    con = duckdb.connect(str(tmp))
    try:
        con.execute("SET TimeZone = 'UTC'")
        create_tables(con)
        events = _Loader(con, "audit_events", EVENT_COLUMNS)
        quarantine = _Loader(con, "quarantine", QUARANTINE_COLUMNS)
        quarantined: dict[int, int] = {}
        ordered = sorted(chain, key=lambda m: (m.manifest.window_start, m.sequence))
        files = [m for m in ordered if m.manifest.data is not None]
        for done, signed in enumerate(files, 1):
            table = _with_provenance(_read_verified_file(data_dir, signed), signed.sequence)
            bad = pc.is_valid(table.column("quarantine_reason"))
            quarantined[signed.sequence] = pc.sum(bad).as_py() or 0
            if quarantined[signed.sequence]:
                quarantine.add(table.filter(bad))
                events.add(table.filter(pc.invert(bad)))
            else:
                events.add(table)
            if done % 500 == 0:
                say(f"loaded {done}/{len(files)} data files")
        events.flush()
        quarantine.flush()
        say(f"loaded {events.total} events from {len(files)} data files; indexing")
        con.execute("CREATE INDEX audit_events_event_id ON audit_events (event_id)")
        _insert_batches(con, chain, quarantined)
        _insert_checkpoints(con, data_dir, chain, report)
        _insert_keys(con, data_dir)
        _insert_runs(con, history.load_runs(data_dir))
        _insert_info(con, data_dir, report, run, events.total, quarantine.total)
        create_views(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return {
        "batches": len(chain),
        "data_files": len(files),
        "events": events.total,
        "quarantined": quarantine.total,
    }


def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: dict[str, list[Any]],
                 select: str) -> None:  # fmt: skip
    """_insert_rows inserts column lists through Arrow (one statement, not one per row)."""
    staged = pa.table(rows)
    con.register("_rows", staged)
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM _rows")
    finally:
        con.unregister("_rows")


def _ts(column: str) -> str:
    return f"to_timestamp({column})"


def _insert_batches(
    con: duckdb.DuckDBPyConnection, chain: Sequence[SignedManifest], quarantined: dict[int, int]
) -> None:
    if not chain:
        return
    cols: dict[str, list[Any]] = {k: [] for k in (
        "sequence", "kind", "window_start", "window_end", "data_path", "data_sha256",
        "data_size", "data_rows", "event_count", "quarantined", "min_date_create",
        "max_date_create", "events_merkle_root", "manifest_path", "manifest_sha256",
        "prev_manifest_sha256", "key_name", "key_id", "created", "run_id", "origin", "source",
        "manifest",
    )}  # fmt: skip
    for signed in chain:
        m = signed.manifest
        d = m.data
        values = {
            "sequence": m.sequence,
            "kind": m.kind,
            "window_start": m.window_start,
            "window_end": m.window_end,
            "data_path": d.path if d else None,
            "data_sha256": d.sha256 if d else None,
            "data_size": d.size if d else None,
            "data_rows": d.rows if d else None,
            "event_count": m.event_count,
            "quarantined": quarantined.get(m.sequence, 0),
            "min_date_create": m.min_date_create,
            "max_date_create": m.max_date_create,
            "events_merkle_root": m.events_root,
            "manifest_path": manifest_path(m.sequence),
            "manifest_sha256": signed.sha256,
            "prev_manifest_sha256": m.prev_manifest_sha256,
            "key_name": m.key_name,
            "key_id": m.key_id,
            "created": m.created,
            "run_id": m.run_id,
            "origin": m.origin,
            "source": canonical_json(dict(m.source)).decode(),
            "manifest": signed.raw.decode(),
        }
        for key, value in values.items():
            cols[key].append(value)
    select = ", ".join(
        _ts(c)
        if c in ("window_start", "window_end", "min_date_create", "max_date_create", "created")
        else c
        for c in cols
    )
    _insert_rows(con, "batches", cols, select)


def _prefix_roots(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """_prefix_roots returns the RFC 6962 root of every prefix, O(n log n) (index = size)."""
    roots = [merkle.empty_root()]
    stack: list[tuple[int, bytes]] = []
    for leaf in leaf_hashes:
        stack.append((1, leaf))
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            (width, right), (_, left) = stack.pop(), stack.pop()
            stack.append((width * 2, merkle.node_hash(left, right)))
        root = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            root = merkle.node_hash(left, root)
        roots.append(root)
    return roots


def _load_keyring(data_dir: Path) -> Keyring | None:
    try:
        return load_keyring(data_dir)
    except ConfigurationError:
        return None


def _insert_checkpoints(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    chain: Sequence[SignedManifest],
    report: VerifyReport,
) -> None:
    keyring = _load_keyring(data_dir)
    if keyring is None:
        return
    roots = _prefix_roots([m.leaf_hash for m in chain])
    verifiers = keyring.verifiers()
    cols: dict[str, list[Any]] = {
        k: [] for k in ("tree_size", "origin", "root_hash", "signed_by", "matches", "path", "note")
    }
    directory = data_dir / CHECKPOINTS
    for name in sorted(os.listdir(directory)) if directory.is_dir() else []:
        size = parse_numbered_name(name, CHECKPOINT_SUFFIX)
        if size is None or size > report.tree_size:
            continue
        raw = (directory / name).read_bytes()
        try:
            cp, note = open_checkpoint(raw, verifiers)
        except LedgerError:
            continue
        cols["tree_size"].append(cp.tree_size)
        cols["origin"].append(cp.origin)
        cols["root_hash"].append(cp.root_hash.hex())
        cols["signed_by"].append([f"{s.name}+{s.key_hash:08x}" for s in note.sigs])
        cols["matches"].append(cp.tree_size <= len(chain) and roots[cp.tree_size] == cp.root_hash)
        cols["path"].append(f"{CHECKPOINTS}/{name}")
        cols["note"].append(raw.decode())
    if cols["tree_size"]:
        _insert_rows(con, "checkpoints", cols, ", ".join(cols))


def _insert_keys(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    keyring = _load_keyring(data_dir)
    if keyring is None or not keyring.keys:
        return
    cols: dict[str, list[Any]] = {k: [] for k in (
        "name", "key_id", "vkey", "fingerprint", "valid_from", "valid_until", "revoked_at",
    )}  # fmt: skip
    for key in keyring.keys:
        _, _, public = parse_vkey(key.vkey)
        cols["name"].append(key.name)
        cols["key_id"].append(key.key_id)
        cols["vkey"].append(key.vkey)
        cols["fingerprint"].append(hashlib.sha256(public).hexdigest())
        cols["valid_from"].append(key.valid_from)
        cols["valid_until"].append(key.valid_until)
        cols["revoked_at"].append(key.revoked_at)
    select = "name, key_id, vkey, fingerprint, to_timestamp(valid_from), " \
        "to_timestamp(valid_until), to_timestamp(revoked_at)"  # fmt: skip
    _insert_rows(con, "keys", cols, select)


def _insert_runs(con: duckdb.DuckDBPyConnection, runs: Sequence[history.VerificationRun]) -> None:
    if not runs:
        return
    cols: dict[str, list[Any]] = {k: [] for k in (
        "run_id", "verified_at", "trigger", "ok", "tree_size", "root_hash", "finding_count",
        "checkpoint", "report",
    )}  # fmt: skip
    for run in runs:
        cols["run_id"].append(run.run_id)
        cols["verified_at"].append(run.verified_at)
        cols["trigger"].append(run.trigger)
        cols["ok"].append(run.ok)
        cols["tree_size"].append(run.tree_size)
        cols["root_hash"].append(run.root_hash)
        cols["finding_count"].append(len(run.findings))
        cols["checkpoint"].append(run.checkpoint)
        cols["report"].append(json.dumps(dict(run.report), sort_keys=True))
    select = ", ".join(_ts(c) if c == "verified_at" else c for c in cols)
    _insert_rows(con, "verification_runs", cols, select)


def _insert_info(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    report: VerifyReport,
    run: history.VerificationRun,
    events: int,
    quarantined: int,
) -> None:
    info = {
        "built_at": str(int(time.time())),
        "audit_pipeline_version": __version__,
        "dataset_schema_version": DATASET_SCHEMA_VERSION,
        "lake_schema_version": SCHEMA_VERSION,
        "data_dir": str(data_dir.resolve()),
        "origin": report.origin or "",
        "tree_size": str(report.tree_size),
        "root_hash": run.root_hash or "",
        "checkpoint": run.checkpoint or "",
        "verification_run_id": run.run_id,
        "events": str(events),
        "quarantined": str(quarantined),
    }
    _insert_rows(
        con, "dataset_info", {"key": list(info), "value": list(info.values())}, "key, value"
    )
