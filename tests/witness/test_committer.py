"""The committer and two witnesses in their own processes and state directories.

Normal commits get 2/2 cosignatures and verify with the witness keys; an attacker who holds
the signing key deletes the newest batches and commits a different history: both witnesses
refuse (409, then 422 once the fork outgrows what they saw), the round reports an integrity
alarm, and verification with the witness keys fails naming the conflict.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.cosignature import WitnessKey, cosignatures
from audit_pipeline.ledger.layout import CHECKPOINTS, checkpoint_path, manifest_path
from audit_pipeline.ledger.note import Signer, generate_key
from audit_pipeline.ledger.witnessed import witnessed_path
from audit_pipeline.witness.committer import witness_latest
from audit_pipeline.witness.config import make_policy, parse_witnesses, policy_from_env

pytestmark = pytest.mark.e2e


def policy_for(witnesses, quorum=None):
    text = "\n".join(f"{w.name.split('/')[-1]} {w.url} {w.vkey}" for w in witnesses)
    return make_policy(parse_witnesses(text, source="test"), quorum)


def delete_newest(ledger: Ledger, keep: int) -> None:
    """The attacker removes every batch from ``keep`` on, with its checkpoints."""
    data = ledger.data_dir
    for signed in ledger.manifests()[keep:]:
        (data / signed.manifest.data.path).unlink()
        (data / manifest_path(signed.sequence)).unlink()
    for cp in (data / CHECKPOINTS).iterdir():
        if int(cp.name.split(".")[0]) > keep:
            cp.unlink()


def test_two_witnesses_cosign_then_refuse_a_truncated_fork(
    tmp_path: Path, ledger: Ledger, signing_key, test_skey, start_witness, lh
) -> None:
    log = f"{lh.ORIGIN}={signing_key.vkey}"
    w1 = start_witness(tmp_path / "w1", "witness.test/w1", [log])
    w2 = start_witness(tmp_path / "w2", "witness.test/w2", [log])
    policy = policy_for([w1, w2])
    keys = [WitnessKey.from_vkey(w.vkey) for w in (w1, w2)]
    for h in range(4):
        lh.commit(ledger, h)
        round_ = witness_latest(ledger, policy)
        assert round_.met and len(round_.cosigned) == 2 and not round_.alarms
    cosigned = (ledger.data_dir / witnessed_path(4)).read_bytes()
    assert cosigned.startswith(ledger.latest_checkpoint())
    assert sorted(cosignatures(cosigned, keys).witnesses) == ["witness.test/w1", "witness.test/w2"]
    report = lh.verify(ledger.data_dir, witness_keys=keys)
    assert report.ok, report.summary()
    assert len(report.witnesses.latest) == 2 and "cosigned by 2 of 2" in report.summary()

    # A witness that is down holds nothing back; the next commit catches it up.
    w2.kill()
    lh.commit(ledger, 4)
    round_ = witness_latest(ledger, policy, timeout=2)
    assert [o.status for o in round_.outcomes] == ["cosigned", "unreachable"]
    assert ledger.tree_size() == 5 and not round_.met
    assert lh.codes(lh.verify(ledger.data_dir, witness_keys=keys)) == {"witness_quorum_missing"}
    assert lh.verify(ledger.data_dir, witness_keys=keys, witness_quorum=1).ok
    w2 = start_witness(tmp_path / "w2", "witness.test/w2", [log])  # same key and state
    policy = policy_for([w1, w2])
    lh.commit(ledger, 5)
    round_ = witness_latest(ledger, policy)
    assert round_.met and len(round_.cosigned) == 2  # proof from 4 to 6 for w2
    assert lh.verify(ledger.data_dir, witness_keys=keys).ok

    # The attacker (holding a copy of the signing key, without whatever state the pipeline's
    # signer keeps) deletes batches 3.. and commits another history.
    kept_copy = shutil.copytree(ledger.data_dir, tmp_path / "before")
    delete_newest(ledger, 3)
    forger = Ledger(
        ledger.data_dir,
        file_format=lh.JSONL,
        signer=Signer.from_private_key(test_skey),
        origin=lh.ORIGIN,
        clock=lh.Clock(),
    )
    forger.clock.now = ledger.clock.now + 100
    lh.commit(forger, 3, lh.make_events(3, 2, prefix="forged"))
    assert (ledger.data_dir / checkpoint_path(4)).exists()
    round_ = witness_latest(forger, policy)
    assert [o.status for o in round_.alarms] == ["inconsistent", "inconsistent"]
    assert all("cosigned a tree of 6" in o.detail for o in round_.alarms)
    assert "INTEGRITY ALARM" in round_.summary() and not round_.met
    for h in (6, 7, 8):  # the fork outgrows what the witnesses saw: 422 on the proof
        lh.commit(forger, h)
    round_ = witness_latest(forger, policy)
    assert len(round_.alarms) == 2 and all(o.detail.startswith("422") for o in round_.alarms)

    report = lh.verify(forger.data_dir, witness_keys=keys)
    assert not report.ok
    conflicts = [f for f in report.findings if f.code.value == "witness_conflict"]
    # size 7 now: what the witnesses cosigned at 4, 5 and 6 has another root in this log
    assert {witnessed_path(n) for n in (4, 5, 6)} <= {f.location for f in conflicts}
    assert any("forked" in f.detail for f in conflicts)
    assert any("witness.test/w1" in f.detail for f in conflicts)
    assert "witness_quorum_missing" in lh.codes(report)
    # Even with the witnessed files and refusals deleted, the latest lacks the quorum.
    shutil.rmtree(forger.data_dir / "ledger" / "witnessed")
    assert "witness_quorum_missing" in lh.codes(lh.verify(forger.data_dir, witness_keys=keys))
    # The untouched copy still verifies with the witnesses.
    assert lh.verify(kept_copy, witness_keys=keys).ok
    # Every refusal the witnesses saw was kept as evidence in their own state.
    assert any(b"status 422" in p.read_bytes() for p in (w1.state / "evidence").iterdir())


def test_policy_from_env_entries_and_file(tmp_path: Path) -> None:
    from audit_pipeline.ledger.cosignature import WitnessSigner

    vkeys = [WitnessSigner.generate(f"w{i}.test").key.vkey for i in range(2)]
    entries = f"a http://127.0.0.1:1 {vkeys[0]}; b http://127.0.0.1:2/ {vkeys[1]}"
    policy = policy_from_env({"AUDIT_WITNESSES": entries, "AUDIT_WITNESS_QUORUM": "1"})
    assert [w.url for w in policy.witnesses] == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert policy.quorum == 1
    path = tmp_path / "witnesses"
    path.write_text(entries.replace("; ", "\n# comment\n"))
    assert policy_from_env({"AUDIT_WITNESSES": str(path)}).quorum == 2
    assert not policy_from_env({})


def test_a_witness_that_does_not_follow_this_log_refuses_without_an_alarm(
    tmp_path: Path, ledger: Ledger, signing_key, start_witness, lh
) -> None:
    stranger = Signer.from_private_key(generate_key("test-log")[0])
    w403 = start_witness(tmp_path / "a", "witness.test/a", [f"{lh.ORIGIN}={stranger.vkey}"])
    w404 = start_witness(tmp_path / "b", "witness.test/b", [f"other.test/log={signing_key.vkey}"])
    lh.commit(ledger, 0)
    round_ = witness_latest(ledger, policy_for([w403, w404], quorum=1))
    assert [o.status for o in round_.outcomes] == ["refused", "refused"]
    assert round_.outcomes[0].detail.startswith("403") and round_.outcomes[1].detail.startswith(
        "404"
    )
    assert not round_.alarms and not round_.met
    keys = [WitnessKey.from_vkey(w.vkey) for w in (w403, w404)]
    report = lh.verify(ledger.data_dir, witness_keys=keys, witness_quorum=1)
    assert lh.codes(report) == {"witness_quorum_missing"} and report.intact


def test_a_garbled_witnessed_file_is_rewritten_from_the_checkpoint(
    tmp_path: Path, ledger: Ledger, signing_key, lh
) -> None:
    from audit_pipeline.witness.local import running_local_witness

    lh.commit(ledger, 0)
    (ledger.data_dir / "ledger" / "witnessed").mkdir(parents=True)
    (ledger.data_dir / witnessed_path(1)).write_bytes(b"not a note at all")
    with running_local_witness(tmp_path / "w", lh.ORIGIN, signing_key.verifier) as w:
        assert witness_latest(ledger, make_policy([w], None)).met
    kept = (ledger.data_dir / witnessed_path(1)).read_bytes()
    assert kept.startswith(ledger.latest_checkpoint())
    assert lh.verify(ledger.data_dir, witness_keys=[w.key]).ok
