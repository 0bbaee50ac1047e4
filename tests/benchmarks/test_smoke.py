"""The benchmark scripts keep working: every benchmark at the tiny size, and the fast
ledger builder they rely on produces a ledger the real verifier and committer accept.

No timing is asserted: speed is measured by ``make bench``, not by tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import verify_ledger

# benchmarks/ is a top-level package beside audit_pipeline, not installed: import it from
# the checkout (pytest runs with --import-mode=importlib, which adds no rootdir to the path).
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.__main__ import NAMES, YEAR_START  # noqa: E402
from benchmarks.ledgers import build_ledger, prefix_copy  # noqa: E402
from benchmarks.verify import add_hour  # noqa: E402


def test_bulk_built_ledger_verifies_and_extends_with_a_real_commit(tmp_path):
    year = build_ledger(
        tmp_path / "year", start=YEAR_START, hours=30, events_per_hour=8, checkpoint_sizes=(12,)
    )
    assert year.events > 0 and sorted(year.checkpoints) == [12, 30]
    report = verify_ledger(year.data_dir, file_format=PARQUET_FORMAT)
    assert report, report.summary()
    assert report.tree_size == 30 and report.checked["events"] == year.events

    week = prefix_copy(year, tmp_path / "prefix", 12)
    assert verify_ledger(week.data_dir, file_format=PARQUET_FORMAT).tree_size == 12
    add_hour(week, 8)
    after = verify_ledger(
        week.data_dir,
        file_format=PARQUET_FORMAT,
        trusted_checkpoint=week.checkpoints[12],
        incremental=True,
    )
    assert after, after.summary()
    assert after.tree_size == 13 and after.incremental_from == 12


def test_reused_weeks_get_fresh_ids(tmp_path):
    year = build_ledger(tmp_path / "y", start=YEAR_START, hours=24 * 7 + 3, events_per_hour=4)
    report = verify_ledger(year.data_dir, file_format=PARQUET_FORMAT)
    assert report, report.summary()  # a repeated id in a window would be a finding


@pytest.mark.e2e
@pytest.mark.slow
def test_every_benchmark_runs_at_the_tiny_size(tmp_path):
    results = tmp_path / "RESULTS.md"
    # the object-store column has its own test below (it skips without SeaweedFS)
    names = [name for name in NAMES if name != "object_store"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--size",
            "tiny",
            "--only",
            ",".join(names),
            "--results",
            str(results),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = results.read_text()
    assert "## Benchmarks that failed" not in text
    for name in names:
        assert f"## {name} (" in text, f"section {name} missing"
    for case in (
        "pipeline / floor",
        "full verify, file level (vs SHA-256 floor)",
        "full verify, row level, --jobs 1 (vs row floor)",
        "full verify, row level, --jobs 2 / --jobs 1",
        "incremental verify, year / week",
        "group by action: dataset / one file",
        "lookup by event id (dataset)",
        "prove (event's hour known)",
        "verify-proof",
        "proof size",
        "backfill time / minimum the limit allows",
        "single run vs one run per partition",
    ):
        assert case in text and case in proc.stdout, case
    assert "- machine: " in text and "cores" in text and "Python 3." in text


@pytest.mark.e2e
def test_the_object_store_column_at_the_tiny_size(tmp_path, service_missing):
    """SeaweedFS against the local directory: every ratio row, and the year's check."""
    from benchmarks import object_store
    from benchmarks.config import TINY

    year = build_ledger(
        tmp_path / "year", start=YEAR_START, hours=24, events_per_hour=8, checkpoint_sizes=(12,)
    )
    section = object_store.run(TINY, tmp_path, year, lambda message: None)
    skipped = [row for row in section.rows if row.status == "skipped"]
    if skipped:  # (with AUDIT_PIPELINE_REQUIRE_SERVICES=1 the benchmark raises instead)
        service_missing(skipped[0].detail)
    rows = {row.case: row for row in section.rows}
    for case in ("sync of 2 hours", "full verify", "incremental verify after 1 more hour",
                 "dataset build"):  # fmt: skip
        row = rows[f"{case}: object store / local"]
        assert row.value.endswith("x") and float(row.value[:-1]) > 0, row
    year_row = rows["incremental verify, a year on the object store / local"]
    assert year_row.status in ("met", "MISSED") and "24 batches + 1" in year_row.detail
