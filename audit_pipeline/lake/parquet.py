"""Batch data files: write-once Parquet with deterministic bytes.

The same rows always give the same bytes (fixed schema, sorted rows, fixed writer options),
so rerunning a window writes an identical file or, through the ledger's idempotent commit,
nothing at all. The ledger reads batch files only through :data:`PARQUET_FORMAT`, which
recomputes each row's leaf from ``raw_json`` rather than trusting the stored ``leaf_hash``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit_pipeline.lake.schema import EVENT_SCHEMA, EVENT_SCHEMA_V1
from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.events import EventLeaf, EventRecord

# Writing a row group holds it about twice (its rows, then contiguous columns, then the
# encoder's pages): ~4 KB a row, so 64k rows keep a 1M-event hour's write near 280 MB.
ROW_GROUP_SIZE = 64 * 1024
_LEDGER_COLUMNS = ("event_id", "date_create", "raw_json")
_WRITE_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_version": "2.0",
}


def write_batch_file(table: pa.Table, path: Path) -> None:
    """write_batch_file writes ``table`` (``EVENT_SCHEMA``, already sorted) to ``path``."""
    write_batch_stream(table.to_batches(), path)


def write_batch_stream(batches: Iterable[pa.RecordBatch], path: Path) -> None:
    """write_batch_stream writes sorted ``EVENT_SCHEMA`` batches to ``path`` as they come.

    Rows are regrouped into row groups of exactly ``ROW_GROUP_SIZE`` (the last one shorter),
    each written from contiguous arrays (Parquet pages break where Arrow chunks do), so the
    file's bytes depend only on the rows, never on how they were cut into batches; about
    one row group is held at a time.
    """
    with pq.ParquetWriter(path, EVENT_SCHEMA, **_WRITE_OPTIONS) as writer:
        group: list[pa.RecordBatch] = []
        held = written = 0
        for batch in batches:
            if not batch.schema.equals(EVENT_SCHEMA, check_metadata=False):
                raise ValueError("batch table does not have EVENT_SCHEMA")
            while held + batch.num_rows >= ROW_GROUP_SIZE:
                cut = ROW_GROUP_SIZE - held
                group.append(batch.slice(0, cut))
                batch = batch.slice(cut)
                writer.write_table(_contiguous(group), row_group_size=ROW_GROUP_SIZE)
                held, written = 0, written + 1
            if batch.num_rows:
                group.append(batch)
                held += batch.num_rows
        if held or not written:
            writer.write_table(_contiguous(group), row_group_size=ROW_GROUP_SIZE)


def _contiguous(group: list[pa.RecordBatch]) -> pa.Table:
    """The rows of ``group`` as one table of unchunked columns; ``group`` is emptied and
    each column's pieces are released as soon as it is joined, so the peak is the rows
    plus one column rather than twice the rows."""
    pieces = [[batch.column(i) for batch in group] for i in range(len(EVENT_SCHEMA))]
    group.clear()
    columns = []
    for i, field in enumerate(EVENT_SCHEMA):
        chunks, pieces[i] = pieces[i], []
        columns.append(pa.concat_arrays(chunks) if chunks else pa.array([], field.type))
        del chunks
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA)


def _open_batch_file(path: Path) -> pq.ParquetFile:
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    if not is_event_schema(schema) and not _is_activity_file(schema):
        raise MalformedError(f"{path}: not an audit event file (schema differs)")
    return parquet


def _is_activity_file(schema: pa.Schema) -> bool:
    """Workflow activity files (``lake/activities.py``) share the ledger's columns."""
    from audit_pipeline.lake.activities import ACTIVITY_SCHEMA

    return schema.equals(ACTIVITY_SCHEMA, check_metadata=False)


def is_event_schema(schema: pa.Schema) -> bool:
    """is_event_schema: the current schema or an older one this version still reads."""
    return schema.equals(EVENT_SCHEMA, check_metadata=False) or schema.equals(
        EVENT_SCHEMA_V1, check_metadata=False
    )


def upgrade_batch_table(table: pa.Table) -> pa.Table:
    """upgrade_batch_table gives a whole table of an older schema the current columns (null)."""
    for field in EVENT_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


@contextmanager
def _unreadable_as_malformed(path: Path) -> Iterator[None]:
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise MalformedError(f"{path}: unreadable Parquet: {exc}") from exc


def read_batch_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """read_batch_table reads a batch file, refusing files whose schema is not ours."""
    with _unreadable_as_malformed(path):
        parquet = _open_batch_file(path)
        if columns:
            present = [c for c in columns if c in parquet.schema_arrow.names]
            table = parquet.read(columns=present)
            for name in columns:
                if name not in present:
                    field = EVENT_SCHEMA.field(name)
                    table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            return table.select(list(columns))
        return upgrade_batch_table(parquet.read())


def events_from_table(table: pa.Table) -> list[EventRecord]:
    """events_from_table returns the ledger's view of each row, in row order.

    ``raw_json`` is read as binary (a zero-copy cast), so each leaf comes out of Arrow as
    ``bytes`` directly instead of as a ``str`` that is then encoded again.
    """
    ids = table.column("event_id").to_pylist()
    times = pc.divide(table.column("date_create").cast(pa.int64()), 1000).to_pylist()
    raws = table.column("raw_json").cast(pa.binary()).to_pylist()
    if not len(ids) == len(times) == len(raws):
        raise MalformedError("batch columns differ in length")
    return list(map(EventRecord, ids, times, raws))


def event_leaves_from_table(table: pa.Table) -> list[EventLeaf]:
    """event_leaves_from_table returns what the ledger commits of each row (id, time, leaf
    hash), in row order, without copying the leaf bytes out of Arrow."""
    ids = table.column("event_id").to_pylist()
    times = pc.divide(table.column("date_create").cast(pa.int64()), 1000).to_pylist()
    leaves = table.column("leaf_hash").to_pylist()
    if not len(ids) == len(times) == len(leaves):
        raise MalformedError("batch columns differ in length")
    return list(map(EventLeaf, ids, times, leaves))


class ParquetBatchFormat:
    """The ledger's ``BatchFileFormat`` for the lake's Parquet files."""

    suffix = ".parquet"

    def read_events(self, path: Path) -> list[EventRecord]:
        """The rows, one row group at a time: only one group's Arrow copy is ever held
        beside the records (a 1M-event file otherwise doubles its memory while read)."""
        records: list[EventRecord] = []
        for part in self.iter_events(path):
            records.extend(part)
        return records

    def iter_events(self, path: Path) -> Iterator[list[EventRecord]]:
        """The rows of each row group in turn: a reader that checks them as they come (the
        commit's read-back) holds one group at a time."""
        with _unreadable_as_malformed(path):
            parquet = _open_batch_file(path)
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=list(_LEDGER_COLUMNS))
                yield events_from_table(table)

    def read_event_columns(self, path: Path) -> tuple[list[str], list[int], list[bytes]]:
        """The rows as three columns (ids, times in Unix seconds, leaves), for verifying a
        whole file at once: no record object per row (see ``ledger.verify_rows``)."""
        with _unreadable_as_malformed(path):
            table = _open_batch_file(path).read(columns=list(_LEDGER_COLUMNS), use_threads=False)
            return (
                table.column("event_id").to_pylist(),
                pc.divide(table.column("date_create").cast(pa.int64()), 1000).to_pylist(),
                table.column("raw_json").cast(pa.binary()).to_pylist(),
            )

    def read_leaf_hashes(self, path: Path) -> list[bytes]:
        return read_batch_table(path, ("leaf_hash",)).column("leaf_hash").to_pylist()


PARQUET_FORMAT = ParquetBatchFormat()
