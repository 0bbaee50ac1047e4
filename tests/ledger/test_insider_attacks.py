"""Issue 10's insider attacks on the ledger: links and special files, forged intents, the
umask, the unanchored verdict. Each ends in a named finding or a clear refusal, quickly."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from audit_pipeline.ledger.commit import Ledger, sign_intent
from audit_pipeline.ledger.layout import intent_path, manifest_path
from audit_pipeline.ledger.note import Signer, generate_key
from audit_pipeline.ledger.verify import VerifyReport

DEADLINE = 20  # seconds: "within seconds", generous for a loaded 2-core machine


def within_seconds(fn: Callable[[], Any]) -> Any:
    """within_seconds runs ``fn`` in a thread and fails (instead of hanging) if it blocks."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "blocked: a special file was waited on"
    if "error" in box:
        raise box["error"]
    return box["value"]


def found(report: VerifyReport, code: str) -> list[str]:
    return [f.location for f in report.findings if f.code.value == code]


def data_file(ledger: Ledger, seq: int) -> Path:
    return ledger.data_dir / ledger.manifests()[seq].manifest.data.path


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    path.unlink()
    make(path)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(os.mkfifo, id="fifo"),
        pytest.param(lambda p: p.symlink_to("/dev/zero"), id="link-to-dev-zero"),
        pytest.param(lambda p: p.mkdir(), id="directory"),
    ],
)
def test_data_file_that_is_not_a_regular_file(six_hours: Ledger, make, lh) -> None:
    target = data_file(six_hours, 3)
    _replace(target, make)
    report = within_seconds(lambda: lh.verify(six_hours.data_dir))
    assert found(report, "not_regular_file") == [str(target.relative_to(six_hours.data_dir))]
    assert not report.intact


def test_manifest_and_checkpoint_fifos_do_not_hang(six_hours: Ledger, lh) -> None:
    data_dir = six_hours.data_dir
    _replace(data_dir / manifest_path(6), os.mkfifo)
    _replace(data_dir / "ledger/checkpoints/00000003.checkpoint", os.mkfifo)
    report = within_seconds(lambda: lh.verify(data_dir))
    assert set(found(report, "not_regular_file")) == {
        manifest_path(6),
        "ledger/checkpoints/00000003.checkpoint",
    }


def test_linked_directory_under_the_lake_is_a_finding(
    six_hours: Ledger, tmp_path: Path, lh
) -> None:
    outside = tmp_path / "forged-hour"
    outside.mkdir()
    (outside / "00000099-hour.jsonl").write_text('{"id":"forged","date_create":0}\n')
    (six_hours.data_dir / "lake" / "date=2025-01-01" / "hour=23").symlink_to(outside)
    (six_hours.data_dir / "ledger" / "extra").symlink_to(outside)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "linked_directory") == [
        "lake/date=2025-01-01/hour=23",
        "ledger/extra",
    ]
    assert not report.intact


def test_data_path_through_a_linked_directory(six_hours: Ledger, tmp_path: Path, lh) -> None:
    target = data_file(six_hours, 3)
    moved = tmp_path / "moved"
    os.replace(target.parent, moved)
    target.parent.symlink_to(moved)
    report = lh.verify(six_hours.data_dir)
    assert found(report, "not_regular_file") == [str(target.relative_to(six_hours.data_dir))]
    assert found(report, "linked_directory")


def test_forged_intent_cannot_make_recovery_delete_outside(
    six_hours: Ledger, tmp_path: Path, lh
) -> None:
    """A forged intent names a path through a linked directory to a victim file. Signed by
    a key the insider made (even if added to the data directory's keyring), or by the real
    key but naming the path through a link: recovery deletes nothing outside."""
    data_dir = six_hours.data_dir
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "00000007-hour.jsonl"
    victim.write_text("precious\n")
    (data_dir / "lake" / "date=2025-01-01" / "hour=07").symlink_to(victim_dir)
    rel = "lake/date=2025-01-01/hour=07/00000007-hour.jsonl"
    size, digest = victim.stat().st_size, hashlib.sha256(b"precious\n").hexdigest()
    forger = Signer.from_private_key(generate_key("test-log")[0])
    for signer in (forger, six_hours.signer):
        intent = sign_intent(
            signer, origin=lh.ORIGIN, sequence=7, path=rel, size=size, sha256=digest
        )
        (data_dir / intent_path(7)).write_bytes(intent)
        lh.commit(six_hours, 6)  # the next commit recovers first
        assert victim.read_text() == "precious\n"
        (data_dir / intent_path(7)).unlink(missing_ok=True)


def test_explicit_modes_whatever_the_umask(data_dir: Path, key_path: Path, lh) -> None:
    from audit_pipeline.ledger.keys import init_key
    from audit_pipeline.ledger.signer_state import signer_state_path

    old = os.umask(0)
    try:
        signer, _, _ = init_key(data_dir, key_path, name="test-log", now=lh.KEY_EPOCH)
        ledger = Ledger(
            data_dir,
            file_format=lh.JSONL,
            signer=signer,
            origin=lh.ORIGIN,
            clock=lh.Clock(),
            signer_state=signer_state_path(key_path, {}),
        )
        lh.commit(ledger, 0)
        lh.commit(ledger, 1)
    finally:
        os.umask(old)
    modes = {
        p.relative_to(data_dir).as_posix(): stat.S_IMODE(p.lstat().st_mode)
        for p in data_dir.rglob("*")
    }
    for rel, mode in modes.items():
        if (data_dir / rel).is_dir():
            assert mode & 0o022 == 0, f"{rel} is {mode:04o}"
        elif rel.startswith(("lake/", "ledger/manifests/", "ledger/checkpoints/")):
            assert mode == 0o444, f"{rel} is {mode:04o}"
        else:
            assert mode & 0o022 == 0, f"{rel} is {mode:04o}"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(signer_state_path(key_path, {}).stat().st_mode) == 0o600


def test_revoked_key_cannot_backdate_a_batch(six_hours: Ledger, tmp_path: Path, lh) -> None:
    """Case 3: after a revocation at tree size 7, the stolen key appends a ``late`` batch
    dated before the revocation. Judged by position it is key_revoked."""
    from audit_pipeline.ledger.keys import keyring_file, load_keyring, revoke_key

    data_dir, signer = six_hours.data_dir, six_hours.signer
    before_revocation = keyring_file(data_dir).read_bytes()
    trusted_checkpoint = six_hours.latest_checkpoint()
    revoked = revoke_key(data_dir, signer.vkey, at=lh.CLOCK_START + 50_000, signer=signer)
    assert revoked.revoked_at_size == 7
    auditor_keys = load_keyring(data_dir)
    with pytest.raises(Exception, match="key_revoked in the data directory's keyring at batch 7"):
        lh.commit(six_hours, 1, lh.make_events(1, 1, prefix="forged"))

    # The insider's own tool: the keyring as it was, a clock before the revocation.
    keyring_file(data_dir).write_bytes(before_revocation)
    six_hours.clock.now = lh.CLOCK_START + 2000
    forged = lh.commit(six_hours, 1, lh.make_events(1, 1, prefix="forged"))
    assert forged.sequence == 7
    assert six_hours.manifests()[7].manifest.created < revoked.revoked_at

    report = lh.verify(data_dir, keyring=auditor_keys, trusted_checkpoint=trusted_checkpoint)
    assert found(report, "key_revoked") == [
        manifest_path(7),
        "ledger/checkpoints/00000008.checkpoint",
    ]
    assert not report.intact


def test_edited_keyring_entry_is_forged(six_hours: Ledger, lh) -> None:
    from audit_pipeline.ledger.keys import keyring_file, revoke_key

    data_dir, signer = six_hours.data_dir, six_hours.signer
    revoke_key(data_dir, signer.vkey, at=lh.CLOCK_START + 50_000, at_size=5, signer=signer)
    assert found(lh.verify(data_dir), "key_revoked")
    path = keyring_file(data_dir)
    path.write_bytes(path.read_bytes().replace(b'"revoked_at_size": 5', b'"revoked_at_size": 99'))
    report = lh.verify(data_dir)
    assert found(report, "keyring_entry_forged") and not found(report, "key_revoked")


def test_rotation_by_position_keeps_old_batches_valid(
    six_hours: Ledger, key_path: Path, lh
) -> None:
    from audit_pipeline.ledger.keys import load_keyring, rotate_key

    old, new = rotate_key(six_hours.data_dir, key_path, now=lh.CLOCK_START + 1500)
    keyring = load_keyring(six_hours.data_dir)
    assert keyring.find(old.name, old.key_hash).valid_until_size == 7
    assert keyring.find(new.name, new.key_hash).valid_from_size == 7
    rotated = Ledger(
        six_hours.data_dir, file_format=lh.JSONL, signer=new, clock=lh.Clock(lh.CLOCK_START + 1600)
    )
    lh.commit(rotated, 6)
    report = lh.verify(six_hours.data_dir)
    assert report.ok and report.tree_size == 8, report.summary()
    assert not [n for n in report.notices if n.code == "keyring_entry_unsigned"]
    with pytest.raises(Exception, match="key_expired"):
        lh.commit(Ledger(six_hours.data_dir, file_format=lh.JSONL, signer=old), 7)


def test_unanchored_verdict_says_what_it_could_not_rule_out(six_hours: Ledger, lh) -> None:
    """Case 5: after tail truncation, plain verify is intact but says it is unanchored and
    which flag closes each attack; with the anchors the truncation is a finding."""
    from audit_pipeline.ledger.keys import load_keyring

    data_dir = six_hours.data_dir
    checkpoint, keys = six_hours.latest_checkpoint(), load_keyring(data_dir)
    (data_dir / manifest_path(6)).unlink()
    (data_dir / "ledger/checkpoints/00000007.checkpoint").unlink()
    data_file_6 = next((data_dir / "lake").rglob("00000006-*"))
    data_file_6.unlink()

    plain = lh.verify(data_dir)
    assert plain.ok and not plain.anchored
    open_attacks = {a["attack"]: a["closed_by"] for a in plain.to_json()["not_ruled_out"]}
    assert open_attacks["tail_truncation"] == ["--trusted-checkpoint", "--max-lag"]
    assert open_attacks["key_substitution"] == ["--trusted-keys"]
    assert plain.to_json()["anchored"] is False
    assert "anchored: false" in plain.summary()
    assert "tail_truncation" in plain.summary() and "--trusted-checkpoint" in plain.summary()

    anchored = lh.verify(data_dir, keyring=keys, trusted_checkpoint=checkpoint)
    assert anchored.anchored and anchored.to_json()["not_ruled_out"] == []
    assert found(anchored, "tail_truncated")
    assert "anchored: false" not in anchored.summary()


def test_commit_into_an_hour_whose_file_is_a_fifo_refuses_quickly(six_hours: Ledger, lh) -> None:
    from audit_pipeline.ledger.commit import LedgerStateError

    target = data_file(six_hours, 1)  # hour 1 has batches 1 and 6
    _replace(target, os.mkfifo)
    with pytest.raises(LedgerStateError, match="not readable as a file"):
        within_seconds(lambda: lh.commit(six_hours, 1, lh.make_events(1, 1, prefix="new")))


def test_rotation_waits_for_an_interrupted_commits_checkpoint(
    six_hours: Ledger, key_path: Path, lh
) -> None:
    from audit_pipeline.errors import ConfigurationError
    from audit_pipeline.ledger.keys import rotate_key

    (six_hours.data_dir / "ledger/checkpoints/00000007.checkpoint").unlink()
    with pytest.raises(ConfigurationError, match="checkpoint of the log's 7 batches is missing"):
        rotate_key(six_hours.data_dir, key_path, now=lh.CLOCK_START + 1500)
    lh.commit(six_hours, 6)  # the next commit signs the missing checkpoint first
    rotate_key(six_hours.data_dir, key_path, now=lh.CLOCK_START + 5000)


def test_commit_never_writes_through_a_linked_directory(
    six_hours: Ledger, tmp_path: Path, lh
) -> None:
    from audit_pipeline.ledger.layout import NotRegularFileError

    outside = tmp_path / "outside"
    outside.mkdir()
    (six_hours.data_dir / "lake" / "date=2025-01-01" / "hour=07").symlink_to(outside)
    with pytest.raises(NotRegularFileError, match="reached through a symbolic link"):
        lh.commit(six_hours, 7)
    assert list(outside.iterdir()) == []
    assert six_hours.tree_size() == 7


def test_leftover_of_the_key_rotated_out_is_still_cleaned_up(
    six_hours: Ledger, key_path: Path, tmp_path: Path, lh
) -> None:
    """A crash leaves an intent signed by the old key, then the key is rotated: the next
    commit (new key) still removes the leftover instead of tripping over it."""
    from audit_pipeline.ledger.keys import rotate_key

    data_dir, old = six_hours.data_dir, six_hours.signer
    rel = "lake/date=2025-01-01/hour=06/00000007-hour.jsonl"
    leftover = data_dir / rel
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half\n")
    digest = hashlib.sha256(b"half\n").hexdigest()
    intent = sign_intent(old, origin=lh.ORIGIN, sequence=7, path=rel, size=5, sha256=digest)
    (data_dir / intent_path(7)).write_bytes(intent)
    _, new = rotate_key(data_dir, key_path, now=lh.CLOCK_START + 1500)
    rotated = Ledger(
        data_dir, file_format=lh.JSONL, signer=new, clock=lh.Clock(lh.CLOCK_START + 1600)
    )
    assert lh.commit(rotated, 6).sequence == 7
    report = lh.verify(data_dir)
    assert report.ok and not [n for n in report.notices if n.code == "uncommitted_leftover"]


def test_a_v1_ledger_still_verifies_and_extends(six_hours: Ledger, lh) -> None:
    """A ledger written by the previous version (manifest/v1, keyring/v1, no signer state)
    verifies, and the next commit appends a v2 manifest to it."""
    import json

    from audit_pipeline.ledger import merkle
    from audit_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
    from audit_pipeline.ledger.manifest import GENESIS_PREV

    data_dir, signer = six_hours.data_dir, six_hours.signer
    prev, leaves = GENESIS_PREV, []
    for seq in range(7):

        def to_v1(payload, prev=prev):
            payload.update(format="audit_pipeline.manifest/v1", prev_manifest_sha256=prev)

        raw = lh.resign(data_dir, seq, signer, to_v1)
        prev = hashlib.sha256(raw).hexdigest()
        leaves.append(merkle.leaf_hash(raw))
    for size in range(1, 8):
        path = data_dir / f"ledger/checkpoints/{size:08d}.checkpoint"
        path.chmod(0o644)
        cp = Checkpoint(lh.ORIGIN, size, merkle.root_hash(leaves[:size]))
        path.write_bytes(sign_checkpoint(cp, signer))
    keyring = data_dir / "ledger/keys/keyring.json"
    doc = json.loads(keyring.read_text())
    doc["schema"] = "audit_pipeline.keyring/v1"
    doc["keys"] = [
        {k: e.get(k) for k in ("vkey", "valid_from", "valid_until", "revoked_at")}
        for e in doc["keys"]
    ]
    keyring.write_text(json.dumps(doc))

    report = lh.verify(data_dir)
    assert report.ok, report.summary()
    assert {n.code for n in report.notices} == {"keyring_entry_unsigned"}
    fresh = Ledger(data_dir, file_format=lh.JSONL, signer=signer, clock=six_hours.clock)
    assert lh.commit(fresh, 6).sequence == 7
    formats = [m.manifest.format for m in fresh.manifests()]
    assert formats == ["audit_pipeline.manifest/v1"] * 7 + ["audit_pipeline.manifest/v2"]
    assert lh.verify(data_dir).ok


def test_revoked_key_cannot_backdate_a_batch_against_the_public_keys_file(
    six_hours: Ledger, lh
) -> None:
    """Case 3 with the trust path the README hands strangers: the auditor keeps what
    ``keys public`` printed after the revocation (vkeys with their windows), not the keyring
    JSON. The revocation must survive that file, or a stolen key signs on for ever."""
    from audit_pipeline.ledger.keys import (
        keyring_file,
        load_keyring,
        parse_trusted_keys,
        revoke_key,
    )

    data_dir, signer = six_hours.data_dir, six_hours.signer
    before_revocation = keyring_file(data_dir).read_bytes()
    trusted_checkpoint = six_hours.latest_checkpoint()
    revoke_key(data_dir, signer.vkey, at=lh.CLOCK_START + 50_000, signer=signer)
    text = "\n".join(key.public_line() for key in load_keyring(data_dir).keys)
    auditor_keys = parse_trusted_keys(text.encode(), source="log-keys.txt")

    keyring_file(data_dir).write_bytes(before_revocation)
    six_hours.clock.now = lh.CLOCK_START + 2000
    lh.commit(six_hours, 1, lh.make_events(1, 1, prefix="forged"))

    report = lh.verify(data_dir, keyring=auditor_keys, trusted_checkpoint=trusted_checkpoint)
    assert manifest_path(7) in found(report, "key_revoked")
    assert not report.intact
    # the batches before the revocation still verify with that file
    assert not [f for f in report.findings if f.location == manifest_path(6)]


def test_a_file_planted_where_the_next_batch_goes_is_an_integrity_refusal(
    six_hours: Ledger, lh
) -> None:
    """A file at the next batch's own data path was an 'I/O' error ('File exists', exit 3)
    and left a staged file behind; it is a file nobody committed: refused as such, before
    anything is written."""
    from audit_pipeline.ledger.commit import LedgerStateError
    from audit_pipeline.ledger.layout import PENDING, batch_data_path

    planted = six_hours.data_dir / batch_data_path(lh.hour(7), 7, "hour", lh.JSONL.suffix)
    planted.parent.mkdir(parents=True)
    planted.write_text("planted\n")
    with pytest.raises(LedgerStateError, match="taken by a file no manifest references"):
        lh.commit(six_hours, 7)
    assert list((six_hours.data_dir / PENDING).iterdir()) == []
    assert found(lh.verify(six_hours.data_dir), "unreferenced_file")


def test_a_fifo_at_the_keyrings_temporary_name_does_not_hang_a_key_change(
    six_hours: Ledger, key_path: Path, lh
) -> None:
    """replace() writes a temporary beside the keyring; a FIFO planted at that name made
    the open wait for a reader for ever."""
    from audit_pipeline.ledger.keys import KEYRING, rotate_key
    from audit_pipeline.ledger.layout import NotRegularFileError

    keyring = six_hours.data_dir / KEYRING
    os.mkfifo(keyring.with_name(f".{keyring.name}.{os.getpid()}.tmp"))
    with pytest.raises(NotRegularFileError, match="FIFO"):
        within_seconds(lambda: rotate_key(six_hours.data_dir, key_path, now=lh.CLOCK_START + 1500))
