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

The parts live beside this module: ``chain.py`` (the verified manifests), ``loading.py``
(rows from verified data files), ``incremental.py`` (reusing the previous file) and
``metadata.py`` (the tables about the ledger and the build).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_pipeline.dataset import history
from audit_pipeline.dataset.chain import VerifiedChain, read_verified_chain
from audit_pipeline.dataset.chain import verified_chain as verified_chain  # re-exported
from audit_pipeline.dataset.errors import DatasetIntegrityError as DatasetIntegrityError
from audit_pipeline.dataset.errors import DatasetMissingError as DatasetMissingError
from audit_pipeline.dataset.incremental import (
    FULL,
    INCREMENTAL,
    NotIncremental,
    write_incremental,
)
from audit_pipeline.dataset.loading import load_batches
from audit_pipeline.dataset.metadata import insert_batches, write_metadata
from audit_pipeline.dataset.schema import create_tables
from audit_pipeline.dataset.seal import DATASET_ENV as DATASET_ENV  # re-exported
from audit_pipeline.dataset.seal import (
    dataset_path,  # defined without DuckDB; importers keep using it from here
    write_seal,
)
from audit_pipeline.dataset.storage import connect_new
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Keyring, VerifyReport, resolve_data_dir, verify_ledger
from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.layout import DATA_MODE, make_dirs, open_regular_for_writing
from audit_pipeline.text import plural

log = logging.getLogger(__name__)

__all__ = [
    "DATASET_ENV",
    "FULL",
    "INCREMENTAL",
    "BuildResult",
    "DatasetIntegrityError",
    "DatasetMissingError",
    "build_dataset",
    "dataset_path",
    "verified_chain",
]


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
    chain = read_verified_chain(data_dir, report)
    reason = full_reason or _unsafe_verification(report)
    if reason is None:
        try:
            return write_incremental(
                tmp, target, data_dir, report, chain, run, say, anchored_digest
            )
        except NotIncremental as why:
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
    chain: VerifiedChain,
    run: history.VerificationRun,
    say: Callable[[str], None],
    reason: str,
) -> dict[str, Any]:
    con = connect_new(tmp)
    try:
        con.execute("SET TimeZone = 'UTC'")
        create_tables(con)
        manifests = chain.manifests()
        quarantined, read = load_batches(con, data_dir, manifests, say)
        say(f"loaded {read} data files; indexing")
        con.execute("CREATE INDEX audit_events_event_id ON audit_events (event_id)")
        insert_batches(con, manifests, quarantined)
        counts = write_metadata(con, data_dir, report, chain, run, FULL, reason, {})
    finally:
        con.close()
    return {**counts, "mode": FULL, "reason": reason, "reused_batches": 0, "files_read": read}
