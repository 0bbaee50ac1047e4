"""Checking a dataset's rows against the verified data files they were loaded from.

The seal (a digest beside the dataset) catches an edited file, not a file edited and then
sealed again: whoever can write the data directory can write both. This check needs no
anchor. It re-reads the batches' data files (each hash-checked against its signed
manifest) and has DuckDB read them as a build does, cast to the dataset's column types;
for every batch, on both sides, each row (every column, with its row index) is encoded as
JSON (JSON columns as their exact text, BLOBs in hex; ``raw_json``, ``details`` and
``entry_bytes`` as the SHA-256 of their exact text or bytes) and hashed with SHA-256, and the
row digests in row order are hashed again. A batch whose digest or row count differs, or
rows of a batch not listed, are reported. Nothing is materialized: it costs about what a
build's reading costs, plus one scan of the dataset's rows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb

from audit_pipeline.dataset.loading import (
    EVENT_ROWS,
    QUARANTINE_ROWS,
    VerifiedFile,
    VerifiedParquet,
    is_audit_batch,
    read_verified_files,
    storage_order,
)
from audit_pipeline.dataset.schema import EVENT_COLUMNS, QUARANTINE_COLUMNS
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger, SignedManifest
from audit_pipeline.ledger.manifest import AUDIT_LOGS_SOURCE, source_name

_TABLES = (
    ("audit_events", EVENT_COLUMNS, EVENT_ROWS),
    ("quarantine", QUARANTINE_COLUMNS, QUARANTINE_ROWS),
)
_HASHED = frozenset({"raw_json", "details", "entry_bytes"})  # the large ones
BatchDigests = dict[int, tuple[int, str]]  # batch sequence -> (rows, digest of its rows)


def _digests_sql(rows: str, columns: Sequence[str], types: Mapping[str, str]) -> str:
    """_digests_sql: per batch of ``rows``, the row count and the SHA-256 of its rows'
    SHA-256s in row order (each row as JSON, so no two different rows encode alike; the
    large columns enter as their own SHA-256, which spares escaping them)."""
    encoded = ", ".join(f"{c} := {_encoded(c, types[c])}" for c in columns)
    return (
        "SELECT batch_sequence, count(*), sha256(string_agg(d, '' ORDER BY row_index, d)) "
        f"FROM (SELECT batch_sequence, row_index, "
        f"sha256(to_json(struct_pack(row_index := row_index, {encoded}))) AS d FROM ({rows})) "
        "GROUP BY batch_sequence"
    )


def _encoded(column: str, kind: str) -> str:
    """_encoded: JSON columns by their exact text, BLOBs by bytes (never by a rendering)."""
    if column in _HASHED:
        return f"sha256({column}::VARCHAR)" if kind == "JSON" else f"sha256({column})"
    if kind == "JSON":
        return f"CAST({column} AS VARCHAR)"
    return f"hex({column})" if kind == "BLOB" else column


def _column_types(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    return dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = ? AND table_name = ? AND database_name = current_database()"
            if schema == "main"
            else "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = ? AND table_name = ?",
            [schema, table],
        ).fetchall()
    )


def differing_rows(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    batches: Sequence[SignedManifest],
    *,
    schema: str = "main",
) -> list[str]:
    """differing_rows returns one line per table of ``schema`` whose rows are not exactly
    those of ``batches``' verified files (empty: every row matches)."""
    types = {table: _column_types(con, schema, table) for table, _, _ in _TABLES}
    expected: dict[str, BatchDigests] = {table: {} for table, _, _ in _TABLES}

    def digest_group(files: VerifiedParquet, group: list[VerifiedFile]) -> None:
        for table, columns, where in _TABLES:
            chosen = group if table == "audit_events" else [v for v in group if v.may_quarantine]
            if chosen:
                rows = files.rows_sql(chosen, columns, where, types[table])
                found = con.execute(_digests_sql(rows, columns, types[table])).fetchall()
                expected[table].update((s, (n, d)) for s, n, d in found)

    with VerifiedParquet(con, digest_group) as files:
        ordered = (s for s in storage_order(batches) if is_audit_batch(s))
        for verified in read_verified_files(data_dir, ordered):
            files.add(verified)
        files.flush()
    problems = []
    for table, columns, _ in _TABLES:
        held = {
            s: (n, d)
            for s, n, d in con.execute(
                _digests_sql(f"SELECT * FROM {schema}.{table}", columns, types[table])
            ).fetchall()
        }
        differ = sorted(
            s for s in set(held) | set(expected[table]) if held.get(s) != expected[table].get(s)
        )
        if differ:
            shown = ", ".join(str(s) for s in differ[:10]) + (" …" if len(differ) > 10 else "")
            problems.append(
                f"{table}: the rows of {len(differ)} batches are not those of the verified "
                f"data files (batches {shown})"
            )
    return problems


def check_dataset_rows(dataset: Path, data_dir: Path, tree_size: int) -> list[str]:
    """check_dataset_rows compares the dataset file (opened read-only, never written) with
    the verified data files of the first ``tree_size`` batches it says it was built from;
    returns what differs. The scratch tables live in a temporary database, not in memory."""
    batches = [
        m
        for m in Ledger(data_dir, file_format=PARQUET_FORMAT).manifests()[:tree_size]
        if source_name(m.manifest) == AUDIT_LOGS_SOURCE
    ]
    with tempfile.TemporaryDirectory(prefix="audit-rows-") as scratch:
        con = duckdb.connect(str(Path(scratch) / "scratch.duckdb"))
        try:
            con.execute("SET TimeZone = 'UTC'")
            escaped = str(dataset).replace("'", "''")
            con.execute(f"ATTACH '{escaped}' AS sealed_dataset (READ_ONLY)")
            return differing_rows(con, data_dir, batches, schema="sealed_dataset")
        except duckdb.Error as exc:
            return [f"the dataset cannot be read to compare its rows: {str(exc).splitlines()[0]}"]
        finally:
            con.close()
