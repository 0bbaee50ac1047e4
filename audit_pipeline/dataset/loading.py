"""Loading the rows of verified data files into the dataset's row tables.

Each data file the manifests list is read once (never found by a glob: a file dropped into
``lake/`` is never seen), its bytes checked against the manifest's size and SHA-256, and the
rows parsed from those same bytes. Rows go in storage order: by hour window, then batch,
then row, so ``audit_events`` is stored in time order.

Events live in a native table (not views over Parquet) because a year is 8,760 small
files: scanning them for every query is slow, a native table is compact and fast, and an
index on ``event_id`` makes a lookup by id a point query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit_pipeline.dataset.errors import DatasetIntegrityError
from audit_pipeline.dataset.schema import EVENT_COLUMNS, QUARANTINE_COLUMNS
from audit_pipeline.lake.parquet import is_event_schema, upgrade_batch_table
from audit_pipeline.ledger import LedgerError, SignedManifest
from audit_pipeline.ledger.layout import LocalStorage
from audit_pipeline.ledger.manifest import AUDIT_LOGS_SOURCE, source_name

_FLUSH_ROWS = 200_000


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


def storage_order(batches: Sequence[SignedManifest]) -> list[SignedManifest]:
    """storage_order is the order rows are stored in: by hour, then batch (late batches
    sit with their hour), keeping only batches with a data file."""
    with_data = [m for m in batches if m.manifest.data is not None]
    return sorted(with_data, key=lambda m: (m.manifest.window_start, m.sequence))


def _is_audit_batch(signed: SignedManifest) -> bool:
    """Workflow activity batches go to workflow_activity (workflow_views.py), not here."""
    return source_name(signed.manifest) == AUDIT_LOGS_SOURCE


def load_batches(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    batches: Sequence[SignedManifest],
    say: Callable[[str], None],
    kept: Mapping[int, tuple[pa.Table, pa.Table]] | None = None,
    tables: tuple[str, str] = ("audit_events", "quarantine"),
) -> tuple[dict[int, int], int]:
    """load_batches appends the rows of ``batches`` in storage order: rows in ``kept``
    (sequence -> (events, quarantine) taken from the previous file), others read from their
    verified data files. Returns the quarantined rows per batch and the files read."""
    kept = kept or {}
    events = _Loader(con, tables[0], EVENT_COLUMNS)
    quarantine = _Loader(con, tables[1], QUARANTINE_COLUMNS)
    quarantined: dict[int, int] = {}
    ordered = [m for m in storage_order(batches) if _is_audit_batch(m)]
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
