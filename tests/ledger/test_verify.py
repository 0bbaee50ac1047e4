"""verify_ledger on clean ledgers (no false positives), its modes, and its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.events import EventRecord
from audit_pipeline.ledger.keys import load_signing_key, rotate_key
from audit_pipeline.ledger.layout import checkpoint_path
from audit_pipeline.ledger.note import Verifiers
from audit_pipeline.ledger.verify import REPORT_SCHEMA, FindingCode


def test_clean_ledger_report(six_hours: Ledger, lh) -> None:
    messages: list[str] = []
    report = lh.verify(six_hours.data_dir, progress=messages.append)
    assert report and report.ok and not report.findings and not report.notices
    leaves = [m.leaf_hash for m in six_hours.manifests()]
    assert report.root_hash == merkle.root_hash(leaves)
    assert report.checkpoint == six_hours.latest_checkpoint()
    assert dict(report.checked) == {
        "manifests": 7,
        "signatures": 7,
        "data_files": 6,
        "bytes_hashed": sum(
            (six_hours.data_dir / m.manifest.data.path).stat().st_size
            for m in six_hours.manifests()
            if m.manifest.data
        ),
        "events": 17,
        "checkpoints": 7,
        "hours": 6,
    }
    assert report.summary().startswith("OK: ledger test.example/ledger intact: 7 batches")
    assert any("data files" in m for m in messages)
    doc = report.to_json()
    assert doc["schema"] == REPORT_SCHEMA and doc["ok"] is True and doc["findings"] == []
    assert doc["tree_size"] == 7 and doc["checkpoint"] == report.checkpoint.decode()
    assert json.loads(json.dumps(doc)) == doc


def test_clean_after_rotation_late_batches_and_empty_hours(
    six_hours: Ledger, lh, key_path: Path
) -> None:
    rotated_at = int(six_hours.clock.now) + 50
    rotate_key(six_hours.data_dir, key_path, now=rotated_at)
    six_hours.signer = load_signing_key(key_path)
    six_hours.clock.now = rotated_at
    lh.commit(six_hours, 6, [])
    lh.commit(six_hours, 3, lh.make_events(3, 2, prefix="late"))
    lh.commit(six_hours, 6, lh.make_events(6, 1, prefix="late"))
    report = lh.verify(six_hours.data_dir)
    assert not report.findings, report.summary()
    kinds = [m.manifest.kind for m in six_hours.manifests()]
    assert kinds[7:] == ["empty", "late", "late"]
    new_id = f"{load_signing_key(key_path).key_hash:08x}"
    key_ids = [m.manifest.key_id for m in six_hours.manifests()]
    assert new_id not in key_ids[:7] and set(key_ids[7:]) == {new_id}


def test_empty_ledger(data_dir: Path, signing_key, lh) -> None:
    report = lh.verify(data_dir)
    assert report.ok and report.tree_size == 0 and report.root_hash is None
    assert "OK: ledger (empty)" in report.summary()


def test_misuse_is_a_configuration_error(six_hours: Ledger, lh, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no ledger"):
        lh.verify(tmp_path / "nowhere")
    with pytest.raises(ConfigurationError, match="trusted checkpoint"):
        lh.verify(six_hours.data_dir, incremental=True)
    with pytest.raises(ConfigurationError, match="jobs"):
        lh.verify(six_hours.data_dir, jobs=0)


def test_a_trusted_checkpoint_no_trusted_key_signed_is_a_finding(
    six_hours: Ledger, lh, other_key
) -> None:
    """Fail closed: the data directory's keyring may have been swapped."""
    forged = sign_checkpoint(Checkpoint(lh.ORIGIN, 3, b"\x01" * 32), other_key)
    report = lh.verify(six_hours.data_dir, trusted_checkpoint=forged)
    assert [(f.code, f.location) for f in report.findings] == [
        (FindingCode.UNKNOWN_KEY, "trusted checkpoint")
    ]
    with pytest.raises(ConfigurationError, match="not a checkpoint"):
        lh.verify(six_hours.data_dir, trusted_checkpoint=b"hello\n")


def test_plain_verifiers_as_trusted_keys(six_hours: Ledger, lh, signing_key, other_key) -> None:
    assert lh.verify(six_hours.data_dir, keyring=Verifiers([signing_key.verifier])).ok
    report = lh.verify(six_hours.data_dir, keyring=Verifiers([other_key.verifier]))
    assert lh.codes(report) == {"unknown_key"} and report.trusted_keys


def test_trusted_checkpoint_at_every_size_is_consistent(six_hours: Ledger, lh) -> None:
    for size in range(1, 8):
        held = (six_hours.data_dir / checkpoint_path(size)).read_bytes()
        report = lh.verify(six_hours.data_dir, trusted_checkpoint=held)
        assert report.ok, (size, report.summary())
        assert report.checked["consistency_proofs"] == 1


def test_incremental_checks_only_what_is_new(six_hours: Ledger, lh) -> None:
    held = six_hours.latest_checkpoint()
    for h in (6, 7, 8):
        lh.commit(six_hours, h)
    report = lh.verify(six_hours.data_dir, trusted_checkpoint=held, incremental=True)
    assert report.ok, report.summary()
    assert report.incremental_from == 7 and report.tree_size == 10
    assert (report.checked["data_files"], report.checked["signatures"]) == (3, 3)
    assert report.checked["events"] == 9
    # An old file is outside the incremental scope; a new one is not.
    old = six_hours.data_dir / six_hours.manifests()[0].manifest.data.path
    new = six_hours.data_dir / six_hours.manifests()[8].manifest.data.path
    for path in (old, new):
        path.chmod(0o644)
        path.write_bytes(path.read_bytes().replace(b"Ada", b"Eve", 1))
    incremental = lh.verify(six_hours.data_dir, trusted_checkpoint=held, incremental=True)
    assert [f.location for f in incremental.findings if f.code == "file_hash_mismatch"] == [
        six_hours.manifests()[8].manifest.data.path
    ]
    full = lh.verify(six_hours.data_dir)
    assert len([f for f in full.findings if f.code == "file_hash_mismatch"]) == 2


def test_incremental_sees_duplicates_of_old_batches(six_hours: Ledger, lh) -> None:
    held = six_hours.latest_checkpoint()
    again = lh.JSONL.read_events(six_hours.data_dir / six_hours.manifests()[1].manifest.data.path)
    with six_hours.storage.lock():
        six_hours._append(
            six_hours.manifests(),
            window_start=lh.hour(1),
            kind="late",
            events=again[:1],
            write_data=lh.write_jsonl,
            source={},
            run_id="dup",
        )
    report = lh.verify(six_hours.data_dir, trusted_checkpoint=held, incremental=True)
    assert [f.code for f in report.findings] == [FindingCode.DUPLICATE_EVENT_ID]


def test_parallel_hashing_gives_the_same_report(six_hours: Ledger, lh) -> None:
    for seq in (0, 3, 6):
        path = six_hours.data_dir / six_hours.manifests()[seq].manifest.data.path
        path.chmod(0o644)
        path.write_bytes(path.read_bytes() + b"{}\n")
    one = lh.verify(six_hours.data_dir, jobs=1)
    four = lh.verify(six_hours.data_dir, jobs=4)
    assert one.findings == four.findings and one.checked == four.checked
    assert len(one.findings) > 3


def test_offline_copy_verifies_elsewhere(six_hours: Ledger, lh, tmp_path: Path) -> None:
    """Attack matrix 35: a copy of the directory, on another path, with no network."""
    copy = lh.copy_data_dir(six_hours.data_dir, tmp_path / "elsewhere" / "copy")
    assert lh.verify(copy).ok
    (copy / six_hours.manifests()[4].manifest.data.path).unlink()
    assert [f.code for f in lh.verify(copy).findings] == [FindingCode.DATA_FILE_MISSING]


def test_missing_tip_checkpoint_is_a_notice(six_hours: Ledger, lh) -> None:
    (six_hours.data_dir / checkpoint_path(7)).unlink()
    report = lh.verify(six_hours.data_dir)
    assert report.ok and [n.code for n in report.notices] == ["checkpoint_behind"]
    assert report.checkpoint is None
    lh.commit(six_hours, 6)  # the next commit signs checkpoints again
    assert lh.verify(six_hours.data_dir).checkpoint == six_hours.latest_checkpoint()


def test_unreadable_data_file(six_hours: Ledger, lh) -> None:
    path = six_hours.data_dir / six_hours.manifests()[3].manifest.data.path
    path.chmod(0o644)
    path.write_bytes(b"\x00garbage")
    codes = lh.codes(lh.verify(six_hours.data_dir))
    assert {"unreadable_data_file", "file_hash_mismatch", "size_mismatch"} == codes


def test_columns_that_disagree_with_the_leaf(six_hours: Ledger, lh) -> None:
    class Shifted:
        suffix = ".jsonl"

        def read_events(self, path: Path) -> list[EventRecord]:
            rows = lh.JSONL.read_events(path)
            if "hour=04" in str(path):
                rows[0] = EventRecord("someone-else", rows[0].date_create, rows[0].leaf_data)
            return rows

        read_leaf_hashes = lh.JSONL.read_leaf_hashes

    report = lh.verify(six_hours.data_dir, file_format=Shifted())
    assert [f.code for f in report.findings] == [FindingCode.EVENT_RECORD_MISMATCH]
    assert "someone-else" in report.findings[0].detail
