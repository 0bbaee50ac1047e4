"""verify_ledger(data_range=...): a copy holding the data of some hours only.

The six-hour ledger: batches 0..5 are hours 0..5 (hour 2 empty), batch 6 is a late batch
for hour 1. Data files: batches 0, 1, 3, 4, 5, 6.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.commit import Ledger, LedgerStateError
from audit_pipeline.ledger.keys import load_keyring
from audit_pipeline.ledger.layout import HOUR
from audit_pipeline.ledger.proofs import EventNotFoundError, prove_event, verify_event_proof
from audit_pipeline.ledger.verify import FindingCode


def _data_files(ledger: Ledger) -> dict[int, str]:
    return {m.sequence: m.manifest.data.path for m in ledger.manifests() if m.manifest.data}


def _keep_only_hours(ledger: Ledger, lh, first: int, last: int) -> set[str]:
    """Delete the data files of batches outside hours [first, last]; return those removed."""
    removed = set()
    for m in ledger.manifests():
        outside = not lh.hour(first) <= m.manifest.window_start <= lh.hour(last)
        if m.manifest.data and outside:
            (ledger.data_dir / m.manifest.data.path).unlink()
            removed.add(m.manifest.data.path)
    return removed


def test_a_copy_of_some_hours_verifies_for_its_range(six_hours: Ledger, lh) -> None:
    removed = _keep_only_hours(six_hours, lh, 3, 4)
    assert len(removed) == 4  # hours 0, 1 (hour + late batch) and 5
    without = lh.verify(six_hours.data_dir)
    assert lh.codes(without) == {"data_file_missing"} and len(without.findings) == 4

    report = lh.verify(six_hours.data_dir, data_range=(lh.hour(3), lh.hour(5)))
    assert report.ok, report.summary()
    outside = [n for n in report.notices if n.code == "data_outside_range"]
    assert {n.location for n in outside} == removed
    assert report.checked["data_files"] == 2 and report.checked["data_outside_range"] == 4
    assert report.checked["signatures"] == 7  # every manifest is still checked
    assert report.data_range == (lh.hour(3), lh.hour(5))
    assert report.to_json()["data_range"] == {"start": lh.hour(3), "end": lh.hour(5)}
    assert "data of hours 2025-01-01T03:00Z..2025-01-01T05:00Z only" in report.summary()


def test_the_range_excuses_nothing_but_absent_files_outside_it(six_hours: Ledger, lh) -> None:
    files = _data_files(six_hours)
    _keep_only_hours(six_hours, lh, 3, 5)
    (six_hours.data_dir / files[4]).unlink()  # inside the range
    present_outside = six_hours.data_dir / files[0]
    report = lh.verify(six_hours.data_dir, data_range=(lh.hour(3), lh.hour(5)))
    assert [(f.code, f.location) for f in report.findings] == [
        (FindingCode.DATA_FILE_MISSING, files[4])
    ]

    # A file outside the range that is present is checked like any other.
    lh.commit(six_hours, 6)  # hour 6 is outside the range too
    target = six_hours.data_dir / _data_files(six_hours)[7]
    lh.make_writable(target)
    target.write_bytes(target.read_bytes().replace(b"Ada", b"Eve", 1))
    injected = present_outside.with_name("00000099-hour.jsonl")
    injected.write_bytes(b"{}\n")
    report = lh.verify(six_hours.data_dir, data_range=(lh.hour(3), lh.hour(5)))
    assert {"file_hash_mismatch", "events_root_mismatch", "unreferenced_file"} <= lh.codes(report)


def test_every_hour_of_the_range_needs_a_manifest(six_hours: Ledger, lh) -> None:
    # The log holds hours 0..5; the range claims two hours before it and three after.
    report = lh.verify(six_hours.data_dir, data_range=(lh.hour(-2), lh.hour(9)))
    missing = [f for f in report.findings if f.code is FindingCode.RANGE_NOT_COVERED]
    assert [f.location for f in missing] == [
        "hours 2024-12-31T22:00Z..2025-01-01T00:00Z",
        "hours 2025-01-01T06:00Z..2025-01-01T09:00Z",
    ]
    assert "2 hours" in missing[0].detail and "3 hours" in missing[1].detail
    assert missing[0].actual == "2025-01-01T00:00Z..2025-01-01T06:00Z"
    # A range wholly before the log (a copy that moved its range to hide its data).
    report = lh.verify(six_hours.data_dir, data_range=(lh.hour(-48), lh.hour(-47)))
    assert lh.codes(report) == {"range_not_covered"}
    assert lh.verify(six_hours.data_dir, data_range=(lh.hour(0), lh.hour(6))).ok


def test_a_whole_range_changes_nothing(six_hours: Ledger, lh) -> None:
    report = lh.verify(six_hours.data_dir, data_range=(lh.hour(0), lh.hour(6)))
    assert report.ok and report.notices == ()
    assert "data_outside_range" not in report.checked


def test_many_absent_files_are_summarised_but_all_reported(ledger: Ledger, lh) -> None:
    for h in range(12):
        lh.commit(ledger, h, n=1)
    _keep_only_hours(ledger, lh, 11, 11)
    report = lh.verify(ledger.data_dir, data_range=(lh.hour(11), lh.hour(12)))
    assert report.ok and len(report.notices) == 11
    summary = report.summary()
    # absent on purpose: counted once in the verdict line, listed only in --json
    assert "(11 absent data files outside it)" in summary
    assert "notice: data_outside_range" not in summary
    assert len([n for n in report.to_json()["notices"] if n["code"] == "data_outside_range"]) == 11


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (1, HOUR, "whole UTC hours"),
        (2 * HOUR, HOUR, "end after its start"),
        (HOUR, HOUR, "end after its start"),
        ("0", HOUR, "two Unix times"),
    ],
)
def test_bad_ranges_are_refused(six_hours: Ledger, lh, start, end, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        lh.verify(six_hours.data_dir, data_range=(start, end))


def test_incremental_with_a_range(six_hours: Ledger, lh, tmp_path: Path) -> None:
    trusted = six_hours.latest_checkpoint()
    lh.commit(six_hours, 6)
    lh.commit(six_hours, 7)
    _keep_only_hours(six_hours, lh, 7, 7)
    report = lh.verify(
        six_hours.data_dir,
        trusted_checkpoint=trusted,
        incremental=True,
        data_range=(lh.hour(7), lh.hour(8)),
    )
    assert report.ok, report.summary()
    assert report.checked["data_files"] == 1 and report.checked["data_outside_range"] == 1


def test_prove_searches_past_absent_data_files(six_hours: Ledger, lh) -> None:
    files = _keep_only_hours(six_hours, lh, 3, 3)
    assert files
    target = next(m for m in six_hours.manifests() if m.sequence == 3)
    event_id = lh.JSONL.read_events(six_hours.data_dir / target.manifest.data.path)[1].event_id
    proof = prove_event(six_hours.data_dir, event_id, file_format=lh.JSONL)
    assert proof["log_index"] == 3
    assert verify_event_proof(proof, load_keyring(six_hours.data_dir)).event_id == event_id

    with pytest.raises(EventNotFoundError, match="5 searched batches have no data file here"):
        prove_event(six_hours.data_dir, "no-such-event", file_format=lh.JSONL)
    with pytest.raises(LedgerStateError, match=r"batch 5's data file .* is absent"):
        prove_event(six_hours.data_dir, event_id, file_format=lh.JSONL, batch_hint=5)
