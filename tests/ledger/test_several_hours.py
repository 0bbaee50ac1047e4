"""Ids shared across hours are found by merging sorted hashes, then named from the files."""

from __future__ import annotations

from audit_pipeline.ledger.several_hours import id_hashes, ids_in_several_hours

H = 1795860000


def test_ids_in_two_hours_are_named_and_repeats_within_an_hour_are_not():
    files = {
        0: ["a", "b", "c"],  # hour 0
        1: ["d", "b"],  # hour 1: b is also in hour 0
        2: ["c", "e"],  # hour 0 again (a late batch): c repeats within its hour, no notice
        3: ["a", "b", "f"],  # hour 2: a and b were in hour 0
    }
    hours = {0: H, 1: H + 3600, 2: H, 3: H + 7200}
    reads: list[int] = []

    def read_ids(seq: int) -> list[str]:
        reads.append(seq)
        return files[seq]

    found = ids_in_several_hours(
        ((seq, hours[seq], id_hashes(ids)) for seq, ids in files.items()), read_ids
    )
    assert found == {1: [("b", H)], 3: [("a", H), ("b", H)]}
    assert 2 not in reads  # batch 2 shares no hash with another hour: never read again


def test_nothing_shared_reads_nothing():
    found = ids_in_several_hours(
        [(0, H, id_hashes(["a"])), (1, H + 3600, id_hashes(["b"]))], lambda seq: 1 / 0
    )
    assert found == {}


def test_hash_range_compared_in_slices_finds_the_same(monkeypatch):
    """With sets of two hashes at a time (many slices of the range), the same ids are found."""
    from audit_pipeline.ledger import several_hours

    files = {seq: [f"id{seq * 7 + i}" for i in range(20)] + ["shared"] for seq in range(5)}

    def found() -> dict[int, list[tuple[str, int]]]:
        batches = ((seq, H + 3600 * seq, id_hashes(ids)) for seq, ids in files.items())
        return ids_in_several_hours(batches, files.__getitem__)

    whole = found()
    monkeypatch.setattr(several_hours, "SLICE", 2)
    assert found() == whole
    assert whole[1][-1] == ("shared", H) and ("id7", H) in whole[1] and len(whole) == 4
