"""Sync against the emulator: every event exactly once, whatever the API does."""

from __future__ import annotations

import base64
import gc
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ingest import (
    format_hour,
    gc_paused,
    last_closed_hour,
    parse_hour,
    sync_hours,
    sync_window,
)
from audit_pipeline.lake import PARQUET_FORMAT, read_batch_table
from audit_pipeline.ledger import verify_ledger
from audit_pipeline.slack.client import FetchStats, Page
from audit_pipeline.slack.emulator import running_emulator

H = 1795860000  # 2026-11-28T10:00Z
HOUR = 3600


def committed(ledger) -> Counter:
    """committed counts every event id in every batch file of the ledger."""
    ids: Counter = Counter()
    for signed in ledger.manifests():
        data = signed.manifest.data
        if data is not None:
            ids.update(r.event_id for r in PARQUET_FORMAT.read_events(ledger.data_dir / data.path))
    return ids


def truth(emulator, start: int, end: int) -> Counter:
    return Counter(e["id"] for e in emulator.entries() if start <= e["date_create"] < end)


def assert_verifies(data_dir: Path) -> None:
    report = verify_ledger(data_dir, file_format=PARQUET_FORMAT)
    assert report, report.summary()


def test_parse_and_format_hours():
    assert parse_hour("2026-11-28T10") == H  # the short input form
    assert parse_hour("2026-11-28T10:00Z") == H
    assert parse_hour("2026-11-28T10:00") == H
    assert parse_hour("2026-11-28-10:00") == H  # a Dagster partition key
    assert format_hour(H) == "2026-11-28T10:00Z"
    assert last_closed_hour(H + 125) == H - HOUR
    for bad in ("2026-11-28T10:30", "yesterday", "2026-13-01T00:00Z", ""):
        with pytest.raises(ConfigurationError, match="not a UTC hour"):
            parse_hour(bad)


def test_every_event_once_across_pages_bursts_and_edges(ledger, source_for):
    with running_emulator(
        start=H, end=H + 3 * HOUR, events_per_hour=500, seed=11, rate_limit_per_min=0
    ) as emu:
        burst = [
            dict(e, id=f"burst-{i}", date_create=H + HOUR + 7)
            for i, e in enumerate(emu.entries()[:150])
        ]
        edges = [
            dict(emu.entries()[0], id=f"edge-{t}", date_create=t)
            for t in (H, H + HOUR - 1, H + HOUR, H + 3 * HOUR - 1)
        ]
        emu.add_entries(burst + edges)
        report = sync_hours(
            start=H,
            end=H + 3 * HOUR,
            source=source_for(emu, page_size=64),
            ledger=ledger,
            run_id="t1",
            lookback_hours=0,
        )
        expected = truth(emu, H, H + 3 * HOUR)
    got = committed(ledger)
    assert got == expected
    assert max(got.values()) == 1
    assert report.events_committed == sum(expected.values())
    assert [w.kind for w in report.batches] == ["hour", "hour", "hour"]
    assert report.stats.pages >= 9  # several pages per window: boundaries were crossed
    assert_verifies(ledger.data_dir)


def test_faults_do_not_lose_or_duplicate_events(ledger, source_for):
    with running_emulator(
        start=H, end=H + 2 * HOUR, events_per_hour=300, seed=12, rate_limit_per_min=0
    ) as emu:
        emu.script_faults(["500", "reset", "truncated", "ok", "invalid_cursor", "503", "429"])
        report = sync_hours(
            start=H,
            end=H + 2 * HOUR,
            source=source_for(emu, page_size=50),
            ledger=ledger,
            run_id="t2",
            lookback_hours=0,
        )
        expected = truth(emu, H, H + 2 * HOUR)
    assert committed(ledger) == expected
    assert report.stats.retries >= 5 and report.stats.window_restarts == 1
    assert report.stats.rate_limited == 1
    assert_verifies(ledger.data_dir)


def test_rerun_adds_nothing_and_late_events_arrive_as_late_batches(ledger, source_for):
    with running_emulator(
        start=H,
        end=H + 3 * HOUR,
        events_per_hour=200,
        seed=13,
        rate_limit_per_min=0,
        late_delay=0.5,
        late_fraction=0.05,
    ) as emu:
        first = sync_hours(
            start=H,
            end=H + 2 * HOUR,
            source=source_for(emu),
            ledger=ledger,
            run_id="r1",
            lookback_hours=6,
        )
        missed = sum(truth(emu, H, H + 2 * HOUR).values()) - first.events_committed
        assert missed > 0, "the emulator should hold some events back"
        time.sleep(0.7)
        again = sync_hours(
            start=H + 2 * HOUR,
            end=H + 3 * HOUR,
            source=source_for(emu),
            ledger=ledger,
            run_id="r2",
            lookback_hours=6,
        )
        expected = truth(emu, H, H + 3 * HOUR)
    assert [w.lookback for w in again.windows] == [True, True, False]
    assert {w.kind for w in again.batches if w.lookback} == {"late"}
    assert again.late_events == missed
    in_first_two = Counter(
        {i: n for i, n in committed(ledger).items() if i in truth(emu, H, H + 2 * HOUR)}
    )
    assert in_first_two == truth(emu, H, H + 2 * HOUR)
    # hour H+2 was read once, just now: its own late events are still held back
    held_back = sum(expected.values()) - sum(committed(ledger).values())
    assert held_back > 0
    # a rerun of the whole range (all events visible now) adds exactly those, as late
    with running_emulator(
        start=H, end=H + 3 * HOUR, events_per_hour=200, seed=13, rate_limit_per_min=0
    ) as emu:
        rerun = sync_hours(
            start=H,
            end=H + 3 * HOUR,
            source=source_for(emu),
            ledger=ledger,
            run_id="r3",
            lookback_hours=6,
        )
        assert truth(emu, H, H + 3 * HOUR) == expected
        size = len(ledger.manifests())
        again_rerun = sync_hours(
            start=H,
            end=H + 3 * HOUR,
            source=source_for(emu),
            ledger=ledger,
            run_id="r4",
            lookback_hours=6,
        )
    assert rerun.events_committed == held_back == rerun.late_events
    assert committed(ledger) == expected
    assert again_rerun.events_committed == 0 and not again_rerun.batches
    assert len(ledger.manifests()) == size
    assert_verifies(ledger.data_dir)


def test_empty_hours_get_explicit_batches(ledger, source_for, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with running_emulator(events_file=empty, rate_limit_per_min=0) as emu:
        report = sync_hours(
            start=H,
            end=H + 2 * HOUR,
            source=source_for(emu),
            ledger=ledger,
            run_id="e",
            lookback_hours=0,
        )
    assert [w.kind for w in report.batches] == ["empty", "empty"]
    assert_verifies(ledger.data_dir)


def test_events_the_api_no_longer_returns_are_reported_not_deleted(
    ledger, source_for, tmp_path, caplog
):
    entries = [
        json.loads(line)
        for line in (Path(__file__).parent / "fixtures" / "odd_entries.jsonl")
        .read_text()
        .splitlines()
    ]
    full, partial = tmp_path / "full.jsonl", tmp_path / "partial.jsonl"
    full.write_text("".join(json.dumps(e) + "\n" for e in entries))
    partial.write_text("".join(json.dumps(e) + "\n" for e in entries[1:]))
    with running_emulator(events_file=full, rate_limit_per_min=0) as emu:
        sync_hours(
            start=H,
            end=H + HOUR,
            source=source_for(emu),
            ledger=ledger,
            run_id="a",
            lookback_hours=0,
        )
    with running_emulator(events_file=partial, rate_limit_per_min=0) as emu:
        report = sync_hours(
            start=H,
            end=H + HOUR,
            source=source_for(emu),
            ledger=ledger,
            run_id="b",
            lookback_hours=0,
        )
    assert report.missing_from_source == [(format_hour(H), entries[0]["id"])]
    assert entries[0]["id"] in committed(ledger)
    assert "no longer returned" in caplog.text


def test_odd_shapes_through_the_api_round_trip(ledger, source_for):
    fixture = Path(__file__).parent / "fixtures" / "odd_entries.jsonl"
    entries = [json.loads(line) for line in fixture.read_text().splitlines()]
    with running_emulator(events_file=fixture, rate_limit_per_min=0) as emu:
        sync_hours(
            start=H,
            end=H + HOUR,
            source=source_for(emu),
            ledger=ledger,
            run_id="o",
            lookback_hours=0,
        )
    (signed,) = ledger.manifests()
    rows = read_batch_table(ledger.data_dir / signed.manifest.data.path).to_pylist()
    by_id = {r["event_id"]: r for r in rows}
    for entry in entries:
        assert json.loads(by_id[entry["id"]]["raw_json"]) == entry
    assert by_id["0b4c1a2e-0009-4f00-8a00-000000000009"]["entity_id"] == "7"
    assert_verifies(ledger.data_dir)


def test_bad_ranges_are_refused(ledger, source_for):
    with running_emulator(events_per_hour=1, start=H, end=H + HOUR, rate_limit_per_min=0) as emu:
        source = source_for(emu)
        with pytest.raises(ConfigurationError, match="empty range"):
            sync_hours(start=H, end=H, source=source, ledger=ledger, run_id="x")
        with pytest.raises(ConfigurationError, match="hour"):
            sync_hours(start=H + 1, end=H + HOUR, source=source, ledger=ledger, run_id="x")
    assert ledger.manifests() == []


class ReplaySource:
    """Serves fixed pages: the emulator refuses to serve entries without an id, a time and
    an action, so entries that broken only this way are fed in below the HTTP layer."""

    logs_url = "replay://logs"

    def __init__(self, entries: list) -> None:
        self.entries = entries
        self.stats = FetchStats()

    def iter_pages(self, oldest: int, latest: int):
        self.stats.pages += 1
        yield Page(self.entries)


def test_unparseable_entries_are_committed_to_quarantine_and_verify(ledger):
    odd = [
        {"date_create": H + 5, "action": "user_login"},  # no id
        {"id": 12345, "date_create": H + 6, "action": "user_login"},  # id not a string
        {"id": "no-action", "date_create": H + 7},
        {"id": "late-stamp", "date_create": H + HOUR, "action": "user_login"},  # wrong hour
        ["not", "an", "object"],
        {"id": "nan", "date_create": H + 9, "action": "a", "details": {"x": float("nan")}},
    ]
    report = sync_hours(
        start=H, end=H + HOUR, source=ReplaySource(odd), ledger=ledger, run_id="q", lookback_hours=0
    )
    again = sync_hours(
        start=H,
        end=H + HOUR,
        source=ReplaySource(odd),
        ledger=ledger,
        run_id="q2",
        lookback_hours=0,
    )
    assert report.quarantined == len(odd) and report.events_committed == len(odd)
    assert again.events_committed == 0  # quarantine rows are idempotent too
    (signed,) = ledger.manifests()
    rows = read_batch_table(ledger.data_dir / signed.manifest.data.path).to_pylist()
    wrapped = [json.loads(r["raw_json"])["quarantine"] for r in rows]
    sent = [base64.b64decode(w["entry_base64"]) for w in wrapped]
    assert sent == [r["entry_bytes"] for r in rows]
    kept = [json.loads(b) for b in sent if b"NaN" not in b]

    def key(value) -> str:
        return json.dumps(value, sort_keys=True)

    assert sorted(kept, key=key) == sorted(odd[:-1], key=key)
    assert [b"NaN" in b for b in sent].count(True) == 1
    assert all(r["quarantine_reason"] for r in rows)
    assert_verifies(ledger.data_dir)


def test_sync_leaves_the_collector_alone_and_reports_its_phases(ledger, source_for):
    """Inside Dagster the sync runs beside other threads: it never pauses the (process-wide)
    cyclic collector itself; only the CLI, alone in its process, wraps it in gc_paused."""
    seen: list[tuple[str, bool]] = []
    with running_emulator(
        start=H, end=H + HOUR, events_per_hour=200, seed=5, rate_limit_per_min=0
    ) as emu:
        result = sync_window(
            H,
            source=source_for(emu, page_size=50),
            ledger=ledger,
            run_id="phases",
            on_phase=lambda name: seen.append((name, gc.isenabled())),
        )
    assert result.events_committed > 0
    assert all(enabled for _, enabled in seen)
    assert [name for name, _ in seen] == [
        "pages read and normalized",
        "rows sorted into one table",
        "ledger records built",
        "commit: ids checked, writing the file",
        "commit: file written, table released",
        "committed: file read back, checked, signed",
    ]


def test_gc_pause_restores_the_previous_state_even_on_errors():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's own pause is left as it was
    finally:
        gc.enable()
