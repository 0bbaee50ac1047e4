"""Witnessed checkpoints on disk, and what a verifier holding witness keys concludes from them.

::

    ledger/witnessed/<tree size>.checkpoint   the log's checkpoint plus every cosignature
                                              line witnesses returned for it
    ledger/witnessed/<tree size>.<n>.checkpoint
                                              object store: round n (2, 3, ...) for the
                                              same size, with the cosignatures it added
    ledger/witnessed/refusals.jsonl           one JSON object a line per refusal the
                                              committer saw (witness, size, status, detail)
    ledger/witnessed/refusals/<size>-<sha256 prefix>.json
                                              object store: one refusal per object

A local data directory rewrites the first and appends to the third; an object store takes
every record once (create-only), so a size's cosignatures are the union of its records
and its refusals are one object each. Readers take both layouts wherever they find them.
The files are written by the committer after each commit (``audit_pipeline.witness``);
nothing here trusts them blindly: a cosignature counts only when it verifies under a witness
key the verifier brought. The verdicts (:func:`check_witnessed`):

- the checkpoint of the log's current size must carry cosignatures from ``quorum`` distinct
  trusted witnesses and match the log's root, else ``witness_quorum_missing``;
- any checkpoint a trusted witness cosigned that the log no longer extends (larger than the
  log, or a different root at its size) is ``witness_conflict``: the witness saw a history
  the log has since dropped or rewritten;
- a refusal the committer recorded because a witness found the log inconsistent is
  ``witness_conflict`` too (the committer's record, kept beside the log);
- a cosignature line by a trusted witness key that does not verify, on the latest or on a
  conflicting checkpoint, is ``witness_bad_cosignature`` (checkpoints the log agrees with
  are compared with it but their cosignatures are not checked: they vouch for nothing the
  latest checkpoint's cosignatures do not).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from audit_pipeline.ledger.checkpoint import Checkpoint, parse_checkpoint
from audit_pipeline.ledger.cosignature import (
    Cosignatures,
    WitnessKey,
    cosignatures,
    with_cosignatures,
)
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    SEQ_WIDTH,
    LocalStorage,
    numbered_name,
    parse_numbered_name,
)
from audit_pipeline.ledger.note import split_note

WITNESSED = "ledger/witnessed"
REFUSALS = f"{WITNESSED}/refusals.jsonl"
REFUSAL_RECORDS = f"{WITNESSED}/refusals"
_ROUND = re.compile(r"^([0-9]+)\.([1-9][0-9]*)" + re.escape(CHECKPOINT_SUFFIX) + "$")
_REFUSAL_RECORD = re.compile(r"^[0-9]{8,}-[0-9a-f]{16}\.json$")


def witnessed_path(tree_size: int, round_: int = 1) -> str:
    """witnessed_path is where round ``round_`` of witnessing ``tree_size`` is kept (a local
    data directory only ever has round 1, rewritten as cosignatures arrive)."""
    if round_ == 1:
        return f"{WITNESSED}/{numbered_name(tree_size, CHECKPOINT_SUFFIX)}"
    return f"{WITNESSED}/{numbered_name(tree_size, f'.{round_}{CHECKPOINT_SUFFIX}')}"


def parse_witnessed_name(name: str) -> tuple[int, int] | None:
    """parse_witnessed_name returns (tree size, round) for a canonical witnessed record's
    file name, else None."""
    size = parse_numbered_name(name, CHECKPOINT_SUFFIX)
    if size is not None:
        return size, 1
    match = _ROUND.match(name)
    if match is None:
        return None
    size, round_ = int(match.group(1)), int(match.group(2))
    return (size, round_) if f"{WITNESSED}/{name}" == witnessed_path(size, round_) else None


def is_witness_record(key: str) -> bool:
    """is_witness_record: ``key`` is a record the committer creates under ``ledger/witnessed/``
    on an object store (a round's witnessed checkpoint or one refusal)."""
    folder, _, name = key.rpartition("/")
    if folder == WITNESSED:
        return parse_witnessed_name(name) is not None
    return folder == REFUSAL_RECORDS and _REFUSAL_RECORD.match(name) is not None


def refusal_record_path(record: bytes, tree_size: int) -> str:
    """refusal_record_path names the object one refusal is created as (its content's hash:
    the same refusal written twice is one object)."""
    digest = hashlib.sha256(record).hexdigest()[:16]
    return f"{REFUSAL_RECORDS}/{tree_size:0{SEQ_WIDTH}d}-{digest}.json"


def default_quorum(keys: Sequence[WitnessKey], quorum: int | None) -> int:
    """default_quorum: every given witness unless a smaller quorum was asked for."""
    return len(keys) if quorum is None else quorum


@dataclass(frozen=True)
class WitnessVerdict:
    """WitnessVerdict: what the witness keys say about the log, for reports and findings."""

    quorum: int
    keys: tuple[str, ...]
    latest_size: int
    latest: tuple[dict[str, Any], ...] = ()
    problems: tuple[tuple[str, str, str, str | None, str | None], ...] = field(default=())

    @property
    def met(self) -> bool:
        return len(self.latest) >= self.quorum and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "quorum": self.quorum,
            "witness_keys": list(self.keys),
            "tree_size": self.latest_size,
            "cosigned_by": list(self.latest),
            "met": self.met,
        }

    def line(self) -> str:
        who = ", ".join(f"{c['witness']} at {c['time_iso']}" for c in self.latest) or "nobody"
        return (
            f"witnesses: checkpoint {self.latest_size} cosigned by {len(self.latest)} of "
            f"{len(self.keys)} trusted witnesses (quorum {self.quorum}): {who}"
        )


def read_witnessed(
    storage: LocalStorage, from_size: int = 0, only: int | None = None
) -> list[tuple[int, str, bytes]]:
    """read_witnessed returns the witnessed checkpoints (of sizes >= ``from_size``, or of
    size ``only``) as (size their names give, path of the first record, note), smallest
    first: the records of one size holding the same checkpoint text are one note with
    every cosignature line any of them holds (an object store keeps one record a round).
    The listing starts at the first size asked for (an object store lists from there, not
    every record of the history: a round's name sorts before its size's first record)."""
    first = from_size if only is None else only
    after = numbered_name(first - 1, CHECKPOINT_SUFFIX) if first > 0 else None
    names: dict[int, list[tuple[int, str]]] = {}
    for name in storage.list_dir(WITNESSED, after=after):
        parsed = parse_witnessed_name(name)
        if parsed is None or parsed[0] < from_size or only not in (None, parsed[0]):
            continue
        names.setdefault(parsed[0], []).append((parsed[1], f"{WITNESSED}/{name}"))
    found: list[tuple[int, str, bytes]] = []
    for size, records in sorted(names.items()):
        notes = [(rel, storage.read(rel)) for _, rel in sorted(records)]
        found.extend((size, rel, raw) for rel, raw in _union(notes))
    return found


def _union(notes: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """_union merges the notes with the same checkpoint text (the first one's path names
    them); an unreadable note, or one too many lines would overflow, stays on its own."""
    merged: dict[str, tuple[str, bytes]] = {}
    apart: list[tuple[str, bytes]] = []
    for rel, raw in notes:
        try:
            text, lines = split_note(raw)
            if text in merged:
                first, note = merged[text]
                raw = with_cosignatures(note, [line + "\n" for line, *_ in lines])
                rel = first
            merged[text] = (rel, raw)
        except LedgerError:
            apart.append((rel, raw))
    return [*merged.values(), *apart]


def cosigned_checkpoint(storage: LocalStorage, checkpoint: bytes, tree_size: int) -> bytes:
    """cosigned_checkpoint is ``checkpoint`` with the cosignatures its witnessed records
    hold appended (the checkpoint itself when there are none)."""
    text = split_note(checkpoint)[0]
    for _, _, raw in read_witnessed(storage, only=tree_size):
        try:
            same = split_note(raw)[0] == text
        except LedgerError:
            continue
        if same and raw.startswith(checkpoint):
            return raw
    return checkpoint


def read_refusals(storage: LocalStorage) -> list[tuple[str, dict[str, Any]]]:
    """read_refusals returns (where it is kept, record) for every refusal the committer
    recorded: the lines of ``refusals.jsonl`` and the objects under ``refusals/``."""
    raws: list[tuple[str, bytes]] = []
    if storage.exists(REFUSALS):
        raws += [(REFUSALS, line) for line in storage.read(REFUSALS).splitlines()]
    for name in storage.list_dir(REFUSAL_RECORDS):
        rel = f"{REFUSAL_RECORDS}/{name}"
        if is_witness_record(rel):
            raws.append((rel, storage.read(rel)))
    out = []
    for rel, raw in raws:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append((rel, record))
    return out


def cosigner_facts(found: Cosignatures) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "witness": c.name,
            "key_id": f"{c.key_id:08x}",
            "time": c.timestamp,
            "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c.timestamp)),
        }
        for c in sorted(found.valid, key=lambda c: c.name)
    )


def check_witnessed(
    storage: LocalStorage,
    keys: Sequence[WitnessKey],
    quorum: int,
    *,
    origin: str | None,
    size: int,
    root_at: Callable[[int], bytes | None],
    from_size: int = 0,
) -> WitnessVerdict:
    """check_witnessed compares the witnessed checkpoints with the log (``root_at(n)`` is
    the root of the log's first n batches, None when it cannot be computed). Checkpoints
    smaller than ``from_size`` are skipped (an incremental verification checked them)."""
    problems: list[tuple[str, str, str, str | None, str | None]] = []
    latest: dict[tuple[str, str], dict[str, Any]] = {}  # of every record the log agrees with
    for tree_size, rel, raw in read_witnessed(storage, from_size):
        try:
            cp = parse_checkpoint(split_note(raw)[0])
        except LedgerError as exc:
            problems.append(("witness_bad_cosignature", rel, f"unreadable: {exc}", None, None))
            continue
        conflict = _conflict(cp, tree_size, origin, size, root_at)
        if not conflict and tree_size != size:
            # The log agrees with it: its cosignatures vouch for nothing the latest's do not,
            # so they are not checked (this is where a month of hourly files would cost).
            continue
        found = cosignatures(raw, keys)
        for bad in found.invalid:
            problems.append(
                (
                    "witness_bad_cosignature",
                    rel,
                    f"cosignature by {bad} does not verify",
                    None,
                    None,
                )
            )
        if not found.valid:
            continue
        if conflict:
            who = ", ".join(f"{c['witness']} ({c['time_iso']})" for c in cosigner_facts(found))
            problems.append(
                ("witness_conflict", rel, f"cosigned by {who}, but {conflict[0]}", *conflict[1:])
            )
        else:
            for fact in cosigner_facts(found):
                latest.setdefault((fact["witness"], fact["key_id"]), fact)
    if size and len(latest) < quorum:
        problems.append(
            (
                "witness_quorum_missing",
                witnessed_path(size),
                f"the latest checkpoint (size {size}) carries {len(latest)} valid cosignatures "
                f"from trusted witnesses, quorum is {quorum}",
                str(quorum),
                str(len(latest)),
            )
        )
    for where, record in read_refusals(storage):
        if record.get("inconsistent"):
            problems.append(
                (
                    "witness_conflict",
                    where,
                    f"witness {record.get('witness')} refused checkpoint "
                    f"{record.get('tree_size')} at {record.get('time_iso')}: "
                    f"{record.get('detail')} (recorded by the committer)",
                    None,
                    None,
                )
            )
    cosigned = tuple(latest[k] for k in sorted(latest))
    return WitnessVerdict(quorum, tuple(k.vkey for k in keys), size, cosigned, tuple(problems))


def _conflict(
    cp: Checkpoint,
    named: int,
    origin: str | None,
    size: int,
    root_at: Callable[[int], bytes | None],
) -> tuple[str, str | None, str | None] | None:
    if cp.tree_size != named:
        return "its file name and tree size differ", str(named), str(cp.tree_size)
    if origin is not None and cp.origin != origin:
        return "it is a checkpoint of another log", origin, cp.origin
    if cp.tree_size > size:
        return (
            f"the log holds only {size} batches: the newest {cp.tree_size - size} were removed "
            "or the log was rolled back",
            str(cp.tree_size),
            str(size),
        )
    root = root_at(cp.tree_size)
    if root is not None and root != cp.root_hash:
        return (
            f"the log's first {cp.tree_size} batches have another root (history rewritten "
            "or forked)",
            cp.root_hash.hex(),
            root.hex(),
        )
    return None
