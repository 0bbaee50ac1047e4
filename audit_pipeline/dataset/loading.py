"""Loading the rows of verified data files into the dataset's row tables.

Each data file the manifests list is read once (never found by a glob: a file dropped into
``lake/`` is never seen), its bytes checked against the manifest's size and SHA-256, and the
rows parsed from those same bytes. Rows go in storage order: by hour window, then batch,
then row, so ``audit_events`` is stored in time order.

DuckDB's own Parquet reader decodes the files (faster than decoding them in Arrow and
handing the tables over), many files per statement, reading each from an in-memory copy
that holds only the bytes just hashed (:mod:`.verified_copies`: on Linux a sealed memory
file DuckDB reads with its own threads): a file on disk is never read by path after its
check. The next files are read,
hashed and checked in a thread while DuckDB loads the current ones (hashing and DuckDB both
release the GIL).

Events live in a native table (not views over Parquet) because a year is 8,760 small
files: scanning them for every query is slow, a native table is compact and fast, and an
index on ``event_id`` makes a lookup by id a point query.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from audit_pipeline.dataset.errors import DatasetIntegrityError
from audit_pipeline.dataset.schema import EVENT_COLUMNS, QUARANTINE_COLUMNS
from audit_pipeline.dataset.verified_copies import VerifiedCopies, verified_copies
from audit_pipeline.lake.parquet import is_event_schema
from audit_pipeline.ledger import LedgerError, SignedManifest
from audit_pipeline.ledger.layout import LocalStorage
from audit_pipeline.ledger.manifest import AUDIT_LOGS_SOURCE, source_name

_FLUSH_ROWS = 200_000
# One INSERT per group of files: each statement ends in a tail DuckDB runs on one thread,
# so groups are as large as memory and descriptors allow (a year: 3 statements, not 18).
_GROUP_BYTES = 1 << 30  # verified bytes held in in-memory copies for one INSERT
_AHEAD = 32  # files read and checked ahead of the one DuckDB is loading


@dataclass(frozen=True)
class VerifiedFile:
    """One data file's checked bytes and what its footer says about them."""

    signed: SignedManifest
    raw: bytes
    current_schema: bool  # False: the first lake schema, without entry_bytes
    may_quarantine: bool  # its quarantine_reason column may hold a value

    @property
    def rows(self) -> int:
        return self.signed.manifest.data.rows  # type: ignore[union-attr]


def read_verified_file(data_dir: Path, signed: SignedManifest) -> VerifiedFile:
    """read_verified_file reads a data file once and checks the bytes it will load."""
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
    try:
        parquet = pq.ParquetFile(pa.BufferReader(raw))
        schema, metadata = parquet.schema_arrow, parquet.metadata
    except (pa.ArrowException, OSError) as exc:
        raise DatasetIntegrityError(f"{data.path}: unreadable Parquet: {exc}") from exc
    if not is_event_schema(schema) or metadata.num_rows != data.rows:
        raise DatasetIntegrityError(f"{data.path}: not the audit event file its manifest pins")
    return VerifiedFile(
        signed,
        raw,
        current_schema="entry_bytes" in schema.names,
        may_quarantine=_may_quarantine(metadata, schema.get_field_index("quarantine_reason")),
    )


def read_verified_files(
    data_dir: Path, batches: Iterable[SignedManifest]
) -> Iterator[VerifiedFile]:
    """read_verified_files yields :func:`read_verified_file` of each of ``batches`` in order,
    reading and hashing up to ``_AHEAD`` files ahead in a thread, while the caller loads the
    ones before (hashing releases the GIL, and so does DuckDB)."""
    ahead: deque[Future[VerifiedFile]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verified-files") as pool:
        try:
            for signed in batches:
                ahead.append(pool.submit(read_verified_file, data_dir, signed))
                if len(ahead) > _AHEAD:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()


def _may_quarantine(metadata: pq.FileMetaData, column: int) -> bool:
    """_may_quarantine: unless every row group's statistics say quarantine_reason is all
    null (the statistics are part of the hashed bytes), the file may hold quarantined rows."""
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group)
        stats = chunk.column(column).statistics
        if stats is None or not stats.has_null_count or stats.null_count != chunk.num_rows:
            return True
    return False


class VerifiedParquet:
    """VerifiedParquet hands groups of verified files (in the order added) to ``on_group``,
    which reads them with DuckDB through :meth:`rows_sql`; each file's bytes sit in an
    in-memory copy only until its group is done."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        on_group: Callable[[VerifiedParquet, list[VerifiedFile]], None],
    ) -> None:
        self.con = con
        self.on_group = on_group
        self.pending: list[VerifiedFile] = []
        self.paths: dict[int, str] = {}  # id(verified) -> its in-memory copy, as DuckDB opens it
        self.pending_bytes = 0
        self.copies: VerifiedCopies | None = None

    def __enter__(self) -> VerifiedParquet:
        self.copies = verified_copies(self.con)
        return self

    def __exit__(self, *exc: object) -> None:
        self._close(self.pending)
        self.pending = []
        if self.copies is not None:
            self.copies.close()

    def add(self, verified: VerifiedFile) -> None:
        if self.pending and self.pending[-1].current_schema != verified.current_schema:
            self.flush()  # one schema per statement
        assert self.copies is not None, "VerifiedParquet is used as a context manager"
        path = self.copies.put(verified.raw, f"batch-{verified.signed.sequence}")
        self.pending_bytes += len(verified.raw)
        verified = replace(verified, raw=b"")  # the copy is what DuckDB reads
        self.paths[id(verified)] = path
        self.pending.append(verified)
        if self.pending_bytes >= _GROUP_BYTES or len(self.pending) >= self.copies.max_files:
            self.flush()

    def _close(self, group: Iterable[VerifiedFile]) -> None:
        for verified in group:
            path = self.paths.pop(id(verified), None)
            if path is not None and self.copies is not None:
                self.copies.drop(path)

    def flush(self) -> None:
        if not self.pending:
            return
        group, self.pending, self.pending_bytes = self.pending, [], 0
        try:
            self.on_group(self, group)
        finally:
            self._close(group)

    def rows_sql(
        self,
        group: Sequence[VerifiedFile],
        columns: Sequence[str],
        where: str,
        types: Mapping[str, str] | None = None,
    ) -> str:
        """rows_sql selects ``columns`` (cast to ``types`` if given), batch_sequence and
        row_index of the group's rows matching ``where``, in the order of the group's files
        and their rows (DuckDB preserves insertion order by default)."""
        listing = ", ".join(f"'{self.paths[id(v)]}'" for v in group)
        current = group[0].current_schema
        chosen = []
        for column in columns:
            value = column if current or column != "entry_bytes" else "NULL::BLOB"
            if types:
                value = f"CAST({value} AS {types[column]})"
            chosen.append(f"{value} AS {column}")
        sequences = ", ".join(str(v.signed.sequence) for v in group)
        return (
            f"SELECT {', '.join(chosen)}, "
            f"CAST([{sequences}][file_index::BIGINT + 1] AS BIGINT) AS batch_sequence, "
            "file_row_number AS row_index "
            f"FROM read_parquet([{listing}], file_row_number = true) "
            f"WHERE {where}"
        )


EVENT_ROWS = "quarantine_reason IS NULL"
QUARANTINE_ROWS = "quarantine_reason IS NOT NULL"


class _ParquetLoader:
    """_ParquetLoader inserts each group's rows into the two row tables and counts the
    quarantined rows per batch."""

    def __init__(self, tables: tuple[str, str]) -> None:
        self.tables = tables
        self.quarantined: dict[int, int] = {}

    def __call__(self, files: VerifiedParquet, group: list[VerifiedFile]) -> None:
        loaded = self._insert(files, group, 0, EVENT_COLUMNS, EVENT_ROWS)
        self.quarantined.update((v.signed.sequence, 0) for v in group)
        suspects = [v for v in group if v.may_quarantine]
        if suspects:
            loaded += self._insert(files, suspects, 1, QUARANTINE_COLUMNS, QUARANTINE_ROWS)
            listed = ", ".join(str(v.signed.sequence) for v in suspects)
            self.quarantined.update(
                files.con.execute(
                    f"SELECT batch_sequence, count(*) FROM {self.tables[1]} "
                    f"WHERE batch_sequence IN ({listed}) GROUP BY ALL"
                ).fetchall()
            )
        # Every row lands in one of the two tables (a footer whose statistics said "no
        # quarantined rows" wrongly would otherwise drop some without a word).
        if loaded != sum(v.rows for v in group):
            first, last = group[0].signed.sequence, group[-1].signed.sequence
            raise DatasetIntegrityError(
                f"batches {first}..{last}: {loaded} rows loaded, their manifests list "
                f"{sum(v.rows for v in group)}; nothing was published"
            )

    def _insert(
        self,
        files: VerifiedParquet,
        group: list[VerifiedFile],
        table: int,
        columns: Sequence[str],
        where: str,
    ) -> int:
        names = ", ".join([*columns, "batch_sequence", "row_index"])
        row = files.con.execute(
            f"INSERT INTO {self.tables[table]} ({names}) " + files.rows_sql(group, columns, where)
        ).fetchone()
        return int(row[0]) if row else 0


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


def is_audit_batch(signed: SignedManifest) -> bool:
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
    ordered = [m for m in storage_order(batches) if is_audit_batch(m)]
    to_read = sum(1 for m in ordered if m.sequence not in kept)
    read = 0
    loader = _ParquetLoader(tables)
    reading = read_verified_files(data_dir, (m for m in ordered if m.sequence not in kept))
    with contextlib.closing(reading) as verified, VerifiedParquet(con, loader) as files:
        for signed in ordered:
            # Rows go in storage order: whichever loader is not taking this batch flushes.
            if signed.sequence in kept:
                files.flush()
                kept_events, kept_quarantine = kept[signed.sequence]
                events.add(kept_events)
                quarantine.add(kept_quarantine)
                quarantined[signed.sequence] = kept_quarantine.num_rows
                continue
            events.flush()
            quarantine.flush()
            files.add(next(verified))
            read += 1
            if read % 500 == 0:
                say(f"loaded {read}/{to_read} data files")
        files.flush()
    events.flush()
    quarantine.flush()
    quarantined.update(loader.quarantined)
    return quarantined, read
