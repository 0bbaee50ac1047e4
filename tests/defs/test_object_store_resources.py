"""The Dagster assets and checks on an ``s3://`` data directory, against a real SeaweedFS.

The same factories as the code location, the same resources with ``data_dir`` set to the
bucket: the hourly sync commits through create-only writes, every ledger check runs on
the store with its versions, and ``audit_dataset`` builds a local dataset from a verified
copy. Tampering through S3 fails the blocking checks, and nothing downstream runs. Witnesses
(their own processes) cosign each commit, their records created once in the bucket.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from audit_pipeline.cli import main
from audit_pipeline.dataset.query import open_dataset
from audit_pipeline.defs.dataset import audit_dataset
from audit_pipeline.defs.resources import LedgerResource, SlackAuditResource, SlackNotifier
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.ledger.keys import load_signing_key
from audit_pipeline.ledger.witnessed import witnessed_path
from audit_pipeline.store.local_copy import local_copy_path
from audit_pipeline.store.s3 import S3ObjectStore
from audit_pipeline.store.settings import S3Settings
from tests.defs.conftest import Pipeline
from tests.defs.test_assets import LEDGER_CHECKS
from tests.store.conftest import REGION, data_url, seaweed  # noqa: F401  (fixtures)
from tests.witness.conftest import start_witness  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture
def s3_pipeline(monkeypatch, seaweed, emulator, tmp_path: Path, data_url):  # noqa: F811
    for name, value in {
        "AWS_ENDPOINT_URL": seaweed.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweed.pipeline.access_key_id,
        "AWS_SECRET_ACCESS_KEY": seaweed.pipeline.secret_access_key,
        "AWS_REGION": REGION,
        "AUDIT_RETENTION_DAYS": "1",
        "AUDIT_DATASET": str(tmp_path / "auditor" / "audit.duckdb"),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AUDIT_DATA_DIR", "AUDIT_WITNESSES", "AUDIT_SIGNER_STATE", "AUDIT_TRUSTED_KEYS"):
        monkeypatch.delenv(name, raising=False)
    key = tmp_path / "keys" / "signing-key"
    assert main(["keys", "init", "--data-dir", data_url, "--key-file", str(key)]) == 0
    store = S3ObjectStore(S3Settings.from_env(data_url))
    trusted = tmp_path / "trusted" / "keyring.json"
    trusted.parent.mkdir()
    trusted.write_bytes(store.get("ledger/keys/keyring.json"))
    (tmp_path / "auditor").mkdir()
    resources = {
        "slack_audit": SlackAuditResource(
            token=emulator.token, base_url=emulator.base_url, max_calls_per_minute=0
        ),
        "ledger": LedgerResource(
            data_dir=data_url, signing_key=str(key), trusted_keys=str(trusted)
        ),
        "slack_notifier": SlackNotifier(),
        "witnesses": WitnessSetResource(witnesses=""),
    }
    pipeline = Pipeline(dg.DagsterInstance.ephemeral(), resources, tmp_path / "unused")
    return pipeline, store


def test_the_hourly_sync_checks_and_dataset_run_on_an_object_store(s3_pipeline, tmp_path):
    pipeline, store = s3_pipeline
    first = pipeline.sync(0, 1, 2, 3)
    assert first.success
    assert set(first.checks) == LEDGER_CHECKS and first.failed_checks == set()
    md = first.metadata("audit_ledger")
    assert md["verified"] is True and md["tree_size"] == 4
    reader = pipeline.resources["ledger"].reader()
    chain = reader.manifests()
    assert [m.manifest.window_start for m in chain] == [pipeline.h0 + i * 3600 for i in range(4)]
    for signed in chain:  # committed by the object store's create-only writes, pinned
        data = signed.manifest.data
        assert (
            data is not None and store.head(data.path).version_id == signed.manifest.data_version_id
        )
    assert md["checkpoint"].encode() == reader.latest_checkpoint()
    assert not list(Path.cwd().glob("s3:*"))

    # the next verification starts from the checkpoint Dagster recorded
    second = pipeline.verify()
    assert second.success and second.failed_checks == set()
    assert second.metadata("audit_ledger")["verification"] == "incremental from batch 4"

    # the auditors' dataset: a local file from a verified local copy
    built = dg.materialize(
        [audit_dataset],
        resources={k: pipeline.resources[k] for k in ("ledger", "witnesses")},
        instance=pipeline.instance,
        raise_on_error=False,
    )
    assert built.success
    database = tmp_path / "auditor" / "audit.duckdb"
    con = open_dataset(database)
    events = con.sql("SELECT count(*) FROM audit_events").fetchall()[0][0]
    con.close()
    assert events == sum(m.manifest.event_count for m in chain) > 0
    assert (local_copy_path(database) / chain[0].manifest.data.path).is_file()

    # a new version over a committed data object (the pipeline's own credentials can)
    target = chain[1].manifest.data.path
    store.client.put_object(
        Bucket=store.location.bucket, Key=store.location.key(target), Body=b"forged"
    )
    third = pipeline.verify(full=True)
    assert not third.success
    assert "ledger_files_match_manifests" in third.failed_checks
    assert pipeline.downstream_runs == [first.run_id, second.run_id]


def test_witnesses_cosign_on_an_object_store(s3_pipeline, tmp_path, start_witness) -> None:  # noqa: F811
    pipeline, store = s3_pipeline
    vkey = load_signing_key(Path(pipeline.resources["ledger"].signing_key)).vkey
    log = f"audit-pipeline/ledger={vkey}"
    w1 = start_witness(tmp_path / "w1", "witness.test/w1", [log])
    w2 = start_witness(tmp_path / "w2", "witness.test/w2", [log])
    pipeline.resources["witnesses"] = WitnessSetResource(
        witnesses=f"w1 {w1.url} {w1.vkey}; w2 {w2.url} {w2.vkey}"
    )
    witness_checks = {"ledger_witnesses_agree", "ledger_witness_quorum"}
    first = pipeline.sync(0, 1)
    assert first.success and not first.failed_checks & witness_checks
    quorum = first.check_metadata("ledger_witness_quorum")
    assert quorum["witnesses_configured"] == 2 and len(quorum["cosigned_by"]) == 2
    assert first.metadata("slack_audit_events")["witnesses"]["cosignatures"] == 2
    # one create-only record per witnessed size, nothing else of the round in the bucket
    assert store.list_keys("ledger/witnessed/") == [witnessed_path(1), witnessed_path(2)]

    w2.kill()
    second = pipeline.sync(2)
    assert second.success  # a witness that is down holds nothing back
    assert second.failed_checks & witness_checks == {"ledger_witness_quorum"}
    assert witnessed_path(3) in store.list_keys("ledger/witnessed/")
