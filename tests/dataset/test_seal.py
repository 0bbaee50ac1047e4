"""Issue 10 case 2: an edited DuckDB dataset is refused by query, notebook and report, never
reused by an incremental build, and reported by verify; a changed ledger is said."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import duckdb
import pytest

from audit_pipeline.dataset.build import FULL, INCREMENTAL, build_dataset
from audit_pipeline.dataset.query import open_dataset, run_query
from audit_pipeline.dataset.report import write_report
from audit_pipeline.dataset.seal import DatasetTamperedError, check_seal, seal_path
from audit_pipeline.ledger.layout import manifest_path

FORGED = "UPDATE audit_events SET actor_user_email = 'mallory@example.com'"


def _forge(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(FORGED)
    con.close()


def test_build_seals_what_it_published(scenario_ledger, data_dir: Path) -> None:
    result = build_dataset(data_dir)
    status = check_seal(result.path, data_dir)
    assert status.ok and status.seal.tree_size == result.tree_size, status.line()
    assert status.ledger_note is None
    assert stat.S_IMODE(seal_path(result.path).stat().st_mode) == 0o444
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o444


def test_edited_dataset_is_refused_everywhere(
    scenario_ledger, data_dir: Path, tmp_path: Path, cli
) -> None:
    path = build_dataset(data_dir).path
    _forge(path)

    with pytest.raises(DatasetTamperedError, match="changed after it was built"):
        open_dataset(path)  # query and the notebook open it this way
    code, out, err = cli("query", "--data-dir", str(data_dir), "select count(*) from audit_events")
    assert code == 1 and "changed after it was built" in err and out == ""
    with pytest.raises(DatasetTamperedError):
        write_report(tmp_path / "report.html", data_dir=data_dir)

    code, out, err = cli("verify", "--json", "--no-record", "--data-dir", str(data_dir))
    assert code == 1 and "NOT SEALED" in err
    doc = json.loads(out)
    assert doc["ok"] is True and doc["dataset"]["sealed"] is False

    rebuilt = build_dataset(data_dir)  # incremental by default: must not reuse it
    assert rebuilt.mode == FULL and "changed after it was built" in rebuilt.reason
    con = open_dataset(rebuilt.path)
    try:
        forged = run_query(
            con, "select count(*) from audit_events where actor_user_email = 'mallory@example.com'"
        )
    finally:
        con.close()
    assert forged.rows == [(0,)]
    assert build_dataset(data_dir).mode == INCREMENTAL  # sealed again


def _reseal(path: Path) -> None:
    """The insider's next step: a new seal over the edited file, as the build would write."""
    from audit_pipeline.dataset.seal import read_seal, write_seal

    before = read_seal(path)
    seal_path(path).unlink()
    write_seal(
        path,
        origin=before.origin,
        tree_size=before.tree_size,
        root_hash=before.root_hash,
        checkpoint=before.checkpoint,
        verification_run_id=before.verification_run_id,
    )


@pytest.mark.parametrize(
    "forgery",
    [
        FORGED,
        "DELETE FROM audit_events WHERE action = 'user_login'",
        "INSERT INTO audit_events SELECT * FROM audit_events LIMIT 1",
        "UPDATE audit_events SET date_create = date_create - INTERVAL 1 HOUR",
    ],
)
def test_edited_and_resealed_dataset_is_found_by_its_rows(
    scenario_ledger, data_dir: Path, cli, forgery: str
) -> None:
    """The seal beside the dataset is no anchor: whoever can write one can write both. An
    edit sealed again still shows, because verify and an incremental build re-derive the
    rows from the verified data files."""
    path = build_dataset(data_dir).path
    con = duckdb.connect(str(path))
    changed = con.execute(forgery).fetchall()
    con.close()
    assert changed != [(0,)], "the forgery must change something"
    _reseal(path)
    assert check_seal(path, data_dir).ok  # the seal alone is fooled

    code, out, err = cli("verify", "--json", "--no-record", "--data-dir", str(data_dir))
    assert code == 1 and "DATASET ROWS DIFFER" in err, err
    assert json.loads(out)["dataset"]["rows_differ"]

    rebuilt = build_dataset(data_dir)  # incremental by default: must not carry them over
    assert rebuilt.mode == FULL, rebuilt.reason
    if forgery.startswith("UPDATE"):  # same row counts: only the rows themselves tell
        assert "edited and sealed again" in rebuilt.reason
    code, out, err = cli("verify", "--no-record", "--data-dir", str(data_dir))
    assert code == 0 and "DATASET ROWS DIFFER" not in err, err


def test_ledger_changed_since_the_build_is_refused(scenario_ledger, data_dir: Path) -> None:
    path = build_dataset(data_dir).path
    manifest = data_dir / manifest_path(1)
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b'"run_id":"', b'"run_id":"x'))
    status = check_seal(path, data_dir)
    assert status.ok and status.ledger_changed
    with pytest.raises(DatasetTamperedError, match="changed since the build"):
        open_dataset(path)


def test_missing_seal_is_refused(scenario_ledger, data_dir: Path) -> None:
    path = build_dataset(data_dir).path
    seal_path(path).unlink()
    with pytest.raises(DatasetTamperedError, match="has no seal"):
        open_dataset(path)


def test_dataset_modes_whatever_the_umask(scenario_ledger, data_dir: Path) -> None:
    import os

    old = os.umask(0)
    try:
        path = build_dataset(data_dir).path
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert stat.S_IMODE(seal_path(path).stat().st_mode) == 0o444
    runs = data_dir / "verification" / "runs.jsonl"
    assert stat.S_IMODE(runs.stat().st_mode) == 0o644
    assert stat.S_IMODE(runs.parent.stat().st_mode) == 0o755


def test_a_fifo_history_does_not_hang_the_build(scenario_ledger, data_dir: Path) -> None:
    import os

    from audit_pipeline.dataset.history import HistoryError, load_runs

    runs = data_dir / "verification" / "runs.jsonl"
    runs.parent.mkdir(exist_ok=True)
    os.mkfifo(runs)
    with pytest.raises(HistoryError, match="FIFO"):
        load_runs(data_dir)


def _with_fifo(path: Path) -> None:
    import os

    if path.exists():
        path.chmod(0o644)
        path.unlink()
    path.parent.mkdir(exist_ok=True)
    os.mkfifo(path)


def test_a_fifo_history_does_not_hang_verify_or_the_build(
    scenario_ledger, data_dir: Path, cli
) -> None:
    """Appending to a FIFO would wait for a reader forever: not recorded, said, never hung."""
    build_dataset(data_dir)
    _with_fifo(data_dir / "verification" / "runs.jsonl")
    code, _, err = cli("verify", "--data-dir", str(data_dir))
    assert code == 0 and "not recorded in the verification history" in err and "FIFO" in err
    with pytest.raises(Exception, match="FIFO"):
        build_dataset(data_dir)


def test_a_linked_history_directory_is_not_written_through(
    scenario_ledger, data_dir: Path, tmp_path: Path, cli
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (data_dir / "verification").symlink_to(outside)
    code, _, err = cli("verify", "--data-dir", str(data_dir))
    assert code == 1 and "linked_directory" in err
    assert "not recorded in the verification history" in err
    assert not (outside / "runs.jsonl").exists()


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_dataset_that_is_not_a_regular_file(
    scenario_ledger, data_dir: Path, tmp_path: Path, cli, kind: str
) -> None:
    """A FIFO or link in the dataset's place: verify says so (never silent), and the next
    build neither hangs on it nor reuses it: it builds in full."""
    path = build_dataset(data_dir).path
    if kind == "fifo":
        _with_fifo(path)
    else:
        moved = tmp_path / "elsewhere.duckdb"
        path.rename(moved)
        path.symlink_to(moved)
    code, _, err = cli("verify", "--data-dir", str(data_dir), "--no-record")
    assert code == 1 and "not a regular file" in err
    code, out, err = cli("query", "--data-dir", str(data_dir), "select 1")
    assert code == 1 and "not a regular file" in err and not out  # refused, not 'no dataset'
    code, _, err = cli("report", "--data-dir", str(data_dir), "--out", str(tmp_path / "r.html"))
    assert code == 1 and "not a regular file" in err
    result = build_dataset(data_dir)
    assert result.mode == FULL and not result.path.is_symlink()
    assert check_seal(result.path, data_dir).ok
