"""Revisions, ids in several hours and unparseable pages, as Dagster reports them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from audit_pipeline.defs.resources import SlackAuditResource
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger
from audit_pipeline.slack.emulator import running_emulator

from .conftest import H0, HOUR


def replay(tmp_path: Path, name: str, lines: list[bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def serve(pipeline, emulator) -> None:
    pipeline.resources["slack_audit"] = SlackAuditResource(
        token=emulator.token, base_url=emulator.base_url, max_calls_per_minute=0, max_retries=1
    )


def test_revisions_ids_in_two_hours_and_failed_hours_reach_dagster(pipeline, tmp_path):
    first = [
        b'{"id":"e1","date_create":%d,"action":"user_login","details":{"v":1}}' % (H0 + 1),
        b'{"id":"dup","date_create":%d,"action":"user_login"}' % (H0 + 2),
    ]
    second = [
        b'{"id":"e1","date_create":%d,"action":"user_login","details":{"v":2}}' % (H0 + 1),
        first[1],
        b'{"id":"dup","date_create":%d,"action":"user_logout"}' % (H0 + HOUR + 3),
    ]
    with running_emulator(events_file=replay(tmp_path, "a.jsonl", first)) as emulator:
        serve(pipeline, emulator)
        assert pipeline.sync(0).success
    with running_emulator(events_file=replay(tmp_path, "b.jsonl", second)) as emulator:
        serve(pipeline, emulator)
        outcome = pipeline.sync(1)
    assert outcome.success
    # The revision is a late batch of hour 0, re-read by the lookback of hour 1's run: hour 0
    # gets a materialization of its own saying so, and the run counts it.
    (earlier,) = [
        m for m in outcome.materialized("slack_audit_events") if m.partition == "2026-11-20-00:00"
    ]
    events = {k: v.value for k, v in earlier.metadata.items()}
    assert events["revisions"] == 1 and "| 2026-11-20T00:00Z | e1 |" in events["revised_events"]
    assert events["dagster/row_count"] == 3  # e1, dup and the revision row
    assert outcome.metadata("slack_audit_events")["revisions"] == 0  # hour 1's own
    assert (
        pipeline.instance.get_run_by_id(outcome.result.run_id).tags["audit_pipeline/revisions"]
        == "1"
    )
    ledger = outcome.metadata("audit_ledger")
    assert ledger["verified"] and ledger["batches_with_ids_in_several_hours"] == 1
    notices = [n for n in ledger["report"]["notices"] if n["code"] == "event_id_in_several_hours"]
    assert "dup (also 2026-11-20T00:00Z)" in notices[0]["detail"]

    broken = [second[2], b'{"id":"cut","date_create":%d,"d":[' % (H0 + 2 * HOUR + 5)]
    with running_emulator(events_file=replay(tmp_path, "c.jsonl", broken)) as emulator:
        serve(pipeline, emulator)
        failed = pipeline.sync(2)
    assert not failed.success
    (failure,) = [
        e for e in failed.result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    assert "2026-11-20T02:00Z" in str(failure.step_failure_data.user_failure_data.description)
    held = Ledger(pipeline.data_dir, file_format=PARQUET_FORMAT).committed_windows()
    assert held == {H0, H0 + HOUR}  # the failed hour is not committed: the next run retries it
