"""Multi-hour runs of slack_audit_events: each hour its own materialization and metadata; a
failed hour costs only itself; a ledger the sync refuses still gets its checks run."""

from __future__ import annotations

import dagster as dg
import pytest

from audit_pipeline.defs.assets import build_audit_ledger
from audit_pipeline.defs.resources import SlackAuditResource

EVENTS = dg.AssetKey("slack_audit_events")


def entries_in_hour(emulator, start: int) -> list[dict]:
    return [e for e in emulator.entries() if start <= e["date_create"] < start + 3600]


def latest_partition_metadata(pipeline, index: int) -> dict:
    """What the UI shows on the asset page of one partition: its latest materialization."""
    records = pipeline.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EVENTS, asset_partitions=[pipeline.key(index)]), limit=1
    ).records
    assert records, f"hour {index} was not materialized"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@pytest.fixture
def flaky_api(pipeline, emulator):
    """The API without client retries, so one scripted fault fails one hour."""
    pipeline.resources["slack_audit"] = SlackAuditResource(
        token=emulator.token, base_url=emulator.base_url, max_calls_per_minute=0, max_retries=0
    )
    yield emulator
    emulator.script_faults([])


def test_a_two_hour_run_gives_each_hour_its_own_row_count(pipeline, emulator):
    outcome = pipeline.sync(0, 1)
    assert outcome.success
    counts = [len(entries_in_hour(emulator, pipeline.h0 + i * 3600)) for i in (0, 1)]
    assert counts[0] != counts[1], "the test needs hours of different sizes"
    for i in (0, 1):
        md = latest_partition_metadata(pipeline, i)
        assert md["dagster/row_count"] == counts[i]
        assert md["events_committed"] == counts[i] and md["quarantined"] == 0
        assert md["batch_sequences"] == [i]
        assert [c.type for c in md["dagster/column_schema"].columns][:2] == [
            "string",
            "timestamp[ms, tz=UTC]",
        ]
    tags = pipeline.instance.get_run_by_id(outcome.run_id).tags
    assert tags["audit_pipeline/events_committed"] == str(sum(counts))


def test_a_failure_in_the_middle_of_a_range_run_costs_only_that_hour(pipeline, flaky_api):
    flaky_api.script_faults(["ok", "503"])  # hour 0 is served, hour 1 gets a 503
    outcome = pipeline.sync(0, 1, 2)
    assert not outcome.success
    [failure] = outcome.result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None and "1 of 3 hours could not be synced" in user.description
    assert "2026-11-20T01:00Z" in user.description
    assert user.metadata["hours_committed"].value == ["2026-11-20T00:00Z", "2026-11-20T02:00Z"]

    materialized = pipeline.instance.get_materialized_partitions(EVENTS)
    assert materialized == {pipeline.key(0), pipeline.key(2)}
    windows = pipeline.ledger_windows()
    assert windows == {pipeline.h0, pipeline.h0 + 2 * 3600}
    assert latest_partition_metadata(pipeline, 2)["batch_sequences"] == [1]

    # The failed hour is synced by the next run; nothing is committed twice.
    again = pipeline.sync(1)
    assert again.success
    assert pipeline.instance.get_materialized_partitions(EVENTS) == {
        pipeline.key(i) for i in range(3)
    }
    assert len(pipeline.ledger_windows()) == 3


def test_checks_run_and_fail_when_the_sync_refuses_a_tampered_ledger(pipeline):
    assert pipeline.sync(0, 1, 2, 3).success
    (pipeline.data_dir / "ledger" / "manifests" / "00000001.json").unlink()

    pipeline.now += 3600
    outcome = pipeline.sync(4)
    assert not outcome.success
    [failure] = outcome.result.get_step_failure_events()
    assert failure.step_key == "slack_audit_events"
    user = failure.step_failure_data.user_failure_data
    assert user is not None and "the ledger refused the commit" in user.description
    assert "ledger_chain_intact" in user.metadata["failed_checks"].value
    # The checks ran in this run and show the finding, not their last green result.
    assert "ledger_chain_intact" in outcome.failed_checks
    chain = outcome.check_metadata("ledger_chain_intact")
    assert chain["missing_sequences"] == [1]
    # What the UI shows for the check: this run's failed execution.
    key = dg.AssetCheckKey(dg.AssetKey("audit_ledger"), "ledger_chain_intact")
    [latest] = pipeline.instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    assert latest.run_id == outcome.run_id
    assert latest.status.value == "FAILED"
    assert pipeline.instance.get_materialized_partitions(EVENTS) == {
        pipeline.key(i) for i in range(4)
    }
    assert outcome.run_id not in pipeline.downstream_runs
    # The failed verification is recorded: the next run verifies fully.
    recorded = pipeline.instance.fetch_materializations(dg.AssetKey("audit_ledger"), limit=1)
    md = recorded.records[0].asset_materialization.metadata
    assert md["verification_status"].value == "failed"


def test_a_corrupted_data_file_met_by_the_sync_fails_the_checks_not_a_traceback(pipeline):
    assert pipeline.sync(0, 1, 2, 3).success
    victim = sorted((pipeline.data_dir / "lake").rglob("*.parquet"))[3]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    for i in range(100, len(data) - 100):
        data[i] ^= 0x5A  # the zstd pages and footer no longer decode
    victim.write_bytes(bytes(data))

    outcome = pipeline.sync(3)  # a rerun of the hour reads the file back
    assert not outcome.success
    [failure] = outcome.result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None and "the ledger refused the commit" in user.description
    assert "unreadable Parquet" in user.description
    assert outcome.failed_checks == {"ledger_files_match_manifests"}
    md = outcome.check_metadata("ledger_files_match_manifests")
    assert md["failed_locations"] == [victim.relative_to(pipeline.data_dir).as_posix()]


def test_missing_hours_beyond_the_tolerance_block_the_dataset(pipeline):
    pipeline.ledger = build_audit_ledger(
        coverage_start=pipeline.h0, clock=lambda: pipeline.now, coverage_tolerance_hours=1
    )
    pipeline.now = pipeline.h0 + 3600 + 20 * 60  # only hour 0 has closed
    assert pipeline.sync(0).success
    pipeline.now += 3600  # hour 1 missing: within the tolerance
    within = pipeline.verify()
    assert within.success and within.failed_checks == {"ledger_covers_every_hour"}
    assert within.checks["ledger_covers_every_hour"].severity == dg.AssetCheckSeverity.WARN

    pipeline.now += 3600  # hours 1 and 2 missing: beyond it
    beyond = pipeline.verify()
    # (the newest hour is now over two hours old too: ledger_fresh warns, never blocks)
    assert not beyond.success
    assert beyond.failed_checks == {"ledger_covers_every_hour", "ledger_fresh"}
    assert beyond.checks["ledger_covers_every_hour"].severity == dg.AssetCheckSeverity.ERROR
    assert beyond.run_id not in pipeline.downstream_runs
    assert beyond.check_metadata("ledger_covers_every_hour")["tolerance_hours"] == 1


def test_a_read_only_data_directory_fails_as_one_clear_message(pipeline):
    """A data directory nobody may write (a read-only mount): the run fails with a
    dg.Failure naming it (what the UI shows), not a raw exception. As root, modes are
    ignored, so the directories are made immutable (chattr), or the test skips."""
    import os
    import subprocess

    import pytest

    assert pipeline.sync(0).success
    data_dir = pipeline.data_dir
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "-R", "+i", str(data_dir)], capture_output=True).returncode:
            pytest.skip("root, and chattr +i is not available here")
        undo = ["chattr", "-R", "-i", str(data_dir)]
    else:
        dirs = [data_dir, *(p for p in data_dir.rglob("*") if p.is_dir())]
        for d in dirs:
            d.chmod(0o555)
        undo = ["chmod", "-R", "u+w", str(data_dir)]
    try:
        outcome = pipeline.sync(1)
    finally:
        subprocess.run(undo, check=True)
    assert not outcome.success
    failures = outcome.result.get_step_failure_events()
    assert failures, "the run failed without a step failure"
    user = failures[0].step_failure_data.user_failure_data
    assert user is not None, failures[0].step_failure_data.error
    assert "cannot lock the ledger" in user.description and str(data_dir) in user.description
