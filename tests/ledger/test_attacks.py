"""The attack matrix (tamper-evidence reference, items 1-37) against real ledgers on disk.

Each test tampers with a clean ledger the way the attack says and asserts the named
finding. The ledger is ``six_hours`` (conftest): batches 0-5 are hours 0-5 (hour 2 is
``empty``), batch 6 is a ``late`` batch for hour 1; checkpoints for sizes 1-7.
Attacks on proofs (27, 28, 37) are in test_proofs.py, crashes (33) in test_crash.py,
retries (34) in test_commit.py, exit codes (36) in tests/cli.

Each test runs at both verification depths (``lh.verify`` checks at the depth of the
run), except those in :data:`ROWS_ONLY`: attacks only re-deriving the rows can expose (a
key holder signing a manifest that never matched its rows). What the file level says about
those is asserted in test_verify_depth.py.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from audit_pipeline.ledger.canonical import canonical_json
from audit_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
from audit_pipeline.ledger.commit import Ledger, sign_intent
from audit_pipeline.ledger.keys import load_keyring, load_signing_key, rotate_key, save_keyring
from audit_pipeline.ledger.layout import checkpoint_path, intent_path, manifest_path
from audit_pipeline.ledger.manifest import SIGNING_CONTEXT, parse_manifest
from audit_pipeline.ledger.note import Signer
from audit_pipeline.ledger.verify import VerifyReport

# Attacks whose finding needs the rows re-derived (verify --depth rows).
ROWS_ONLY = frozenset(
    {
        "test_01_flipped_byte_in_a_data_file",  # also asserts the events root
        "test_02_data_file_replaced_by_another_valid_file",  # likewise
        "test_08_row_deleted_with_file_hash_recomputed",
        "test_25_duplicate_event_ids_across_batches",
        "test_25_event_outside_its_window",
        "test_26_late_data_rewritten_in_place",  # also asserts the row count and root
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "depth" in metafunc.fixturenames:
        rows_only = metafunc.function.__name__ in ROWS_ONLY
        metafunc.parametrize("depth", ["rows"] if rows_only else ["rows", "files"])


@pytest.fixture(autouse=True)
def _verify_at_depth(depth: str, lh, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``lh.verify`` of the test checks data files at ``depth``."""
    monkeypatch.setattr(lh, "verify", partial(lh.verify, depth=depth))


def manifest_file(ledger: Ledger, seq: int) -> Path:
    return ledger.data_dir / manifest_path(seq)


def data_file(ledger: Ledger, seq: int) -> Path:
    return ledger.data_dir / ledger.manifests()[seq].manifest.data.path


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)
    return path


def found(report: VerifyReport, code: str) -> list[str]:
    """found returns the locations of every finding with ``code``."""
    return [f.location for f in report.findings if f.code.value == code]


def sign_payload(payload: dict[str, Any], signer: Signer, claim: Signer | None = None) -> bytes:
    """sign_payload builds a manifest envelope around any payload, skipping validation
    (an attacker's tool), optionally claiming another key's name and id."""
    claim = claim or signer
    payload = {**payload, "key": {"key_id": f"{claim.key_hash:08x}", "name": claim.name}}
    sig = signer.sign(SIGNING_CONTEXT + canonical_json(payload))
    entry = {
        "key_id": f"{claim.key_hash:08x}",
        "name": claim.name,
        "sig": base64.b64encode(sig).decode(),
    }
    return canonical_json({"signatures": [entry], "signed": payload})


def payload_of(ledger: Ledger, seq: int) -> dict[str, Any]:
    return json.loads(manifest_file(ledger, seq).read_bytes())["signed"]


def put(path: Path, raw: bytes) -> None:
    if path.exists():
        writable(path)
    path.write_bytes(raw)


def test_clean_ledger_has_no_findings(six_hours: Ledger, lh, depth: str) -> None:
    report = lh.verify(six_hours.data_dir)
    # the file level says what it did not check
    unchecked = ["rows_not_rederived"] if depth == "files" else []
    assert report.findings == () and [n.code for n in report.notices] == unchecked
    assert report.tree_size == 7 and report.checkpoint == six_hours.latest_checkpoint()


# -- content -----------------------------------------------------------------------------


def test_01_flipped_byte_in_a_data_file(six_hours: Ledger, lh) -> None:
    path = writable(data_file(six_hours, 3))
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"Ada") + 2] ^= 0x01
    path.write_bytes(raw)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "file_hash_mismatch") == [six_hours.manifests()[3].manifest.data.path]
    assert "events_root_mismatch" in lh.codes(report)


def test_02_data_file_replaced_by_another_valid_file(six_hours: Ledger, lh) -> None:
    path = writable(data_file(six_hours, 3))
    lh.write_jsonl(lh.make_events(3, 3, prefix="xx"), path)
    assert len(lh.JSONL.read_events(path)) == 3
    assert {"file_hash_mismatch", "events_root_mismatch"} <= lh.codes(lh.verify(six_hours.data_dir))


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["data"].update(rows=2),
        lambda p: p["window"].update(start=p["window"]["start"] + 3600),
        lambda p: p["data"].update(path=p["data"]["path"].replace("hour=03", "hour=07")),
        lambda p: p["events"].update(count=4),
        lambda p: p.update(run_id="someone-else"),
    ],
    ids=["row count", "window", "path", "event count", "run id"],
)
def test_03_manifest_field_edited(six_hours: Ledger, lh, edit) -> None:
    path = manifest_file(six_hours, 3)
    doc = json.loads(path.read_bytes())
    edit(doc["signed"])
    put(path, canonical_json(doc))
    report = lh.verify(six_hours.data_dir)
    assert found(report, "bad_signature") == [manifest_path(3)]
    assert found(report, "chain_break") == [manifest_path(4)]
    assert "checkpoint_mismatch" in lh.codes(report)


def test_04_untrusted_key(six_hours: Ledger, lh, other_key: Signer) -> None:
    lh.resign(six_hours.data_dir, 6, other_key, lambda p: p.update(run_id="forged"))
    report = lh.verify(six_hours.data_dir)
    assert found(report, "unknown_key") == [manifest_path(6)]


def test_04_key_id_collision(six_hours: Ledger, lh, other_key: Signer, signing_key) -> None:
    """A different key claiming the trusted key's name and 4-byte id: bad signature."""
    raw = sign_payload(payload_of(six_hours, 6), other_key, claim=signing_key)
    put(manifest_file(six_hours, 6), raw)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "bad_signature") == [manifest_path(6)]


def test_05_key_outside_its_window_or_revoked(six_hours: Ledger, lh, key_path: Path) -> None:
    data_dir = six_hours.data_dir
    old = load_signing_key(key_path)
    rotated_at = int(six_hours.clock.now) + 100
    rotate_key(data_dir, key_path, now=rotated_at)
    new = load_signing_key(key_path)
    six_hours.signer, six_hours.clock.now = new, rotated_at + 10
    lh.commit(six_hours, 6)
    lh.commit(six_hours, 7)
    assert not lh.verify(data_dir).findings  # rotation itself is clean
    # The old key signs after its window closed; the new key signs before its window opened.
    lh.resign(data_dir, 8, old, lambda p: None)
    lh.resign(data_dir, 0, new, lambda p: None)
    report = lh.verify(data_dir)
    assert found(report, "key_expired") == [manifest_path(8)]
    assert found(report, "key_not_yet_valid") == [manifest_path(0)]


def test_05_revoked_key(six_hours: Ledger, lh, signing_key: Signer) -> None:
    data_dir = six_hours.data_dir
    keyring = load_keyring(data_dir)
    entry = keyring.find(signing_key.name, signing_key.key_hash)
    revoked_at = payload_of(six_hours, 3)["created"]
    # A revocation is made by a key holder (keyring entries are signed since keyring/v2).
    revoked = replace(entry, revoked_at=revoked_at).signed_by(signing_key)
    save_keyring(data_dir, keyring.with_replaced(entry, revoked))
    report = lh.verify(data_dir)
    assert found(report, "key_revoked") == [manifest_path(s) for s in (3, 4, 5, 6)] + [
        checkpoint_path(size) for size in (4, 5, 6, 7)
    ]
    assert lh.codes(report) == {"key_revoked"}


@pytest.mark.parametrize(
    "variant",
    [
        lambda raw: raw + b"\n",
        lambda raw: raw.replace(b'":', b'": '),
        lambda raw: raw.replace(b'{"signatures":', b'{"signed":{},"signatures":', 1),
        lambda raw: raw.replace(b'"kind":"hour"', b'"kind":"late","kind":"hour"'),
        lambda raw: raw.replace(b"\\/", b"/").replace(b"https://", b"https:\\/\\/"),
        lambda raw: raw.replace(b'"run-3"', b'"run\\u002d3"'),
        lambda raw: raw.replace(b",", b",\r\n", 1),
    ],
    ids=[
        "trailing newline",
        "whitespace",
        "extra key",
        "duplicate key",
        "escaped slash",
        "unicode escape",
        "line ending",
    ],
)
def test_06_canonicalisation_tricks(six_hours: Ledger, lh, variant) -> None:
    path = manifest_file(six_hours, 3)
    tricked = variant(path.read_bytes())
    assert tricked != path.read_bytes()
    put(path, tricked)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "malformed_manifest") == [manifest_path(3)]


def test_07_algorithm_switched(six_hours: Ledger, lh, signing_key: Signer) -> None:
    payload = payload_of(six_hours, 6)
    payload["algorithms"]["signature"] = "ed448"
    put(manifest_file(six_hours, 6), sign_payload(payload, signing_key))
    report = lh.verify(six_hours.data_dir)
    assert found(report, "unsupported_algorithm") == [manifest_path(6)]


def test_08_row_deleted_with_file_hash_recomputed(six_hours: Ledger, lh, signing_key) -> None:
    """Even with the key: the manifest's Merkle root over the rows gives it away."""
    path = writable(data_file(six_hours, 6))
    rows = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(rows[1:]))
    import hashlib

    def recompute(p: dict[str, Any]) -> None:
        p["data"].update(
            rows=1, size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest()
        )
        p["events"]["count"] = 1

    lh.resign(six_hours.data_dir, 6, signing_key, recompute)
    report = lh.verify(six_hours.data_dir)
    assert "events_root_mismatch" in lh.codes(report)
    assert "file_hash_mismatch" not in lh.codes(report)
    # Without the key only the file changes: the hash gives it away.
    path.write_bytes(b"".join(rows))


# -- structure ---------------------------------------------------------------------------


def test_09_data_file_deleted(six_hours: Ledger, lh) -> None:
    data_file(six_hours, 4).unlink()
    assert found(lh.verify(six_hours.data_dir), "data_file_missing") == [
        six_hours.manifests()[4].manifest.data.path
    ]


def test_10_manifest_in_the_middle_deleted(six_hours: Ledger, lh) -> None:
    manifest_file(six_hours, 3).unlink()
    report = lh.verify(six_hours.data_dir)
    assert found(report, "missing_manifest") == [manifest_path(3)]
    assert report.missing_sequences == (3,)
    assert found(report, "unreferenced_file")  # its data file is now orphaned
    assert found(report, "hour_missing") == ["hour 2025-01-01T03:00Z"]


def test_11_consecutive_manifests_deleted_each_reported(six_hours: Ledger, lh) -> None:
    for seq in (1, 2, 3, 5):
        manifest_file(six_hours, seq).unlink()
    report = lh.verify(six_hours.data_dir)
    assert found(report, "missing_manifest") == [manifest_path(s) for s in (1, 2, 3, 5)]
    assert report.missing_sequences == (1, 2, 3, 5)
    assert "missing manifests: 4 (1-3, 5)" in report.summary()
    assert report.to_json()["finding_counts"]["missing_manifest"] == 4


def _truncate_tail(ledger: Ledger, keep: int, *, checkpoints: bool) -> None:
    chain = ledger.manifests()
    for seq in range(keep, len(chain)):
        m = chain[seq].manifest
        if m.data:
            (ledger.data_dir / m.data.path).unlink()
        manifest_file(ledger, seq).unlink()
        if checkpoints:
            (ledger.data_dir / checkpoint_path(seq + 1)).unlink()


def test_12_tail_truncation_caught_by_the_stored_checkpoints(six_hours: Ledger, lh) -> None:
    _truncate_tail(six_hours, 5, checkpoints=False)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "tail_truncated") == [checkpoint_path(6), checkpoint_path(7)]


def test_12_tail_truncation_caught_elsewhere(six_hours: Ledger, lh) -> None:
    held_elsewhere = six_hours.latest_checkpoint()
    newest_hour_end = lh.hour(6)
    _truncate_tail(six_hours, 4, checkpoints=True)  # a careful attacker: hours 4, 5 gone
    assert not lh.verify(six_hours.data_dir).findings  # locally it looks fine
    report = lh.verify(six_hours.data_dir, trusted_checkpoint=held_elsewhere)
    (finding,) = report.findings
    assert (finding.code, finding.expected, finding.actual) == ("tail_truncated", "7", "4")
    # Hourly cadence: the newest hour (03:00) is long over; 05:00 would have been recent.
    lag = lh.CLOCK_START - newest_hour_end + 3600
    cadence = lh.verify(six_hours.data_dir, now=lh.CLOCK_START, max_lag=lag)
    assert found(cadence, "stale_log") == ["hour 2025-01-01T03:00Z"]
    assert not lh.verify(six_hours.data_dir, now=lh.CLOCK_START, max_lag=lag + 3 * 3600).findings


def test_13_prefix_truncation(six_hours: Ledger, lh) -> None:
    chain = six_hours.manifests()
    for seq in (0, 1):
        (six_hours.data_dir / chain[seq].manifest.data.path).unlink()
        manifest_file(six_hours, seq).unlink()
    report = lh.verify(six_hours.data_dir)
    assert found(report, "missing_manifest") == [manifest_path(0), manifest_path(1)]


def test_14_manifests_swapped(six_hours: Ledger, lh) -> None:
    a, b = manifest_file(six_hours, 3), manifest_file(six_hours, 4)
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "sequence_mismatch") == [manifest_path(3), manifest_path(4)]
    assert set(found(report, "chain_break")) >= {manifest_path(3), manifest_path(4)}
    assert "checkpoint_mismatch" in lh.codes(report)


def test_15_forged_manifest_inserted(six_hours: Ledger, lh, other_key: Signer) -> None:
    payload = payload_of(six_hours, 6)
    previous = manifest_file(six_hours, 6).read_bytes()
    import hashlib

    payload.update(sequence=7, prev_manifest_sha256=hashlib.sha256(previous).hexdigest())
    payload["window"] = {"start": lh.hour(6), "end": lh.hour(7)}
    payload.update(kind="empty", data=None)
    payload["events"] = {
        "count": 0,
        "max_date_create": None,
        "min_date_create": None,
        "merkle_root": payload["events"]["merkle_root"],
    }
    put(manifest_file(six_hours, 7), sign_payload(payload, other_key))
    report = lh.verify(six_hours.data_dir)
    assert found(report, "unknown_key") == [manifest_path(7)]


def test_15_forged_manifest_inserted_mid_chain(six_hours: Ledger, lh, other_key) -> None:
    for seq in (6, 5, 4):
        manifest_file(six_hours, seq).rename(manifest_file(six_hours, seq + 1))
    put(manifest_file(six_hours, 4), sign_payload(payload_of(six_hours, 5), other_key))
    report = lh.verify(six_hours.data_dir)
    assert found(report, "unknown_key") == [manifest_path(4)]
    assert set(found(report, "sequence_mismatch")) == {manifest_path(s) for s in (5, 6, 7)}


def test_16_manifest_replayed_at_another_position(six_hours: Ledger, lh) -> None:
    shutil.copy(manifest_file(six_hours, 3), manifest_file(six_hours, 7))
    report = lh.verify(six_hours.data_dir)
    assert found(report, "sequence_mismatch") == [manifest_path(7)]
    assert found(report, "chain_break") == [manifest_path(7)]
    assert found(report, "duplicate_window") == [manifest_path(7)]


def _rewrite_from(ledger: Ledger, keep: int, lh, hours: list[int]) -> None:
    """An attacker holding the key rewrites history after batch ``keep - 1``."""
    _truncate_tail(ledger, keep, checkpoints=True)
    forger = Ledger(
        ledger.data_dir,
        file_format=lh.JSONL,
        signer=ledger.signer,
        origin=lh.ORIGIN,
        clock=lh.Clock(lh.CLOCK_START + 5000),
    )
    for h in hours:
        lh.commit(forger, h, lh.make_events(h, 2, prefix="forged"))


def test_17_fork_caught_by_a_checkpoint_held_elsewhere(six_hours: Ledger, lh) -> None:
    witness = six_hours.latest_checkpoint()
    _rewrite_from(six_hours, 4, lh, [4, 5, 6])
    assert not lh.verify(six_hours.data_dir).findings  # validly signed, self-consistent
    report = lh.verify(six_hours.data_dir, trusted_checkpoint=witness)
    assert found(report, "consistency_failure") == ["trusted checkpoint"]


def test_18_rollback_to_an_old_prefix(six_hours: Ledger, lh, tmp_path: Path) -> None:
    old_copy = lh.copy_data_dir(six_hours.data_dir, tmp_path / "old")
    lh.commit(six_hours, 6)
    lh.commit(six_hours, 7)
    report = lh.verify(old_copy, trusted_checkpoint=six_hours.latest_checkpoint())
    assert found(report, "tail_truncated") == ["trusted checkpoint"]


def test_19_sequence_jump(six_hours: Ledger, lh) -> None:
    manifest_file(six_hours, 6).rename(manifest_file(six_hours, 9))
    report = lh.verify(six_hours.data_dir)
    assert found(report, "missing_manifest") == [manifest_path(s) for s in (6, 7, 8)]
    assert found(report, "sequence_mismatch") == [manifest_path(9)]


def test_19_manifest_dated_in_the_future(ledger: Ledger, lh) -> None:
    lh.commit(ledger, 0)
    ledger.clock = lambda: lh.CLOCK_START + 900 * 86_400
    lh.commit(ledger, 1)
    report = lh.verify(ledger.data_dir)
    assert found(report, "future_dated") == [manifest_path(1)]


def test_20_second_genesis(six_hours: Ledger, lh, signing_key) -> None:
    lh.resign(
        six_hours.data_dir, 4, signing_key, lambda p: p.update(prev_manifest_sha256="00" * 32)
    )
    report = lh.verify(six_hours.data_dir)
    assert found(report, "second_genesis") == [manifest_path(4)]


def test_21_data_file_of_another_run_at_the_same_path(six_hours: Ledger, lh, tmp_path) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    from audit_pipeline.ledger.keys import init_key

    signer, _, _ = init_key(other_dir, tmp_path / "k2", name="test-log", now=lh.KEY_EPOCH)
    other = Ledger(other_dir, file_format=lh.JSONL, signer=signer, clock=lh.Clock())
    for h in range(4):
        lh.commit(other, h, [] if h == 2 else lh.make_events(h, 3, prefix="other"))
    rel = other.manifests()[3].manifest.data.path
    assert rel == six_hours.manifests()[3].manifest.data.path
    put(six_hours.data_dir / rel, (other_dir / rel).read_bytes())
    report = lh.verify(six_hours.data_dir)
    assert found(report, "file_hash_mismatch") == [rel]


def test_22_file_moved_to_another_partition(six_hours: Ledger, lh) -> None:
    src = data_file(six_hours, 3)
    dst = six_hours.data_dir / "lake/date=2025-01-01/hour=04" / src.name
    src.rename(dst)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "data_file_missing") == [six_hours.manifests()[3].manifest.data.path]
    assert found(report, "unreferenced_file") == [dst.relative_to(six_hours.data_dir).as_posix()]


def test_22_manifest_pointing_to_another_partition(six_hours: Ledger, lh, signing_key) -> None:
    src = data_file(six_hours, 3)
    moved = "lake/date=2025-01-01/hour=09/00000003-hour.jsonl"
    (six_hours.data_dir / moved).parent.mkdir(parents=True)
    src.rename(six_hours.data_dir / moved)
    lh.resign(six_hours.data_dir, 3, signing_key, lambda p: p["data"].update(path=moved))
    report = lh.verify(six_hours.data_dir)
    assert found(report, "path_mismatch") == [manifest_path(3)]


def test_23_injected_file(six_hours: Ledger, lh, other_key: Signer) -> None:
    injected = six_hours.data_dir / "lake/date=2025-01-01/hour=03/00000007-late.jsonl"
    lh.write_jsonl(lh.make_events(3, 2, prefix="inj"), injected)
    rel = injected.relative_to(six_hours.data_dir).as_posix()
    # Dressed up as a crashed commit's leftover with an intent the attacker signed.
    size = injected.stat().st_size
    import hashlib

    intent = sign_intent(
        other_key,
        origin=lh.ORIGIN,
        sequence=7,
        path=rel,
        size=size,
        sha256=hashlib.sha256(injected.read_bytes()).hexdigest(),
    )
    (six_hours.data_dir / intent_path(7)).write_bytes(intent)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "unreferenced_file") == [rel]
    (six_hours.data_dir / "lake/notes.txt").write_text("hello")
    assert "lake/notes.txt" in found(lh.verify(six_hours.data_dir), "unreferenced_file")


def test_24_hidden_hour(ledger: Ledger, lh) -> None:
    for h in (0, 1, 3, 4, 7):
        lh.commit(ledger, h, [] if h == 4 else None)
    report = lh.verify(ledger.data_dir)
    assert found(report, "hour_missing") == [f"hour 2025-01-01T{h:02d}:00Z" for h in (2, 5, 6)]
    assert report.checked["hours"] == 8


def test_24_empty_hour_manifest_deleted(six_hours: Ledger, lh) -> None:
    manifest_file(six_hours, 2).unlink()
    report = lh.verify(six_hours.data_dir)
    assert found(report, "missing_manifest") == [manifest_path(2)]
    assert found(report, "hour_missing") == ["hour 2025-01-01T02:00Z"]


def test_25_duplicate_event_ids_across_batches(six_hours: Ledger, lh) -> None:
    again = lh.JSONL.read_events(data_file(six_hours, 1))[:2]
    with six_hours.storage.lock():
        six_hours._append(
            six_hours.manifests(),
            window_start=lh.hour(1),
            kind="late",
            events=again,
            write_data=lh.write_jsonl,
            source={},
            run_id="dup",
        )
    report = lh.verify(six_hours.data_dir)
    (finding,) = report.findings
    assert (finding.code, finding.location) == ("duplicate_event_id", manifest_path(7))
    assert again[0].event_id in finding.detail and "batch 1 and 7" in finding.detail


def test_25_event_outside_its_window(six_hours: Ledger, lh, signing_key) -> None:
    """A writer with the key puts hour 4's event in hour 3's file: still caught."""
    path = writable(data_file(six_hours, 3))
    stray = lh.make_events(4, 1, prefix="stray")
    rows = lh.JSONL.read_events(path) + stray
    lh.write_jsonl(rows, path)
    from audit_pipeline.ledger.commit import file_digest
    from audit_pipeline.ledger.events import events_root

    size, sha = file_digest(path)
    written = lh.JSONL.read_events(path)

    def fix(p: dict[str, Any]) -> None:
        p["data"].update(rows=4, size=size, sha256=sha)
        p["events"].update(
            count=4,
            merkle_root=events_root(written).hex(),
            max_date_create=max(r.date_create for r in written),
        )

    lh.resign(six_hours.data_dir, 3, signing_key, fix)
    report = lh.verify(six_hours.data_dir)
    outside = [f for f in report.findings if f.code == "event_outside_window"]
    assert len(outside) == 1 and stray[0].event_id in outside[0].detail


def test_26_late_data_rewritten_in_place(six_hours: Ledger, lh) -> None:
    path = writable(data_file(six_hours, 1))
    with path.open("ab") as fh:
        fh.write(lh.make_events(1, 1, prefix="sneaky")[0].leaf_data + b"\n")
    report = lh.verify(six_hours.data_dir)
    assert {
        "size_mismatch",
        "file_hash_mismatch",
        "row_count_mismatch",
        "events_root_mismatch",
    } <= lh.codes(report)


# -- proofs and keys ---------------------------------------------------------------------


def test_29_every_link_checked_not_only_the_ends(six_hours: Ledger, lh, signing_key) -> None:
    """Batch 3 is edited; batches 4-6 are re-signed to link to it: the ends look perfect."""
    path = manifest_file(six_hours, 3)
    doc = json.loads(path.read_bytes())
    doc["signed"]["source"]["pages"] = 99
    put(path, canonical_json(doc))
    import hashlib

    for seq in (4, 5, 6):
        prev = hashlib.sha256(manifest_file(six_hours, seq - 1).read_bytes()).hexdigest()
        lh.resign(
            six_hours.data_dir, seq, signing_key, lambda p, h=prev: p.update(prev_manifest_sha256=h)
        )
    report = lh.verify(six_hours.data_dir)
    assert found(report, "bad_signature") == [manifest_path(3)]
    assert not found(report, "chain_break")


def test_30_link_hash_checked_not_only_signatures(six_hours: Ledger, lh, signing_key) -> None:
    lh.resign(
        six_hours.data_dir, 4, signing_key, lambda p: p.update(prev_manifest_sha256="12" * 32)
    )
    report = lh.verify(six_hours.data_dir)
    # 4 links to nothing; 5 links to the old bytes of 4.
    assert found(report, "chain_break") == [manifest_path(4), manifest_path(5)]
    assert not found(report, "bad_signature")


def test_31_fields_outside_the_signed_bytes(six_hours: Ledger, lh) -> None:
    path = manifest_file(six_hours, 3)
    doc = json.loads(path.read_bytes())
    doc["created"] = 1
    doc["path"] = "lake/elsewhere.jsonl"
    put(path, canonical_json(doc))
    assert found(lh.verify(six_hours.data_dir), "malformed_manifest") == [manifest_path(3)]


def test_32_history_rewritten_after_a_key_leak(six_hours: Ledger, lh) -> None:
    witness = six_hours.latest_checkpoint()
    _rewrite_from(six_hours, 0, lh, list(range(7)))
    assert not lh.verify(six_hours.data_dir).findings
    report = lh.verify(six_hours.data_dir, trusted_checkpoint=witness)
    assert found(report, "consistency_failure") == ["trusted checkpoint"]


# -- checkpoints themselves --------------------------------------------------------------


def test_checkpoint_edited_forged_or_wrong(six_hours: Ledger, lh, other_key, signing_key) -> None:
    data_dir = six_hours.data_dir
    cp5 = data_dir / checkpoint_path(5)
    put(cp5, cp5.read_bytes().replace(b"\n5\n", b"\n4\n"))
    wrong_root = Checkpoint(lh.ORIGIN, 6, b"\x07" * 32)
    put(data_dir / checkpoint_path(6), sign_checkpoint(wrong_root, signing_key))
    put(
        data_dir / checkpoint_path(7),
        sign_checkpoint(Checkpoint(lh.ORIGIN, 7, b"\x07" * 32), other_key),
    )
    (data_dir / "ledger/checkpoints/latest").write_text("x")
    report = lh.verify(data_dir)
    assert found(report, "bad_signature") == [checkpoint_path(5)]
    assert found(report, "checkpoint_mismatch") == [checkpoint_path(6)]
    assert found(report, "unknown_key") == [checkpoint_path(7)]
    assert found(report, "unexpected_file") == ["ledger/checkpoints/latest"]
    assert report.checkpoint is None


def test_manifest_of_another_log(six_hours: Ledger, lh, signing_key) -> None:
    lh.resign(six_hours.data_dir, 6, signing_key, lambda p: p.update(origin="other/log"))
    assert found(lh.verify(six_hours.data_dir), "origin_mismatch") == [manifest_path(6)]


def test_batch_shape_rules(six_hours: Ledger, lh, signing_key) -> None:
    lh.resign(six_hours.data_dir, 6, signing_key, lambda p: p.update(kind="hour"))
    lh.resign(six_hours.data_dir, 2, signing_key, lambda p: p.update(kind="hour"))
    lh.resign(
        six_hours.data_dir, 5, signing_key, lambda p: p["window"].update(end=p["window"]["end"] + 1)
    )
    report = lh.verify(six_hours.data_dir)
    assert found(report, "duplicate_window") == [manifest_path(6)]
    assert found(report, "kind_mismatch") == [manifest_path(2)]
    assert found(report, "invalid_window") == [manifest_path(5)]


def test_every_finding_is_named_in_the_summary(six_hours: Ledger, lh) -> None:
    data_file(six_hours, 5).unlink()
    manifest_file(six_hours, 3).unlink()
    report = lh.verify(six_hours.data_dir)
    summary = report.summary()
    assert summary.startswith("FAIL: ")
    # one line per cause: every code named with its count, its first instance shown
    for code, count in report.codes().items():
        first = next(f for f in report.findings if f.code.value == code)
        if code == "hour_missing":
            assert f"hour_missing: {count} hour" in summary
        elif count == 1:
            assert first.line() in summary
        else:
            assert f"{code} x{count}, first: " in summary and first.location in summary
    doc = report.to_json()
    assert doc["ok"] is False and len(doc["findings"]) == len(report.findings)
    assert json.loads(json.dumps(doc)) == doc


def test_rejected_keyring_source_is_reported(six_hours: Ledger, lh) -> None:
    report = lh.verify(six_hours.data_dir)
    assert report.trusted_keys is False and "--trusted-keys" in report.summary()
    keyring = load_keyring(six_hours.data_dir)
    trusted = lh.verify(six_hours.data_dir, keyring=keyring)
    assert trusted.trusted_keys is True and "--trusted-keys" not in trusted.summary()


def test_fake_keyring_in_the_data_dir_does_not_fool_trusted_keys(
    six_hours: Ledger, lh, other_key: Signer
) -> None:
    """An attacker re-signs everything with their own key and swaps the data dir keyring."""
    from audit_pipeline.ledger.keys import Keyring, TrustedKey

    auditor_keys = load_keyring(six_hours.data_dir)
    import hashlib

    for seq in range(7):
        prev = "00" * 32
        if seq:
            prev = hashlib.sha256(manifest_file(six_hours, seq - 1).read_bytes()).hexdigest()
        lh.resign(
            six_hours.data_dir, seq, other_key, lambda p, h=prev: p.update(prev_manifest_sha256=h)
        )
    for size in range(1, 8):
        (six_hours.data_dir / checkpoint_path(size)).unlink()
    save_keyring(six_hours.data_dir, Keyring((TrustedKey.from_vkey(other_key.vkey, valid_from=0),)))
    assert not lh.verify(six_hours.data_dir).findings  # fooled: hence the warning
    report = lh.verify(six_hours.data_dir, keyring=auditor_keys)
    assert found(report, "unknown_key") == [manifest_path(s) for s in range(7)]


def test_parse_is_what_the_verifier_sees(six_hours: Ledger) -> None:
    raw = manifest_file(six_hours, 0).read_bytes()
    assert parse_manifest(raw).raw == raw
