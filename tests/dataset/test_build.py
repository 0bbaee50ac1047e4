"""The dataset holds exactly the verified ledger, is rebuilt atomically, and keeps history."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit_pipeline.dataset import history, loading
from audit_pipeline.dataset.build import (
    DatasetIntegrityError,
    build_dataset,
    dataset_path,
)
from audit_pipeline.dataset.query import open_dataset
from audit_pipeline.dataset.verified_copies import SEALED_FILES, MemoryCopies
from audit_pipeline.dataset.views import VIEWS
from audit_pipeline.lake import EVENT_SCHEMA, PARQUET_FORMAT, write_batch_file
from audit_pipeline.ledger import merkle, verify_ledger


def _ledger_contents(ledger) -> tuple[dict[str, tuple[int, int]], int]:
    """Every committed row as id -> (batch sequence, row index), read via the ledger's format."""
    rows: dict[str, tuple[int, int]] = {}
    chain = ledger.manifests()
    for signed in chain:
        if signed.manifest.data is None:
            continue
        records = PARQUET_FORMAT.read_events(ledger.data_dir / signed.manifest.data.path)
        for index, record in enumerate(records):
            rows[record.event_id] = (signed.sequence, index)
    return rows, len(chain)


@pytest.fixture(params=["sealed", "memory"])
def copies(request, monkeypatch):
    """Both places a build keeps verified bytes for DuckDB: sealed memory files (Linux) and
    the in-memory file system used where there are none."""
    if request.param == "memory":
        monkeypatch.setattr(loading, "verified_copies", MemoryCopies)
    elif not SEALED_FILES:
        pytest.skip("no sealed memory files on this platform")
    return request.param


def test_dataset_equals_ledger_contents(scenario_ledger, data_dir, copies):
    result = build_dataset(data_dir)
    expected, manifests = _ledger_contents(scenario_ledger)
    con = open_dataset(result.path)
    got = {
        event_id: (seq, index)
        for event_id, seq, index in con.sql(
            "SELECT event_id, batch_sequence, row_index FROM audit_events"
        ).fetchall()
    }
    assert got == expected
    assert result.events == len(expected) > 50
    assert con.sql("SELECT count(*) FROM batches").fetchall() == [(manifests,)]
    per_batch = dict(
        con.sql(
            "SELECT b.sequence, any_value(b.event_count) - count(e.event_id) FROM batches b "
            "LEFT JOIN audit_events e ON e.batch_sequence = b.sequence GROUP BY b.sequence"
        ).fetchall()
    )
    assert set(per_batch.values()) == {0}
    # The stored leaf is the leaf of the stored raw JSON, row by row.
    for raw, leaf in con.sql("SELECT raw_json, leaf_hash FROM audit_events").fetchall():
        assert merkle.leaf_hash(raw.encode()) == leaf
    # Stored in time order (late batches sit with their hour).
    times = [t for (t,) in con.sql("SELECT date_create FROM audit_events").fetchall()]
    assert times == sorted(times)
    kinds = con.sql("SELECT list(kind ORDER BY sequence) FROM batches").fetchall()[0][0]
    assert kinds == ["hour", "late", "hour", "hour", "empty", "hour"]
    info = dict(con.sql("SELECT key, value FROM dataset_info").fetchall())
    assert info["tree_size"] == str(manifests)
    assert info["verification_run_id"] == result.verification_run_id
    checkpoints = con.sql("SELECT count(*), bool_and(matches_ledger) FROM checkpoints").fetchall()
    assert checkpoints == [(manifests, True)]


def _inject(data_dir: Path) -> set[str]:
    """Drop a valid batch file with new ids into an existing hour partition."""
    original = next((data_dir / "lake").rglob("*.parquet"))
    table = pq.read_table(original)
    ids = [f"injected-{i}" for i in range(table.num_rows)]
    table = table.set_column(0, EVENT_SCHEMA.field("event_id"), pa.array(ids))
    write_batch_file(table, original.parent / "99999999-hour.parquet")
    return set(ids)


def test_injected_file_is_absent_from_every_table_and_view(scenario_ledger, data_dir):
    report = verify_ledger(data_dir, file_format=PARQUET_FORMAT)
    injected = _inject(data_dir)
    # Even given a report from before the injection, the build reads only manifest files.
    result = build_dataset(data_dir, report=report)
    con = open_dataset(result.path)
    for name in ["audit_events", "quarantine", *(v.name for v in VIEWS)]:
        columns = [c for (c,) in con.sql(f"SELECT column_name FROM (DESCRIBE {name})").fetchall()]
        if "event_id" in columns:
            found = con.sql(f"SELECT event_id FROM {name} WHERE event_id LIKE 'injected-%'")
            assert found.fetchall() == [], name
    assert con.sql("SELECT count(*) FROM batches WHERE data_path LIKE '%99999999%'").fetchall() == [
        (0,)
    ]
    assert injected
    con.close()
    # Verifying afresh finds the injected file: nothing is published, the old file stays.
    before = result.path.read_bytes()
    with pytest.raises(DatasetIntegrityError, match="unreferenced_file"):
        build_dataset(data_dir)
    assert result.path.read_bytes() == before
    runs = history.load_runs(data_dir)
    assert [r.ok for r in runs] == [True, False]
    assert runs[-1].findings[0]["code"] == "unreferenced_file"


def test_data_file_changed_after_verification_is_refused(scenario_ledger, data_dir, copies):
    report = verify_ledger(data_dir, file_format=PARQUET_FORMAT)
    victim = next((data_dir / "lake").rglob("*.parquet"))
    os.chmod(victim, 0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(DatasetIntegrityError, match="changed after verification"):
        build_dataset(data_dir, report=report)
    assert not dataset_path(data_dir).exists()
    assert not list(data_dir.glob("audit.duckdb.tmp-*"))


def test_rebuild_while_a_reader_holds_the_file(scenario_ledger, data_dir, scenario):
    first = build_dataset(data_dir)
    reader = duckdb.connect(str(first.path), read_only=True)  # as a notebook would
    old = reader.sql("SELECT count(*) FROM audit_events").fetchall()[0][0]
    hour = scenario.T0 + 5 * scenario.HOUR
    scenario.commit(
        scenario_ledger,
        hour,
        [scenario.entry("ev-new", hour + 1, "user_login", scenario.ALICE, {"type": "user"})],
    )
    second = build_dataset(data_dir)
    assert second.events == old + 1
    assert (second.mode, second.files_read) == ("incremental", 1)
    # The open reader keeps its snapshot; a fresh open sees the new file.
    assert reader.sql("SELECT count(*) FROM audit_events").fetchall()[0][0] == old
    fresh = open_dataset(second.path)
    assert fresh.sql("SELECT count(*) FROM audit_events").fetchall()[0][0] == old + 1
    reader.close()


@pytest.mark.e2e
def test_rebuild_while_another_process_reads(scenario_ledger, data_dir, scenario):
    """A separate process holds a read-only connection across a rebuild: neither side waits."""
    first = build_dataset(data_dir)
    script = (
        "import duckdb, sys\n"
        f"con = duckdb.connect({str(first.path)!r}, read_only=True)\n"
        "q = 'SELECT count(*) FROM audit_events'\n"
        "print(con.sql(q).fetchall()[0][0], flush=True)\n"
        "sys.stdin.readline()\n"
        "print(con.sql(q).fetchall()[0][0], flush=True)\n"
        f"print(duckdb.connect({str(first.path)!r}, read_only=True).sql(q).fetchall()[0][0])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        before = int(proc.stdout.readline())
        hour = scenario.T0 + 5 * scenario.HOUR
        scenario.commit(
            scenario_ledger,
            hour,
            [scenario.entry("ev-new", hour + 1, "user_login", scenario.ALICE, {"type": "user"})],
        )
        rebuilt = build_dataset(data_dir)
        assert rebuilt.mode == "incremental"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    still_old, reopened = (int(x) for x in out.split())
    assert proc.returncode == 0
    assert (before, still_old) == (first.events, first.events)
    # The reader's process caches the old instance while it holds a connection; a new
    # process (or open_dataset) sees the rebuilt file.
    assert reopened in (first.events, rebuilt.events)
    assert open_dataset(rebuilt.path).sql("SELECT count(*) FROM audit_events").fetchall() == [
        (first.events + 1,)
    ]


def test_verification_history_survives_rebuilds_and_deletion(scenario_ledger, data_dir):
    build_dataset(data_dir)
    build_dataset(data_dir, trigger="dagster")
    path = dataset_path(data_dir)
    path.unlink()
    build_dataset(data_dir)
    con = open_dataset(path)
    rows = con.sql("SELECT trigger, ok FROM verification_runs ORDER BY verified_at").fetchall()
    assert sorted(rows) == sorted(
        [("dataset build", True), ("dagster", True), ("dataset build", True)]
    )
    assert len({r for (r,) in con.sql("SELECT run_id FROM verification_runs").fetchall()}) == 3


def test_every_column_and_view_is_documented(scenario_ledger, data_dir):
    con = open_dataset(build_dataset(data_dir).path)
    undocumented = con.sql(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'audit' "
        "AND table_name IN ('audit_events', 'quarantine') AND coalesce(comment, '') = ''"
    ).fetchall()
    assert undocumented == []
    views = con.sql(
        "SELECT view_name FROM duckdb_views() WHERE database_name = 'audit' AND NOT internal "
        "AND coalesce(comment, '') = ''"
    ).fetchall()
    assert views == []
    tables = con.sql(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'audit' "
        "AND coalesce(comment, '') = ''"
    ).fetchall()
    assert tables == []


def test_empty_ledger_builds_an_empty_dataset(ledger, data_dir):
    (data_dir / "ledger").mkdir(exist_ok=True)
    result = build_dataset(data_dir)
    con = open_dataset(result.path)
    assert con.sql("SELECT count(*) FROM audit_events").fetchall() == [(0,)]
    assert con.sql("SELECT count(*) FROM coverage").fetchall() == [(0,)]


def test_no_ledger_is_a_configuration_error(tmp_path):
    from audit_pipeline.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="no ledger"):
        build_dataset(tmp_path)
