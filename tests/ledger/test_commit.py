"""Committing batches: kinds, idempotence, read-back of the written file, refusals."""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path

import pytest

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.canonical import canonical_json
from audit_pipeline.ledger.checkpoint import open_checkpoint
from audit_pipeline.ledger.commit import CommitError, Ledger, LedgerStateError
from audit_pipeline.ledger.events import EventLeaf, EventRecord, events_root
from audit_pipeline.ledger.keys import load_keyring, revoke_key
from audit_pipeline.ledger.layout import HOUR, PENDING, manifest_path


def test_kinds_paths_and_chain(six_hours: Ledger, lh) -> None:
    chain = six_hours.manifests()
    assert [m.manifest.kind for m in chain] == [
        "hour",
        "hour",
        "empty",
        "hour",
        "hour",
        "hour",
        "late",
    ]
    assert [m.sequence for m in chain] == list(range(7))
    assert chain[0].manifest.prev_manifest_sha256 == "00" * 32
    for prev, cur in itertools.pairwise(chain):
        assert cur.manifest.prev_manifest_sha256 == prev.sha256
    empty = chain[2].manifest
    assert (empty.data, empty.event_count, empty.min_date_create) == (None, 0, None)
    assert empty.events_root == merkle.empty_root().hex()
    late = chain[6].manifest
    assert late.window_start == lh.hour(1)
    assert late.data.path == "lake/date=2025-01-01/hour=01/00000006-late.jsonl"
    assert six_hours.committed_windows() == {lh.hour(h) for h in range(6)}
    assert len(six_hours.committed_event_ids(lh.hour(1))) == 5
    assert not lh.verify(six_hours.data_dir).findings


def test_manifest_describes_the_file_as_written(ledger: Ledger, lh) -> None:
    events = lh.make_events(0, 5)[::-1]  # write_jsonl sorts by id: file order != call order
    result = lh.commit(ledger, 0, events)
    path = ledger.data_dir / result.data_path
    rows = lh.JSONL.read_events(path)
    m = ledger.manifests()[0].manifest
    assert [r.event_id for r in rows] == sorted(e.event_id for e in events)
    assert m.events_root == merkle.root_hash([r.leaf_hash for r in rows]).hex()
    assert m.events_root != merkle.root_hash([e.leaf_hash for e in events]).hex()
    assert (m.data.rows, m.data.size) == (5, path.stat().st_size)
    assert (m.min_date_create, m.max_date_create) == (
        min(e.date_create for e in events),
        max(e.date_create for e in events),
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert stat.S_IMODE((ledger.data_dir / manifest_path(0)).stat().st_mode) == 0o444
    assert not os.listdir(ledger.data_dir / PENDING)


def test_same_events_again_commit_nothing(ledger: Ledger, lh) -> None:
    events = lh.make_events(3, 4)
    first = lh.commit(ledger, 3, events)
    again = lh.commit(ledger, 3, events)
    assert (first.sequence, first.kind, first.events_committed) == (0, "hour", 4)
    assert (again.sequence, again.kind, again.events_committed) == (None, None, 0)
    assert again.duplicates_skipped == 4 and again.missing_from_source == ()
    assert ledger.tree_size() == 1


def test_new_events_become_a_late_batch_and_missing_ids_are_reported(ledger: Ledger, lh) -> None:
    events = lh.make_events(3, 4)
    lh.commit(ledger, 3, events)
    extra = lh.make_events(3, 2, prefix="new")
    result = lh.commit(ledger, 3, [*events[1:], *extra, extra[0]])
    assert (result.sequence, result.kind, result.events_committed) == (1, "late", 2)
    assert result.duplicates_skipped == 3 + 1  # three held, one repeated in the input
    assert result.missing_from_source == (events[0].event_id,)
    assert ledger.committed_event_ids(lh.hour(3)) == {e.event_id for e in [*events, *extra]}
    assert not lh.verify(ledger.data_dir).findings


def test_empty_hour_then_events(ledger: Ledger, lh) -> None:
    assert lh.commit(ledger, 0, []).kind == "empty"
    assert lh.commit(ledger, 0, []).sequence is None
    assert lh.commit(ledger, 0, lh.make_events(0, 1)).kind == "late"


def test_events_outside_the_window_are_refused(ledger: Ledger, lh) -> None:
    stray = lh.make_events(4, 1)
    with pytest.raises(CommitError, match="outside window"):
        lh.commit(ledger, 3, [*lh.make_events(3, 2), *stray])
    assert ledger.tree_size() == 0


def test_window_must_be_one_utc_hour(ledger: Ledger, lh) -> None:
    for start, end in [(lh.T0 + 60, lh.T0 + 60 + HOUR), (lh.T0, lh.T0 + 2 * HOUR)]:
        with pytest.raises(CommitError, match="one UTC hour"):
            ledger.commit_batch(
                window_start=start,
                window_end=end,
                events=[],
                write_data=lh.write_jsonl,
                source={},
                run_id="r",
            )


def test_provenance_a_manifest_cannot_carry_is_refused_before_writing(ledger: Ledger, lh) -> None:
    for source, run_id, match in [
        ({"pages": 1.5}, "r", "float"),
        ({"at": object()}, "r", "source"),
        ({}, "", "run_id"),
    ]:
        with pytest.raises(CommitError, match=match):
            ledger.commit_batch(
                window_start=lh.hour(0),
                window_end=lh.hour(1),
                events=lh.make_events(0, 1),
                write_data=lh.write_jsonl,
                source=source,
                run_id=run_id,
            )
    assert ledger.tree_size() == 0 and not list(ledger.data_dir.glob("lake/**/*.jsonl"))


def _commit_three_written_by(ledger: Ledger, lh, write_data) -> None:
    ledger.commit_batch(
        window_start=lh.hour(0),
        window_end=lh.hour(1),
        events=lh.make_events(0, 3),
        write_data=write_data,
        source={},
        run_id="r",
    )


def test_a_writer_that_writes_other_rows_is_refused_and_cleaned(ledger: Ledger, lh) -> None:
    def lossy(events, path: Path) -> None:
        lh.write_jsonl(list(events)[:-1], path)

    with pytest.raises(CommitError, match="wrote 2 rows for 3 events"):
        _commit_three_written_by(ledger, lh, lossy)
    assert lh.commit(ledger, 0).sequence == 0
    assert not os.listdir(ledger.data_dir / PENDING)
    assert not lh.verify(ledger.data_dir).findings


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (list, "leaf written differs"),
        (lambda rows: list(reversed(rows)), "or different ids or leaves"),
    ],
)
def test_a_writer_that_alters_a_leaf_is_refused(ledger: Ledger, lh, order, message) -> None:
    """Same ids, times consistent with the leaf, but other leaf bytes than the event's: the
    read-back compares leaf hashes, with the rows in the events' order or not."""

    def altering(events, path: Path) -> None:
        rows = [e.leaf_data for e in sorted(events, key=lambda e: e.event_id)]
        entry = json.loads(rows[1])
        rows[1] = canonical_json({**entry, "action": "altered"})
        path.write_bytes(b"".join(r + b"\n" for r in order(rows)))

    with pytest.raises(CommitError, match=message):
        _commit_three_written_by(ledger, lh, altering)
    assert ledger.tree_size() == 0


def test_compact_events_commit_the_same_batch(ledger: Ledger, lh) -> None:
    """A writer holding the leaf bytes itself passes id, time and leaf hash only."""
    records = lh.make_events(0, 5)
    by_id = {r.event_id: r for r in records}
    compact = [EventLeaf(r.event_id, r.date_create, r.leaf_hash) for r in records]
    result = ledger.commit_batch(
        window_start=lh.hour(0),
        window_end=lh.hour(1),
        events=compact,
        write_data=lambda events, path: lh.write_jsonl([by_id[e.event_id] for e in events], path),
        source={},
        run_id="r",
    )
    manifest = ledger.manifests()[result.sequence].manifest
    written = sorted(records, key=lambda r: r.event_id)
    assert manifest.events_root == events_root(written).hex()
    assert (manifest.event_count, manifest.min_date_create) == (
        5,
        min(r.date_create for r in records),
    )
    assert not lh.verify(ledger.data_dir).findings


def test_a_row_whose_columns_disagree_with_its_leaf_is_refused(ledger: Ledger, lh) -> None:
    good = lh.make_events(0, 1)[0]

    class Lying:
        suffix = ".jsonl"

        def read_events(self, path):
            return [
                EventRecord(r.event_id, r.date_create + 1, r.leaf_data)
                for r in lh.JSONL.read_events(path)
            ]

        read_leaf_hashes = lh.JSONL.read_leaf_hashes

    ledger.file_format = Lying()
    with pytest.raises(CommitError, match="date_create"):
        lh.commit(ledger, 0, [good])


def test_created_never_goes_backwards(ledger: Ledger, lh) -> None:
    lh.commit(ledger, 0)
    ledger.clock = lambda: lh.CLOCK_START - 86_400
    lh.commit(ledger, 1)
    first, second = (m.manifest.created for m in ledger.manifests())
    assert second == first


def test_checkpoint_after_each_commit(six_hours: Ledger, lh) -> None:
    keyring = load_keyring(six_hours.data_dir)
    cp, note = open_checkpoint(six_hours.latest_checkpoint(), keyring.verifiers())
    leaves = [m.leaf_hash for m in six_hours.manifests()]
    assert (cp.origin, cp.tree_size, cp.root_hash) == (lh.ORIGIN, 7, merkle.root_hash(leaves))
    assert [s.name for s in note.sigs] == ["test-log"]
    sizes = sorted(p.name for p in (six_hours.data_dir / "ledger/checkpoints").iterdir())
    assert sizes == [f"{n:08d}.checkpoint" for n in range(1, 8)]


def test_refusals_without_a_usable_key(data_dir: Path, signing_key, other_key, lh) -> None:
    reader = Ledger(data_dir, file_format=lh.JSONL)
    with pytest.raises(ConfigurationError, match="without a signing key"):
        lh.commit(reader, 0)
    stranger = Ledger(data_dir, file_format=lh.JSONL, signer=other_key, clock=lh.Clock())
    with pytest.raises(ConfigurationError, match="unknown_key"):
        lh.commit(stranger, 0)
    revoke_key(data_dir, f"{signing_key.key_hash:08x}", at=lh.CLOCK_START - 1)
    owner = Ledger(data_dir, file_format=lh.JSONL, signer=signing_key, clock=lh.Clock())
    with pytest.raises(ConfigurationError, match="key_revoked"):
        lh.commit(owner, 0)
    assert not list(data_dir.glob("ledger/manifests/*")) and not list(data_dir.glob("lake/*"))


def test_origin_is_fixed_by_the_genesis(ledger: Ledger, lh) -> None:
    lh.commit(ledger, 0)
    other = Ledger(
        ledger.data_dir,
        file_format=lh.JSONL,
        signer=ledger.signer,
        origin="another/log",
        clock=lh.Clock(),
    )
    with pytest.raises(ConfigurationError, match="origin"):
        lh.commit(other, 1)
    implicit = Ledger(ledger.data_dir, file_format=lh.JSONL, signer=ledger.signer, clock=lh.Clock())
    assert lh.commit(implicit, 1).sequence == 1


def test_a_broken_ledger_is_not_extended(six_hours: Ledger, lh) -> None:
    fresh = Ledger(
        six_hours.data_dir, file_format=lh.JSONL, signer=six_hours.signer, clock=lh.Clock()
    )
    (six_hours.data_dir / manifest_path(3)).unlink()
    with pytest.raises(LedgerStateError, match=r"missing manifests 3"):
        lh.commit(fresh, 7)


def test_a_truncated_ledger_is_not_extended(six_hours: Ledger, lh) -> None:
    fresh = Ledger(
        six_hours.data_dir, file_format=lh.JSONL, signer=six_hours.signer, clock=lh.Clock()
    )
    (six_hours.data_dir / manifest_path(6)).unlink()
    with pytest.raises(LedgerStateError, match="truncated"):
        lh.commit(fresh, 7)
    assert not (six_hours.data_dir / manifest_path(6)).exists()


def test_late_batch_for_a_window_needs_its_earlier_files(six_hours: Ledger, lh) -> None:
    path = six_hours.data_dir / six_hours.manifests()[1].manifest.data.path
    path.unlink()
    with pytest.raises(LedgerStateError, match="missing"):
        lh.commit(six_hours, 1, lh.make_events(1, 1, prefix="later"))
