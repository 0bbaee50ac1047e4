"""A gap in the hours is not tampering: the dataset builds and shows it; tampering does not."""

from __future__ import annotations

import pytest

from audit_pipeline.dataset.build import DatasetIntegrityError, build_dataset
from audit_pipeline.dataset.query import open_dataset, run_query
from audit_pipeline.ingest import sync_hours
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import FindingCode, verify_ledger
from audit_pipeline.slack.emulator import running_emulator

H = 1795860000
HOUR = 3600


@pytest.fixture
def gapped_ledger(ledger, source_for):
    with running_emulator(
        start=H, end=H + 3 * HOUR, events_per_hour=50, seed=5, rate_limit_per_min=0
    ) as emu:
        for hour in (H, H + 2 * HOUR):  # H+1 is never synced
            sync_hours(
                start=hour,
                end=hour + HOUR,
                source=source_for(emu),
                ledger=ledger,
                run_id="gap",
                lookback_hours=0,
            )
    return ledger


def test_missing_hours_are_coverage_findings_and_the_checkpoint_still_verifies(gapped_ledger):
    report = verify_ledger(gapped_ledger.data_dir, file_format=PARQUET_FORMAT)
    assert [f.code for f in report.findings] == [FindingCode.HOUR_MISSING]
    assert report.intact and not report and not report.integrity_findings
    assert report.checkpoint == gapped_ledger.latest_checkpoint()


def test_the_dataset_builds_over_a_gap_and_lists_it(gapped_ledger):
    result = build_dataset(gapped_ledger.data_dir, trigger="test")
    assert result.batches == 2
    con = open_dataset(result.path)
    rows = run_query(con, "select count(*) from gaps").rows
    assert rows[0][0] >= 1


def test_tampering_still_stops_the_dataset(gapped_ledger):
    (path,) = [p for p in (gapped_ledger.data_dir / "lake").rglob("*.parquet")][:1]
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetIntegrityError, match="did not verify"):
        build_dataset(gapped_ledger.data_dir, trigger="test")
