"""The Dagster assets and checks on an ``s3://`` data directory, against a real SeaweedFS.

The same factories as the code location, the same resources with ``data_dir`` set to the
bucket: the hourly sync commits through create-only writes, every ledger check runs on
the store with its versions, and ``audit_dataset`` builds a local dataset from a verified
copy. Tampering through S3 fails the blocking checks, and nothing downstream runs.
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
from audit_pipeline.ledger.cosignature import WitnessSigner
from audit_pipeline.store.local_copy import local_copy_path
from audit_pipeline.store.s3 import S3ObjectStore
from audit_pipeline.store.settings import S3Settings
from tests.defs.conftest import Pipeline
from tests.defs.test_assets import LEDGER_CHECKS
from tests.store.conftest import REGION, data_url, seaweed  # noqa: F401  (fixtures)

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


def test_witnesses_are_refused_on_an_object_store(s3_pipeline) -> None:
    pipeline, _ = s3_pipeline
    witness = WitnessSigner.generate("w1").key.vkey
    pipeline.resources["witnesses"] = WitnessSetResource(
        witnesses=f"w1 http://127.0.0.1:9/ {witness}"
    )
    outcome = pipeline.sync(0)
    assert not outcome.success
    failure = next(e for e in outcome.result.all_events if e.is_step_failure)
    assert "do not work with an object-store data directory" in str(failure.step_failure_data.error)
