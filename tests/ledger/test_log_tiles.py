"""Hash tiles written by commits: proofs use them only when they give the signed root,
an altered tile is a finding, and a ledger without tiles gets them on its next commit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from audit_pipeline.ledger import Ledger, prove_event, verify_event_proof
from audit_pipeline.ledger.batch_index import IndexFile, open_index, sign_index
from audit_pipeline.ledger.keys import load_keyring
from audit_pipeline.ledger.proofs import proof_bytes
from audit_pipeline.ledger.tiles import TILES, tile_path

from . import conftest as lh

BATCHES = 257


@pytest.fixture(scope="module")
def tiled_template(tmp_path_factory: pytest.TempPathFactory, test_skey: str) -> Path:
    ledger = _hourly(tmp_path_factory.mktemp("tiled"), test_skey, BATCHES)
    return ledger.data_dir


def _hourly(root: Path, skey: str, hours: int) -> Ledger:
    """A ledger in ``root/data`` with one batch of one event for each of ``hours`` hours."""
    data = root / "data"
    data.mkdir()
    lh.write_key(root / "key", skey)
    signer, _, _ = lh.init_key(data, root / "key", name="test-log", now=lh.KEY_EPOCH)
    ledger = Ledger(data, file_format=lh.JSONL, signer=signer, origin=lh.ORIGIN, clock=lh.Clock())
    for h in range(hours):
        lh.commit(ledger, h, n=1)
    return ledger


@pytest.fixture
def tiled(tmp_path: Path, tiled_template: Path) -> Path:
    return lh.copy_data_dir(tiled_template, tmp_path / "tiled")


def _proves(data_dir: Path, hour_index: int) -> None:
    event_id = f"ev-{hour_index:04d}-00000"
    proof = prove_event(data_dir, event_id, file_format=lh.JSONL, window_start=lh.hour(hour_index))
    verified = verify_event_proof(proof_bytes(proof), load_keyring(data_dir))
    assert (verified.event_id, verified.batch_sequence) == (event_id, hour_index)


def test_commits_write_tiles_and_verify_checks_them(tiled: Path) -> None:
    stored = sorted(p.relative_to(tiled).as_posix() for p in (tiled / TILES).rglob("*"))
    assert [p for p in stored if not (tiled / p).is_dir()] == [
        tile_path(0, 0),
        tile_path(1, 0, 1),
    ]
    assert (tiled / tile_path(0, 0)).stat().st_mode & 0o777 == 0o444
    assert len((tiled / tile_path(0, 0)).read_bytes()) == 256 * 32
    report = lh.verify(tiled)
    assert report.ok, report.summary()
    assert report.checked["log_tiles"] == 2
    _proves(tiled, 3)
    _proves(tiled, 256)


@pytest.mark.parametrize("tile", [tile_path(0, 0), tile_path(1, 0, 1)])
def test_an_altered_tile_is_a_finding_and_proofs_fall_back(tiled: Path, tile: str) -> None:
    path = tiled / tile
    lh.make_writable(path)
    raw = bytearray(path.read_bytes())
    raw[min(5 * 32, len(raw) - 1)] ^= 1
    path.write_bytes(bytes(raw))
    report = lh.verify(tiled)
    assert lh.codes(report) == {"log_tile_mismatch"}
    assert report.findings[0].location == tile
    _proves(tiled, 5)


def test_a_stray_file_among_the_tiles_is_unexpected(tiled: Path) -> None:
    (tiled / TILES / "0" / "x1").write_bytes(b"")
    assert lh.codes(lh.verify(tiled)) == {"unexpected_file"}


def test_a_ledger_without_tiles_proves_and_gets_them_on_its_next_commit(
    tiled: Path, signing_key, clock
) -> None:
    for path in (tiled / TILES).rglob("*"):
        if not path.is_dir():
            os.chmod(path, 0o644)
    shutil.rmtree(tiled / TILES)
    assert lh.verify(tiled).ok
    _proves(tiled, 7)
    clock.now = lh.CLOCK_START + 10_000
    ledger = Ledger(tiled, file_format=lh.JSONL, signer=signing_key, origin=lh.ORIGIN, clock=clock)
    lh.commit(ledger, BATCHES, n=1)
    assert (tiled / tile_path(0, 0)).is_file() and (tiled / tile_path(1, 0, 1)).is_file()
    assert lh.verify(tiled).checked["log_tiles"] == 2


def _trusted(data_dir: Path, size: int) -> bytes:
    return (data_dir / "ledger" / "checkpoints" / f"{size:08d}.checkpoint").read_bytes()


def test_index_files_are_written_and_checked(tiled: Path) -> None:
    index = tiled / "ledger" / "index" / "00000000.idx"
    assert index.is_file() and index.stat().st_mode & 0o777 == 0o444
    assert lh.verify(tiled).checked["batch_index_files"] == 1
    lh.make_writable(index)
    edited = index.read_bytes().replace(b" hour\n", b" late\n", 1)
    assert edited != index.read_bytes()
    index.write_bytes(edited)
    report = lh.verify(tiled)
    assert [(f.code, f.location) for f in report.findings] == [
        ("log_tile_mismatch", "ledger/index/00000000.idx")
    ]


def test_incremental_verify_reads_only_what_is_new(tiled: Path, signing_key, clock) -> None:
    clock.now = lh.CLOCK_START + 10_000
    ledger = Ledger(tiled, file_format=lh.JSONL, signer=signing_key, origin=lh.ORIGIN, clock=clock)
    lh.commit(ledger, BATCHES, n=1)
    report = lh.verify(tiled, trusted_checkpoint=_trusted(tiled, BATCHES), incremental=True)
    assert report.ok, report.summary()
    assert report.checked["manifests"] < 10  # the new batch, its predecessor: no history
    assert report.incremental_from == BATCHES


def _second_first_batch(tiled: Path, signing_key, clock, hour: int = 3) -> None:
    """A key holder commits batch 257: an old hour's events again, as its first batch."""
    clock.now = lh.CLOCK_START + 10_000
    ledger = Ledger(tiled, file_format=lh.JSONL, signer=signing_key, origin=lh.ORIGIN, clock=clock)
    again = lh.JSONL.read_events(tiled / ledger.manifests()[hour].manifest.data.path)
    with ledger.storage.lock():
        ledger._append(
            ledger._view(),
            window_start=lh.hour(hour),
            kind="hour",
            events=again,
            write_data=lh.write_jsonl,
            source={},
            run_id="dup",
        )


def test_incremental_verify_sees_a_second_first_batch_of_an_old_hour(
    tiled: Path, signing_key, clock
) -> None:
    """Hour 3's first batch lies in the tiles' range: the signed index still finds it."""
    _second_first_batch(tiled, signing_key, clock)
    report = lh.verify(tiled, trusted_checkpoint=_trusted(tiled, BATCHES), incremental=True)
    assert lh.codes(report) == {"duplicate_window", "duplicate_event_id"}
    assert report.checked["manifests"] < 10


def test_incremental_verify_with_an_altered_tile_reads_everything(tiled: Path) -> None:
    path = tiled / tile_path(1, 0, 1)
    lh.make_writable(path)
    path.write_bytes(bytes(32))
    report = lh.verify(tiled, trusted_checkpoint=_trusted(tiled, BATCHES), incremental=True)
    assert lh.codes(report) == {"log_tile_mismatch"}
    assert report.checked["manifests"] == BATCHES


def test_commits_find_an_old_hour_through_the_index(tiled: Path, signing_key, clock) -> None:
    clock.now = lh.CLOCK_START + 10_000
    ledger = Ledger(tiled, file_format=lh.JSONL, signer=signing_key, origin=lh.ORIGIN, clock=clock)
    index = tiled / "ledger" / "index" / "00000000.idx"
    lh.make_writable(index)
    index.unlink()  # read from the manifests instead, and written again
    assert lh.commit(ledger, 3, n=1).sequence is None  # already committed: nothing new
    result = lh.commit(ledger, 3, lh.make_events(3, 2, prefix="more"))
    assert (result.sequence, result.kind) == (BATCHES, "late")
    assert index.is_file()
    assert lh.hour(3) in ledger.committed_windows() and ledger.tree_size() == BATCHES + 1
    assert lh.verify(tiled).ok


@pytest.mark.parametrize(
    ("hour", "trusted", "remove_data"),
    [(3, BATCHES, False), (3, BATCHES, True), (255, 256, True)],
    ids=["data-kept", "data-removed", "newest-indexed-hour"],
)
def test_a_key_holder_rewriting_the_index_cannot_hide_a_duplicate_window(
    tiled: Path, signing_key, clock, hour: int, trusted: int, remove_data: bool
) -> None:
    """A key holder commits a second first batch for an old hour, then re-signs the index
    file so that it gives the hour's batch to the hour before (a late batch there). The
    incremental run finds that batch's data file in the hour's partition; or (the file
    removed too) a new first batch for an hour inside the history that no earlier batch
    holds; or (the newest indexed hour, trusted at the tile's end) the batch before the
    checkpoint, which it reads, described otherwise. Each time it reads every manifest
    instead and reports the duplicate and the false index file."""
    _second_first_batch(tiled, signing_key, clock, hour)
    if remove_data:
        (tiled / f"lake/date=2025-01-{1 + hour // 24:02d}/hour={hour % 24:02d}").joinpath(
            f"{hour:08d}-hour.jsonl"
        ).unlink()
    index = tiled / "ledger" / "index" / "00000000.idx"
    stored = open_index(index.read_bytes(), load_keyring(tiled), lh.ORIGIN, 0)
    assert stored is not None
    refs = stored.refs()
    refs[hour] = refs[hour]._replace(window_start=lh.hour(hour - 1), kind="late")
    lh.make_writable(index)
    index.write_bytes(sign_index(signing_key, lh.ORIGIN, BATCHES, clock.now, refs))
    assert open_index(index.read_bytes(), load_keyring(tiled), lh.ORIGIN, 0) is not None

    report = lh.verify(tiled, trusted_checkpoint=_trusted(tiled, trusted), incremental=True)
    found = {(f.code, f.location) for f in report.findings}
    assert ("duplicate_window", f"ledger/manifests/{BATCHES:08d}.json") in found
    assert ("log_tile_mismatch", "ledger/index/00000000.idx") in found
    assert report.checked["manifests"] == BATCHES + 1  # every manifest, not the index


@pytest.fixture(scope="module")
def late_at_tile_end_template(tmp_path_factory: pytest.TempPathFactory, test_skey: str) -> Path:
    """Hours 0..254, then a late batch for hour 100: the whole tile's newest hour (254)
    is not its last batch."""
    ledger = _hourly(tmp_path_factory.mktemp("late-at-tile-end"), test_skey, 255)
    assert lh.commit(ledger, 100, lh.make_events(100, 1, prefix="late")).kind == "late"
    return ledger.data_dir


def test_an_index_hiding_the_newest_hours_batch_is_caught_by_its_data_file(
    tmp_path: Path, late_at_tile_end_template: Path, signing_key, clock
) -> None:
    """The index gives hour 254's only batch to hour 253, so the hour looks new to a run
    trusting the tile's end (the batch before it is hour 100's late one): the batch's data
    file, still in hour 254's partition, gives the index away."""
    data = lh.copy_data_dir(late_at_tile_end_template, tmp_path / "late")
    _second_first_batch(data, signing_key, clock, 254)
    index = data / "ledger" / "index" / "00000000.idx"
    refs = open_index(index.read_bytes(), load_keyring(data), lh.ORIGIN, 0).refs()
    refs[254] = refs[254]._replace(window_start=lh.hour(253), kind="late")
    lh.make_writable(index)
    index.write_bytes(sign_index(signing_key, lh.ORIGIN, 256, clock.now, refs))

    report = lh.verify(data, trusted_checkpoint=_trusted(data, 256), incremental=True)
    found = {(f.code, f.location) for f in report.findings}
    assert ("duplicate_window", "ledger/manifests/00000256.json") in found
    assert ("log_tile_mismatch", "ledger/index/00000000.idx") in found
    assert report.checked["manifests"] == 257


@pytest.mark.parametrize(
    "lines",
    [
        [f"slack_audit_logs {lh.hour(h)} hour" for h in range(256)],
        [f"slack_audit_logs {lh.hour(h // 2)} {'late' if h % 2 else 'hour'}" for h in range(256)],
        [
            f"{'slack_app_activities' if h % 3 else 'slack_audit_logs'} {lh.hour(h)} hour"
            for h in range(256)
        ],
        [f"slack_audit_logs {lh.hour(h) + (7 if h == 9 else 0)} hour" for h in range(256)],
    ],
    ids=["one-source", "late-batches", "two-sources", "odd-window"],
)
def test_index_extremes_hold_each_sources_earliest_and_latest_hour(lines: list[str]) -> None:
    refs = IndexFile(0, 0, 0, list(lines)).refs()
    windows = [r.window_start for r in refs]
    extremes = IndexFile(0, min(windows), max(windows), list(lines)).extremes()
    assert set(extremes) <= set(refs)
    for source in {r.source for r in refs}:
        for whole in (False, True):
            mine = [r.window_start for r in refs if r.source == source]
            kept = [r.window_start for r in extremes if r.source == source]
            if whole:
                mine, kept = [w for w in mine if w % 3600 == 0], [w for w in kept if w % 3600 == 0]
            assert (min(kept), max(kept)) == (min(mine), max(mine))


def test_index_extremes_of_a_malformed_file_raise() -> None:
    lines = [f"slack_audit_logs {lh.hour(h)} hour" for h in range(256)]
    lines[7] = "slack_audit_logs 12x hour"
    with pytest.raises(ValueError, match="line 7"):
        IndexFile(0, lh.hour(0), lh.hour(255), lines).extremes()


def test_incremental_verify_probes_new_manifest_names_without_following_links(
    tiled: Path,
) -> None:
    """The run finds the log's size by probing names after the checkpoint: a dangling link
    where the next manifest would be is still seen (and named), as a listing saw it."""
    (tiled / "ledger" / "manifests" / f"{BATCHES:08d}.json").symlink_to(tiled / "nowhere")
    report = lh.verify(tiled, trusted_checkpoint=_trusted(tiled, BATCHES), incremental=True)
    assert ("not_regular_file", f"ledger/manifests/{BATCHES:08d}.json") in {
        (f.code, f.location) for f in report.findings
    }
