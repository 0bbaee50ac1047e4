"""Verification depths: what the file level proves, what only the row level catches, and
that saying which one ran is part of every report (the attack matrix runs at both depths
in test_attacks.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.findings import FindingCode


def _data_file(ledger: Ledger, seq: int) -> Path:
    path = ledger.data_dir / ledger.manifests()[seq].manifest.data.path
    path.chmod(0o644)
    return path


def _commit_a_lie(ledger: Ledger, lh, hour: int, extra: list) -> str:
    """A key holder commits batch 7 for ``hour`` through a format that hides ``extra`` rows
    when the commit reads the file back: the file holds them, the signed manifest pins the
    file's size and SHA-256 but counts, roots and ranges only the other rows (a manifest
    that never matched its rows). Returns the data file's path."""
    hidden = {e.event_id for e in extra}

    class Hiding:
        suffix = ".jsonl"

        def read_events(self, path: Path) -> list:
            return [r for r in lh.JSONL.read_events(path) if r.event_id not in hidden]

        read_leaf_hashes = lh.JSONL.read_leaf_hashes

    forger = Ledger(
        ledger.data_dir,
        file_format=Hiding(),
        signer=ledger.signer,
        origin=lh.ORIGIN,
        clock=lh.Clock(lh.CLOCK_START + 5000),
    )
    shown = lh.make_events(hour, 2, prefix="lie")
    lh.commit(forger, hour, shown, write_data=lambda ev, path: lh.write_jsonl([*ev, *extra], path))
    return ledger.manifests()[7].manifest.data.path


def test_a_key_holder_signed_lie_about_rows_is_caught_at_rows_only(six_hours: Ledger, lh) -> None:
    where = _commit_a_lie(six_hours, lh, 6, lh.make_events(6, 1, prefix="extra"))
    rows = lh.verify(six_hours.data_dir, depth="rows")
    assert {(f.code, f.location) for f in rows.findings} == {
        (FindingCode.ROW_COUNT_MISMATCH, where),
        (FindingCode.EVENTS_ROOT_MISMATCH, where),
    }
    assert rows.to_json()["checked"]["depth"] == "rows"
    assert "rows not re-derived" not in rows.summary()

    files = lh.verify(six_hours.data_dir, depth="files")
    # The signed SHA-256 matches: the file level has nothing to say about the rows, and
    # says so rather than vouching for them.
    assert files.ok and files.findings == ()
    (notice,) = files.notices
    assert notice.code == "rows_not_rederived" and "7 data files" in notice.detail
    assert "file level: rows not re-derived" in files.summary().splitlines()[0]
    doc = files.to_json()
    assert doc["checked"]["depth"] == "files" and doc["checked"]["data_files"] == 7
    assert doc["checked"].get("events", 0) == 0  # no event was read


def test_a_key_holder_signed_event_outside_its_hour_is_caught_at_rows_only(
    six_hours: Ledger, lh
) -> None:
    _commit_a_lie(six_hours, lh, 6, lh.make_events(3, 1, prefix="stray"))
    assert "event_outside_window" in lh.codes(lh.verify(six_hours.data_dir, depth="rows"))
    files = lh.verify(six_hours.data_dir, depth="files")
    assert files.ok and [n.code for n in files.notices] == ["rows_not_rederived"]


@pytest.mark.parametrize("depth", ["files", "rows"])
def test_file_level_catches_every_change_to_a_data_file(six_hours: Ledger, lh, depth) -> None:
    """Without the key any change to a data file's bytes is caught at both depths."""
    flipped = _data_file(six_hours, 1)
    raw = bytearray(flipped.read_bytes())
    raw[10] ^= 0x01
    flipped.write_bytes(bytes(raw))
    appended = _data_file(six_hours, 4)
    appended.write_bytes(appended.read_bytes() + b"{}\n")
    _data_file(six_hours, 5).unlink()
    report = lh.verify(six_hours.data_dir, depth=depth)
    by_code = {(f.code.value, f.location) for f in report.findings}
    paths = {seq: six_hours.manifests()[seq].manifest.data.path for seq in (1, 4, 5)}
    assert {
        ("file_hash_mismatch", paths[1]),
        ("size_mismatch", paths[4]),
        ("file_hash_mismatch", paths[4]),
        ("data_file_missing", paths[5]),
    } <= by_code
    row_codes = {"events_root_mismatch", "row_count_mismatch", "unreadable_data_file"}
    assert bool(lh.codes(report) & row_codes) == (depth == "rows")


@pytest.mark.parametrize("depth", ["files", "rows"])
def test_worker_processes_give_the_same_report(six_hours: Ledger, lh, depth) -> None:
    for seq in (0, 3, 6):
        path = _data_file(six_hours, seq)
        path.write_bytes(path.read_bytes() + b"{}\n")
    one = lh.verify(six_hours.data_dir, depth=depth)
    two = lh.verify(six_hours.data_dir, depth=depth, jobs=2)
    assert one.to_json() == two.to_json() and len(one.findings) >= 6


def test_an_unknown_depth_is_refused(six_hours: Ledger, lh) -> None:
    with pytest.raises(ConfigurationError, match="depth must be one of files, rows"):
        lh.verify(six_hours.data_dir, depth="bytes")


def test_report_json_and_summary_name_the_depth(six_hours: Ledger, lh) -> None:
    rows = lh.verify(six_hours.data_dir)
    assert rows.depth == "rows" and json.loads(json.dumps(rows.to_json()))["checked"]["depth"]
    files = lh.verify(six_hours.data_dir, depth="files")
    assert files.summary().startswith("OK: ledger") and "file level" in files.summary()
    # The file level hashed the same bytes the row level did.
    assert files.checked["bytes_hashed"] == rows.checked["bytes_hashed"] > 0
    assert hashlib.sha256(b"").hexdigest() not in files.summary()


def test_incremental_rechecks_the_trusted_batches_files_when_asked(six_hours: Ledger, lh) -> None:
    """Rows of the new batches, file level for the ones a trusted checkpoint covers: a data
    file changed under that checkpoint is caught without re-deriving its rows."""
    held = six_hours.latest_checkpoint()
    lh.commit(six_hours, 6)
    changed = _data_file(six_hours, 2 if six_hours.manifests()[2].manifest.data else 1)
    changed.write_bytes(changed.read_bytes() + b"\n")
    plain = lh.verify(six_hours.data_dir, trusted_checkpoint=held, incremental=True)
    assert plain.ok and plain.checked["data_files"] == 1  # the new batch only
    both = lh.verify(
        six_hours.data_dir, trusted_checkpoint=held, incremental=True, recheck_trusted_files=True
    )
    assert {"size_mismatch", "file_hash_mismatch"} == lh.codes(both)
    assert both.checked["data_files"] == 7 and both.checked["rows_not_rederived"] == 6
    assert both.checked["events"] == 3 and both.depth == "rows"
    assert "rows not re-derived for 6 data files the trusted checkpoint covers" in both.summary()
