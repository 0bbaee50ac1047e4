"""audit-pipeline sync-activities, then prove and verify-proof of one workflow activity."""

from __future__ import annotations

import json
import time

import pyarrow.parquet as pq
import pytest

from audit_pipeline.cli import main
from audit_pipeline.ingest import format_hour, last_closed_hour
from audit_pipeline.ledger.layout import HOUR
from audit_pipeline.slack.emulator import running_emulator


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(monkeypatch, tmp_path, signing_key):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AUDIT_SIGNING_KEY", str(tmp_path / "keys" / "signing-key"))
    monkeypatch.setenv("SLACK_ACTIVITIES_MAX_CALLS_PER_MINUTE", "0")
    monkeypatch.delenv("AUDIT_DATASET", raising=False)
    return monkeypatch


def test_sync_prove_and_verify_an_activity(capsys, env, data_dir, signing_key, tmp_path):
    closed = last_closed_hour(time.time())
    start = closed - HOUR
    with running_emulator(
        start=start, end=closed + HOUR, workflow_runs_per_hour=5, activities_rate_limit_per_min=0
    ) as emu:
        api = emu.base_url.replace("/audit/v1/", "/api/")
        env.setenv("SLACK_ACTIVITIES_BASE_URL", api)
        env.setenv("SLACK_AUDIT_TOKEN", emu.token)
        env.delenv("SLACK_ACTIVITIES_TOKEN", raising=False)
        args = ["sync-activities", "--start", format_hour(start), "--end", format_hour(closed)]
        code, _, err = run(capsys, *args, "--data-dir", str(data_dir))
        assert code == 2 and "SLACK_ACTIVITIES_TOKEN is not set" in err  # no borrowing
        env.setenv("SLACK_ACTIVITIES_TOKEN", emu.config.activities_token)
        code, out, err = run(capsys, *args, "--data-dir", str(data_dir), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["source"] == "slack_app_activities"
    assert [b["kind"] for b in summary["batches"]] == ["hour"]
    assert emu.config.activities_token not in out + err
    manifest = json.loads((data_dir / "ledger/manifests/00000000.json").read_bytes())
    table = pq.read_table(data_dir / manifest["signed"]["data"]["path"])
    event_id = table.column("event_id")[0].as_py()
    proof = tmp_path / "proof.json"
    code, _, err = run(capsys, "prove", event_id, "--data-dir", str(data_dir), "--out", str(proof))
    assert code == 0, err
    code, shown, err = run(capsys, "verify-proof", str(proof), "--public-key", signing_key.vkey)
    assert code == 0, err
    assert json.loads(shown)["id"] == event_id
    assert json.loads(shown)["activity"]["created"] // 10**6 // HOUR * HOUR == start
    code, _, err = run(capsys, "verify", "--data-dir", str(data_dir), "--no-record")
    assert code == 0, err
