"""slack_audit_events and audit_ledger materialized against the emulator and a real ledger."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import pytest

from audit_pipeline.defs.anchors import checkpoint_tree_size
from audit_pipeline.lake import EVENT_SCHEMA, PARQUET_FORMAT
from audit_pipeline.ledger import Ledger
from audit_pipeline.ledger.keys import init_key

LEDGER_CHECKS = {
    "ledger_chain_intact",
    "ledger_files_match_manifests",
    "ledger_has_no_unreferenced_files",
    "ledger_event_ids_unique",
    "ledger_consistent_with_recorded_checkpoint",
    "ledger_keys_anchored",
    "ledger_covers_every_hour",
    "ledger_fresh",
    "ledger_witnesses_agree",
    "ledger_witness_quorum",
}


def entries_in_hour(emulator, start: int) -> list[dict]:
    return [e for e in emulator.entries() if start <= e["date_create"] < start + 3600]


def test_one_hour_is_synced_with_its_metadata(pipeline, emulator):
    outcome = pipeline.sync(0)
    assert outcome.success
    md = outcome.metadata("slack_audit_events")
    truth = entries_in_hour(emulator, pipeline.h0)
    assert truth, "the emulator must serve events in hour 0"
    assert md["dagster/row_count"] == len({e["id"] for e in truth})
    assert md["events_committed"] == md["dagster/row_count"]
    assert [c.name for c in md["dagster/column_schema"].columns] == EVENT_SCHEMA.names
    assert md["batch_sequences"] == [0]
    assert md["hour"] == "2026-11-20T00:00Z"
    assert md["late_events"] == 0
    # Run totals are on the run, not on the hour's materialization.
    tags = pipeline.instance.get_run_by_id(outcome.run_id).tags
    assert int(tags["audit_pipeline/api_pages"]) >= 1
    assert int(tags["audit_pipeline/api_requests"]) >= int(tags["audit_pipeline/api_pages"])
    assert tags["audit_pipeline/api_retries"] == "0"
    assert tags["audit_pipeline/events_committed"] == str(md["events_committed"])
    top_action, top_count = Counter(e["action"] for e in truth).most_common(1)[0]
    assert f"| {top_action} | {top_count} |" in md["actions"]
    ledger = Ledger(pipeline.data_dir, file_format=PARQUET_FORMAT)
    assert md["checkpoint"].encode() == ledger.latest_checkpoint()
    assert [(m.manifest.kind, m.manifest.event_count) for m in ledger.manifests()] == [
        ("hour", md["dagster/row_count"])
    ]


def test_rerunning_an_hour_commits_nothing_twice(pipeline):
    first = pipeline.sync(1).metadata("slack_audit_events")
    again = pipeline.sync(1)
    assert again.success
    md = again.metadata("slack_audit_events")
    assert md["events_committed"] == 0 and md["batches_committed"] == 0
    assert md["dagster/row_count"] == first["dagster/row_count"] > 0
    assert Ledger(pipeline.data_dir, file_format=PARQUET_FORMAT).tree_size() == 1


def test_a_backfill_run_syncs_a_range_of_hours_in_one_run(pipeline, emulator):
    pipeline.now = pipeline.h0 + 3 * 3600 + 20 * 60  # hour 2 is the newest settled one
    outcome = pipeline.sync(0, 1, 2)
    assert outcome.success
    materialized = outcome.materialized("slack_audit_events")
    assert [m.partition for m in materialized] == [pipeline.key(i) for i in range(3)]
    # Each hour's materialization carries its own rows, batch and checkpoint.
    checkpoint_sizes = []
    for i, m in enumerate(materialized):
        md = {k: v.value for k, v in m.metadata.items()}
        held = len(entries_in_hour(emulator, pipeline.h0 + i * 3600))
        assert md["dagster/row_count"] == md["events_committed"] == held > 0
        assert md["batch_sequences"] == [i] and md["hour"] == f"2026-11-20T0{i}:00Z"
        checkpoint_sizes.append(checkpoint_tree_size(md["checkpoint"].encode()))
    assert checkpoint_sizes == [1, 2, 3]
    tags = pipeline.instance.get_run_by_id(outcome.run_id).tags
    assert tags["audit_pipeline/hours_committed"] == "3"
    assert tags["audit_pipeline/batches_committed"] == "3"
    assert set(pipeline.instance.get_materialized_partitions(dg.AssetKey("slack_audit_events")))
    assert outcome.failed_checks == set()


def test_clean_ledger_passes_every_check_and_dagster_records_the_checkpoint(pipeline):
    first = pipeline.sync(0, 1, 2, 3)
    assert first.success
    assert set(first.checks) == LEDGER_CHECKS
    assert first.failed_checks == set()
    md = first.metadata("audit_ledger")
    assert md["verified"] is True and md["verification"] == "full"
    ledger = Ledger(pipeline.data_dir, file_format=PARQUET_FORMAT)
    assert md["checkpoint"].encode() == ledger.latest_checkpoint()
    assert md["checkpoint_tree_size"] == 4 == md["tree_size"]
    assert pipeline.downstream_runs == [first.run_id]

    # The next verification starts from the checkpoint the event log holds.
    second = pipeline.verify()
    assert second.success and second.failed_checks == set()
    again = second.metadata("audit_ledger")
    assert again["verification"] == "incremental from batch 4"
    # every data file re-hashed (file level), no row re-derived: no batch is new
    assert again["data_files_checked"] == 4 and again["events_checked"] == 0
    assert again["verification_depth"].startswith("row level for batches from 4; file level")
    assert md["verification_depth"] == "row level (every leaf re-derived)"
    consistency = second.check_metadata("ledger_consistent_with_recorded_checkpoint")
    assert consistency["recorded_checkpoint_size"] == 4
    assert consistency["consistency_proofs"] == 1


def test_blocking_checks_are_the_integrity_ones(pipeline):
    specs = {spec.key.name: spec for spec in pipeline.ledger.check_specs}
    assert set(specs) == LEDGER_CHECKS
    non_blocking = {name for name, spec in specs.items() if not spec.blocking}
    assert non_blocking == {"ledger_fresh", "ledger_witness_quorum"}, (
        "coverage blocks beyond its tolerance"
    )


# -- tampering: each attack fails the right check, names what failed, blocks downstream -----


def _data_files(pipeline) -> list:
    return sorted((pipeline.data_dir / "lake").rglob("*.parquet"))


def _synced(pipeline, hours: int = 4):
    outcome = pipeline.sync(*range(hours))
    assert outcome.success and outcome.failed_checks == set()
    return outcome


def _assert_blocked(pipeline, outcome, failing: str, *also: str) -> None:
    """The attack fails ``failing`` (plus the checks its side effects rightly fail), the
    run fails, and nothing downstream of the ledger runs."""
    assert not outcome.success
    assert outcome.failed_checks == {failing, *also}
    assert outcome.checks[failing].severity == dg.AssetCheckSeverity.ERROR
    assert outcome.run_id not in pipeline.downstream_runs


def test_a_flipped_byte_fails_files_match_manifests(pipeline):
    _synced(pipeline)
    victim = _data_files(pipeline)[1]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))

    outcome = pipeline.verify(full=True)
    _assert_blocked(pipeline, outcome, "ledger_files_match_manifests")
    md = outcome.check_metadata("ledger_files_match_manifests")
    rel = victim.relative_to(pipeline.data_dir).as_posix()
    assert md["failed_locations"] == [rel]
    assert "file_hash_mismatch" in md["finding_codes"]
    assert rel in md["first_failure"]
    # A failed verification keeps trusting the last good checkpoint.
    assert outcome.metadata("audit_ledger")["checkpoint_tree_size"] == 4
    assert outcome.metadata("audit_ledger")["verified"] is False


def test_a_deleted_middle_manifest_fails_chain_intact(pipeline):
    _synced(pipeline)
    (pipeline.data_dir / "ledger" / "manifests" / "00000001.json").unlink()

    outcome = pipeline.verify()
    # Batch 1's data file is now outside the ledger, the recorded checkpoint covers a
    # missing manifest, and hour 1 has no batch: each of those checks says so too.
    _assert_blocked(
        pipeline,
        outcome,
        "ledger_chain_intact",
        "ledger_has_no_unreferenced_files",
        "ledger_consistent_with_recorded_checkpoint",
        "ledger_covers_every_hour",
    )
    md = outcome.check_metadata("ledger_chain_intact")
    assert md["missing_sequences"] == [1]
    assert md["finding_codes"] == {"missing_manifest": 1}
    assert md["failed_locations"] == ["ledger/manifests/00000001.json"]
    orphan = outcome.check_metadata("ledger_has_no_unreferenced_files")["failed_locations"]
    assert orphan == ["lake/date=2026-11-20/hour=01/00000001-hour.parquet"]
    consistency = outcome.check_metadata("ledger_consistent_with_recorded_checkpoint")
    assert consistency["finding_codes"] == {"consistency_failure": 1}
    assert outcome.check_metadata("ledger_covers_every_hour")["missing_hour_list"] == [
        "2026-11-20T01:00Z"
    ]


def test_deleted_newest_batches_fail_against_the_checkpoint_dagster_recorded(pipeline):
    _synced(pipeline)
    # Remove every trace of batches 2 and 3: manifests, data files and checkpoints, so the
    # ledger on disk is a consistent, smaller log. Only Dagster's record shows the cut.
    ledger_dir = pipeline.data_dir / "ledger"
    for seq in (2, 3):
        (ledger_dir / "manifests" / f"{seq:08d}.json").unlink()
    for size in (3, 4):
        (ledger_dir / "checkpoints" / f"{size:08d}.checkpoint").unlink()
    for path in _data_files(pipeline):
        if path.name.startswith(("00000002", "00000003")):
            path.unlink()

    outcome = pipeline.verify(full=True)
    # The cut also shows as missing hours and a stale newest hour (not blocking).
    _assert_blocked(
        pipeline,
        outcome,
        "ledger_consistent_with_recorded_checkpoint",
        "ledger_covers_every_hour",
        "ledger_fresh",
    )
    md = outcome.check_metadata("ledger_consistent_with_recorded_checkpoint")
    assert md["finding_codes"] == {"tail_truncated": 1}
    assert md["recorded_checkpoint_size"] == 4 and md["tree_size"] == 2
    assert md["failed_locations"] == ["trusted checkpoint"]
    # The witness is not rewritten by the failed run: the next run still sees the cut.
    assert checkpoint_tree_size(outcome.metadata("audit_ledger")["checkpoint"].encode()) == 4
    assert "ledger_consistent_with_recorded_checkpoint" in pipeline.verify().failed_checks


def test_an_injected_file_fails_no_unreferenced_files(pipeline):
    _synced(pipeline)
    hour_dir = _data_files(pipeline)[0].parent
    injected = hour_dir / "00000009-hour.parquet"
    injected.write_bytes(_data_files(pipeline)[0].read_bytes())

    outcome = pipeline.verify()
    _assert_blocked(pipeline, outcome, "ledger_has_no_unreferenced_files")
    md = outcome.check_metadata("ledger_has_no_unreferenced_files")
    assert md["failed_locations"] == [injected.relative_to(pipeline.data_dir).as_posix()]
    assert md["finding_codes"] == {"unreferenced_file": 1}


# -- coverage and freshness: reported, not blocking --------------------------------------------


def test_a_missing_hour_fails_coverage_without_blocking(pipeline):
    pipeline.sync(0)
    outcome = pipeline.sync(2)
    assert outcome.success, "coverage is not blocking: the gap is the sensor's work"
    assert outcome.failed_checks == {"ledger_covers_every_hour"}
    md = outcome.check_metadata("ledger_covers_every_hour")
    assert md["missing_hour_list"] == ["2026-11-20T01:00Z", "2026-11-20T03:00Z"]
    assert md["missing_hours"] == 2 and md["expected_through"] == "2026-11-20T03:00Z"
    assert outcome.run_id in pipeline.downstream_runs
    # A gap is not an integrity failure: the committed batches verified, so the new
    # checkpoint is recorded as the witness.
    ledger_md = outcome.metadata("audit_ledger")
    assert ledger_md["verified"] is True and ledger_md["checkpoint_tree_size"] == 2


@pytest.mark.parametrize(("hours_late", "fresh"), [(1.9, True), (2.5, False)])
def test_freshness_fails_when_the_newest_hour_is_over_two_hours_old(pipeline, hours_late, fresh):
    _synced(pipeline)
    pipeline.now = pipeline.h0 + 4 * 3600 + hours_late * 3600
    outcome = pipeline.verify()
    assert outcome.success
    assert outcome.checks["ledger_fresh"].passed is fresh
    assert outcome.checks["ledger_fresh"].severity == dg.AssetCheckSeverity.WARN
    md = outcome.check_metadata("ledger_fresh")
    assert md["newest_hour"] == "2026-11-20T03:00Z"
    assert md["hours_since_newest_hour_closed"] == pytest.approx(hours_late, abs=0.01)


def test_swapped_keys_fail_against_the_checkpoint_dagster_recorded(pipeline_factory, tmp_path):
    # Without AUDIT_TRUSTED_KEYS the data directory's keyring is all there is to check with.
    pipeline = pipeline_factory(anchored_keys=False)
    first = pipeline.sync(0, 1, 2, 3)
    assert first.failed_checks == {"ledger_keys_anchored"}
    # An attacker re-keys the data directory so a rewritten history would verify with it.
    keyring = pipeline.data_dir / "ledger" / "keys" / "keyring.json"
    keyring.unlink()
    init_key(pipeline.data_dir, tmp_path / "attacker-key", name="attacker", now=pipeline.h0)

    outcome = pipeline.verify()
    assert not outcome.success
    assert "ledger_consistent_with_recorded_checkpoint" in outcome.failed_checks
    md = outcome.check_metadata("ledger_consistent_with_recorded_checkpoint")
    assert md["failed_locations"] == ["trusted checkpoint"]
    assert md["finding_codes"] == {"unknown_key": 1}
    chain = outcome.check_metadata("ledger_chain_intact")
    assert chain["finding_codes"] == {"unknown_key": 8}, "4 manifests and 4 checkpoints"
