"""Batch files: deterministic bytes, our schema only, and the ledger's view of the rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit_pipeline.lake import PARQUET_FORMAT, normalize_entries, write_batch_file
from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.merkle import leaf_hash

FIXTURE = Path(__file__).parents[1] / "fixtures" / "odd_entries.jsonl"
H = 1795860000


def entries() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def test_same_rows_give_identical_bytes_whatever_the_input_order(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_batch_file(normalize_entries(entries(), window_start=H, window_end=H + 3600).table, a)
    shuffled = entries()[::-1]
    write_batch_file(normalize_entries(shuffled, window_start=H, window_end=H + 3600).table, b)
    assert a.read_bytes() == b.read_bytes()
    meta = pq.ParquetFile(a).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_ledger_view_recomputes_leaves_from_raw_json(tmp_path):
    path = tmp_path / "batch.parquet"
    table = normalize_entries(entries(), window_start=H, window_end=H + 3600).table
    write_batch_file(table, path)
    records = PARQUET_FORMAT.read_events(path)
    assert [r.event_id for r in records] == table["event_id"].to_pylist()
    assert all(H <= r.date_create < H + 3600 for r in records)
    assert [leaf_hash(r.leaf_data) for r in records] == PARQUET_FORMAT.read_leaf_hashes(path)
    assert {json.loads(r.leaf_data)["id"] for r in records} == {e["id"] for e in entries()}


def test_foreign_or_broken_files_are_refused(tmp_path):
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"event_id": ["x"]}), other)
    with pytest.raises(MalformedError, match="schema differs"):
        PARQUET_FORMAT.read_events(other)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(MalformedError, match="unreadable"):
        PARQUET_FORMAT.read_events(garbage)


def test_writer_refuses_tables_of_another_schema(tmp_path):
    with pytest.raises(ValueError, match="EVENT_SCHEMA"):
        write_batch_file(pa.table({"x": [1]}), tmp_path / "x.parquet")
