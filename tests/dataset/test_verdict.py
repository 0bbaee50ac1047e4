"""Issue 10 case 1: no stale verdict. A data file cut in half after the last verification
turns the report red, tiles included; the verdict shown carries the time it was checked."""

from __future__ import annotations

from pathlib import Path

from audit_pipeline.dataset.build import build_dataset
from audit_pipeline.dataset.report import write_report
from audit_pipeline.dataset.verdict import verdict_now


def _cut_in_half(data_dir: Path, sequence: int) -> Path:
    path = next((data_dir / "lake").rglob(f"{sequence:08d}-*.parquet"))
    path.chmod(0o644)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def test_report_checks_now_and_turns_every_dependent_tile_red(
    scenario_ledger, data_dir: Path, tmp_path: Path, cli
) -> None:
    built = build_dataset(data_dir)
    assert cli("report", "--data-dir", str(data_dir), "--out", str(tmp_path / "a.html"))[0] == 0
    green = write_report(tmp_path / "ok.html", data_dir=data_dir).read_text()
    assert "VERIFIED" in green and "Checked now" in green and "FAILED" not in green

    cut = _cut_in_half(data_dir, 1)  # after the last verification: nothing re-ran
    verdict = verdict_now(data_dir, built.path)
    assert not verdict.ok and not verdict.intact
    assert verdict.report.incremental_from == built.tree_size  # incremental, not row-level
    assert [p["location"] for p in verdict.problems] == [str(cut.relative_to(data_dir))]

    page = write_report(tmp_path / "bad.html", data_dir=data_dir).read_text()
    assert "VERIFICATION FAILED" in page and "Checked now" in page
    assert "file_hash_mismatch" in page and str(cut.relative_to(data_dir)) in page
    assert "unknown (verification failed)" in page  # the hours-missing tile
    assert "not confirmed" in page  # the checkpoint state
    assert "matches the verified manifests" not in page
    # the command says it too: exit 1, as for any integrity finding
    code, _, err = cli("report", "--data-dir", str(data_dir), "--out", str(tmp_path / "b.html"))
    assert code == 1 and "did not pass" in err and (tmp_path / "b.html").exists()


def test_new_batches_after_the_build_are_verified_fully(scenario_ledger, data_dir, scenario):
    built = build_dataset(data_dir)
    verdict = verdict_now(data_dir, built.path)
    assert verdict.ok, verdict.findings()
    assert verdict.report.incremental_from == built.tree_size
    assert verdict.seal.ok and verdict.checked_at > 0


def test_query_warns_after_a_failed_verification(scenario_ledger, data_dir: Path, cli) -> None:
    build_dataset(data_dir)
    code, _, err = cli("query", "--data-dir", str(data_dir), "select 1")
    assert code == 0 and "matches its seal" in err and "WARNING" not in err
    _cut_in_half(data_dir, 1)
    assert cli("verify", "--data-dir", str(data_dir))[0] == 1  # recorded as failed
    code, _, err = cli("query", "--data-dir", str(data_dir), "select 1")
    assert code == 0 and "WARNING: the latest verification" in err and "FAILED" in err
