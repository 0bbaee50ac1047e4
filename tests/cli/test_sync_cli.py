"""``audit-pipeline sync`` and ``demo`` as users run them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.lake import read_batch_table

FIXTURE = Path(__file__).parents[1] / "fixtures" / "odd_entries.jsonl"
CLI = [sys.executable, "-m", "audit_pipeline.cli"]


def test_demo_syncs_verifies_and_builds_the_dataset(tmp_path, capsys):
    data_dir = tmp_path / "demo"
    assert main(["demo", "--hours", "2", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "OK: ledger audit-pipeline.demo/emulator intact" in out
    assert "synced 2 hours: " in out and " in 2 batches (0 late" in out
    # the story ends with next commands typed as they work from here
    next_lines = out[out.index("next:") :].splitlines()[1:]
    assert any(" verify --data-dir " in line for line in next_lines)
    assert (data_dir / "EMULATOR-DATA.txt").exists()
    assert (data_dir / "audit.duckdb").exists()
    manifests = sorted((data_dir / "ledger" / "manifests").iterdir())
    assert len(manifests) == 4  # two hours of audit logs, two of workflow activities
    assert "workflow activities: synced 2 hours: " in out
    # running it again adds nothing for the hours it already holds (at most the hour that
    # closed in between, for each source)
    assert main(["demo", "--hours", "2", "--data-dir", str(data_dir)]) == 0
    assert "intact" in capsys.readouterr().out
    assert len(list((data_dir / "ledger" / "manifests").iterdir())) <= 6


def test_sync_without_a_token_says_which_variable(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SLACK_AUDIT_TOKEN", raising=False)
    code = main(
        ["sync", "--start", "2026-11-28T00", "--end", "2026-11-28T01", "--data-dir", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "SLACK_AUDIT_TOKEN" in err and "auditlogs:read" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "yesterday", "--end", "2026-11-28T01"], "not a UTC hour"),
        (["--start", "2026-11-28T05", "--end", "2026-11-28T01"], "empty range"),
        (["--start", "2026-11-28T00", "--end", "2999-01-01T00"], "last closed hour"),
        (["--start", "2026-11-28T00", "--end", "2026-11-28T01", "--page-size", "0"], "page size"),
    ],
)
def test_bad_arguments_get_a_clear_error(monkeypatch, tmp_path, capsys, args, message):
    monkeypatch.setenv("SLACK_AUDIT_TOKEN", "xoxp-not-used")
    monkeypatch.setenv("AUDIT_SIGNING_KEY", str(tmp_path / "missing-key"))
    code = main(["sync", *args, "--data-dir", str(tmp_path / "d")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "xoxp-not-used" not in err


def test_sync_refuses_the_demo_directory(monkeypatch, tmp_path, capsys):
    (tmp_path / "EMULATOR-DATA.txt").write_text("demo")
    monkeypatch.setenv("SLACK_AUDIT_TOKEN", "xoxp-real")
    code = main(
        ["sync", "--start", "2026-11-28T00", "--end", "2026-11-28T01", "--data-dir", str(tmp_path)]
    )
    assert code == 2 and "emulator demo data" in capsys.readouterr().err


@pytest.mark.e2e
def test_odd_shapes_from_an_events_file_through_both_commands(tmp_path):
    """The emulator replays a file of odd entries; sync commits them; each column checks."""
    key, data_dir = tmp_path / "signing-key", tmp_path / "data"
    env = {**os.environ, "AUDIT_SIGNING_KEY": str(key)}
    subprocess.run(
        [*CLI, "keys", "init", "--data-dir", str(data_dir)],
        env=env,
        check=True,
        capture_output=True,
    )
    emulator = subprocess.Popen(
        [*CLI, "emulator", "--port", "0", "--events-file", str(FIXTURE), "--rate-limit", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base_url = None
        for line in emulator.stdout:
            found = re.search(r"(http://\S+/audit/v1/)", line)
            if found:
                base_url = found.group(1)
                break
        assert base_url
        env.update(SLACK_AUDIT_TOKEN="xoxp-emulator-token", SLACK_AUDIT_BASE_URL=base_url)
        done = subprocess.run(
            [
                *CLI,
                "sync",
                "--start",
                "2026-11-28T10",
                "--end",
                "2026-11-28T11",
                "--data-dir",
                str(data_dir),
                "--json",
                "--max-calls-per-minute",
                "0",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    assert "xoxp-emulator-token" not in done.stdout + done.stderr
    summary = json.loads(done.stdout)
    entries = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    assert summary["events_committed"] == len(entries)
    (batch,) = summary["batches"]
    assert batch["kind"] == "hour" and batch["sequence"] == 0
    files = list((data_dir / "lake").rglob("*.parquet"))
    assert len(files) == 1 and "date=2026-11-28/hour=10" in files[0].as_posix()
    rows = {r["event_id"]: r for r in read_batch_table(files[0]).to_pylist()}
    for entry in entries:
        row = rows[entry["id"]]
        assert json.loads(row["raw_json"]) == entry
        context = entry.get("context", {})
        assert row["ip_address"] == context.get("ip_address")
        assert row["user_agent"] == context.get("ua")
        session = context.get("session_id")
        assert row["session_id"] == (None if session is None else str(session))
        details = entry.get("details")
        assert (row["details"] is None) == (details is None)
        if details is not None:
            assert json.loads(row["details"]) == details
        assert row["entity_type"] == entry["entity"]["type"]
        assert row["actor_user_id"] == entry["actor"]["user"]["id"]
    verify = subprocess.run(
        [*CLI, "verify", "--data-dir", str(data_dir)], env=env, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
