"""The verification report reads well: one line per cause with a count, the command that
fills a gap, correct plurals, and nothing odd when an incremental run finds nothing new."""

from __future__ import annotations

from datetime import UTC, datetime

from audit_pipeline.ledger.report_text import hour_runs
from audit_pipeline.ledger.verify import Finding, FindingCode, VerifyReport


def _label(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:00Z")


def test_a_fifteen_hour_gap_is_one_line_with_the_command_that_fills_it(ledger, lh) -> None:
    for h in (0, 1, 17):
        lh.commit(ledger, h, n=1)
    report = lh.verify(ledger.data_dir)
    assert report.codes() == {"hour_missing": 15}
    lines = report.summary().splitlines()
    assert lines[0].startswith("FAIL: 15 findings (hour_missing x15); 3 batches; ")
    assert lines[1] == (
        f"  hour_missing: 15 hours without a batch, in 1 gap: "
        f"{_label(lh.hour(2))}..{_label(lh.hour(16))}"
    )
    assert lines[2] == (
        f"    fill with: audit-pipeline sync --start {_label(lh.hour(2))} "
        f"--end {_label(lh.hour(17))}"
    )
    assert not any("hours missing between" in line for line in lines)


def test_the_suggested_hours_are_what_sync_accepts(lh) -> None:
    from audit_pipeline.ingest import parse_hour

    assert parse_hour(_label(lh.hour(2))) == lh.hour(2)


def test_repeated_causes_are_one_line_each() -> None:
    findings = [
        Finding(FindingCode.MALFORMED_MANIFEST, "ledger/manifests/3.json", None, None, "bad"),
        *(
            Finding(FindingCode.CHECKPOINT_MISMATCH, f"cp/{n}", "a", "b", "follows")
            for n in range(4, 18)
        ),
    ]
    report = VerifyReport(
        findings=tuple(findings), notices=(), checked={"signatures": 1}, tree_size=1,
        root_hash=None, checkpoint=None, origin="o", keyring_source="k", trusted_keys=True,
    )  # fmt: skip
    lines = report.summary().splitlines()
    assert lines[0].startswith("FAIL: 15 findings (checkpoint_mismatch x14, malformed_manifest x1)")
    assert "1 batch; 1 signature, 0 data files (0 bytes)" in lines[0]
    assert lines[1:3] == [
        "  malformed_manifest: ledger/manifests/3.json: bad",
        "  checkpoint_mismatch x14, first: cp/4: follows (expected a, found b) (all 14 in --json)",
    ]
    assert lines[3].startswith("  anchored: false")  # no trusted checkpoint was given


def test_an_incremental_run_with_nothing_new_says_so(six_hours, lh) -> None:
    held = six_hours.latest_checkpoint()
    report = lh.verify(six_hours.data_dir, trusted_checkpoint=held, incremental=True)
    assert report.ok
    assert "no batches after the trusted checkpoint (size 7)" in report.summary()
    assert ".." not in report.summary().split(";")[0]


def test_hours_missing_outside_the_range_do_not_fail_it(ledger, lh) -> None:
    for h in (0, 1, 5, 6, 7):
        lh.commit(ledger, h, n=1)
    assert lh.verify(ledger.data_dir).codes() == {"hour_missing": 3}
    report = lh.verify(ledger.data_dir, data_range=(lh.hour(5), lh.hour(8)))
    assert report.ok, report.summary()
    assert [n.code for n in report.notices] == ["hours_missing_outside_range"]
    inside = lh.verify(ledger.data_dir, data_range=(lh.hour(1), lh.hour(6)))
    assert inside.codes() == {"hour_missing": 3}


def test_hour_runs_fold_consecutive_hours() -> None:
    assert hour_runs([7200, 0, 3600, 36000]) == [(0, 10800), (36000, 39600)]
    assert hour_runs([]) == []
