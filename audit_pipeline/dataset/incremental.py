"""Incremental builds: carrying the previous dataset's rows over when it was built from a
prefix of the verified chain, and loading only the batches after that prefix.

The published file is copied to the temporary file and only the batches after the prefix
are loaded; an incremental build takes out the kept rows of hours from the earliest new
batch's hour on and puts them back in storage order, so a late batch sits with its hour,
as in a full build.

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

Copying the published file and appending is used rather than ``INSERT ... SELECT`` from
it: re-encoding every row costs about as much as loading it from Parquet, a file copy does
not.

"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from audit_pipeline import __version__
from audit_pipeline.dataset import history
from audit_pipeline.dataset.chain import VerifiedChain
from audit_pipeline.dataset.contents import differing_rows
from audit_pipeline.dataset.loading import load_batches, storage_order
from audit_pipeline.dataset.metadata import insert_batches, trusted_keyring, write_metadata
from audit_pipeline.dataset.schema import (
    DATASET_SCHEMA_VERSION,
    EVENT_COLUMNS,
    METADATA_TABLES,
    QUARANTINE_COLUMNS,
    TABLES,
    comment_tables,
    create_tables,
)
from audit_pipeline.dataset.seal import check_seal
from audit_pipeline.dataset.storage import (
    STORAGE_COMPATIBILITY,
    STORAGE_VERSION_NUMBER,
    storage_version_number,
)
from audit_pipeline.lake import EVENT_SCHEMA, SCHEMA_VERSION
from audit_pipeline.ledger import VerifyReport
from audit_pipeline.ledger.layout import NotRegularFileError, open_regular
from audit_pipeline.ledger.manifest import AUDIT_LOGS_SOURCE

FULL = "full"
INCREMENTAL = "incremental"


class NotIncremental(Exception):
    """The previous dataset cannot be carried over; the message says why."""


def write_incremental(
    tmp: Path,
    target: Path,
    data_dir: Path,
    report: VerifyReport,
    chain: VerifiedChain,
    run: history.VerificationRun,
    say: Callable[[str], None],
    anchored_digest: str | None = None,
) -> dict[str, Any]:
    """write_incremental copies the published file to ``tmp`` and appends what is new, or
    raises NotIncremental (before anything is published) saying why it cannot."""
    if not os.path.lexists(target):
        raise NotIncremental(f"there is no previous dataset at {target}")
    if not target.is_file() or target.is_symlink():  # a FIFO would block the copy forever
        raise NotIncremental(f"the previous dataset {target} is not a regular file")
    if target.with_name(target.name + ".wal").exists():
        raise NotIncremental(
            f"the previous dataset has a write-ahead log ({target.name}.wal): it was changed "
            "after it was published"
        )
    version = storage_version_number(target)
    if version not in (None, STORAGE_VERSION_NUMBER):  # None: not a database, said below
        raise NotIncremental(
            f"the previous dataset is in DuckDB storage format {version}, not the "
            f"{STORAGE_COMPATIBILITY} format (number {STORAGE_VERSION_NUMBER}) DuckDB 1.x reads"
        )
    try:
        _copy_file(target, tmp)
    except (OSError, NotRegularFileError) as exc:
        raise NotIncremental(f"the previous dataset cannot be copied: {exc}") from exc
    try:
        con = duckdb.connect(str(tmp))
    except duckdb.Error as exc:
        raise NotIncremental(f"the previous dataset cannot be opened: {first_line(exc)}") from exc
    try:
        con.execute("SET TimeZone = 'UTC'")
        previous = _previous_batches(con, report, chain)
        sealed = check_seal(target)
        if not sealed.ok:
            raise NotIncremental(f"the previous dataset is not reused: {sealed.problem}")
        reused = previous.size
        if sealed.seal is None or sealed.seal.dataset_sha256 != anchored_digest:
            # The seal lives beside the file: whoever rewrote one can rewrite both. Nothing
            # is carried over that the verified data files do not give again.
            say(f"checking the rows of the {reused} batches to reuse against their data files")
            differ = differing_rows(con, data_dir, chain.manifests()[:reused])
            if differ:
                raise NotIncremental(
                    "the previous dataset's rows are not those of the verified data files "
                    f"({'; '.join(differ)}): it was edited and sealed again"
                )
        new = chain.manifests(reused)
        new_files = storage_order(new)
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
        quarantined, read = load_batches(con, data_dir, [*moved, *new], say, kept)
        # Rows of the batches table are a function of the manifest's bytes and its
        # quarantined count, neither of which changes: only new batches are added.
        insert_batches(con, new, quarantined)
        reason = f"the previous dataset holds batches 0..{reused - 1} of the verified chain"
        if not reused:
            reason = "the previous dataset holds no batches"
        counts = write_metadata(con, data_dir, report, chain, run, INCREMENTAL, reason, known)
    except duckdb.Error as exc:
        raise NotIncremental(f"the previous dataset cannot be reused: {first_line(exc)}") from exc
    finally:
        con.close()
    return {
        **counts,
        "mode": INCREMENTAL,
        "reason": reason,
        "reused_batches": reused,
        "files_read": read,
    }


def first_line(exc: BaseException) -> str:
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
    con: duckdb.DuckDBPyConnection, report: VerifyReport, chain: VerifiedChain
) -> _Previous:
    """_previous_batches checks that the copied file is a dataset of a prefix of ``chain``,
    raising NotIncremental saying what differs. Facts about its batches are read from the
    manifest text it stores, after checking that text is the verified manifest's bytes."""
    if _table_columns(con) != _expected_columns():
        raise NotIncremental("the previous dataset's tables differ from this version's")
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
            raise NotIncremental(
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
        raise NotIncremental(
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
        raise NotIncremental("the previous dataset's batches are not 0..n-1 without gaps")
    if not set(held) <= set(range(len(listed))):
        raise NotIncremental("the previous dataset holds rows of batches it does not list")
    windows: dict[int, int] = {}
    for sequence, sha256, text_matches, rows, window_start, quarantined, source in listed:
        if sha256 != chain.sha256[sequence] or not text_matches:
            raise NotIncremental(
                f"manifest {sequence} is not the one the previous dataset was built from "
                "(the ledger was rebuilt or its history changed)"
            )
        if source != AUDIT_LOGS_SOURCE:
            continue  # its rows are in workflow_activity, reloaded whole by every build
        events, in_quarantine = held.get(sequence, (0, 0))
        if events + in_quarantine != (rows or 0) or in_quarantine != quarantined:
            raise NotIncremental(
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


def _known_checkpoints(
    con: duckdb.DuckDBPyConnection, data_dir: Path
) -> dict[bytes, tuple[Any, ...]]:
    """_known_checkpoints returns the previous dataset's checkpoint rows by note bytes when
    they were verified with the keys trusted now (the same bytes then verify the same)."""
    keyring = trusted_keyring(data_dir)
    current = sorted(k.vkey for k in keyring.keys) if keyring is not None else []
    previous = [vkey for (vkey,) in con.sql("SELECT vkey FROM keys ORDER BY vkey").fetchall()]
    if not current or previous != current:
        return {}
    rows = con.sql("SELECT note, tree_size, origin, root_hash, signed_by FROM checkpoints")
    return {note.encode(): tuple(rest) for note, *rest in rows.fetchall()}
