"""The ``audit_dataset`` asset builds the dataset from the verified ledger, and refuses a
tampered one while keeping the last good file."""

from __future__ import annotations

import shutil
import warnings

import dagster as dg
import pytest

from audit_pipeline.dataset import history
from audit_pipeline.dataset.build import dataset_path
from audit_pipeline.dataset.query import open_dataset
from audit_pipeline.defs.dataset import audit_dataset
from audit_pipeline.defs.resources import LedgerResource
from audit_pipeline.defs.witnesses import WitnessSetResource

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def _materialize(data_dir, *, trusted_keys: bool = True, **config):
    keys = None
    if trusted_keys:  # a copy of the keyring held outside the data directory, as deployed
        keys = data_dir.parent / "trusted-keyring.json"
        shutil.copyfile(data_dir / "ledger" / "keys" / "keyring.json", keys)
    return dg.materialize(
        [audit_dataset],
        resources={
            "ledger": LedgerResource(
                data_dir=str(data_dir), trusted_keys=None if keys is None else str(keys)
            ),
            "witnesses": WitnessSetResource(witnesses=""),
        },
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"audit_dataset": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def test_asset_builds_the_dataset_with_metadata(scenario_ledger, data_dir, monkeypatch):
    monkeypatch.delenv("AUDIT_DATASET", raising=False)
    result = _materialize(data_dir)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    con = open_dataset(dataset_path(data_dir))
    events = con.sql("SELECT count(*) FROM audit_events").fetchall()[0][0]
    assert meta["events"].value == meta["dagster/row_count"].value == events
    assert meta["tree_size"].value == 6
    assert meta["verification"].value == "full"
    runs = history.load_runs(data_dir)
    assert runs[-1].trigger.startswith("dagster run ") and runs[-1].ok


def test_asset_fails_on_a_tampered_ledger_and_keeps_the_old_dataset(scenario_ledger, data_dir):
    assert _materialize(data_dir).success
    before = dataset_path(data_dir).read_bytes()
    victim = next((data_dir / "lake").rglob("*.parquet"))
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-1])
    result = _materialize(data_dir, full_verification=True)
    assert not result.success
    assert dataset_path(data_dir).read_bytes() == before
    assert history.load_runs(data_dir)[-1].ok is False


def test_asset_builds_incrementally_unless_asked_for_a_full_rebuild(scenario_ledger, data_dir):
    builds = []
    for config in ({}, {}, {"full_rebuild": True}):
        result = _materialize(data_dir, **config)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        meta = event.materialization.metadata
        builds.append((meta["build"].value, meta["data_files_read"].value))
    assert builds == [("full", 5), ("incremental", 0), ("full", 5)]


def test_code_location_loads_the_asset():
    from audit_pipeline.definitions import defs

    loaded = defs()
    spec = loaded.resolve_assets_def("audit_dataset")
    assert dg.AssetKey("audit_ledger") in spec.asset_deps[dg.AssetKey("audit_dataset")]
    assert spec.group_names_by_key[dg.AssetKey("audit_dataset")] == "audit"
    assert "duckdb" in spec.specs_by_key[dg.AssetKey("audit_dataset")].kinds


@pytest.fixture(autouse=True)
def _no_env_dataset(monkeypatch):
    monkeypatch.delenv("AUDIT_DATASET", raising=False)


def test_asset_refuses_to_publish_on_unanchored_keys(scenario_ledger, data_dir, monkeypatch):
    monkeypatch.delenv("AUDIT_TRUSTED_KEYS", raising=False)
    result = _materialize(data_dir, trusted_keys=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None and "unanchored" in user.description
    assert not dataset_path(data_dir).exists()
