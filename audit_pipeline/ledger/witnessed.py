"""Witnessed checkpoints on disk, and what a verifier holding witness keys concludes from them.

::

    ledger/witnessed/<tree size>.checkpoint   the log's checkpoint plus every cosignature
                                              line witnesses returned for it
    ledger/witnessed/refusals.jsonl           one JSON object a line per refusal the
                                              committer saw (witness, size, status, detail)

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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from audit_pipeline.ledger.checkpoint import Checkpoint, parse_checkpoint
from audit_pipeline.ledger.cosignature import Cosignatures, WitnessKey, cosignatures
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    LocalStorage,
    numbered_name,
    parse_numbered_name,
)
from audit_pipeline.ledger.note import split_note

WITNESSED = "ledger/witnessed"
REFUSALS = f"{WITNESSED}/refusals.jsonl"


def witnessed_path(tree_size: int) -> str:
    return f"{WITNESSED}/{numbered_name(tree_size, CHECKPOINT_SUFFIX)}"


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


def read_witnessed(storage: LocalStorage, from_size: int = 0) -> dict[int, bytes]:
    """read_witnessed returns the witnessed checkpoint files (of sizes >= ``from_size``) by
    the size their names give."""
    found: dict[int, bytes] = {}
    for name in storage.list_dir(WITNESSED):
        size = parse_numbered_name(name, CHECKPOINT_SUFFIX)
        if size is not None and size >= from_size:
            found[size] = storage.read(f"{WITNESSED}/{name}")
    return found


def read_refusals(storage: LocalStorage) -> list[dict[str, Any]]:
    if not storage.exists(REFUSALS):
        return []
    out = []
    for line in storage.read(REFUSALS).splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
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
    latest: tuple[dict[str, Any], ...] = ()
    for tree_size, raw in sorted(read_witnessed(storage, from_size).items()):
        rel = witnessed_path(tree_size)
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
            latest = cosigner_facts(found)
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
    for record in read_refusals(storage):
        if record.get("inconsistent"):
            problems.append(
                (
                    "witness_conflict",
                    REFUSALS,
                    f"witness {record.get('witness')} refused checkpoint "
                    f"{record.get('tree_size')} at {record.get('time_iso')}: "
                    f"{record.get('detail')} (recorded by the committer)",
                    None,
                    None,
                )
            )
    return WitnessVerdict(quorum, tuple(k.vkey for k in keys), size, latest, tuple(problems))


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
