"""audit_ledger appends every verification to the history auditors query."""

from __future__ import annotations

from audit_pipeline.dataset import history


def test_each_audit_ledger_run_is_in_the_verification_history(pipeline):
    synced = pipeline.sync(0, 1)
    assert synced.success
    victim = sorted((pipeline.data_dir / "lake").rglob("*.parquet"))[0]
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-1])
    tampered = pipeline.verify(full=True)
    assert not tampered.success

    runs = history.load_runs(pipeline.data_dir)
    assert [r.trigger for r in runs] == [
        f"dagster audit_ledger run {synced.run_id}",
        f"dagster audit_ledger run {tampered.run_id}",
    ]
    clean, failed = runs
    assert clean.ok and clean.tree_size == 2 and clean.checkpoint is not None
    assert clean.run_id == synced.metadata("audit_ledger")["verification_run_id"]
    assert not failed.ok and "file_hash_mismatch" in {f["code"] for f in failed.findings}
    assert failed.run_id == tampered.metadata("audit_ledger")["verification_run_id"]


def test_an_unwritable_history_fails_the_verification_with_its_checks_shown(pipeline):
    # As audit_dataset does: a verification auditors cannot find in the history is a failure.
    (pipeline.data_dir / "verification").write_text("a file where the directory belongs")
    outcome = pipeline.sync(0, 1, 2, 3)
    assert not outcome.success
    assert outcome.failed_checks == set(), "the checks ran, passed, and are shown"
    [failure] = outcome.result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None and "verification history" in user.description
    assert outcome.run_id not in pipeline.downstream_runs
