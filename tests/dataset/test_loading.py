"""Loading verified bytes through DuckDB's Parquet reader: files of the first lake schema
(no entry_bytes) load like current ones, with entry_bytes null."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace

import duckdb
import pyarrow.parquet as pq
import pytest

from audit_pipeline.dataset.loading import (
    VerifiedFile,
    VerifiedParquet,
    _ParquetLoader,
)
from audit_pipeline.dataset.schema import EVENT_COLUMNS, create_tables
from audit_pipeline.dataset.verified_copies import SEALED_FILES, sealed_copy
from audit_pipeline.lake.schema import EVENT_SCHEMA_V1


def _verified(raw: bytes, sequence: int, rows: int, current: bool) -> VerifiedFile:
    # The loader needs only the sequence and row count of the manifest it was checked with.
    signed = SimpleNamespace(
        sequence=sequence, manifest=SimpleNamespace(data=SimpleNamespace(rows=rows))
    )
    return VerifiedFile(signed, raw, current_schema=current, may_quarantine=True)  # type: ignore[arg-type]


def test_first_schema_files_load_with_null_entry_bytes(scenario_ledger, data_dir):
    first = next(m for m in scenario_ledger.manifests() if m.manifest.data and m.manifest.data.rows)
    raw = (data_dir / first.manifest.data.path).read_bytes()
    table = pq.read_table(io.BytesIO(raw))
    old = io.BytesIO()
    pq.write_table(table.select(EVENT_SCHEMA_V1.names).cast(EVENT_SCHEMA_V1), old)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    create_tables(con)
    loader = _ParquetLoader(("audit_events", "quarantine"))
    with VerifiedParquet(con, loader) as files:
        files.add(_verified(raw, 0, table.num_rows, True))
        files.add(_verified(old.getvalue(), 1, table.num_rows, False))
        files.flush()
    columns = ", ".join(c for c in EVENT_COLUMNS if c != "entry_bytes")
    by_batch = [
        con.sql(
            f"SELECT {columns}, row_index FROM audit_events WHERE batch_sequence = {s} "
            "ORDER BY row_index"
        ).fetchall()
        for s in (0, 1)
    ]
    quarantined = con.sql("SELECT count(*) FROM quarantine").fetchall()[0][0]
    assert by_batch[0] == by_batch[1] and len(by_batch[0]) + quarantined // 2 == table.num_rows
    assert loader.quarantined[0] == loader.quarantined[1] == quarantined // 2
    nulls = con.sql(
        "SELECT batch_sequence, count(*) FILTER (WHERE entry_bytes IS NULL) FROM audit_events "
        "GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert nulls == [(0, 0), (1, len(by_batch[1]))]


@pytest.mark.skipif(not SEALED_FILES, reason="no sealed memory files on this platform")
def test_sealed_copy_cannot_change_after_it_is_hashed():
    """DuckDB reads the copy by path: nobody can write, truncate or grow it once sealed."""
    fd = sealed_copy(b"PAR1 verified bytes PAR1", "batch-0")
    try:
        path = f"/proc/self/fd/{fd}"
        with open(path, "rb") as fh:
            assert fh.read() == b"PAR1 verified bytes PAR1"
        with pytest.raises(PermissionError):
            os.write(fd, b"forged")
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        with pytest.raises(PermissionError), open(path, "r+b") as fh:
            fh.write(b"forged")
    finally:
        os.close(fd)
