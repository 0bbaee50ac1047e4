"""Reading witnessed checkpoints in both layouts: a size's records are one union of
cosignatures, a record that cannot be merged takes nothing away, refusals are read from
the local file and from one-object-each records alike."""

from __future__ import annotations

from pathlib import Path

import orjson

from audit_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
from audit_pipeline.ledger.cosignature import WitnessSigner, with_cosignatures
from audit_pipeline.ledger.layout import LocalStorage
from audit_pipeline.ledger.note import Signer, generate_key
from audit_pipeline.ledger.witnessed import (
    REFUSALS,
    WITNESSED,
    check_witnessed,
    cosigned_checkpoint,
    is_witness_record,
    parse_witnessed_name,
    read_witnessed,
    refusal_record_path,
    witnessed_path,
)

ORIGIN = "audit-pipeline/ledger"
ROOT = bytes(range(32))


def _setup(tmp_path: Path):
    log = Signer.from_private_key(generate_key("audit-pipeline")[0])
    cp = sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), log)
    witnesses = [WitnessSigner.generate(f"witness.test/w{i}") for i in (1, 2, 3)]
    text = Checkpoint(ORIGIN, 3, ROOT).to_text()
    return LocalStorage(tmp_path), cp, text, witnesses


def _check(storage: LocalStorage, witnesses, quorum: int):
    keys = [w.key for w in witnesses]
    return check_witnessed(
        storage, keys, quorum, origin=ORIGIN, size=3, root_at=lambda n: ROOT if n == 3 else None
    )


def test_record_names_round_trip_and_others_are_not_records() -> None:
    assert witnessed_path(3) == "ledger/witnessed/00000003.checkpoint"
    assert witnessed_path(3, 2) == "ledger/witnessed/00000003.2.checkpoint"
    assert parse_witnessed_name("00000003.2.checkpoint") == (3, 2)
    assert parse_witnessed_name("00000003.checkpoint") == (3, 1)
    for name in ("00000003.1.checkpoint", "00000003.02.checkpoint", "3.2.checkpoint"):
        assert parse_witnessed_name(name) is None
    assert not is_witness_record("ledger/witnessed/hints.json")
    assert not is_witness_record(REFUSALS)
    assert is_witness_record(refusal_record_path(b"{}", 3))


def test_a_sizes_records_are_one_union_of_cosignatures(tmp_path: Path) -> None:
    storage, cp, text, (w1, w2, w3) = _setup(tmp_path)
    storage.replace(witnessed_path(3), with_cosignatures(cp, [w1.cosign(text)]))
    storage.replace(witnessed_path(3, 2), with_cosignatures(cp, [w2.cosign(text)]))
    verdict = _check(storage, [w1, w2, w3], 2)
    assert verdict.met and [c["witness"] for c in verdict.latest] == [w1.name, w2.name]
    merged = cosigned_checkpoint(storage, cp, 3)
    assert merged.startswith(cp) and merged.count(b"\n\xe2\x80\x94 ") == 3  # log, w1, w2

    # a record at that size that cannot be merged (too many lines) takes nothing away
    junk = with_cosignatures(cp, [w3.cosign(text, timestamp=t) for t in range(1, 99)])
    storage.replace(witnessed_path(3, 3), junk)
    verdict = _check(storage, [w1, w2, w3], 3)
    assert verdict.met, verdict.problems
    assert [c["witness"] for c in verdict.latest] == [w1.name, w2.name, w3.name]


def test_refusals_from_the_file_and_from_records_are_both_conflicts(tmp_path: Path) -> None:
    storage, cp, text, (w1, w2, _) = _setup(tmp_path)
    storage.replace(witnessed_path(3), with_cosignatures(cp, [w1.cosign(text)]))
    refusal = {"witness": "w2", "tree_size": 3, "inconsistent": True, "detail": "409"}
    storage.replace(REFUSALS, orjson.dumps(refusal) + b"\n")
    raw = orjson.dumps({**refusal, "witness": "w1"})
    storage.replace(refusal_record_path(raw, 3), raw)
    storage.replace(refusal_record_path(b"{}", 4), b"{}")  # a refusal that is no conflict
    verdict = _check(storage, [w1, w2], 1)
    conflicts = {p[1] for p in verdict.problems if p[0] == "witness_conflict"}
    assert conflicts == {REFUSALS, refusal_record_path(raw, 3)}


def test_records_are_read_from_the_size_asked_for_with_every_round(tmp_path: Path) -> None:
    """The listing starts at the first size asked for: a round's name sorts before its
    size's first record, so neither the earlier size's rounds nor a later one leak in."""
    storage = LocalStorage(tmp_path)
    folder = tmp_path / WITNESSED
    folder.mkdir(parents=True)
    for size in (2, 3, 4):
        for round_ in (1, 2):
            (tmp_path / witnessed_path(size, round_)).write_bytes(f"{size}/{round_}".encode())
    (folder / "refusals.jsonl").write_bytes(b"{}\n")

    def sizes(**kw: int) -> list[tuple[int, bytes]]:
        return [(size, raw) for size, _, raw in read_witnessed(storage, **kw)]

    assert sizes(only=3) == [(3, b"3/1"), (3, b"3/2")]
    assert sizes(from_size=3) == [(3, b"3/1"), (3, b"3/2"), (4, b"4/1"), (4, b"4/2")]
    assert [s for s, _ in sizes()] == [2, 2, 3, 3, 4, 4]
