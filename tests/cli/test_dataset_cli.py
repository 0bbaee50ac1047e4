"""``audit-pipeline dataset|query|export-evidence|report``: exit codes and outputs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.lake import events_from_table, normalize_entries, write_batch_file
from audit_pipeline.ledger.layout import HOUR
from audit_pipeline.slack.generator import generate_hour

T0 = 1_764_374_400  # 2025-11-29T00:00:00Z


def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if stdin is not None:
            import sys

            old, sys.stdin = sys.stdin, io.StringIO(stdin)
            try:
                code = main(list(argv))
            finally:
                sys.stdin = old
        else:
            code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def filled(ledger, data_dir) -> Path:
    for hour in (T0, T0 + HOUR, T0 + 2 * HOUR):
        rows = normalize_entries(
            generate_hour(11, hour, 200), window_start=hour, window_end=hour + HOUR
        ).table
        ledger.commit_batch(
            window_start=hour,
            window_end=hour + HOUR,
            events=events_from_table(rows),
            write_data=lambda _events, path, rows=rows: write_batch_file(rows, path),
            source={"api_url": "test", "oldest": hour, "latest": hour + HOUR - 1},
            run_id="cli-test",
        )
    return data_dir


def test_path_honours_data_dir_and_database(tmp_path, monkeypatch):
    monkeypatch.delenv("AUDIT_DATASET", raising=False)
    assert run("dataset", "path", "--data-dir", str(tmp_path))[1].strip() == str(
        tmp_path / "audit.duckdb"
    )
    assert run("dataset", "path", "--database", "/x/y.duckdb")[1].strip() == "/x/y.duckdb"
    monkeypatch.setenv("AUDIT_DATA_DIR", str(tmp_path / "d"))
    assert run("dataset", "path")[1].strip() == str(tmp_path / "d" / "audit.duckdb")


def test_build_then_query_in_every_format(filled):
    code, out, _ = run("dataset", "build", "--data-dir", str(filled), "--json")
    assert code == 0
    built = json.loads(out)
    assert built["tree_size"] == 3 and built["events"] > 0
    sql = "SELECT action, count(*) AS n FROM audit_events GROUP BY action ORDER BY n DESC, action"
    code, out, _ = run("query", sql, "--data-dir", str(filled), "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert sum(r["n"] for r in rows) == built["events"]
    code, out, _ = run("query", sql, "--data-dir", str(filled), "--format", "csv")
    parsed = list(csv.reader(io.StringIO(out)))
    assert parsed[0] == ["action", "n"] and len(parsed) == len(rows) + 1
    code, out, _ = run("query", "-", "--data-dir", str(filled), stdin="SELECT 42 AS answer")
    assert (code, out.splitlines()[-1]) == (0, "(1 row)")
    assert "42" in out


def test_query_errors_exit_2_with_a_message(filled, tmp_path):
    run("dataset", "build", "--data-dir", str(filled))
    code, _, err = run("query", "DELETE FROM audit_events", "--data-dir", str(filled))
    assert code == 2 and "read-only" in err and "Traceback" not in err
    code, _, err = run("query", "SELEC 1", "--data-dir", str(filled))
    assert code == 2 and "syntax error" in err.lower()
    code, _, err = run("query", "SELECT 1", "--data-dir", str(tmp_path / "none"))
    assert code == 2 and "dataset build" in err


def test_build_on_a_tampered_ledger_exits_1(filled):
    victim = next((filled / "lake").rglob("*.parquet"))
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-10])
    code, _, err = run("dataset", "build", "--data-dir", str(filled))
    assert code == 1
    assert "did not verify" in err and "not rebuilt" in err


def test_export_evidence_and_report(filled, tmp_path):
    bundle = tmp_path / "bundle"
    code, out, err = run(
        "export-evidence",
        "--data-dir",
        str(filled),
        "--start",
        "2025-11-29T01",
        "--end",
        "2025-11-29T02",
        "--out",
        str(bundle),
    )
    assert code == 0, err
    assert "1 batches in range" in out and (bundle / "README.md").is_file()
    code, _, err = run("export-evidence", "--data-dir", str(filled), "--start", "yesterday",
                       "--end", "2025-11-29T02", "--out", str(tmp_path / "b2"))  # fmt: skip
    assert code == 2 and "not a UTC hour" in err
    run("dataset", "build", "--data-dir", str(filled))
    code, out, err = run("report", "--data-dir", str(filled), "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    assert "VERIFIED" in (tmp_path / "r.html").read_text()
