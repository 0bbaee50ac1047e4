"""Workflow runs for auditors: runs, steps, approvals, failures and who published them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from audit_pipeline.dataset.build import build_dataset
from audit_pipeline.dataset.evidence import export_evidence, verify_bundle
from audit_pipeline.dataset.report import write_report
from audit_pipeline.ingest import sync_hours
from audit_pipeline.ingest_activities import sync_activity_hours
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger
from audit_pipeline.slack.activities_client import ActivitiesApiSettings, ActivitySource
from audit_pipeline.slack.activities_generator import (
    APPROVAL_FUNCTION,
    publish_entries,
    workflow_plans,
)
from audit_pipeline.slack.client import AuditApiSettings, AuditLogSource
from audit_pipeline.slack.emulator import running_emulator

from ..conftest import SettableClock as Clock

H = 1795860000  # 2026-11-28T10:00Z
HOUR = 3600
SEED = 4


def sync_both(emu, ledger, start: int, end: int, run_id: str) -> None:
    audit = AuditLogSource(
        AuditApiSettings(token=emu.token, base_url=emu.base_url, max_calls_per_minute=0)
    )
    activities = ActivitySource(
        ActivitiesApiSettings(
            token=emu.config.activities_token,
            base_url=emu.base_url.replace("/audit/v1/", "/api/"),
            max_calls_per_minute=0,
            page_size=50,
        )
    )
    sync_hours(start=start, end=end, source=audit, ledger=ledger, run_id=run_id, lookback_hours=1)
    sync_activity_hours(
        start=start, end=end, source=activities, ledger=ledger, run_id=run_id, lookback_hours=1
    )


def approval_run(blobs: list[bytes]) -> tuple[str, dict, dict]:
    """The first run with a decided approval step: (trace id, its step result, its start)."""
    activities = [json.loads(b) for b in blobs]
    for a in activities:
        p = a["payload"]
        if p.get("function_name") == APPROVAL_FUNCTION and "decision" in p.get("outputs", {}):
            run = [x for x in activities if x["trace_id"] == a["trace_id"]]
            if run[0]["event_type"] == "trigger_executed":
                return a["trace_id"], a, run[0]
    raise AssertionError("no decided approval among the generated runs")


@pytest.fixture
def two_hours(ledger, tmp_path: Path):
    clock = Clock(H + 3 * HOUR)
    with running_emulator(
        start=H,
        end=H + 2 * HOUR,
        seed=SEED,
        events_per_hour=30,
        workflow_runs_per_hour=8,
        rate_limit_per_min=0,
        activities_rate_limit_per_min=0,
        clock=clock,
    ) as emu:
        sync_both(emu, ledger, H, H + 2 * HOUR, "gen")
        blobs = [
            b
            for b in emu.activities.all_activities()
            if json.loads(b)["created"] < (H + 2 * HOUR) * 10**6
        ]
    return blobs


def query(data_dir: Path, sql: str, *params):
    con = duckdb.connect(str(data_dir / "audit.duckdb"), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def check_approval_run(data_dir: Path, blobs: list[bytes]) -> None:
    trace_id, step, first = approval_run(blobs)
    runs = query(
        data_dir,
        "SELECT workflow_id, trigger_type, outcome, total_steps FROM workflow_runs "
        "WHERE trace_id = ?",
        trace_id,
    )
    assert len(runs) == 1
    workflow_id = first["component_id"]
    plan = next(p for p in workflow_plans(SEED) if p.workflow_id == workflow_id)
    assert runs[0][:2] == (workflow_id, plan.trigger_type)
    approvals = query(
        data_dir,
        "SELECT approver, decision, function_execution_id, decided_at FROM workflow_approvals "
        "WHERE trace_id = ?",
        trace_id,
    )
    assert [(a, d, f) for a, d, f, _ in approvals] == [
        (
            step["payload"]["outputs"]["approver"],
            step["payload"]["outputs"]["decision"],
            step["payload"]["function_execution_id"],
        )
    ]
    assert int(approvals[0][3].timestamp() * 10**6) == step["created"]
    linked = query(
        data_dir,
        "SELECT publish_event_id, published_by FROM workflow_run_configuration WHERE trace_id = ?",
        trace_id,
    )
    published = [
        e
        for e in publish_entries(SEED, H, H + 2 * HOUR)
        if e["entity"]["workflow_v2"]["id"] == workflow_id
        and e["date_create"] * 10**6 <= first["created"]
    ]
    latest = max(published, key=lambda e: e["date_create"])
    assert linked == [(latest["id"], latest["actor"]["user"]["id"])]


def test_generated_approval_run_once_with_its_approval_and_publisher(two_hours, ledger):
    result = build_dataset(ledger.data_dir)
    check_approval_run(ledger.data_dir, two_hours)
    ((runs, distinct),) = query(
        ledger.data_dir, "SELECT count(*), count(DISTINCT trace_id) FROM workflow_runs"
    )
    assert runs == distinct > 0
    ((records,),) = query(ledger.data_dir, "SELECT count(*) FROM workflow_activity")
    assert records == len(two_hours)
    # Coverage is per source: the audit hours count audit events only.
    ((hours, events),) = query(ledger.data_dir, "SELECT count(*), sum(events) FROM coverage")
    ((audit_events,),) = query(ledger.data_dir, "SELECT count(*) FROM audit_events")
    assert (hours, events) == (2, audit_events)
    ((hours, events),) = query(
        ledger.data_dir,
        "SELECT count(*) FILTER (WHERE committed), sum(events) FROM workflow_coverage",
    )
    assert (hours, events) == (2, records)
    failures = query(
        ledger.data_dir, "SELECT error, error_stage, failed_step FROM workflow_failures"
    )
    assert all(e and s and f for e, s, f in failures)
    errors = [
        b
        for b in two_hours
        if b'"workflow_execution_result"' in b and b'"exec_outcome":"Error"' in b
    ]
    assert len(failures) == len(errors) > 0
    comment = query(
        ledger.data_dir, "SELECT comment FROM duckdb_views() WHERE view_name = 'workflow_approvals'"
    )
    assert "Limits of what Slack exposes" in comment[0][0]
    assert result.mode in ("full", "incremental")
    # An incremental build keeps the audit rows and reloads the activities whole.
    again = build_dataset(ledger.data_dir)
    assert again.mode == "incremental", again.reason
    ((records,),) = query(ledger.data_dir, "SELECT count(*) FROM workflow_activity")
    assert records == len(two_hours)


def test_replayed_approval_run_gives_the_same_answers(two_hours, ledger, tmp_path: Path, data_dir):
    trace_id, _, _ = approval_run(two_hours)
    replay = tmp_path / "activities.jsonl"
    replay.write_bytes(b"\n".join(two_hours) + b"\n")
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(json.dumps(e) for e in publish_entries(SEED, H, H + 2 * HOUR)) + "\n"
    )
    other = tmp_path / "replayed"
    other.mkdir()
    (other / "ledger").mkdir()
    shutil.copytree(data_dir / "ledger" / "keys", other / "ledger" / "keys")
    replayed = Ledger(other, file_format=PARQUET_FORMAT, signer=ledger.signer, origin="t/replay")
    with running_emulator(
        events_file=events,
        activities_file=replay,
        start=H,
        end=H + 2 * HOUR,
        rate_limit_per_min=0,
        clock=Clock(H + 3 * HOUR),
    ) as emu:
        sync_both(emu, replayed, H, H + 2 * HOUR, "replay")
    build_dataset(other)
    check_approval_run(other, two_hours)
    raw = query(other, "SELECT raw_bytes FROM workflow_activity WHERE trace_id = ?", trace_id)
    assert sorted(r for (r,) in raw) == sorted(b for b in two_hours if trace_id.encode() in b)


def test_the_report_has_a_workflow_runs_section(two_hours, ledger, tmp_path: Path):
    build_dataset(ledger.data_dir)
    _, step, _ = approval_run(two_hours)
    page = write_report(tmp_path / "report.html", data_dir=ledger.data_dir).read_text()
    section = page[page.index("<h2>Workflow runs</h2>") :]
    assert f"{len(two_hours):,} committed records" in section
    assert step["payload"]["outputs"]["approver"] in section
    assert "Version published by" in section and "Failed runs" in section


def test_the_report_says_when_there_is_no_workflow_activity(scenario_dataset, tmp_path: Path):
    page = write_report(tmp_path / "report.html", data_dir=scenario_dataset).read_text()
    assert "No workflow activity in this ledger" in page


def test_an_evidence_bundle_carries_and_verifies_both_sources(two_hours, ledger, tmp_path: Path):
    bundle = tmp_path / "bundle"
    export_evidence(ledger.data_dir, start=H + HOUR, end=H + 2 * HOUR, out=bundle)
    exported = sorted(
        p.relative_to(bundle).as_posix() for p in (bundle / "lake").rglob("*.parquet")
    )
    assert len(exported) == 2 and any("source=slack_app_activities" in p for p in exported)
    report = verify_bundle(bundle)
    assert report, report.summary()
