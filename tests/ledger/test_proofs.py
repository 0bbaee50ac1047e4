"""Event proofs: round trip, offline checking, tampering (matrix 27, 28, 37), proof size."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.canonical import canonical_json
from audit_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.errors import InvalidProofError, LedgerError, UnknownKeyError
from audit_pipeline.ledger.keys import Keyring, TrustedKey, load_keyring
from audit_pipeline.ledger.note import Verifier, Verifiers
from audit_pipeline.ledger.proofs import (
    EventNotFoundError,
    EventProofError,
    proof_bytes,
    prove_event,
    verify_event_proof,
)

YEAR_OF_HOURS = 8_760
EVENTS_PER_BATCH = 100_000


def verifiers_for(signer) -> Verifiers:
    return Verifiers([Verifier.from_vkey(signer.vkey)])


def all_event_ids(ledger: Ledger, lh) -> list[tuple[int, str]]:
    out = []
    for signed in ledger.manifests():
        if signed.manifest.data:
            rows = lh.JSONL.read_events(ledger.data_dir / signed.manifest.data.path)
            out += [(signed.sequence, r.event_id) for r in rows]
    return out


def test_every_event_proves_and_verifies_offline(six_hours: Ledger, lh, signing_key) -> None:
    trusted = verifiers_for(signing_key)
    ids = all_event_ids(six_hours, lh)
    assert len(ids) == 17
    for seq, event_id in ids:
        proof = prove_event(six_hours.data_dir, event_id, file_format=lh.JSONL)
        verified = verify_event_proof(proof_bytes(proof), trusted)
        assert (verified.event_id, verified.batch_sequence, verified.log_size) == (
            event_id,
            seq,
            7,
        )
        assert verified.window_start <= verified.date_create < verified.window_end
        assert verified.origin == lh.ORIGIN
        assert verified.checkpoint == six_hours.latest_checkpoint()
        assert verified.summary().startswith(f"OK: event {event_id}")


def test_hints_narrow_the_search(six_hours: Ledger, lh) -> None:
    event_id = "late-0001-00001"
    by_hint = prove_event(six_hours.data_dir, event_id, file_format=lh.JSONL, batch_hint=6)
    by_hour = prove_event(
        six_hours.data_dir, event_id, file_format=lh.JSONL, window_start=lh.hour(1)
    )
    assert by_hint == by_hour and by_hint["log_index"] == 6
    with pytest.raises(EventNotFoundError, match="batches searched"):
        prove_event(six_hours.data_dir, event_id, file_format=lh.JSONL, batch_hint=1)
    with pytest.raises(EventNotFoundError, match="not in any committed batch"):
        prove_event(six_hours.data_dir, "no-such-event", file_format=lh.JSONL)


def test_proof_survives_deletion_of_the_data(six_hours: Ledger, lh, signing_key) -> None:
    """Matrix 37 (retention): a proof stays valid after the data and ledger are gone."""
    proof = proof_bytes(prove_event(six_hours.data_dir, "ev-0003-00001", file_format=lh.JSONL))
    shutil.rmtree(six_hours.data_dir)
    assert verify_event_proof(proof, verifiers_for(signing_key)).event_id == "ev-0003-00001"


def test_keyring_windows_apply_to_the_manifest(six_hours: Ledger, lh, signing_key) -> None:
    proof = prove_event(six_hours.data_dir, "ev-0003-00001", file_format=lh.JSONL)
    keyring = load_keyring(six_hours.data_dir)
    assert verify_event_proof(proof, keyring).batch_sequence == 3
    revoked = Keyring((TrustedKey.from_vkey(signing_key.vkey, revoked_at=lh.T0),))
    with pytest.raises(EventProofError, match="key_revoked"):
        verify_event_proof(proof, revoked)


def _flip(b64: str, bit: int = 0) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[bit // 8] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


def _mutations(proof: dict[str, Any], other: dict[str, Any]) -> dict[str, Callable[[dict], None]]:
    """Every way a proof can be wrong; each must be rejected."""
    m: dict[str, Callable[[dict], None]] = {}
    for key in ("event_inclusion_proof", "log_inclusion_proof"):
        n = len(proof[key])
        m[f"{key}: empty"] = lambda d, k=key: d.update({k: []})
        m[f"{key}: truncated"] = lambda d, k=key: d[k].pop()
        m[f"{key}: extra hash"] = lambda d, k=key: d[k].append(d[k][0])
        m[f"{key}: leading garbage"] = lambda d, k=key: d[k].insert(0, d[k][-1])
        m[f"{key}: not base64"] = lambda d, k=key: d[k].__setitem__(0, "*" * 44)
        m[f"{key}: short hash"] = lambda d, k=key: d[k].__setitem__(0, d[k][0][:40] + "==")
        for i in range(n):
            for bit in (0, 255):
                m[f"{key}[{i}] bit {bit} flipped"] = lambda d, k=key, i=i, b=bit: d[k].__setitem__(
                    i, _flip(d[k][i], b)
                )
    for key in ("event_index", "log_index"):
        m[f"{key} + 1"] = lambda d, k=key: d.update({k: d[k] + 1})
        m[f"{key} - 1"] = lambda d, k=key: d.update({k: d[k] - 1})
        m[f"{key} x 2 + 1"] = lambda d, k=key: d.update({k: d[k] * 2 + 1})
        m[f"{key} negative"] = lambda d, k=key: d.update({k: -1})
        m[f"{key} as string"] = lambda d, k=key: d.update({k: str(d[k])})
    m["event edited"] = lambda d: d["event"].update(action="user_logout")
    m["event field added"] = lambda d: d["event"].update(extra=1)
    m["event of another batch"] = lambda d: d.update(event=other["event"])
    m["event id changed"] = lambda d: d["event"].update(id="ev-9999-00000")
    m["manifest edited"] = lambda d: d["manifest"]["signed"]["events"].update(count=4)
    m["manifest of another batch"] = lambda d: d.update(manifest=other["manifest"])
    m["manifest signature swapped"] = lambda d: d["manifest"]["signatures"][0].update(
        sig=other["manifest"]["signatures"][0]["sig"]
    )
    m["checkpoint size edited"] = lambda d: d.update(
        checkpoint=d["checkpoint"].replace("\n7\n", "\n8\n", 1)
    )
    m["checkpoint signature removed"] = lambda d: d.update(
        checkpoint=d["checkpoint"].split("\n\n")[0] + "\n"
    )
    m["schema"] = lambda d: d.update(schema="audit_pipeline.event-proof/v0")
    m["unknown field"] = lambda d: d.update(note="trust me")
    m["missing field"] = lambda d: d.pop("log_index")
    return m


def test_tampered_proofs_are_rejected(six_hours: Ledger, lh, signing_key) -> None:
    """Matrix 27: malformed proofs: empty, truncated, extra or flipped hashes, wrong
    index or size; and every other part swapped or edited."""
    trusted = verifiers_for(signing_key)
    proof = prove_event(six_hours.data_dir, "ev-0004-00001", file_format=lh.JSONL)
    other = prove_event(six_hours.data_dir, "ev-0003-00002", file_format=lh.JSONL)
    assert len(proof["event_inclusion_proof"]) == 2 and len(proof["log_inclusion_proof"]) == 3
    verify_event_proof(proof, trusted)
    mutations = _mutations(proof, other)
    accepted = []
    for desc, mutate in mutations.items():
        doc = copy.deepcopy(proof)
        mutate(doc)
        assert doc != proof, desc
        try:
            verify_event_proof(proof_bytes(doc), trusted)
        except LedgerError:
            continue
        accepted.append(desc)
    assert len(mutations) > 40
    assert not accepted, f"{len(accepted)} of {len(mutations)} bad proofs accepted: {accepted}"


def test_proof_rejected_under_another_key(six_hours: Ledger, lh, other_key) -> None:
    proof = prove_event(six_hours.data_dir, "ev-0004-00001", file_format=lh.JSONL)
    with pytest.raises(UnknownKeyError):
        verify_event_proof(proof, verifiers_for(other_key))
    # A checkpoint re-signed by another key does not lend its trust to the manifest.
    cp = Checkpoint(lh.ORIGIN, 7, base64.b64decode(proof["checkpoint"].split("\n")[2]))
    proof["checkpoint"] = sign_checkpoint(cp, other_key).decode()
    with pytest.raises(UnknownKeyError):
        verify_event_proof(proof, verifiers_for(other_key))


def test_leaf_node_confusion_is_rejected(six_hours: Ledger, lh) -> None:
    """Matrix 28: an inner node's preimage presented as a leaf must not verify."""
    rows = lh.JSONL.read_events(six_hours.data_dir / six_hours.manifests()[3].manifest.data.path)
    leaves = [r.leaf_hash for r in rows]  # 3 events: root = node(node(l0, l1), l2)
    root = merkle.root_hash(leaves)
    inner = leaves[0] + leaves[1]
    assert merkle.node_hash(leaves[0], leaves[1]) == merkle.root_hash(leaves[:2])
    with pytest.raises(InvalidProofError):
        merkle.verify_inclusion(0, 2, merkle.leaf_hash(inner), [leaves[2]], root)
    assert merkle.leaf_hash(inner) != merkle.node_hash(leaves[0], leaves[1])
    # The event tree's size is fixed by the signed manifest (events.count = 3), so an
    # inner node cannot be passed off as the leaf of a smaller tree either.


def _path_length(index: int, size: int) -> int:
    """_path_length: hashes in an RFC 9162 inclusion proof (inner + border)."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + bin(index >> inner).count("1")


def test_path_length_formula_matches_real_proofs() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(70)]
    for size in range(1, 71):
        for index in range(size):
            assert _path_length(index, size) == len(merkle.prove_inclusion(index, size, leaves))


def test_proof_size_for_a_year_of_hourly_batches_of_100k_events(six_hours: Ledger, lh) -> None:
    """A year of hours (8,760 manifests) of 100k-event batches: the proof is < 4 KB.

    The proof math gives the longest paths; the manifest, checkpoint and a realistic Slack
    entry come from a real ledger, so only the path lengths are scaled.
    """
    log_hashes = max(_path_length(i, YEAR_OF_HOURS) for i in range(YEAR_OF_HOURS))
    event_hashes = max(_path_length(i, EVENTS_PER_BATCH) for i in range(EVENTS_PER_BATCH))
    assert (log_hashes, event_hashes) == (14, 17)
    proof = prove_event(six_hours.data_dir, "ev-0004-00001", file_format=lh.JSONL)
    filler = base64.b64encode(b"\xab" * 32).decode()
    proof["log_inclusion_proof"] = [filler] * log_hashes
    proof["event_inclusion_proof"] = [filler] * event_hashes
    proof["log_index"] = YEAR_OF_HOURS - 1
    proof["event_index"] = EVENTS_PER_BATCH - 1
    manifest = proof["manifest"]["signed"]
    manifest["sequence"] = YEAR_OF_HOURS - 1
    manifest["events"]["count"] = manifest["data"]["rows"] = EVENTS_PER_BATCH
    manifest["data"]["size"] = 12_345_678
    manifest["run_id"] = "0f8e2c1a-6b7d-4e21-9a3f-5c8d7e6f1a2b"
    proof["checkpoint"] = proof["checkpoint"].replace("\n7\n", f"\n{YEAR_OF_HOURS}\n")
    proof["event"] = {
        "id": "0123a45b-1c2d-3e4f-5a6b-7c8d9e0f1a2b",
        "date_create": 1_735_693_201,
        "action": "file_downloaded",
        "actor": {"type": "user", "user": {"id": "W123AB456", "name": "Ada Lovelace",
                                           "email": "ada@example.com", "team": "T01ABCDEF"}},
        "entity": {"type": "file", "file": {"id": "F0123ABCD", "name": "q3-forecast.xlsx",
                                            "filetype": "xlsx", "title": "Q3 forecast"}},
        "context": {"location": {"type": "workspace", "id": "T01ABCDEF", "name": "Acme",
                                 "domain": "acme"},
                    "ua": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
                    "ip_address": "203.0.113.17", "session_id": "2468013579"},
    }  # fmt: skip
    size = len(proof_bytes(proof))
    event_size = len(canonical_json(proof["event"]))
    print(f"\nproof size: {size} bytes ({size - event_size} without the {event_size}-byte event)")
    assert size < 4096
    assert json.loads(proof_bytes(proof)) == proof


def test_cli_style_file_round_trip(six_hours: Ledger, lh, signing_key, tmp_path: Path) -> None:
    from audit_pipeline.ledger.proofs import load_proof

    out = tmp_path / "proof.json"
    out.write_bytes(
        proof_bytes(prove_event(six_hours.data_dir, "ev-0000-00000", file_format=lh.JSONL))
    )
    assert verify_event_proof(load_proof(out), verifiers_for(signing_key)).batch_sequence == 0
