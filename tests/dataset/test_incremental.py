"""Incremental builds: the previous dataset's rows are reused only when it was built from a
prefix of the verified chain, and the result is the dataset a full build writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from audit_pipeline.dataset.build import (
    FULL,
    INCREMENTAL,
    DatasetIntegrityError,
    build_dataset,
    dataset_path,
)
from audit_pipeline.dataset.query import open_dataset
from audit_pipeline.dataset.schema import TABLES
from audit_pipeline.dataset.views import VIEWS
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger, verify_ledger

# History and build information differ between any two builds by design.
PER_BUILD = {"verification_runs", "dataset_info", "verification_findings"}


def _differences(left: Path, right: Path) -> dict[str, tuple[int, int, int]]:
    """(rows only in left, rows only in right, rows in left) of every table and view whose
    contents differ, compared with EXCEPT ALL (duplicates count)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
    con.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
    found = {}
    for name in [*TABLES, *(v.name for v in VIEWS)]:
        if name in PER_BUILD:
            continue
        only_left, only_right, rows = (
            con.sql(query).fetchall()[0][0]
            for query in (
                f"SELECT count(*) FROM (FROM l.{name} EXCEPT ALL FROM r.{name})",
                f"SELECT count(*) FROM (FROM r.{name} EXCEPT ALL FROM l.{name})",
                f"SELECT count(*) FROM l.{name}",
            )
        )
        if only_left or only_right:
            found[name] = (only_left, only_right, rows)
    con.close()
    return found


def _stored_order(path: Path, table: str) -> list[tuple[int, int]]:
    con = open_dataset(path)
    try:
        return con.sql(f"SELECT batch_sequence, row_index FROM {table}").fetchall()
    finally:
        con.close()


def _assert_same_as_full(data_dir: Path, built: Path, tmp_path: Path) -> None:
    full = build_dataset(data_dir, database=tmp_path / "full.duckdb", full=True)
    assert full.mode == FULL and full.files_read == full.data_files
    assert _differences(built, full.path) == {}
    for table in ("audit_events", "quarantine"):
        assert _stored_order(built, table) == _stored_order(full.path, table)


def test_incremental_equals_full_after_new_late_and_empty_batches(
    scenario_ledger, data_dir, scenario, tmp_path
):
    first = build_dataset(data_dir)
    assert (first.mode, first.reused_batches) == (FULL, 0)
    assert "no previous dataset" in first.reason
    h5, h6, h7 = (scenario.T0 + n * scenario.HOUR for n in (5, 6, 7))
    unnormalizable = scenario.entry("ev-q-1", h5 + 9, None, scenario.ALICE, {"type": "user"})
    login = scenario.entry("ev-h5-1", h5 + 10, "user_login", scenario.ALICE, {"type": "user"})
    scenario.commit(scenario_ledger, h5, [unnormalizable, login])
    second = build_dataset(data_dir)
    assert (second.mode, second.reused_batches, second.files_read) == (
        INCREMENTAL,
        first.batches,
        1,
    )
    assert second.quarantined == first.quarantined + 1
    # A late batch for hour 5 (already in the dataset, with a quarantined row), a late
    # batch for hour 1, an empty hour and a new hour: old rows of hours from 1 on move.
    late5 = scenario.entry("ev-h5-late", h5 + 20, "user_logout", scenario.ALICE, {"type": "u"})
    scenario.commit(scenario_ledger, h5, [unnormalizable, login, late5])
    h1 = scenario.T0 + scenario.HOUR
    late1 = scenario.entry("ev-h1-late", h1 + 7, "user_login", scenario.ALICE, {"type": "u"})
    scenario.commit(scenario_ledger, h1, [late1])
    scenario.commit(scenario_ledger, h6, [])
    scenario.commit(
        scenario_ledger, h7, [scenario.entry("ev-h7", h7, "user_login", scenario.ALICE, {})]
    )
    third = build_dataset(data_dir)
    assert third.mode == INCREMENTAL
    assert (third.reused_batches, third.files_read) == (second.batches, 3)
    assert third.batches == second.batches + 4
    assert third.events == second.events + 3
    assert third.quarantined == 1
    _assert_same_as_full(data_dir, third.path, tmp_path)
    # The copy keeps its index; the id lookup still answers from it.
    con = open_dataset(third.path)
    assert con.sql("SELECT count(*) FROM duckdb_indexes()").fetchall() == [(1,)]
    assert con.sql(
        "SELECT batch_sequence FROM audit_events WHERE event_id = 'ev-h1-late'"
    ).fetchall() == [(third.batches - 3,)]
    info = dict(con.sql("SELECT key, value FROM dataset_info").fetchall())
    assert info["build_mode"] == INCREMENTAL and info["events"] == str(third.events)


def test_many_incremental_builds_equal_one_full_build(ledger, data_dir, scenario, tmp_path):
    """Build after every commit of a run of hours, late batches and empty hours."""
    from audit_pipeline.slack.generator import generate_hour

    hours = [scenario.T0 + n * scenario.HOUR for n in range(4)]
    pool = {hour: list(generate_hour(11, hour, 300)) for hour in hours}
    assert min(len(entries) for entries in pool.values()) >= 30
    # (hour, how many more of its generated entries): repeats are late batches, 0 is empty.
    plan = [(0, 25), (1, 25), (0, 5), (2, 0), (3, 25), (1, 3), (3, 2)]
    taken: dict[int, int] = {}
    for step, (index, count) in enumerate(plan):
        hour = hours[index]
        taken[hour] = taken.get(hour, 0) + count
        scenario.commit(ledger, hour, pool[hour][: taken[hour]])
        result = build_dataset(data_dir)
        assert result.mode == (FULL if step == 0 else INCREMENTAL)
        assert result.files_read == (1 if count else 0)
    assert result.batches == len(plan)
    _assert_same_as_full(data_dir, result.path, tmp_path)


def test_a_rebuilt_ledger_with_other_history_is_built_in_full(
    scenario_ledger, data_dir, signing_key, scenario, tmp_path
):
    first = build_dataset(data_dir)
    # The operator starts the ledger over: the same sequence numbers now hold other batches.
    for part in ("lake", "ledger/manifests", "ledger/checkpoints"):
        shutil.rmtree(data_dir / part)
    (data_dir / "ledger/manifests").mkdir()
    (data_dir / "ledger/checkpoints").mkdir()
    rebuilt = Ledger(
        data_dir, file_format=PARQUET_FORMAT, signer=signing_key, origin="test.example/audit"
    )
    for n in range(first.batches + 1):
        hour = scenario.T0 + n * scenario.HOUR
        scenario.commit(
            rebuilt, hour, [scenario.entry(f"ev-new-{n}", hour, "user_login", scenario.ALICE, {})]
        )
    second = build_dataset(data_dir)
    assert second.mode == FULL
    assert "manifest 0 is not the one the previous dataset was built from" in second.reason
    con = open_dataset(second.path)
    ids = {i for (i,) in con.sql("SELECT event_id FROM audit_events").fetchall()}
    assert ids == {f"ev-new-{n}" for n in range(first.batches + 1)}
    con.close()
    _assert_same_as_full(data_dir, second.path, tmp_path)


def test_a_shorter_verified_ledger_is_built_in_full(scenario_ledger, data_dir, tmp_path):
    """A dataset of more batches than the verified ledger (another, longer copy) is not
    reused."""
    longer = tmp_path / "longer.duckdb"
    build_dataset(data_dir, database=longer)
    other = tmp_path / "other"
    shutil.copytree(data_dir, other)
    dropped = next((other / "lake").rglob("00000005-hour.parquet"))
    shutil.rmtree(dropped.parent)
    for path in [
        *sorted((other / "ledger/manifests").iterdir())[4:],
        *sorted((other / "ledger/checkpoints").iterdir())[4:],
    ]:
        path.unlink()
    result = build_dataset(other, database=longer)
    assert result.mode == FULL and result.batches == 4
    assert "holds 6 batches, the verified ledger 4" in result.reason


def _delete_one_row(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM audit_events WHERE event_id = 'ev-login-a1'")
    con.close()


def _delete_and_edit_manifest_text(path: Path) -> None:
    """Drop a row and make the stored manifest text agree: its hash no longer does."""
    _delete_one_row(path)
    con = duckdb.connect(str(path))
    con.execute(
        "UPDATE batches SET manifest = replace(manifest::VARCHAR, '\"rows\":9', '\"rows\":8'), "
        "data_rows = 8 WHERE sequence = 0"
    )
    edited = con.sql("SELECT manifest->>'$.signed.data.rows' FROM batches WHERE sequence = 0")
    assert edited.fetchall() == [("8",)]
    con.close()


def _old_schema(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("UPDATE dataset_info SET value = '0' WHERE key = 'dataset_schema_version'")
    con.close()


def _other_columns(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE batches DROP COLUMN source")
    con.close()


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"this is not a DuckDB file\n" * 100)


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_delete_one_row, "holds 8 rows of batch 0 (0 quarantined), its manifest lists 9"),
        (_delete_and_edit_manifest_text, "manifest 0 is not the one"),
        (_old_schema, "dataset_schema_version '0'"),
        (_other_columns, "tables differ from this version's"),
        (_not_a_database, "cannot be opened"),
    ],
)
def test_a_previous_dataset_that_disagrees_is_not_reused(
    scenario_ledger, data_dir, tmp_path, spoil, reason
):
    first = build_dataset(data_dir)
    spoil(first.path)
    second = build_dataset(data_dir)
    assert second.mode == FULL
    assert reason in second.reason
    assert second.events == first.events
    _assert_same_as_full(data_dir, second.path, tmp_path)


def test_full_option_of_the_cli(cli, scenario_ledger, data_dir):
    runs = []
    for extra in ((), (), ("--full",)):
        code, out, err = cli("dataset", "build", "--data-dir", str(data_dir), "--json", *extra)
        assert code == 0, err
        runs.append(json.loads(out))
    assert [r["mode"] for r in runs] == [FULL, INCREMENTAL, FULL]
    assert [r["files_read"] for r in runs] == [5, 0, 5]
    assert runs[1]["reused_batches"] == 6
    assert runs[2]["reason"] == "a full build was asked for"
    code, out, _ = cli("dataset", "build", "--data-dir", str(data_dir))
    assert code == 0 and "incremental: kept 6 batches" in out


def test_a_partial_verification_is_not_incremental_safe(scenario_ledger, data_dir, scenario):
    build_dataset(data_dir)
    report = verify_ledger(
        data_dir,
        file_format=PARQUET_FORMAT,
        data_range=(scenario.T0, scenario.T0 + 5 * scenario.HOUR),
    )
    assert report.intact
    result = build_dataset(data_dir, report=report)
    assert result.mode == FULL and "range of hours" in result.reason


def test_injected_file_is_absent_after_an_incremental_build(scenario_ledger, data_dir, scenario):
    first = build_dataset(data_dir)
    hour = scenario.T0 + 5 * scenario.HOUR
    scenario.commit(
        scenario_ledger, hour, [scenario.entry("ev-5", hour, "user_login", scenario.ALICE, {})]
    )
    report = verify_ledger(data_dir, file_format=PARQUET_FORMAT)
    original = next((data_dir / "lake").rglob("*.parquet"))
    shutil.copyfile(original, original.parent / "99999999-hour.parquet")
    result = build_dataset(data_dir, report=report)
    assert result.mode == INCREMENTAL and result.events == first.events + 1
    con = open_dataset(result.path)
    assert con.sql("SELECT count(*) FROM batches WHERE data_path LIKE '%99999999%'").fetchall() == [
        (0,)
    ]
    con.close()
    with pytest.raises(DatasetIntegrityError, match="unreferenced_file"):
        build_dataset(data_dir)


def _flip_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_new_file_changed_after_verification_is_refused(scenario_ledger, data_dir, scenario):
    first = build_dataset(data_dir)
    hour = scenario.T0 + 5 * scenario.HOUR
    scenario.commit(
        scenario_ledger, hour, [scenario.entry("ev-5", hour, "user_login", scenario.ALICE, {})]
    )
    report = verify_ledger(data_dir, file_format=PARQUET_FORMAT)
    _flip_byte(next((data_dir / "lake").rglob("00000006-hour.parquet")))
    before = first.path.read_bytes()
    with pytest.raises(DatasetIntegrityError, match="changed after verification"):
        build_dataset(data_dir, report=report)
    assert first.path.read_bytes() == before
    assert not list(data_dir.glob("audit.duckdb.tmp-*"))


def test_an_old_file_changed_later_is_found_by_full_verification_and_full_rebuild(
    scenario_ledger, data_dir, scenario
):
    build_dataset(data_dir)
    hour = scenario.T0 + 5 * scenario.HOUR
    scenario.commit(
        scenario_ledger, hour, [scenario.entry("ev-5", hour, "user_login", scenario.ALICE, {})]
    )
    _flip_byte(next((data_dir / "lake").rglob("00000000-hour.parquet")))
    # The full verification re-hashes every data file: nothing is built.
    with pytest.raises(DatasetIntegrityError, match="did not verify"):
        build_dataset(data_dir)
    # A verification from the checkpoint the first build saw checks only what followed it,
    # but an incremental build re-derives the rows it would carry over from their files
    # (the seal beside the dataset is no anchor): the changed file is found there too...
    trusted = (data_dir / "ledger/checkpoints/00000006.checkpoint").read_bytes()
    report = verify_ledger(
        data_dir, file_format=PARQUET_FORMAT, trusted_checkpoint=trusted, incremental=True
    )
    assert report.intact and report.incremental_from == 6
    with pytest.raises(DatasetIntegrityError, match="changed after verification"):
        build_dataset(data_dir, report=report)
    # ...and so does a full rebuild, which re-reads every file; the first dataset stays.
    with pytest.raises(DatasetIntegrityError, match="changed after verification"):
        build_dataset(data_dir, report=report, full=True)
    assert open_dataset(dataset_path(data_dir)).sql(
        "SELECT count(*) FROM audit_events WHERE batch_sequence = 0"
    ).fetchall() == [(9,)]
