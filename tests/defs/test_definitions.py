"""The code location as the UI shows it: assets, checks, jobs, schedule, sensors, resources."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from audit_pipeline.definitions import defs as load_defs
from audit_pipeline.defs import env_flag, env_int
from audit_pipeline.defs.assets import BACKFILL_HOURS_PER_RUN, SYNC_POOL
from audit_pipeline.defs.checks import LEDGER_CHECKS, check_for_code
from audit_pipeline.defs.partitions import start_hour_from_env
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import FindingCode

REPO = Path(__file__).resolve().parents[2]
EVENTS = dg.AssetKey("slack_audit_events")
LEDGER = dg.AssetKey("audit_ledger")
ACTIVITIES = dg.AssetKey("slack_workflow_activity")


@pytest.fixture(scope="module")
def code_location() -> dg.Definitions:
    definitions = load_defs()
    dg.Definitions.validate_loadable(definitions)
    return definitions


def test_the_assets_and_their_lineage(code_location):
    graph = code_location.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    assert {EVENTS, ACTIVITIES, LEDGER} <= keys
    # The ledger is fed by both audited sources (issue 14: workflow activities).
    assert graph.get(LEDGER).parent_keys == {EVENTS, ACTIVITIES}
    assert graph.get(ACTIVITIES).is_executable
    if dg.AssetKey("audit_dataset") in keys:  # the dataset issue's asset, when present
        assert LEDGER in graph.get(dg.AssetKey("audit_dataset")).parent_keys


def test_asset_catalogue_entries(code_location):
    for key, kinds in ((EVENTS, {"slack", "parquet"}), (LEDGER, {"python"})):
        spec = code_location.resolve_assets_def(key).specs_by_key[key]
        assert spec.kinds == kinds
        assert spec.owners == ["team:security"] and spec.group_name == "audit"
        assert spec.description and len(spec.description) > 100
        refs = spec.metadata["dagster/code_references"].code_references
        assert refs and refs[0].file_path.endswith("audit_pipeline/defs/assets.py")
    events = code_location.resolve_assets_def(EVENTS)
    spec = events.specs_by_key[EVENTS]
    assert [c.name for c in spec.metadata["dagster/column_schema"].columns][:2] == [
        "event_id",
        "date_create",
    ]
    partitions = spec.partitions_def
    assert isinstance(partitions, dg.HourlyPartitionsDefinition)
    assert partitions.timezone == "UTC"
    assert partitions.start == datetime.fromtimestamp(start_hour_from_env(), UTC)
    assert events.backfill_policy == dg.BackfillPolicy.multi_run(BACKFILL_HOURS_PER_RUN)
    assert events.op.pool == SYNC_POOL


def test_ledger_checks_one_per_invariant(code_location):
    graph = code_location.resolve_asset_graph()
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == LEDGER}
    assert checks == {c.name for c in LEDGER_CHECKS}
    assert all(name.startswith("ledger_") for name in checks)


def test_every_finding_code_fails_exactly_one_check():
    for code in FindingCode:
        owners = [c.name for c in LEDGER_CHECKS if code in c.codes]
        assert len(owners) == 1, f"{code.value} belongs to {owners}"
        assert check_for_code(code).name == owners[0]


def test_jobs_schedules_sensors_and_resources(code_location):
    job = code_location.resolve_job_def("hourly_sync")
    assert {EVENTS, LEDGER} <= set(job.asset_layer.executable_asset_keys)
    assert job.partitions_def == code_location.resolve_assets_def(EVENTS).partitions_def
    assert [s.name for s in code_location.schedules] == ["hourly_sync_schedule"]
    assert {s.name for s in code_location.sensors} == {
        "missing_hours_sensor",
        "slack_run_failure_alert",
        "slack_check_failure_alert",
    }
    resources = code_location.resources
    assert set(resources) >= {"slack_audit", "ledger", "slack_notifier"}
    assert resources["slack_audit"].token == dg.EnvVar("SLACK_AUDIT_TOKEN")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUDIT_START_HOUR": "yesterday"}, "AUDIT_START_HOUR: not a UTC hour: 'yesterday'"),
        ({"AUDIT_START_HOUR": "2026-11-28T13:30"}, "AUDIT_START_HOUR"),
    ],
)
def test_a_bad_start_hour_names_the_variable(env, message):
    with pytest.raises(ConfigurationError, match=message):
        start_hour_from_env(env)


def test_start_hour_accepts_the_cli_and_partition_spellings():
    want = int(datetime(2026, 11, 28, 13, tzinfo=UTC).timestamp())
    assert start_hour_from_env({"AUDIT_START_HOUR": "2026-11-28T13"}) == want
    assert start_hour_from_env({"AUDIT_START_HOUR": "2026-11-28-13:00"}) == want


def test_settings_errors_name_the_variable():
    with pytest.raises(ConfigurationError, match=r"AUDIT_SYNC_MINUTE must be in 0\.\.59, got 75"):
        env_int("AUDIT_SYNC_MINUTE", 5, minimum=0, maximum=59, environ={"AUDIT_SYNC_MINUTE": "75"})
    with pytest.raises(ConfigurationError, match="X must be an integer, got 'five'"):
        env_int("X", 5, minimum=0, environ={"X": "five"})
    with pytest.raises(ConfigurationError, match="AUDIT_AUTOMATION must be on or off"):
        env_flag("AUDIT_AUTOMATION", True, environ={"AUDIT_AUTOMATION": "maybe"})
    assert env_int("X", 5, minimum=0, environ={}) == 5
    assert env_flag("X", True, environ={"X": "off"}) is False


@pytest.mark.e2e
@pytest.mark.slow
def test_dg_check_defs_passes():
    """``dg check defs`` is what ``make test`` relies on to catch a code location that
    would not load in the UI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_HOME"))}
    dg_cli = Path(sys.executable).with_name("dg")
    done = subprocess.run(
        [str(dg_cli), "check", "defs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr
