"""Odd entries through real HTTP: every entry committed verbatim once or quarantined with its
exact bytes and reason; an unparseable page fails its hour alone; reruns add nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.ingest import FAILED_PAGES_DIR, sync_hours
from audit_pipeline.lake import PARQUET_FORMAT, read_batch_table
from audit_pipeline.ledger import verify_ledger
from audit_pipeline.slack.emulator import running_emulator

H = 1795860000  # 2026-11-28T10:00Z
HOUR = 3600


def line(n: int, tail: bytes = b"", *, id_: bytes | None = None, action: bytes = b'"x"') -> bytes:
    id_ = b'"e%d"' % n if id_ is None else id_
    return b'{"id":%s,"date_create":%d,"action":%s%s}' % (id_, H + n, action, tail)


# (exact bytes as the API sends them, None if faithful or the quarantine reason expected)
SHAPES: list[tuple[bytes, str | None]] = [
    (line(1, b',"details":{"big":1' + b"0" * 400 + b"}"), None),
    (line(2, b',"details":{"f":1.50,"s":"caf\\u00e9 \\/ \xc3\xa9"}'), None),
    (line(3, b',"details":{"n":1e400}'), "out of range for a double"),
    (line(4, b',"details":{"n":-1e400}'), "out of range for a double"),
    (line(5, b',"details":{"n":1e-400}'), "underflow"),
    (line(6, b',"details":{"n":0.1000000000000000055511151231257827}'), "loses precision"),
    (line(7, b',"details":{"n":12345678901234567890.5}'), "loses precision"),
    (line(8, b',"details":{"a":1,"a":2}'), "duplicate key 'a'"),
    (b'{"id":"e9","date_create":%d,"action":"x","id":"e9b"}' % (H + 9), "duplicate key 'id'"),
    (line(10, b',"details":' + b"[" * 3000 + b"]" * 3000), "nested more than 128 levels"),
    (line(11, b',"details":"\xff\xfe"'), "invalid UTF-8"),
    (line(12, b',"details":"\\ud800"'), "lone surrogate"),
    (line(13, action=b'""'), "action is an empty string"),
    (line(14, id_=b'""'), "id is an empty string"),
    (b'{"date_create":%d,"action":"x"}' % (H + 15), "no id"),
    (b'"not an object, dated by its neighbour"', "not an object"),
    (line(17, b',"details":{"n":NaN}'), "non-finite number NaN"),
]
NEXT_HOUR = [
    b'{"id":"n%d","date_create":%d,"action":"user_login"}' % (i, H + HOUR + i) for i in (1, 2)
]


def events_file(tmp_path: Path, lines: list[bytes], name: str = "replay.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def rows_of(ledger, hour: int) -> list[dict]:
    rows = []
    for signed in ledger.manifests():
        data = signed.manifest.data
        if data is not None and signed.manifest.window_start == hour:
            rows += read_batch_table(ledger.data_dir / data.path).to_pylist()
    return rows


def test_every_shape_is_stored_verbatim_or_quarantined_with_its_bytes(tmp_path, ledger, source_for):
    path = events_file(tmp_path, [b for b, _ in SHAPES] + NEXT_HOUR)
    with running_emulator(events_file=path, rate_limit_per_min=0) as emulator:
        report = sync_hours(
            start=H, end=H + 2 * HOUR, source=source_for(emulator), ledger=ledger, run_id="r1",
            lookback_hours=0,
        )  # fmt: skip
        again = sync_hours(
            start=H, end=H + 2 * HOUR, source=source_for(emulator), ledger=ledger, run_id="r2",
            lookback_hours=0,
        )  # fmt: skip
    assert not report.failed and [w.hour for w in report.batches] == [
        "2026-11-28T10:00Z",
        "2026-11-28T11:00Z",
    ]
    assert again.events_committed == 0 and not again.batches
    rows = rows_of(ledger, H)
    by_bytes = {}
    for row in rows:
        assert row["entry_bytes"] not in by_bytes, "an entry is present twice"
        by_bytes[row["entry_bytes"]] = row
    assert set(by_bytes) == {b for b, _ in SHAPES}
    for sent, reason in SHAPES:
        row = by_bytes[sent]
        leaf = json.loads(row["raw_json"])
        if reason is None:
            assert row["quarantine_reason"] is None
            assert leaf == json.loads(sent) and row["event_id"] == leaf["id"]
        else:
            assert reason in row["quarantine_reason"], (sent[:60], row["quarantine_reason"])
            assert base64.b64decode(leaf["quarantine"]["entry_base64"]) == sent
            assert leaf["quarantine"]["reason"] == row["quarantine_reason"]
    big = by_bytes[SHAPES[0][0]]
    assert b'"big":1' + b"0" * 400 + b"}" in big["raw_json"].encode()
    assert {r["entry_bytes"] for r in rows_of(ledger, H + HOUR)} == set(NEXT_HOUR)
    assert verify_ledger(ledger.data_dir, file_format=PARQUET_FORMAT)


def test_an_unparseable_page_fails_its_hour_alone_and_the_next_run_retries_it(
    tmp_path, ledger, source_for
):
    broken = [NEXT_HOUR[0], b'{"id":"cut","date_create":%d,"action":"x","d":{' % (H + HOUR + 5)]
    later = [b'{"id":"l1","date_create":%d,"action":"x"}' % (H + 2 * HOUR + 1)]
    path = events_file(tmp_path, [SHAPES[0][0], *broken, *later])
    with running_emulator(events_file=path, rate_limit_per_min=0) as emulator:
        report = sync_hours(
            start=H, end=H + 3 * HOUR, source=source_for(emulator, max_retries=1), ledger=ledger,
            run_id="r1", lookback_hours=0,
        )  # fmt: skip
    assert [w.hour for w in report.batches] == ["2026-11-28T10:00Z", "2026-11-28T12:00Z"]
    (failed,) = report.failed
    assert failed.hour == "2026-11-28T11:00Z" and "at byte" in failed.message
    saved = ledger.data_dir / failed.saved_page
    assert saved.parent.name == FAILED_PAGES_DIR and broken[1] in saved.read_bytes()
    assert (
        f"byte {failed.offset}" in report.summary()
        and "ERROR 2026-11-28T11:00Z" in report.summary()
    )
    assert verify_ledger(ledger.data_dir, file_format=PARQUET_FORMAT).intact
    # the API serves the hour properly later: the next run commits it, adding nothing else
    fixed = events_file(tmp_path, [SHAPES[0][0], NEXT_HOUR[0], *later], "fixed.jsonl")
    with running_emulator(events_file=fixed, rate_limit_per_min=0) as emulator:
        rerun = sync_hours(
            start=H, end=H + 3 * HOUR, source=source_for(emulator), ledger=ledger, run_id="r2",
            lookback_hours=0,
        )  # fmt: skip
    assert not rerun.failed and [w.hour for w in rerun.batches] == ["2026-11-28T11:00Z"]
    assert rerun.events_committed == 1
    assert verify_ledger(ledger.data_dir, file_format=PARQUET_FORMAT)


def test_the_cli_exits_4_when_some_hours_could_not_be_committed(
    tmp_path, monkeypatch, data_dir, signing_key, capsys
):
    path = events_file(
        tmp_path, [SHAPES[0][0], b'{"id":"cut","date_create":%d,"d":[' % (H + HOUR + 5)]
    )
    with running_emulator(events_file=path, rate_limit_per_min=0) as emulator:
        monkeypatch.setenv("SLACK_AUDIT_TOKEN", emulator.token)
        monkeypatch.setenv("AUDIT_SIGNING_KEY", str(tmp_path / "keys" / "signing-key"))
        code = main([
            "sync", "--start", "2026-11-28T10:00Z", "--end", "2026-11-28T12:00Z", "--lookback", "0",
            "--data-dir", str(data_dir), "--base-url", emulator.base_url, "--max-retries", "1",
            "--max-calls-per-minute", "0", "--json",
        ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 4, captured.err
    summary = json.loads(captured.out)
    assert [f["hour"] for f in summary["failed_hours"]] == ["2026-11-28T11:00Z"]
    assert [b["hour"] for b in summary["batches"]] == ["2026-11-28T10:00Z"]
    assert "Traceback" not in captured.err and emulator.token not in captured.err + captured.out
    assert "2026-11-28T11:00Z: FAILED (data error)" in captured.err  # the one hour format


@pytest.mark.parametrize("sent", [b for b, _ in SHAPES])
def test_admin_raw_entries_take_every_shape(sent):
    with running_emulator(events_per_hour=0, rate_limit_per_min=0) as emulator:
        emulator.add_raw_entries([SHAPES[0][0], sent])
        assert sorted(emulator.entry_bytes()) == sorted([SHAPES[0][0], sent])


def test_changed_after_commit_is_a_revision_and_an_id_in_two_hours_is_reported(
    tmp_path, ledger, source_for, capsys
):
    from audit_pipeline.dataset.build import build_dataset, dataset_path
    from audit_pipeline.dataset.query import open_dataset
    from audit_pipeline.defs.assets import hour_metadata
    from audit_pipeline.defs.range_sync import HourSync

    first = [
        b'{"id":"e1","date_create":%d,"action":"user_login","details":{"v":1}}' % (H + 1),
        b'{"id":"dup","date_create":%d,"action":"user_login"}' % (H + 2),
    ]
    changed = b'{"id":"e1","date_create":%d,"action":"user_login","details":{"v":2}}' % (H + 1)
    second = [changed, first[1], b'{"id":"dup","date_create":%d,"action":"x"}' % (H + HOUR + 3)]

    def sync(lines: list[bytes], name: str, run_id: str):
        with running_emulator(events_file=events_file(tmp_path, lines, name)) as emulator:
            return sync_hours(
                start=H + HOUR, end=H + 2 * HOUR, source=source_for(emulator), ledger=ledger,
                run_id=run_id, lookback_hours=1,
            )  # fmt: skip

    with running_emulator(events_file=events_file(tmp_path, first)) as emulator:
        sync_hours(
            start=H, end=H + HOUR, source=source_for(emulator), ledger=ledger, run_id="r0",
            lookback_hours=0,
        )  # fmt: skip
    report = sync(second, "second.jsonl", "r1")
    assert report.revisions == [("2026-11-28T10:00Z", "e1")]
    assert "WARNING 2026-11-28T10:00Z: committed event e1 came back with different content" in (
        report.summary()
    )
    assert hour_metadata(HourSync(H, report, rows_held=3))["revisions"] == 1
    (revision,) = [r for r in rows_of(ledger, H) if r["event_id"].startswith("revision-")]
    original = next(r for r in rows_of(ledger, H) if r["event_id"] == "e1")
    leaf = json.loads(revision["raw_json"])["revision"]
    assert leaf["of_id"] == "e1" and leaf["of_leaf_hash"] == original["leaf_hash"].hex()
    assert revision["entry_bytes"] == changed and leaf["entry"] == json.loads(changed)
    again = sync(second, "second.jsonl", "r2")
    assert again.events_committed == 0 and not again.revisions

    verification = verify_ledger(ledger.data_dir, file_format=PARQUET_FORMAT)
    assert verification, verification.summary()
    notices = [n for n in verification.notices if n.code == "event_id_in_several_hours"]
    assert len(notices) == 1 and "dup (also 2026-11-28T10:00Z)" in notices[0].detail

    build_dataset(ledger.data_dir, report=verification, trigger="test")
    con = open_dataset(dataset_path(ledger.data_dir))
    try:
        rows = con.sql(
            "SELECT event_id, original_batch, revised->>'$.details.v' FROM revisions"
        ).fetchall()
        assert rows == [("e1", 0, "2")]
        assert con.sql("SELECT event_id, copies FROM ids_in_several_hours").fetchall() == [
            ("dup", 2)
        ]
    finally:
        con.close()

    out = tmp_path / "proof.json"
    args = ["prove", "dup", "--data-dir", str(ledger.data_dir), "--out", str(out)]
    assert main(args) == 2
    assert "committed in 2 hours (2026-11-28T10:00Z, 2026-11-28T11:00Z): pass --hour" in (
        capsys.readouterr().err
    )
    assert main([*args, "--hour", "2026-11-28T11:00Z"]) == 0
    assert json.loads(out.read_bytes())["event"]["action"] == "x"
    (Path(dataset_path(ledger.data_dir))).unlink()  # without the dataset: the same answer
    assert main(args) == 2


def test_a_failed_page_is_never_kept_through_a_linked_directory(tmp_path, ledger, source_for):
    """failed-pages/ replaced by a link to a directory elsewhere: the page is not written
    outside the data directory; the link is named (as verify names it)."""
    from audit_pipeline.ledger.layout import NotRegularFileError

    outside = tmp_path / "outside"
    outside.mkdir()
    (ledger.data_dir / FAILED_PAGES_DIR).symlink_to(outside)
    broken = b'{"id":"cut","date_create":%d,"action":"x","d":{' % (H + 5)
    path = events_file(tmp_path, [broken])
    with (
        running_emulator(events_file=path, rate_limit_per_min=0) as emulator,
        pytest.raises(NotRegularFileError, match="symbolic link"),
    ):
        sync_hours(
            start=H, end=H + HOUR, source=source_for(emulator, max_retries=0), ledger=ledger,
            run_id="r1", lookback_hours=0,
        )  # fmt: skip
    assert list(outside.iterdir()) == []
