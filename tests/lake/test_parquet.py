"""Batch files: deterministic bytes, our schema only, and the ledger's view of the rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit_pipeline.lake import (
    EVENT_SCHEMA,
    PARQUET_FORMAT,
    normalize_entries,
    parquet,
    write_batch_file,
)
from audit_pipeline.lake.parquet import write_batch_stream
from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.merkle import leaf_hash

FIXTURE = Path(__file__).parents[1] / "fixtures" / "odd_entries.jsonl"
H = 1795860000


def entries() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


@pytest.mark.parametrize("batch_rows", [1, 3, 7, 8, 1000])
def test_streamed_batches_give_the_bytes_of_the_whole_table(tmp_path, monkeypatch, batch_rows):
    """Row groups are cut at the same rows and written from contiguous arrays whatever the
    batches (a page each when ingest streams a window): the bytes of writing it at once."""
    monkeypatch.setattr(parquet, "ROW_GROUP_SIZE", 7)
    table = normalize_entries(entries(), window_start=H, window_end=H + 3600).table
    assert table.num_rows > 14
    whole, streamed = tmp_path / "whole.parquet", tmp_path / "streamed.parquet"
    pq.write_table(
        table.replace_schema_metadata(EVENT_SCHEMA.metadata),
        whole,
        row_group_size=7,
        **parquet._WRITE_OPTIONS,
    )
    write_batch_stream(table.to_batches(max_chunksize=batch_rows), streamed)
    assert streamed.read_bytes() == whole.read_bytes()
    assert pq.ParquetFile(streamed).metadata.num_row_groups == -(-table.num_rows // 7)


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
