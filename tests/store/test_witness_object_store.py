"""Witnesses on an ``s3://`` data directory, against a real SeaweedFS and witnesses in their
own processes (``witness serve``).

A round creates its records once (Object Lock takes nothing twice): the witnessed
checkpoint of each size, a later round's extra cosignatures as a numbered record beside it,
one object per refusal; the hints stay beside the signer state. ``verify --witness-key``
reads them through S3 as it reads a local directory: quorum met, quorum missing, and a
cosigned history the log no longer extends; the version audit pins them like every other
ledger record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from audit_pipeline.cli.object_store import object_store_ledger
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger.cosignature import WitnessKey, cosignatures
from audit_pipeline.ledger.keys import load_signing_key
from audit_pipeline.ledger.layout import checkpoint_path, manifest_path
from audit_pipeline.ledger.note import generate_key
from audit_pipeline.ledger.signer_state import signer_state_path
from audit_pipeline.ledger.witnessed import REFUSAL_RECORDS, WITNESSED, witnessed_path
from audit_pipeline.store.ledger import local_dir_for, open_ledger
from audit_pipeline.store.settings import S3Settings
from audit_pipeline.witness.committer import witness_latest
from audit_pipeline.witness.config import make_policy, parse_witnesses
from audit_pipeline.witness.records import LOCAL_HINTS
from tests.cli.test_verify_history_prove import commit_hour
from tests.store.conftest import pipeline_client
from tests.store.test_sync_object_store import (  # noqa: F401  (fixtures)
    HOURS,
    _open_reader,
    emulator,
    env,
    hour_text,
    run,
    sync,
)
from tests.witness.conftest import start_witness  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def witness_env(witnesses) -> str:
    return "\n".join(f"{w.name.split('/')[-1]} {w.url} {w.vkey}" for w in witnesses)


def witness_args(*witnesses) -> list[str]:
    return [arg for w in witnesses for arg in ("--witness-key", w.vkey)]


def verify(capsys, url: str, *extra: str) -> tuple[int, dict, str]:
    code, out, err = run(capsys, "verify", "--data-dir", url, "--json", *extra)
    return code, json.loads(out), err


def codes(doc: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in doc["findings"]:
        found.setdefault(f["code"], set()).add(f["location"])
    return found


@dataclass
class Witnessed:
    """Witnessed starts witnesses (own processes) for the test's log, after ``keys init``;
    ``use`` makes them the sync's ``AUDIT_WITNESSES``."""

    log: str
    start_witness: Callable[..., Any]
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch

    def start(self, name: str, logs: list[str] | None = None) -> Any:
        root, full = self.tmp_path / name, f"witness.test/{name}"
        return self.start_witness(root, full, logs or [self.log])

    def use(self, *witnesses: Any) -> None:
        self.monkeypatch.setenv("AUDIT_WITNESSES", witness_env(witnesses))


@pytest.fixture
def witnessed(capsys, monkeypatch, env, tmp_path, data_url, start_witness) -> Witnessed:  # noqa: F811
    code, vkey, err = run(capsys, "keys", "init", "--data-dir", data_url)
    assert code == 0, err
    log = f"audit-pipeline/ledger={vkey.strip()}"
    return Witnessed(log, start_witness, tmp_path, monkeypatch)


def test_two_witnesses_cosign_an_s3_log_and_a_later_round_adds_a_record(
    capsys, tmp_path, data_url, store, witnessed
) -> None:
    w1, w2 = witnessed.start("w1"), witnessed.start("w2")
    witnessed.use(w1, w2)
    code, _, err = sync(capsys, data_url, 0, HOURS)
    assert code == 0, err
    assert err.count("cosigned by 2/2 (quorum 2, met)") == HOURS
    assert store.list_keys(f"{WITNESSED}/") == [witnessed_path(n) for n in (1, 2, 3)]
    # the hints are the committer's, beside its signer state, never in the bucket
    local = local_dir_for(S3Settings.from_env(data_url), Path(os.environ["AUDIT_SIGNING_KEY"]))
    assert orjson.loads((local / LOCAL_HINTS).read_bytes()) == {"w1": 3, "w2": 3}

    code, report, err = verify(capsys, data_url, *witness_args(w1, w2))
    assert code == 0 and report["ok"], err
    assert "checkpoint 3 cosigned by 2 of 2 trusted witnesses" in err
    assert not codes(report)
    # manifests, checkpoints, data, intents and the three witnessed records, all pinned
    assert report["object_store"]["objects_pinned"] == 3 * 5

    # a witness that joins later: its cosignature of the same size is a second record
    w3 = witnessed.start("w3")
    policy = make_policy(parse_witnesses(witness_env([w1, w2, w3]), source="test"), None)
    ledger = object_store_ledger(data_url, origin=None)
    round_ = witness_latest(ledger, policy)
    assert round_ is not None and round_.met and len(round_.cosigned) == 3
    second = witnessed_path(3, 2)
    assert set(store.list_keys(f"{WITNESSED}/")) == {
        *(witnessed_path(n) for n in (1, 2, 3)),
        second,
    }
    keys = [WitnessKey.from_vkey(w.vkey) for w in (w1, w2, w3)]
    assert cosignatures(store.get(second), keys).witnesses == ["witness.test/w3"]
    # asked again, every witness is on record for size 3 already: nothing new is created
    assert witness_latest(ledger, policy).met
    assert len(store.list_keys(f"{WITNESSED}/")) == 4

    code, report, err = verify(capsys, data_url, *witness_args(w1, w2, w3))
    assert code == 0, err
    assert "checkpoint 3 cosigned by 3 of 3 trusted witnesses" in err
    assert report["object_store"]["objects_pinned"] == 3 * 5 + 1
    # the same at every depth and with the anchors (incremental from the signer state)
    key = Path(os.environ["AUDIT_SIGNING_KEY"])
    anchored = ["--signer-state", str(signer_state_path(key))]
    for extra in (["--depth", "files"], [*anchored, "--incremental"], anchored):
        code, report, err = verify(capsys, data_url, *extra, *witness_args(w1, w2, w3))
        assert code == 0 and "cosigned by 3 of 3" in err, (extra, err)

    # an evidence bundle carries every round's record; it verifies offline with 3 of 3
    bundle = tmp_path / "bundle"
    code, _, err = run(
        capsys, "export-evidence", "--data-dir", data_url, "--start", hour_text(0),
        "--end", hour_text(HOURS), "--out", str(bundle),
    )  # fmt: skip
    assert code == 0, err
    assert (bundle / second).is_file()
    code, _, err = run(capsys, "verify", str(bundle), "--no-record", *witness_args(w1, w2, w3))
    assert code == 0 and "cosigned by 3 of 3" in err, err

    # an event proof from the bucket carries the union of the cosignatures
    reader = _open_reader(data_url)
    signed = reader.manifests()[1]
    event_id = reader._read_data(signed)[0].event_id
    proof = tmp_path / "proof.json"
    code, _, err = run(
        capsys, "prove", event_id, "--data-dir", data_url, "--batch", "1", "--out", str(proof)
    )
    assert code == 0, err
    public = reader.keyring().verifiers()
    check = ["verify-proof", str(proof), *(a for v in public for a in ("--public-key", v.vkey))]
    code, _, err = run(capsys, *check, *witness_args(w1, w2, w3))
    assert code == 0, err


def test_a_refusing_witness_is_one_record_and_the_quorum_is_missing(
    capsys, data_url, store, witnessed
) -> None:
    _, stranger = generate_key("other.test/log")  # w2 follows another log only
    w1, w2 = witnessed.start("w1"), witnessed.start("w2", [f"other.test/log={stranger}"])
    witnessed.use(w1, w2)
    code, _, err = sync(capsys, data_url, 0, 1)
    assert "cosigned by 1/2 (quorum 2, NOT met)" in err and "w2: refused: 404" in err
    assert code == 0, err  # committed; a refusal is no alarm (the verify below reports the quorum)

    refusals = store.list_keys(f"{REFUSAL_RECORDS}/")
    assert len(refusals) == 1 and refusals[0].startswith(f"{REFUSAL_RECORDS}/00000001-")
    record = orjson.loads(store.get(refusals[0]))
    assert (record["witness"], record["status"], record["inconsistent"]) == ("w2", "refused", False)

    code, report, err = verify(capsys, data_url, *witness_args(w1, w2))
    assert code == 1, err
    assert codes(report) == {"witness_quorum_missing": {witnessed_path(1)}}
    assert report["object_store"]["objects_pinned"] == 4 + 1 + 1  # the refusal is pinned too


def test_a_cosigned_history_the_log_no_longer_extends_is_a_conflict(
    capsys, tmp_path, seaweed, data_url, store, witnessed
) -> None:
    w1, w2 = witnessed.start("w1"), witnessed.start("w2")
    witnessed.use(w1, w2)
    code, _, err = sync(capsys, data_url, 0, HOURS)
    assert code == 0, err

    # the pipeline's own credentials roll the log back: delete markers hide the newest
    # manifest and its checkpoint (the locked versions stay; readers see a log of 2)
    client = pipeline_client(seaweed)
    for rel in (manifest_path(HOURS - 1), checkpoint_path(HOURS)):
        client.delete_object(Bucket=store.location.bucket, Key=store.location.key(rel))

    code, report, err = verify(capsys, data_url, *witness_args(w1, w2))
    assert code == 1, err
    found = codes(report)
    assert found["witness_conflict"] == {witnessed_path(HOURS)}
    assert {manifest_path(HOURS - 1), checkpoint_path(HOURS)} <= found["delete_marker"]
    conflict = next(f for f in report["findings"] if f["code"] == "witness_conflict")
    assert "witness.test/w1" in conflict["detail"] and "witness.test/w2" in conflict["detail"]
    assert "unreferenced_object" not in found

    # the insider, with a copy of the signing key (none of its signer state), commits
    # another batch where the hidden one was: the witnesses refuse, and say why
    stolen = tmp_path / "stolen" / "signing-key"
    stolen.parent.mkdir()
    stolen.write_bytes(Path(os.environ["AUDIT_SIGNING_KEY"]).read_bytes())
    stolen.chmod(0o600)
    settings = S3Settings.from_env(data_url)
    insider = open_ledger(
        settings,
        file_format=PARQUET_FORMAT,
        signer=load_signing_key(stolen),
        key_path=stolen,
        signer_state=signer_state_path(stolen),
    )
    commit_hour(insider, 0)
    assert len(insider.manifests()) == HOURS
    policy = make_policy(parse_witnesses(witness_env([w1, w2]), source="test"), None)
    round_ = witness_latest(insider, policy)
    assert round_ is not None and {o.status for o in round_.outcomes} == {"inconsistent"}
    refusals = store.list_keys(f"{REFUSAL_RECORDS}/")
    assert len(refusals) == 2
    code, report, err = verify(capsys, data_url, *witness_args(w1, w2))
    assert code == 1, err
    found = codes(report)
    assert found["witness_conflict"] == {witnessed_path(HOURS), *refusals}
    assert "unreferenced_object" not in found
