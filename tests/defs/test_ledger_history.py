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


def test_an_unwritable_history_does_not_fail_the_verification(pipeline):
    (pipeline.data_dir / "verification").write_text("a file where the directory belongs")
    outcome = pipeline.sync(0, 1, 2, 3)
    assert outcome.success and outcome.failed_checks == set()
    assert outcome.metadata("audit_ledger")["verification_run_id"].startswith("not recorded: ")
