"""Issue 10's insider attacks run through the Dagster assets and their checks: a revoked key
that backdates a batch, a truncated log the signer refuses to extend (no equivocation), and
a DuckDB dataset edited in place."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from audit_pipeline.dataset.build import dataset_path
from audit_pipeline.dataset.query import open_dataset
from audit_pipeline.dataset.seal import DatasetTamperedError
from audit_pipeline.defs.dataset import audit_dataset
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger
from audit_pipeline.ledger.keys import keyring_file, load_signing_key, revoke_key
from audit_pipeline.ledger.signer_state import load_signer_state, signer_state_path


def _synced(pipeline, hours: int = 4):
    outcome = pipeline.sync(*range(hours))
    assert outcome.success and outcome.failed_checks == set()
    return outcome


def _error_text(outcome) -> str:
    return "\n".join(
        str(e.event_specific_data.error)
        for e in outcome.result.all_events
        if e.is_step_failure and e.event_specific_data and e.event_specific_data.error
    )


def test_revoked_key_backdating_a_batch_fails_chain_intact(pipeline, key_path, trusted_keys):
    _synced(pipeline)
    signer = load_signing_key(key_path)
    before = keyring_file(pipeline.data_dir).read_bytes()
    revoked = revoke_key(pipeline.data_dir, signer.vkey, at=int(pipeline.now), signer=signer)
    assert revoked.revoked_at_size == 4
    after = keyring_file(pipeline.data_dir).read_bytes()
    trusted_keys.write_bytes(after)  # the operator publishes the revocation to AUDIT_TRUSTED_KEYS

    # The pipeline itself refuses to sign with the revoked key.
    refused = pipeline.sync(4)
    assert not refused.success and "key_revoked" in _error_text(refused)

    # The insider's tool: the keyring as it was, a clock before the revocation, a late batch.
    keyring_file(pipeline.data_dir).write_bytes(before)
    forger = Ledger(pipeline.data_dir, file_format=PARQUET_FORMAT, signer=signer, clock=lambda: 0)
    hour = pipeline.h0 + 3600
    from audit_pipeline.lake import write_events
    from audit_pipeline.ledger import EventRecord

    event = EventRecord.from_entry(
        {"id": "forged-1", "date_create": hour + 5, "action": "user_login",
         "actor": {"type": "user", "user": {"id": "W1", "name": "eve"}},
         "entity": {"type": "user", "user": {"id": "W1", "name": "eve"}},
         "context": {"location": {"type": "enterprise", "id": "E1", "name": "Acme"}}}
    )  # fmt: skip
    forged = forger.commit_batch(
        window_start=hour,
        window_end=hour + 3600,
        events=[event],
        write_data=lambda evs, path: write_events(evs, path, window=(hour, hour + 3600)),
        source={"api_url": "https://slack.test/audit/v1/logs", "pages": 1},
        run_id="insider",
    )
    assert forged.sequence == 4
    keyring_file(pipeline.data_dir).write_bytes(after)

    outcome = pipeline.verify()
    assert not outcome.success
    assert "ledger_chain_intact" in outcome.failed_checks
    md = outcome.check_metadata("ledger_chain_intact")
    assert md["finding_codes"]["key_revoked"] == 2  # the manifest and its checkpoint
    assert outcome.run_id not in pipeline.downstream_runs


def test_truncated_log_is_not_signed_again(pipeline, key_path):
    """Equivocation: delete the newest batch; the next ordinary run must not sign a second
    checkpoint of a size the signer already signed."""
    _synced(pipeline)
    state = load_signer_state(signer_state_path(key_path, {}))
    assert state is not None and state.size == 4
    ledger_dir = pipeline.data_dir / "ledger"
    (ledger_dir / "manifests" / "00000003.json").unlink()
    (ledger_dir / "checkpoints" / "00000004.checkpoint").unlink()
    for path in (pipeline.data_dir / "lake").rglob("00000003-*"):
        path.unlink()

    pipeline.now += 3600
    outcome = pipeline.sync(4)
    assert not outcome.success
    assert "truncated by 1 batch:" in _error_text(outcome)
    assert not (ledger_dir / "checkpoints" / "00000004.checkpoint").exists()
    assert not (ledger_dir / "manifests" / "00000003.json").exists()
    assert load_signer_state(signer_state_path(key_path, {})).size == 4


def _materialize_dataset(pipeline, **config):
    return dg.materialize(
        [audit_dataset],
        resources={
            "ledger": pipeline.resources["ledger"],
            "witnesses": pipeline.resources["witnesses"],
        },
        instance=pipeline.instance,
        run_config={"ops": {"audit_dataset": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def _forged_rows(path) -> int:
    con = open_dataset(path)
    try:
        return con.sql(
            "SELECT count(*) FROM audit_events WHERE actor_user_email = 'mallory@example.com'"
        ).fetchall()[0][0]
    finally:
        con.close()


def test_edited_dataset_is_not_reused_by_the_asset(pipeline, monkeypatch):
    monkeypatch.delenv("AUDIT_DATASET", raising=False)
    _synced(pipeline)
    first = _materialize_dataset(pipeline)
    assert first.success
    path = dataset_path(pipeline.data_dir)
    con = duckdb.connect(str(path))
    con.execute("UPDATE audit_events SET actor_user_email = 'mallory@example.com'")
    con.close()
    with pytest.raises(DatasetTamperedError):
        open_dataset(path)

    again = _materialize_dataset(pipeline)
    assert again.success
    (event,) = again.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["build"] == "full" and "changed after it was built" in meta["build_reason"]
    # The resource gives the verifier outside keys (AUDIT_TRUSTED_KEYS) and Dagster's
    # recorded checkpoint: the verification is anchored.
    assert meta["anchored"] is True and meta["verified_at"] > 0
    assert _forged_rows(path) == 0


def test_dataset_edited_and_resealed_is_caught_by_the_event_log(pipeline, monkeypatch):
    """The insider edits the file and rewrites its seal to match: the seal alone is fooled,
    the digest Dagster recorded (outside the data directory) is not."""
    from audit_pipeline.dataset.seal import check_seal, read_seal, write_seal

    monkeypatch.delenv("AUDIT_DATASET", raising=False)
    _synced(pipeline)
    assert _materialize_dataset(pipeline).success
    path = dataset_path(pipeline.data_dir)
    before = read_seal(path)
    con = duckdb.connect(str(path))
    con.execute("UPDATE audit_events SET actor_user_email = 'mallory@example.com'")
    con.close()
    path.with_name(path.name + ".seal").unlink()
    write_seal(
        path,
        origin=before.origin,
        tree_size=before.tree_size,
        root_hash=before.root_hash,
        checkpoint=before.checkpoint,
        verification_run_id=before.verification_run_id,
    )
    assert check_seal(path, pipeline.data_dir).ok  # fooled

    again = _materialize_dataset(pipeline)
    assert again.success
    (event,) = again.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["build"] == "full"
    assert _forged_rows(path) == 0
