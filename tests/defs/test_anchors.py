"""The insider's moves against the Dagster layer, each through real runs: a key added to the
data directory, the recorded checkpoint wiped or rewritten, recorded state in the future, and
a failed verification that must not go green by itself."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pytest

from audit_pipeline.defs.anchors import SIGNER_SOURCE
from audit_pipeline.defs.resources import LedgerResource
from audit_pipeline.ledger.keys import init_key

LEDGER = dg.AssetKey("audit_ledger")
CONSISTENCY = "ledger_consistent_with_recorded_checkpoint"


def _synced(pipeline, *hours: int):
    outcome = pipeline.sync(*hours)
    assert outcome.success, outcome.failed_checks  # (coverage and freshness do not block)
    return outcome


def _drop_tail(pipeline, *sequences: int) -> None:
    """Remove every trace of the newest batches: a smaller ledger that verifies by itself."""
    ledger_dir = pipeline.data_dir / "ledger"
    for seq in sequences:
        (ledger_dir / "manifests" / f"{seq:08d}.json").unlink()
        (ledger_dir / "checkpoints" / f"{seq + 1:08d}.checkpoint").unlink()
        for path in (pipeline.data_dir / "lake").rglob(f"{seq:08d}-*.parquet"):
            path.unlink()


def _flip_byte(path: Path) -> bytes:
    original = path.read_bytes()
    path.chmod(0o644)
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return original


def _rewrite_record(pipeline, **changes) -> None:
    """Report a new audit_ledger materialization: the latest record with ``changes`` (what
    an operator can do from the UI, the GraphQL API or by editing the instance's database)."""
    record = pipeline.instance.fetch_materializations(LEDGER, limit=1).records[0]
    metadata = dict(record.asset_materialization.metadata)
    metadata.update(changes)
    pipeline.instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=LEDGER, metadata=metadata)
    )


def _problems(outcome) -> list[str]:
    return outcome.check_metadata(CONSISTENCY).get("anchor_problems", [])


# -- keys ------------------------------------------------------------------------------------


def _attacker_syncs_hour_4(pipeline, tmp_path: Path, trusted_keys: Path | None):
    attacker_key = tmp_path / "attacker-key"
    init_key(pipeline.data_dir, attacker_key, name="attacker", now=pipeline.h0)
    pipeline.resources["ledger"] = LedgerResource(
        data_dir=str(pipeline.data_dir),
        signing_key=str(attacker_key),
        trusted_keys=None if trusted_keys is None else str(trusted_keys),
    )
    pipeline.now += 3600
    return pipeline.sync(4)


def test_a_key_added_to_the_data_directory_fails_against_the_trusted_keys(
    pipeline, tmp_path, trusted_keys
):
    _synced(pipeline, 0, 1, 2, 3)
    outcome = _attacker_syncs_hour_4(pipeline, tmp_path, trusted_keys)
    assert not outcome.success
    assert "ledger_chain_intact" in outcome.failed_checks
    assert outcome.checks["ledger_keys_anchored"].passed
    chain = outcome.check_metadata("ledger_chain_intact")
    assert set(chain["finding_codes"]) == {"unknown_key"}
    assert "ledger/manifests/00000004.json" in chain["failed_locations"]
    assert outcome.run_id not in pipeline.downstream_runs
    assert outcome.metadata("audit_ledger")["checkpoint_tree_size"] == 4


def test_without_trusted_keys_every_run_says_the_keys_are_unanchored(pipeline_factory, tmp_path):
    pipeline = pipeline_factory(anchored_keys=False)
    first = pipeline.sync(0, 1, 2, 3)
    assert first.failed_checks == {"ledger_keys_anchored"}
    assert not first.success and first.run_id not in pipeline.downstream_runs
    assert "AUDIT_TRUSTED_KEYS" in first.checks["ledger_keys_anchored"].description
    # The attacker's batch verifies with the data directory's keyring: only this check shows it.
    outcome = _attacker_syncs_hour_4(pipeline, tmp_path, None)
    assert outcome.failed_checks == {"ledger_keys_anchored"}
    assert "unanchored" in outcome.metadata("audit_ledger")["keys"]


def test_trusted_keys_inside_the_data_directory_are_refused(pipeline, data_dir, key_path):
    _synced(pipeline, 0)
    pipeline.resources["ledger"] = LedgerResource(
        data_dir=str(data_dir),
        signing_key=str(key_path),
        trusted_keys=str(data_dir / "ledger" / "keys" / "keyring.json"),
    )
    outcome = pipeline.verify()
    assert not outcome.success
    [failure] = outcome.result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None, "a dg.Failure, not a raw exception"
    assert "inside the data directory" in user.description
    assert user.metadata["error"].value == "ConfigurationError"


# -- the recorded checkpoint -------------------------------------------------------------------


def test_a_wiped_record_fails_until_a_person_adopts_the_ledger(pipeline):
    _synced(pipeline, 0, 1, 2, 3)
    pipeline.instance.wipe_assets([LEDGER])  # what `dagster asset wipe audit_ledger` does

    outcome = pipeline.verify()
    assert not outcome.success and outcome.failed_checks == {CONSISTENCY}
    assert "no recorded checkpoint" in outcome.checks[CONSISTENCY].description
    assert outcome.check_metadata(CONSISTENCY)["recorded_checkpoint_size"] == "none recorded"
    assert outcome.metadata("audit_ledger")["verified"] is False
    # It does not go green by itself: the failed run recorded no checkpoint to trust.
    assert pipeline.verify().failed_checks == {CONSISTENCY}

    adopted = pipeline.verify(adopt=True)
    assert adopted.success and adopted.failed_checks == set()
    assert adopted.metadata("audit_ledger")["verification"] == "full"
    assert "no recorded checkpoint" in adopted.check_metadata(CONSISTENCY)["adopted_despite"][0]
    assert pipeline.verify().success


def test_a_wipe_after_tail_truncation_fails_even_when_adopted(pipeline):
    _synced(pipeline, 0, 1, 2, 3)
    _drop_tail(pipeline, 3, 2)
    pipeline.instance.wipe_assets([LEDGER])

    for adopt in (False, True):
        outcome = pipeline.verify(adopt=adopt)
        assert not outcome.success and CONSISTENCY in outcome.failed_checks
        assert any("the ledger has 2 batches" in p and "saw 4" in p for p in _problems(outcome))


def test_a_rolled_back_record_fails_against_the_syncs_checkpoints(pipeline):
    _synced(pipeline, 0, 1)
    old = pipeline.instance.fetch_materializations(LEDGER, limit=1).records[0]
    old_checkpoint = old.asset_materialization.metadata["checkpoint"]
    _synced(pipeline, 2, 3)
    # The insider truncates the ledger and rolls Dagster's record back to match it.
    _drop_tail(pipeline, 3, 2)
    _rewrite_record(pipeline, checkpoint=old_checkpoint, checkpoint_tree_size=2)

    outcome = pipeline.verify()
    assert not outcome.success and CONSISTENCY in outcome.failed_checks
    problems = _problems(outcome)
    assert any("tree size 2, smaller than the 4" in p for p in problems)
    assert any("the ledger has 2 batches" in p for p in problems)


def test_an_unreadable_record_fails_and_verification_is_full(pipeline):
    _synced(pipeline, 0, 1, 2, 3)
    _rewrite_record(pipeline, checkpoint=dg.MetadataValue.text("not a checkpoint"))
    outcome = pipeline.verify()
    assert outcome.failed_checks == {CONSISTENCY}
    assert "cannot be read" in outcome.checks[CONSISTENCY].description
    assert outcome.metadata("audit_ledger")["verification"] == "full"


@pytest.mark.parametrize("when", ["future", "nan"])
def test_a_last_full_verification_in_the_future_does_not_switch_full_verification_off(
    pipeline, when
):
    """A time in the future, or NaN (which compares false with everything, so would pass
    for "recent" for ever), is a rewritten record: the run is full and the check fails."""
    _synced(pipeline, 0, 1, 2, 3)
    value = float(pipeline.now + 30 * 86_400) if when == "future" else math.nan
    _rewrite_record(pipeline, last_full_verification=dg.MetadataValue.timestamp(value))
    victim = sorted((pipeline.data_dir / "lake").rglob("*.parquet"))[0]
    _flip_byte(victim)

    outcome = pipeline.verify()  # an ordinary run: would be incremental
    md = outcome.metadata("audit_ledger")
    assert md["verification"] == "full"
    assert "in the future" in md["verification_reason"]
    assert outcome.failed_checks == {CONSISTENCY, "ledger_files_match_manifests"}
    assert any("in the future" in p for p in _problems(outcome))
    assert "last_full_verification" not in md, "the impossible time is not carried on"


def test_a_failed_full_verification_stays_failed_until_a_full_one_passes(pipeline):
    _synced(pipeline, 0, 1, 2, 3)
    victim = sorted((pipeline.data_dir / "lake").rglob("*.parquet"))[1]
    original = _flip_byte(victim)

    failed = pipeline.verify(full=True)
    assert failed.failed_checks == {"ledger_files_match_manifests"}
    assert failed.metadata("audit_ledger")["verification_status"] == "failed"

    # The next ordinary run would only check what is new since the checkpoint: it is full.
    again = pipeline.verify()
    assert not again.success and again.failed_checks == {"ledger_files_match_manifests"}
    md = again.metadata("audit_ledger")
    assert md["verification"] == "full" and "last verification failed" in md["verification_reason"]
    assert again.run_id not in pipeline.downstream_runs

    victim.write_bytes(original)  # the file is put back: a full verification passes again
    restored = pipeline.verify()
    assert restored.success and restored.metadata("audit_ledger")["verification"] == "full"
    assert pipeline.verify().metadata("audit_ledger")["verification"].startswith("incremental")


def test_a_new_dagster_instance_cannot_adopt_a_ledger_the_signer_saw_longer(pipeline_factory):
    first = pipeline_factory()
    _synced(first, 0, 1, 2, 3)
    _drop_tail(first, 3, 2)
    # Every Dagster record is gone (a new instance); the signer's state beside the key is not.
    fresh = pipeline_factory(instance=dg.DagsterInstance.ephemeral())
    outcome = fresh.verify(adopt=True)
    assert not outcome.success and CONSISTENCY in outcome.failed_checks
    anchors = outcome.check_metadata(CONSISTENCY)["anchors"]
    assert {"source": SIGNER_SOURCE, "tree_size": 4} in anchors
    assert any("the ledger has 2 batches but signer state" in p for p in _problems(outcome))
