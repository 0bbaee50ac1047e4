"""Checking a dataset's rows against the verified data files they were loaded from.

The seal (a digest beside the dataset) catches an edited file, not a file edited and then
sealed again: whoever can write the data directory can write both. This check needs no
anchor. It re-reads the batches' data files (each hash-checked against its signed
manifest), loads them exactly as a build does into scratch tables, and compares every row of
``audit_events`` and ``quarantine`` (every column, with the batch and row it came from)
both ways. It costs about what a full build's reading costs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import duckdb

from audit_pipeline.dataset.loading import load_batches
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger, SignedManifest
from audit_pipeline.ledger.manifest import AUDIT_LOGS_SOURCE, source_name

_TABLES = (("audit_events", "_expected_events"), ("quarantine", "_expected_quarantine"))


def differing_rows(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    batches: Sequence[SignedManifest],
    *,
    schema: str = "main",
) -> list[str]:
    """differing_rows returns one line per table of ``schema`` whose rows are not exactly
    those of ``batches``' verified files (empty: every row matches)."""
    for table, expected in _TABLES:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {expected} AS SELECT * FROM {schema}.{table} LIMIT 0"
        )
    try:
        load_batches(con, data_dir, batches, lambda _: None, tables=tuple(e for _, e in _TABLES))
        problems = []
        for table, expected in _TABLES:
            extra = _count(
                con, f"SELECT * FROM {schema}.{table} EXCEPT ALL SELECT * FROM {expected}"
            )
            missing = _count(
                con, f"SELECT * FROM {expected} EXCEPT ALL SELECT * FROM {schema}.{table}"
            )
            if extra or missing:
                problems.append(
                    f"{table}: {extra} rows not in the verified data files, {missing} rows of "
                    "them missing or different"
                )
        return problems
    finally:
        for _, expected in _TABLES:
            con.execute(f"DROP TABLE IF EXISTS {expected}")


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    row = con.execute(f"SELECT count(*) FROM ({query})").fetchone()
    return int(row[0]) if row else 0


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
