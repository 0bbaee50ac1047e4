"""Build the auditors' DuckDB dataset from exactly the verified ledger, atomically.

The build:

1. verifies the ledger (``verify_ledger``) and appends the run to the verification history
   (``history.py``); a ledger with any finding is not published: the previous dataset
   file stays as it was, and the error says why;
2. takes the verified tree size and root, re-reads the manifests and checks that their
   Merkle root is that verified root (so a manifest changed after verification is caught);
3. reuses the previous dataset when it was built from a prefix of this verified chain
   (*incremental*, the default): the published file is copied to the temporary file and
   only the batches after that prefix are loaded; otherwise, or with ``full=True``
   (``dataset build --full``), every batch is loaded into a new file (*full*).
   ``BuildResult.mode`` and ``.reason`` say which path was taken and why;
4. reads each data file the manifests list, and only those (never a glob: a file dropped
   into ``lake/`` is never seen), checks the bytes it read against the manifest's size and
   SHA-256, and loads the rows from those same bytes into native tables, ordered by hour
   window, then batch, then row, so ``audit_events`` is stored in time order (an
   incremental build takes out the kept rows of hours from the earliest new batch's hour on
   and puts them back in that order, so a late batch sits with its hour, as in a full
   build); ``batches`` gains the new batches' rows, while ``checkpoints``, ``keys``,
   ``verification_runs``, ``dataset_info``, the views and the comments are written whole;
5. writes everything into ``<name>.tmp-<pid>`` beside the target and ``os.replace``s it
   over the old file. A reader holding the old file keeps reading it (same inode); new
   readers see the new file; nobody ever waits on DuckDB's file lock.

Why carrying rows over is sound: each row of the previous file was loaded from bytes
whose size and SHA-256 matched the batch's manifest when that build ran, and the file
records the SHA-256 of every manifest it loaded (``batches.manifest_sha256``). The
verified chain pins those manifest hashes (every manifest's bytes are a leaf of the
verified Merkle root and the next manifest links to its hash), and a manifest pins its
data file's SHA-256 and row count. So when the file's manifest hashes equal the chain's
prefix, re-reading those data files could only yield the rows already there. The
previous file is checked for what can be checked cheaply: for every sequence, the
manifest SHA-256 it records and the SHA-256 of the manifest text it stores equal the
chain's; the facts it reuses (row counts, hours) are read from that checked text; it
holds exactly each manifest's row count per batch and no other rows; its tables, dataset
and lake schema, package and DuckDB versions and log origin are this build's. Any
difference, or a file that cannot be opened, means a full build. It is not signed:
whoever can write it can also edit the published dataset itself, and a full build
replaces whatever it holds. An old data file altered *after* it was loaded is the
verifier's to find: a full verification re-hashes every data file (an incremental one
only those after its trusted checkpoint), and a full rebuild re-reads and re-hashes
every file the manifests list. Likewise a checkpoint whose exact bytes the previous file
lists, under an unchanged keyring, keeps its row without its signature being checked
again.

Events live in a native table (not views over Parquet) because a year is 8,760 small
files: scanning them for every query is slow, a native table is compact and fast, and an
index on ``event_id`` makes a lookup by id a point query. Copying the published file and
appending is used rather than ``INSERT ... SELECT`` from it: re-encoding every row costs
about as much as loading it from Parquet, a file copy does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit_pipeline import __version__
from audit_pipeline.dataset import history
from audit_pipeline.dataset.contents import differing_rows
from audit_pipeline.dataset.schema import (
    DATASET_SCHEMA_VERSION,
    EVENT_COLUMNS,
    METADATA_TABLES,
    QUARANTINE_COLUMNS,
    TABLES,
    comment_tables,
    create_tables,
)
from audit_pipeline.dataset.seal import DATASET_ENV as DATASET_ENV  # re-exported
from audit_pipeline.dataset.seal import (
    check_seal,
    dataset_path,  # defined without DuckDB; importers keep using it from here
    write_seal,
)
from audit_pipeline.dataset.storage import (
    STORAGE_COMPATIBILITY,
    STORAGE_VERSION_NUMBER,
    connect_new,
    storage_version_number,
)
from audit_pipeline.dataset.views import create_views
from audit_pipeline.dataset.workflow_views import (
    ActivityFileChanged,
    create_workflow_views,
    load_workflow_activity,
)
from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.lake import EVENT_SCHEMA, PARQUET_FORMAT, SCHEMA_VERSION
from audit_pipeline.lake.parquet import is_event_schema, upgrade_batch_table
from audit_pipeline.ledger import (
    Keyring,
    LedgerError,
    SignedManifest,
    VerifyReport,
    load_keyring,
    merkle,
    open_checkpoint,
    parse_manifest,
    resolve_data_dir,
    verify_ledger,
)
from audit_pipeline.ledger.canonical import canonical_json
from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    DATA_MODE,
    LocalStorage,
    NotRegularFileError,
    make_dirs,
    manifest_path,
    open_regular,
    open_regular_for_writing,
    parse_numbered_name,
)
from audit_pipeline.ledger.manifest import AUDIT_LOGS_SOURCE, source_name
from audit_pipeline.ledger.note import parse_vkey
from audit_pipeline.ledger.verify import merkle_b64
from audit_pipeline.text import plural

log = logging.getLogger(__name__)

_FLUSH_ROWS = 200_000
FULL = "full"
INCREMENTAL = "incremental"


class DatasetIntegrityError(AuditPipelineError):
    """The ledger did not verify, or changed while the dataset was read: nothing published."""

    exit_code = 1


class DatasetMissingError(ConfigurationError):
    """There is no dataset file yet."""


@dataclass(frozen=True)
class BuildResult:
    """What a build published, and whether it reused the previous file (``mode``)."""

    path: Path
    tree_size: int
    root_hash: str | None
    batches: int
    data_files: int
    events: int
    quarantined: int
    verification_run_id: str
    seconds: float
    mode: str = FULL
    reason: str = ""
    reused_batches: int = 0
    files_read: int = 0

    def summary(self) -> str:
        if self.mode == INCREMENTAL:
            how = (
                f"incremental: kept {plural(self.reused_batches, 'batch')} of the previous "
                f"dataset, read {plural(self.files_read, 'data file')}"
            )
        else:
            how = f"full: read {plural(self.files_read, 'data file')} ({self.reason})"
        return (
            f"dataset {self.path}: {plural(self.events, 'event')}, {self.quarantined:,} "
            f"quarantined, {plural(self.batches, 'batch')} "
            f"({plural(self.data_files, 'data file')}) from the verified ledger of size "
            f"{self.tree_size}; {how}; built in {self.seconds:.1f} s"
        )


def build_dataset(
    data_dir: str | Path,
    *,
    database: str | Path | None = None,
    keyring: Keyring | None = None,
    trusted_checkpoint: bytes | None = None,
    report: VerifyReport | None = None,
    trigger: str = "dataset build",
    progress: Callable[[str], None] | None = None,
    full: bool = False,
    witness_keys: Sequence[WitnessKey] = (),
    witness_quorum: int | None = None,
    anchored_digest: str | None = None,
) -> BuildResult:
    """build_dataset verifies the ledger and publishes a new dataset file built from it.

    An incremental build re-derives the rows it would carry over from their verified data
    files (a dataset edited and sealed again is never reused) unless ``anchored_digest``,
    the dataset's SHA-256 as recorded outside the data directory when it was published
    (Dagster's event log), equals the seal's: then the file is the one that was published.

    ``report`` lets a caller that has just verified (the Dagster asset after its checks)
    pass that report instead of verifying twice; it is recorded in the history either way.
    The previous dataset's rows are reused when it was built from a prefix of the verified
    chain; ``full`` reads every data file instead. Raises DatasetIntegrityError (exit 1)
    when the ledger has findings, leaving the previous dataset in place.
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
            witness_keys=witness_keys,
            witness_quorum=witness_quorum,
        )
    run = history.record(data_dir, report, trigger=trigger)
    if not report.intact:
        # Coverage gaps (hours not synced yet) do not stop the dataset: it shows them in
        # its `gaps` view. Anything about what is committed does.
        findings = report.integrity_findings
        shown = "; ".join(f.line() for f in findings[:5])
        more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
        raise DatasetIntegrityError(
            f"the ledger in {data_dir} did not verify ({plural(len(findings), 'finding')}: "
            f"{shown}{more}); the dataset was not rebuilt. Run 'audit-pipeline verify' for "
            "the full report."
        )
    make_dirs(target.parent)
    with _build_lock(target):
        _remove_stale_temporaries(target)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            written = _write_database(
                tmp,
                target,
                data_dir,
                report,
                run,
                say,
                "a full build was asked for" if full else None,
                anchored_digest,
            )
            write_seal(
                target,
                built=tmp,
                origin=report.origin,
                tree_size=report.tree_size,
                root_hash=run.root_hash,
                checkpoint=run.checkpoint,
                verification_run_id=run.run_id,
            )
            _publish(tmp, target)
        except BaseException:
            _discard(tmp)
            raise
    result = BuildResult(
        path=target,
        tree_size=report.tree_size,
        root_hash=run.root_hash,
        verification_run_id=run.run_id,
        seconds=time.monotonic() - started,
        **written,
    )
    log.info("%s", result.summary())
    return result


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """_build_lock serializes builders of one target (readers never take it)."""
    fd = open_regular_for_writing(
        target.with_name(target.name + ".build-lock"), os.O_RDWR | os.O_CREAT, 0o644
    )
    try:
        os.fchmod(fd, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_stale_temporaries(target: Path) -> None:
    for stale in target.parent.glob(f"{target.name}.tmp-*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _discard(tmp: Path) -> None:
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _publish(tmp: Path, target: Path) -> None:
    """_publish makes the built file read-only (whatever the umask), durable, then current."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fchmod(fd, DATA_MODE)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _Chain:
    """_Chain is the verified log: the exact bytes of every manifest, proven by the verified
    root, parsed only where a build needs their fields (a year is 8,760 manifests)."""

    def __init__(self, raws: list[bytes]) -> None:
        self.raws = raws
        self.sha256 = [hashlib.sha256(raw).hexdigest() for raw in raws]
        self.roots = _prefix_roots([merkle.leaf_hash(raw) for raw in raws])
        self._parsed: dict[int, SignedManifest] = {}

    def __len__(self) -> int:
        return len(self.raws)

    def manifest(self, sequence: int) -> SignedManifest:
        signed = self._parsed.get(sequence)
        if signed is None:
            try:
                signed = parse_manifest(self.raws[sequence])
            except LedgerError as exc:
                raise DatasetIntegrityError(f"manifest {sequence} does not parse: {exc}") from exc
            if signed.sequence != sequence:
                raise DatasetIntegrityError(f"manifest {sequence} names sequence {signed.sequence}")
            self._parsed[sequence] = signed
        return signed

    def manifests(self, start: int = 0) -> list[SignedManifest]:
        return [self.manifest(sequence) for sequence in range(start, len(self.raws))]


def _read_chain(data_dir: Path, report: VerifyReport) -> _Chain:
    """_read_chain reads manifests 0..tree_size-1 and checks their root is the verified one
    (so a manifest changed after verification is caught)."""
    raws = []
    for sequence in range(report.tree_size):
        try:
            raws.append(LocalStorage(data_dir).read(manifest_path(sequence)))
        except (OSError, LedgerError) as exc:
            raise DatasetIntegrityError(
                f"manifest {sequence} cannot be read after verification: "
                f"{getattr(exc, 'strerror', None) or exc}; nothing was published"
            ) from exc
    chain = _Chain(raws)
    if report.tree_size and chain.roots[-1] != report.root_hash:
        raise DatasetIntegrityError(
            f"the manifests in {data_dir} no longer have the verified root of size "
            f"{report.tree_size}: the ledger changed after verification; nothing was published"
        )
    return chain


def verified_chain(data_dir: Path, report: VerifyReport) -> list[SignedManifest]:
    """verified_chain returns the manifests the report verified, proven by their root."""
    return _read_chain(data_dir, report).manifests()


def _read_verified_file(data_dir: Path, signed: SignedManifest) -> pa.Table:
    """_read_verified_file reads a data file once and parses the bytes it hashed."""
    data = signed.manifest.data
    assert data is not None
    try:
        raw = LocalStorage(data_dir).read(data.path)
    except (OSError, LedgerError) as exc:
        raise DatasetIntegrityError(
            f"data file of batch {signed.sequence} cannot be read after verification: {exc}"
        ) from exc
    if len(raw) != data.size or hashlib.sha256(raw).hexdigest() != data.sha256:
        raise DatasetIntegrityError(
            f"{data.path} (batch {signed.sequence}) changed after verification: its bytes no "
            "longer match the signed manifest; nothing was published"
        )
    table = pq.read_table(pa.BufferReader(raw))
    if not is_event_schema(table.schema) or table.num_rows != data.rows:
        raise DatasetIntegrityError(f"{data.path}: not the audit event file its manifest pins")
    return upgrade_batch_table(table)


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


def _storage_order(batches: Sequence[SignedManifest]) -> list[SignedManifest]:
    """_storage_order is the order rows are stored in: by hour, then batch (late batches
    sit with their hour), keeping only batches with a data file."""
    with_data = [m for m in batches if m.manifest.data is not None]
    return sorted(with_data, key=lambda m: (m.manifest.window_start, m.sequence))


def _is_audit_batch(signed: SignedManifest) -> bool:
    """Workflow activity batches go to workflow_activity (workflow_views.py), not here."""
    return source_name(signed.manifest) == AUDIT_LOGS_SOURCE


def _load_batches(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    batches: Sequence[SignedManifest],
    say: Callable[[str], None],
    kept: Mapping[int, tuple[pa.Table, pa.Table]] | None = None,
    tables: tuple[str, str] = ("audit_events", "quarantine"),
) -> tuple[dict[int, int], int]:
    """_load_batches appends the rows of ``batches`` in storage order: rows in ``kept``
    (sequence -> (events, quarantine) taken from the previous file), others read from their
    verified data files. Returns the quarantined rows per batch and the files read."""
    kept = kept or {}
    events = _Loader(con, tables[0], EVENT_COLUMNS)
    quarantine = _Loader(con, tables[1], QUARANTINE_COLUMNS)
    quarantined: dict[int, int] = {}
    ordered = [m for m in _storage_order(batches) if _is_audit_batch(m)]
    to_read = sum(1 for m in ordered if m.sequence not in kept)
    read = 0
    for signed in ordered:
        if signed.sequence in kept:
            kept_events, kept_quarantine = kept[signed.sequence]
            events.add(kept_events)
            quarantine.add(kept_quarantine)
            quarantined[signed.sequence] = kept_quarantine.num_rows
            continue
        table = _with_provenance(_read_verified_file(data_dir, signed), signed.sequence)
        read += 1
        bad = pc.is_valid(table.column("quarantine_reason"))
        quarantined[signed.sequence] = pc.sum(bad).as_py() or 0
        if quarantined[signed.sequence]:
            quarantine.add(table.filter(bad))
            events.add(table.filter(pc.invert(bad)))
        else:
            events.add(table)
        if read % 500 == 0:
            say(f"loaded {read}/{to_read} data files")
    events.flush()
    quarantine.flush()
    return quarantined, read


class _NotIncremental(Exception):
    """The previous dataset cannot be carried over; the message says why."""


def _write_database(
    tmp: Path,
    target: Path,
    data_dir: Path,
    report: VerifyReport,
    run: history.VerificationRun,
    say: Callable[[str], None],
    full_reason: str | None,
    anchored_digest: str | None = None,
) -> dict[str, Any]:
    """_write_database writes the new dataset into ``tmp``, incrementally when it can."""
    chain = _read_chain(data_dir, report)
    reason = full_reason or _unsafe_verification(report)
    if reason is None:
        try:
            return _write_incremental(
                tmp, target, data_dir, report, chain, run, say, anchored_digest
            )
        except _NotIncremental as why:
            reason = str(why)
            _discard(tmp)
    say(f"full build: {reason}")
    return _write_full(tmp, data_dir, report, chain, run, say, reason)


def _unsafe_verification(report: VerifyReport) -> str | None:
    """_unsafe_verification says why a verification cannot vouch for carrying rows over."""
    if report.data_range is not None:
        return "the verification checked the data of a range of hours only"
    return None


def _write_full(
    tmp: Path,
    data_dir: Path,
    report: VerifyReport,
    chain: _Chain,
    run: history.VerificationRun,
    say: Callable[[str], None],
    reason: str,
) -> dict[str, Any]:
    con = connect_new(tmp)
    try:
        con.execute("SET TimeZone = 'UTC'")
        create_tables(con)
        manifests = chain.manifests()
        quarantined, read = _load_batches(con, data_dir, manifests, say)
        say(f"loaded {read} data files; indexing")
        con.execute("CREATE INDEX audit_events_event_id ON audit_events (event_id)")
        _insert_batches(con, manifests, quarantined)
        counts = _finish(con, data_dir, report, chain, run, FULL, reason, {})
    finally:
        con.close()
    return {**counts, "mode": FULL, "reason": reason, "reused_batches": 0, "files_read": read}


def _write_incremental(
    tmp: Path,
    target: Path,
    data_dir: Path,
    report: VerifyReport,
    chain: _Chain,
    run: history.VerificationRun,
    say: Callable[[str], None],
    anchored_digest: str | None = None,
) -> dict[str, Any]:
    """_write_incremental copies the published file to ``tmp`` and appends what is new, or
    raises _NotIncremental (before anything is published) saying why it cannot."""
    if not os.path.lexists(target):
        raise _NotIncremental(f"there is no previous dataset at {target}")
    if not target.is_file() or target.is_symlink():  # a FIFO would block the copy forever
        raise _NotIncremental(f"the previous dataset {target} is not a regular file")
    if target.with_name(target.name + ".wal").exists():
        raise _NotIncremental(
            f"the previous dataset has a write-ahead log ({target.name}.wal): it was changed "
            "after it was published"
        )
    version = storage_version_number(target)
    if version not in (None, STORAGE_VERSION_NUMBER):  # None: not a database, said below
        raise _NotIncremental(
            f"the previous dataset is in DuckDB storage format {version}, not the "
            f"{STORAGE_COMPATIBILITY} format (number {STORAGE_VERSION_NUMBER}) DuckDB 1.x reads"
        )
    try:
        _copy_file(target, tmp)
    except (OSError, NotRegularFileError) as exc:
        raise _NotIncremental(f"the previous dataset cannot be copied: {exc}") from exc
    try:
        con = duckdb.connect(str(tmp))
    except duckdb.Error as exc:
        raise _NotIncremental(f"the previous dataset cannot be opened: {_first_line(exc)}") from exc
    try:
        con.execute("SET TimeZone = 'UTC'")
        previous = _previous_batches(con, report, chain)
        sealed = check_seal(target)
        if not sealed.ok:
            raise _NotIncremental(f"the previous dataset is not reused: {sealed.problem}")
        reused = previous.size
        if sealed.seal is None or sealed.seal.dataset_sha256 != anchored_digest:
            # The seal lives beside the file: whoever rewrote one can rewrite both. Nothing
            # is carried over that the verified data files do not give again.
            say(f"checking the rows of the {reused} batches to reuse against their data files")
            differ = differing_rows(con, data_dir, chain.manifests()[:reused])
            if differ:
                raise _NotIncremental(
                    "the previous dataset's rows are not those of the verified data files "
                    f"({'; '.join(differ)}): it was edited and sealed again"
                )
        new = chain.manifests(reused)
        new_files = _storage_order(new)
        # Rows of hours at or after the earliest new batch's hour are taken out and put
        # back in storage order with the new ones (a late batch joins its hour).
        first_new = new_files[0].manifest.window_start if new_files else None
        moved = [
            chain.manifest(sequence)
            for sequence, window_start in previous.windows.items()
            if first_new is not None and window_start >= first_new
        ]
        kept = _take_out(con, [m.sequence for m in moved])
        say(
            f"reusing {reused} batches of the previous dataset; loading {len(new_files)} new "
            f"data files" + (f" (and re-ordering {len(moved)} batches)" if moved else "")
        )
        known = _known_checkpoints(con, data_dir)
        _drop_views(con)
        for table in METADATA_TABLES:
            con.execute(f"DROP TABLE {table}")
        create_tables(con, METADATA_TABLES)
        comment_tables(con, [t for t in TABLES if t not in METADATA_TABLES])
        quarantined, read = _load_batches(con, data_dir, [*moved, *new], say, kept)
        # Rows of the batches table are a function of the manifest's bytes and its
        # quarantined count, neither of which changes: only new batches are added.
        _insert_batches(con, new, quarantined)
        reason = f"the previous dataset holds batches 0..{reused - 1} of the verified chain"
        if not reused:
            reason = "the previous dataset holds no batches"
        counts = _finish(con, data_dir, report, chain, run, INCREMENTAL, reason, known)
    except duckdb.Error as exc:
        raise _NotIncremental(f"the previous dataset cannot be reused: {_first_line(exc)}") from exc
    finally:
        con.close()
    return {
        **counts,
        "mode": INCREMENTAL,
        "reason": reason,
        "reused_batches": reused,
        "files_read": read,
    }


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _copy_file(source: Path, destination: Path) -> None:
    """_copy_file copies in the kernel (a reflink where the file system shares extents)."""
    with os.fdopen(open_regular(source), "rb") as src, open(destination, "xb") as dst:
        size = os.fstat(src.fileno()).st_size
        try:
            done = 0
            while done < size:
                step = os.copy_file_range(src.fileno(), dst.fileno(), size - done)
                if step == 0:
                    break
                done += step
        except OSError:
            src.seek(0)
            dst.seek(0)
            dst.truncate()
            shutil.copyfileobj(src, dst, 1 << 20)
            done = size
        if done != size or os.fstat(dst.fileno()).st_size != size:
            raise OSError(f"copied {done} of {size} bytes of {source}")


@functools.cache
def _expected_columns() -> dict[str, list[tuple[str, str]]]:
    """_expected_columns: every table's (column, type) as this version creates them."""
    con = duckdb.connect()
    try:
        create_tables(con)
        return _table_columns(con)
    finally:
        con.close()


def _table_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    tables = {
        name
        for (name,) in con.sql(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
    }
    columns: dict[str, list[tuple[str, str]]] = {name: [] for name in tables}
    for table, column, kind in con.sql(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() ORDER BY table_name, column_index"
    ).fetchall():
        if table in columns:
            columns[table].append((column, kind))
    return columns


@dataclass(frozen=True)
class _Previous:
    """What the previous dataset holds: batches 0..size-1, and the hour of each that has
    a data file, in storage order."""

    size: int
    windows: dict[int, int]


def _previous_batches(
    con: duckdb.DuckDBPyConnection, report: VerifyReport, chain: _Chain
) -> _Previous:
    """_previous_batches checks that the copied file is a dataset of a prefix of ``chain``,
    raising _NotIncremental saying what differs. Facts about its batches are read from the
    manifest text it stores, after checking that text is the verified manifest's bytes."""
    if _table_columns(con) != _expected_columns():
        raise _NotIncremental("the previous dataset's tables differ from this version's")
    info = dict(con.sql("SELECT key, value FROM dataset_info").fetchall())
    expected = {
        "dataset_schema_version": DATASET_SCHEMA_VERSION,
        "lake_schema_version": SCHEMA_VERSION,
        "audit_pipeline_version": __version__,
        "duckdb_version": duckdb.__version__,
        "origin": report.origin or "",
    }
    for key, value in expected.items():
        if info.get(key) != value:
            raise _NotIncremental(
                f"the previous dataset has {key} {info.get(key)!r}, this build {value!r}"
            )
    listed = con.sql(
        "SELECT sequence, manifest_sha256, sha256(manifest::VARCHAR) = manifest_sha256, "
        "CAST(manifest->>'$.signed.data.rows' AS BIGINT), "
        "CAST(manifest->>'$.signed.window.start' AS BIGINT), quarantined, "
        "coalesce(manifest->>'$.signed.source.name', 'slack_audit_logs') "
        "FROM batches ORDER BY window_start, sequence"
    ).fetchall()
    if len(listed) > len(chain):
        raise _NotIncremental(
            f"the previous dataset holds {len(listed)} batches, the verified ledger {len(chain)}"
        )
    held = {
        sequence: (events, quarantined)
        for sequence, events, quarantined in con.sql(
            "SELECT batch_sequence, count(*) FILTER (WHERE NOT q), count(*) FILTER (WHERE q) "
            "FROM (SELECT batch_sequence, false AS q FROM audit_events "
            "UNION ALL SELECT batch_sequence, true AS q FROM quarantine) GROUP BY ALL"
        ).fetchall()
    }
    if sorted(row[0] for row in listed) != list(range(len(listed))):
        raise _NotIncremental("the previous dataset's batches are not 0..n-1 without gaps")
    if not set(held) <= set(range(len(listed))):
        raise _NotIncremental("the previous dataset holds rows of batches it does not list")
    windows: dict[int, int] = {}
    for sequence, sha256, text_matches, rows, window_start, quarantined, source in listed:
        if sha256 != chain.sha256[sequence] or not text_matches:
            raise _NotIncremental(
                f"manifest {sequence} is not the one the previous dataset was built from "
                "(the ledger was rebuilt or its history changed)"
            )
        if source != AUDIT_LOGS_SOURCE:
            continue  # its rows are in workflow_activity, reloaded whole by every build
        events, in_quarantine = held.get(sequence, (0, 0))
        if events + in_quarantine != (rows or 0) or in_quarantine != quarantined:
            raise _NotIncremental(
                f"the previous dataset holds {events + in_quarantine} rows of batch "
                f"{sequence} ({in_quarantine} quarantined), its manifest lists {rows or 0}"
            )
        if rows is not None:
            windows[sequence] = window_start
    return _Previous(size=len(listed), windows=windows)


def _take_out(
    con: duckdb.DuckDBPyConnection, sequences: Sequence[int]
) -> dict[int, tuple[pa.Table, pa.Table]]:
    """_take_out removes the rows of ``sequences`` from the row tables and returns them
    (sequence -> (events, quarantine)) to be inserted again in storage order."""
    if not sequences:
        return {}
    listed = ", ".join(str(int(s)) for s in sequences)
    taken: list[pa.Table] = []
    for table, columns in (("audit_events", EVENT_COLUMNS), ("quarantine", QUARANTINE_COLUMNS)):
        where = f"WHERE batch_sequence IN ({listed})"
        rows = con.sql(f"SELECT * FROM {table} {where} ORDER BY batch_sequence, row_index")
        # Back to the lake's Arrow types, so they concatenate with rows read from Parquet.
        taken.append(
            rows.to_arrow_table().select(_row_schema(columns).names).cast(_row_schema(columns))
        )
        con.execute(f"DELETE FROM {table} {where}")
    events, quarantine = taken
    return {
        sequence: (
            events.filter(pc.equal(events.column("batch_sequence"), sequence)),
            quarantine.filter(pc.equal(quarantine.column("batch_sequence"), sequence)),
        )
        for sequence in sequences
    }


def _row_schema(columns: Sequence[str]) -> pa.Schema:
    """_row_schema: the Arrow schema of rows as loaded (lake columns plus provenance)."""
    return pa.schema(
        [EVENT_SCHEMA.field(name) for name in columns]
        + [pa.field("batch_sequence", pa.int64()), pa.field("row_index", pa.int64())]
    )


def _drop_views(con: duckdb.DuckDBPyConnection) -> None:
    names = con.sql(
        "SELECT view_name FROM duckdb_views() WHERE database_name = current_database() "
        "AND NOT internal"
    ).fetchall()
    for (name,) in names:
        con.execute(f'DROP VIEW "{name}"')


def _finish(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    report: VerifyReport,
    chain: _Chain,
    run: history.VerificationRun,
    mode: str,
    reason: str,
    known_checkpoints: Mapping[bytes, tuple[Any, ...]],
) -> dict[str, int]:
    """_finish writes the other metadata tables and the views, then checkpoints."""
    ((events,),) = con.sql("SELECT count(*) FROM audit_events").fetchall()
    ((quarantine,),) = con.sql("SELECT count(*) FROM quarantine").fetchall()
    ((data_files,),) = con.sql("SELECT count(data_path) FROM batches").fetchall()
    _insert_checkpoints(con, data_dir, chain, report, known_checkpoints)
    _insert_keys(con, data_dir)
    _insert_runs(con, history.load_runs(data_dir))
    _insert_info(con, data_dir, report, run, events, quarantine, mode, reason)
    try:
        load_workflow_activity(con, data_dir, chain.manifests())
    except (OSError, ActivityFileChanged) as exc:
        raise DatasetIntegrityError(f"{exc}; nothing was published") from exc
    create_views(con)
    create_workflow_views(con)
    con.execute("CHECKPOINT")
    return {
        "batches": len(chain),
        "data_files": data_files,
        "events": events,
        "quarantined": quarantine,
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


def _known_checkpoints(
    con: duckdb.DuckDBPyConnection, data_dir: Path
) -> dict[bytes, tuple[Any, ...]]:
    """_known_checkpoints returns the previous dataset's checkpoint rows by note bytes when
    they were verified with the keys trusted now (the same bytes then verify the same)."""
    keyring = _load_keyring(data_dir)
    current = sorted(k.vkey for k in keyring.keys) if keyring is not None else []
    previous = [vkey for (vkey,) in con.sql("SELECT vkey FROM keys ORDER BY vkey").fetchall()]
    if not current or previous != current:
        return {}
    rows = con.sql("SELECT note, tree_size, origin, root_hash, signed_by FROM checkpoints")
    return {note.encode(): tuple(rest) for note, *rest in rows.fetchall()}


def _insert_checkpoints(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    chain: _Chain,
    report: VerifyReport,
    known: Mapping[bytes, tuple[Any, ...]],
) -> None:
    keyring = _load_keyring(data_dir)
    if keyring is None:
        return
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
        if raw in known:
            tree_size, origin, root_hash, signed_by = known[raw]
        else:
            try:
                cp, note = open_checkpoint(raw, verifiers)
            except LedgerError:
                continue
            # base64, as in the checkpoint itself and every verification (one encoding)
            tree_size, origin, root_hash = cp.tree_size, cp.origin, merkle_b64(cp.root_hash)
            signed_by = [f"{s.name}+{s.key_hash:08x}" for s in note.sigs]
        cols["tree_size"].append(tree_size)
        cols["origin"].append(origin)
        cols["root_hash"].append(root_hash)
        cols["signed_by"].append(signed_by)
        cols["matches"].append(
            tree_size <= len(chain) and merkle_b64(chain.roots[tree_size]) == root_hash
        )
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
    mode: str,
    reason: str,
) -> None:
    built_at = int(time.time())
    info = {
        "built_at": str(built_at),
        "built_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(built_at)),
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
        "duckdb_version": duckdb.__version__,
        "build_mode": mode,
        "build_reason": reason,
        # which witnesses vouched for the checkpoint, when the verification had their keys
        "witnesses": json.dumps(report.witnesses.to_dict()) if report.witnesses else "",
    }
    _insert_rows(
        con, "dataset_info", {"key": list(info), "value": list(info.values())}, "key, value"
    )
