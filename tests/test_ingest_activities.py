"""Sync of workflow activities: every activity exactly once, byte for byte, provable."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pyarrow.parquet as pq
import pytest

from audit_pipeline.ingest import sync_hours
from audit_pipeline.ingest_activities import sync_activity_hours
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.lake.activities import ACTIVITY_SCHEMA, activity_id
from audit_pipeline.ledger import verify_ledger
from audit_pipeline.ledger.manifest import source_name
from audit_pipeline.ledger.proofs import prove_event, verify_event_proof
from audit_pipeline.slack.activities_client import (
    SOURCE_NAME,
    ActivitiesApiSettings,
    ActivitiesDisabled,
    ActivitySource,
)
from audit_pipeline.slack.client import SlackAuthError
from audit_pipeline.slack.emulator import running_emulator

from .conftest import SettableClock as Clock

H = 1795860000  # 2026-11-28T10:00Z
HOUR = 3600
MICROS = 1_000_000


def committed_rows(ledger) -> list[dict]:
    rows = []
    for signed in ledger.manifests():
        data = signed.manifest.data
        if data is not None and source_name(signed.manifest) == SOURCE_NAME:
            rows += pq.read_table(ledger.data_dir / data.path).to_pylist()
    return rows


def truth_ids(emulator, start: int, end: int) -> Counter:
    """The identities every complete collector must end with (bytes + occurrence per hour)."""
    ids: Counter = Counter()
    seen: Counter = Counter()
    for blob in emulator.activities.all_activities():
        created = json.loads(blob)["created"]
        hour = created // MICROS // HOUR * HOUR
        if start <= hour < end:
            ids[activity_id(blob, seen[hour, blob])] += 1
            seen[hour, blob] += 1
    return ids


def test_missing_token_disables_the_source_and_never_borrows_the_audit_token(monkeypatch):
    monkeypatch.delenv("SLACK_ACTIVITIES_TOKEN", raising=False)
    monkeypatch.setenv("SLACK_AUDIT_TOKEN", "xoxp-audit")
    with pytest.raises(ActivitiesDisabled, match="SLACK_ACTIVITIES_TOKEN is not set"):
        ActivitiesApiSettings.from_env()
    settings = ActivitiesApiSettings.from_env({"SLACK_ACTIVITIES_TOKEN": "xoxp-act"})
    assert settings.token == "xoxp-act" and "xoxp-act" not in repr(settings)


def test_the_audit_token_is_refused_with_the_scope_it_lacks(ledger):
    clock = Clock(H + 3 * HOUR)
    with running_emulator(start=H, end=H + HOUR, workflow_runs_per_hour=3, clock=clock) as emu:
        settings = ActivitiesApiSettings(
            token=emu.token,  # the audit logs token: auditlogs:read only
            base_url=emu.base_url.replace("/audit/v1/", "/api/"),
            max_calls_per_minute=0,
        )
        with pytest.raises(SlackAuthError, match=r"missing_scope.*admin\.app_activities:read"):
            ActivitySource(settings).read_window(H * MICROS, (H + HOUR) * MICROS - 1)


def test_several_hours_exactly_once_across_pages_reruns_overlaps_429s_and_late(
    ledger, activity_source_for
):
    clock = Clock(H + 4 * HOUR)
    with running_emulator(
        start=H,
        end=H + 4 * HOUR,
        seed=5,
        workflow_runs_per_hour=8,
        rate_limit_per_min=0,
        activities_rate_limit_per_min=0,
        late_delay=30,
        late_fraction=0.1,
        clock=clock,
    ) as emu:
        source = activity_source_for(emu, page_size=7)
        emu.activities.script_faults(
            ["429", "ok", "500", "invalid_cursor", "truncated_json", "truncated", "reset", "502"]
        )
        first = sync_activity_hours(
            start=H, end=H + 3 * HOUR, source=source, ledger=ledger, run_id="a", lookback_hours=0
        )
        assert [w.kind for w in first.batches] == ["hour"] * 3
        assert source.stats.rate_limited >= 1 and source.stats.window_restarts == 1
        clock.now += 60  # the late activities show up
        again = sync_activity_hours(  # a rerun of the same hours adds only the late ones
            start=H, end=H + 3 * HOUR, source=source, ledger=ledger, run_id="b", lookback_hours=0
        )
        overlap = sync_activity_hours(  # an overlapping range with a lookback
            start=H + 2 * HOUR,
            end=H + 4 * HOUR,
            source=source,
            ledger=ledger,
            run_id="c",
            lookback_hours=3,
        )
        clock.now += 60  # the next run catches what arrived late for the newest hour
        sync_activity_hours(
            start=H + 4 * HOUR, end=H + 5 * HOUR, source=source, ledger=ledger, run_id="d",
            lookback_hours=2,
        )  # fmt: skip
        expected = truth_ids(emu, H, H + 4 * HOUR)
    got = Counter(r["event_id"] for r in committed_rows(ledger))
    assert got == expected and max(got.values()) == 1
    assert sum(w.events_committed for w in again.windows) > 0  # the late arrivals
    assert {w.kind for w in again.batches} == {"late"}
    assert [w.kind for w in overlap.batches] == ["hour"]  # only the new hour
    assert any(k.endswith("-1") for k in got)  # identical activities kept as occurrences
    report = verify_ledger(ledger.data_dir, file_format=PARQUET_FORMAT)
    assert report, report.summary()


def test_activities_beside_audit_logs_in_one_ledger_each_with_its_own_hours(
    ledger, source_for, activity_source_for
):
    clock = Clock(H + 3 * HOUR)
    with running_emulator(
        start=H,
        end=H + 2 * HOUR,
        events_per_hour=40,
        workflow_runs_per_hour=3,
        rate_limit_per_min=0,
        clock=clock,
    ) as emu:
        sync_hours(
            start=H, end=H + 2 * HOUR, source=source_for(emu), ledger=ledger, run_id="x",
            lookback_hours=0,
        )  # fmt: skip
        sync_activity_hours(
            start=H, end=H + 2 * HOUR, source=activity_source_for(emu), ledger=ledger, run_id="y",
            lookback_hours=0,
        )  # fmt: skip
    kinds = [(source_name(m.manifest), m.manifest.kind) for m in ledger.manifests()]
    assert kinds == [("slack_audit_logs", "hour")] * 2 + [(SOURCE_NAME, "hour")] * 2
    paths = [m.manifest.data.path for m in ledger.manifests()]
    assert all(p.startswith("lake/date=") for p in paths[:2])
    assert all(p.startswith(f"lake/source={SOURCE_NAME}/date=") for p in paths[2:])
    assert "name" not in ledger.manifests()[0].manifest.source  # audit manifests unchanged
    report = verify_ledger(ledger.data_dir, file_format=PARQUET_FORMAT)
    assert report, report.summary()


def test_replayed_activities_come_back_byte_for_byte_and_prove(
    ledger, tmp_path: Path, activity_source_for
):
    odd = [
        b'{"created":%d,"event_type":"workflow_execution_started","payload":'
        b'{"workflow_name":"Caf\\u00e9 \\/ r\xc3\xa9sum\xc3\xa9","actor":"U1"},"trace_id":"Tr1",'
        b'"level":"info","x":1.50}' % ((H + 10) * MICROS + 5),
        b'{ "created" : %d , "event_type":"function_execution_output","payload":{"log":"a"},'
        b'"level":"debug"}' % ((H + 20) * MICROS),
        b'{ "created" : %d , "event_type":"function_execution_output","payload":{"log":"a"},'
        b'"level":"debug"}' % ((H + 20) * MICROS),
        b'{"created":%d,"payload":{"n":NaN},"level":"info"}' % ((H + 30) * MICROS),
        b'{"created":%d,"a":1,"a":2}' % ((H + 40) * MICROS),
        b'{"created":%d,"payload":{"s":"caf\xe9"},"level":"info"}' % ((H + 50) * MICROS),
    ]
    path = tmp_path / "activities.jsonl"
    good = odd
    path.write_bytes(b"\n".join(good) + b"\n")
    clock = Clock(H + 2 * HOUR)
    with running_emulator(
        start=H, end=H + HOUR, activities_file=path, rate_limit_per_min=0, clock=clock
    ) as emu:
        sync_activity_hours(
            start=H, end=H + HOUR, source=activity_source_for(emu), ledger=ledger, run_id="r",
            lookback_hours=0,
        )  # fmt: skip
    rows = committed_rows(ledger)
    assert sorted(r["raw_bytes"] for r in rows) == sorted(good)
    by_bytes = {r["raw_bytes"]: r for r in rows}
    assert by_bytes[good[0]]["workflow_name"] == "Café / résumé"
    assert by_bytes[good[0]]["event_id"] == (f"activity-{hashlib.sha256(good[0]).hexdigest()}-0")
    assert sorted(r["occurrence"] for r in rows if r["raw_bytes"] == good[1]) == [0, 1]
    assert "NaN" in by_bytes[good[3]]["quarantine_reason"]
    assert "duplicate key" in by_bytes[good[4]]["quarantine_reason"]
    assert "invalid UTF-8" in by_bytes[good[5]]["quarantine_reason"]  # kept, not a failure
    assert pq.read_schema(ledger.data_dir / ledger.manifests()[0].manifest.data.path).equals(
        ACTIVITY_SCHEMA, check_metadata=False
    )
    # An activity is proven and the proof checked with nothing but the public key.
    event_id = by_bytes[good[0]]["event_id"]
    proof = prove_event(ledger.data_dir, event_id, file_format=PARQUET_FORMAT)
    verified = verify_event_proof(proof, ledger._keyring())
    assert verified.event_id == event_id
    assert proof["event"]["activity"]["trace_id"] == "Tr1"
    assert proof["manifest"]["signed"]["source"]["name"] == SOURCE_NAME
    by_hour = prove_event(ledger.data_dir, event_id, file_format=PARQUET_FORMAT, window_start=H)
    assert by_hour == proof  # the hour's own partition of this source is searched


def test_an_unreadable_page_fails_its_hour_only_and_is_kept(ledger, monkeypatch):
    """A server whose page for one hour cannot be followed even after retries: that hour is
    reported failed with the page kept; the other hours are committed."""
    good = b'{"ok":true,"activities":[%s],"response_metadata":{"next_cursor":""}}'
    activity = b'{"created":%d,"event_type":"x","level":"info"}'

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            args = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            low = int(args["min_date_created"][0])
            if low == (H + HOUR) * MICROS:
                body = b'{"ok":true,"activities":[{"created":1, "x": "never closed]}'
            else:
                body = good % (activity % (low + 5))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = ActivitiesApiSettings(
            token="xoxp-t",
            base_url=f"http://127.0.0.1:{server.server_address[1]}/api/",
            max_calls_per_minute=0,
            max_retries=1,
        )
        report = sync_activity_hours(
            start=H, end=H + 3 * HOUR, source=ActivitySource(settings), ledger=ledger,
            run_id="u", lookback_hours=0,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert [w.hour for w in report.failed] == ["2026-11-28T11:00Z"]
    assert [w.kind for w in report.batches] == ["hour", "hour"]
    kept = ledger.data_dir / report.failed[0].saved_page
    assert kept.read_bytes().startswith(b'{"ok":true,"activities":[{"created":1')
