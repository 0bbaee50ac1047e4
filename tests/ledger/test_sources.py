"""Several sources in one ledger: ``source.name`` scopes hours, kinds, ids, paths, coverage."""

from __future__ import annotations

from dataclasses import replace

import pytest

from audit_pipeline.ledger.commit import CommitError
from audit_pipeline.ledger.layout import HOUR, manifest_path
from audit_pipeline.ledger.manifest import (
    AUDIT_LOGS_SOURCE,
    parse_manifest,
    sign_manifest,
    source_name,
)

from .conftest import codes, hour, make_events, make_writable, resign, verify, write_jsonl

ACTIVITIES = "slack_app_activities"


def commit_source(ledger, hour_index: int, name: str | None, events=None, n: int = 2):
    source = {"api_url": "https://slack.test/api", "pages": 1}
    if name is not None:
        source["name"] = name
    return ledger.commit_batch(
        window_start=hour(hour_index),
        window_end=hour(hour_index) + HOUR,
        events=make_events(hour_index, n, prefix=name or "audit") if events is None else events,
        write_data=write_jsonl,
        source=source,
        run_id="r",
    )


def test_each_source_has_its_own_first_batch_ids_and_partition(ledger, data_dir):
    first = commit_source(ledger, 0, None)
    other = commit_source(ledger, 0, ACTIVITIES)
    assert (first.kind, other.kind) == ("hour", "hour")  # not "late": another source
    assert other.data_path.startswith(f"lake/source={ACTIVITIES}/date=")
    late = commit_source(ledger, 0, ACTIVITIES, events=make_events(0, 3, prefix=ACTIVITIES))
    assert (late.kind, late.events_committed, late.duplicates_skipped) == ("late", 1, 2)
    again = commit_source(ledger, 0, None)
    assert again.sequence is None and again.missing_from_source == ()
    assert ledger.committed_windows() == {hour(0)}
    assert ledger.committed_windows(ACTIVITIES) == {hour(0)}
    assert [source_name(m.manifest) for m in ledger.manifests()] == [
        AUDIT_LOGS_SOURCE,
        ACTIVITIES,
        ACTIVITIES,
    ]
    report = verify(data_dir)
    assert report, report.summary()


def test_coverage_is_per_source(ledger, data_dir):
    for index in (0, 1, 2):
        commit_source(ledger, index, None)
    commit_source(ledger, 0, ACTIVITIES)
    commit_source(ledger, 2, ACTIVITIES)  # hour 1 of the activities is missing
    report = verify(data_dir)
    assert codes(report) == {"hour_missing"}
    (finding,) = report.findings
    assert ACTIVITIES in finding.location and report.intact


def test_a_second_first_batch_of_the_same_source_is_still_a_duplicate(
    ledger, data_dir, signing_key
):
    commit_source(ledger, 0, ACTIVITIES)
    commit_source(ledger, 0, ACTIVITIES, events=make_events(0, 3, prefix=ACTIVITIES))

    def forge(payload):  # relabel the late batch as a second "hour" batch
        payload["kind"] = "hour"
        payload["data"]["path"] = payload["data"]["path"].replace("-late", "-hour")

    resign(data_dir, 1, signing_key, forge)
    assert "duplicate_window" in codes(verify(data_dir))


def test_a_file_in_another_sources_partition_or_a_bad_name_is_refused(
    ledger, data_dir, signing_key
):
    commit_source(ledger, 0, ACTIVITIES)

    def move(payload):  # claims the audit logs' directory for an activities batch
        payload["data"]["path"] = payload["data"]["path"].replace(f"source={ACTIVITIES}/", "")

    resign(data_dir, 0, signing_key, move)
    assert "path_mismatch" in codes(verify(data_dir))
    path = data_dir / manifest_path(0)
    signed = parse_manifest(path.read_bytes()).manifest
    bad = replace(signed, source={**signed.source, "name": "../x"})  # signed by the key holder
    make_writable(path)
    path.write_bytes(sign_manifest(bad, signing_key).raw)
    assert "malformed_manifest" in codes(verify(data_dir))
    with pytest.raises(CommitError, match="not a source name"):
        commit_source(ledger, 1, "Bad/Name")
