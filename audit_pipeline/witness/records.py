"""Where a witness round's results are kept: a local data directory, or an object store.

A round leaves three things: the cosignatures it gathered (evidence, beside the log), the
refusals it saw (the committer's record, beside the log) and each witness's size (a hint
for the next round, never evidence). A local data directory keeps them as v1 did: one
``ledger/witnessed/<size>.checkpoint`` rewritten as cosignatures arrive, ``refusals.jsonl``
appended and ``hints.json``, under the ledger's lock. An object store under Object Lock
takes nothing twice, so there a round *creates* records (``ledger/witnessed.py``): the
witnessed checkpoint once per round that gathered a witness not yet on record for that
size (round 1 at ``<size>.checkpoint``, later ones at ``<size>.<n>.checkpoint``; readers
take the union), one object per refusal, and the hints stay on the committer's machine
beside its signer state.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.cosignature import WitnessKey, cosignatures, with_cosignatures
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import LocalStorage, numbered_name
from audit_pipeline.ledger.note import split_note
from audit_pipeline.ledger.object_ledger import ObjectStoreLedger
from audit_pipeline.ledger.storage import ObjectExistsError, ObjectStore, WriteConflictError
from audit_pipeline.ledger.witnessed import (
    REFUSALS,
    WITNESSED,
    parse_witnessed_name,
    refusal_record_path,
    witnessed_path,
)

log = logging.getLogger(__name__)

HINTS = f"{WITNESSED}/hints.json"
# on an object store: beside the committer's other local state (ObjectStoreLedger.data_dir)
LOCAL_HINTS = "witness-hints.json"
# rounds for one size that may race to create the same record name
_ATTEMPTS = 16


@dataclass(frozen=True)
class RoundRecords:
    """RoundRecords: what one round leaves for the checkpoint of ``tree_size``: the verified
    cosignature lines (with the key of the witness that made each), the size each witness
    is now known to hold, the refusal records."""

    checkpoint: bytes
    tree_size: int
    cosigned: Sequence[tuple[WitnessKey, str]]
    hints: dict[str, int]
    refusals: Sequence[dict[str, Any]]


class WitnessRecords(Protocol):
    """WitnessRecords keeps what one round returned."""

    def hints(self) -> dict[str, int]: ...

    def keep(self, kept: RoundRecords) -> None: ...


def records_for(ledger: Ledger) -> WitnessRecords:
    """records_for picks where ``ledger``'s witness rounds are kept."""
    if isinstance(ledger, ObjectStoreLedger):
        return ObjectStoreRecords(ledger.store, Path(ledger.data_dir))
    return LocalRecords(ledger.storage)


class LocalRecords:
    """LocalRecords: the local data directory's files, rewritten under the ledger's lock."""

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage

    def hints(self) -> dict[str, int]:
        return _hints(self.storage, HINTS)

    def keep(self, kept: RoundRecords) -> None:
        storage = self.storage
        with storage.lock():
            rel = witnessed_path(kept.tree_size)
            if kept.cosigned:
                lines = [line for _, line in kept.cosigned]
                base = _kept(storage, rel, kept.checkpoint)
                storage.replace(rel, with_cosignatures(base, lines))
            storage.replace(HINTS, _hints_bytes({**_hints(storage, HINTS), **kept.hints}))
            if kept.refusals:
                old = storage.read(REFUSALS) if storage.exists(REFUSALS) else b""
                records = b"".join(orjson.dumps(r) + b"\n" for r in kept.refusals)
                storage.replace(REFUSALS, old + records)


class ObjectStoreRecords:
    """ObjectStoreRecords: create-only records in the store, hints in ``local_dir``."""

    def __init__(self, store: ObjectStore, local_dir: Path) -> None:
        self.store = store
        self.local = LocalStorage(local_dir)

    def hints(self) -> dict[str, int]:
        return _hints(self.local, LOCAL_HINTS)

    def keep(self, kept: RoundRecords) -> None:
        if kept.cosigned:
            self._create_round(kept.checkpoint, kept.tree_size, kept.cosigned)
        for record in kept.refusals:
            raw = orjson.dumps(record)
            # the same refusal, recorded already or being recorded by another round right now
            with contextlib.suppress(ObjectExistsError, WriteConflictError):
                self.store.put_new(refusal_record_path(raw, kept.tree_size), raw)
        self.local.replace(LOCAL_HINTS, _hints_bytes({**self.hints(), **kept.hints}))

    def _create_round(
        self, checkpoint: bytes, tree_size: int, cosigned: Sequence[tuple[WitnessKey, str]]
    ) -> None:
        """_create_round creates the next round's record with the cosignatures of witnesses
        the records of ``tree_size`` do not hold yet (nothing when they hold them all). It
        lists that size's records only, so a round costs the same however long the log."""
        keys, text = [k for k, _ in cosigned], split_note(checkpoint)[0]
        for _ in range(_ATTEMPTS):
            rounds = self._records_of(tree_size)
            have: set[tuple[str, int]] = set()
            for raw in map(self.store.get, rounds.values()):
                try:
                    same = split_note(raw)[0] == text
                except LedgerError:
                    continue
                if same:
                    have |= {(c.name, c.key_id) for c in cosignatures(raw, keys).valid}
            lines = [line for key, line in cosigned if (key.name, key.key_id) not in have]
            if not lines:
                return
            rel = witnessed_path(tree_size, max(rounds, default=0) + 1)
            try:
                self.store.put_new(rel, with_cosignatures(checkpoint, lines))
                return
            except (ObjectExistsError, WriteConflictError):
                continue  # another round of the same size took the name: read again
        log.warning(
            "witnessed checkpoint %d: no free round name after %d tries", tree_size, _ATTEMPTS
        )

    def _records_of(self, tree_size: int) -> dict[int, str]:
        """_records_of maps round numbers to the keys of ``tree_size``'s records."""
        found: dict[int, str] = {}
        for key in self.store.list_keys(f"{WITNESSED}/{numbered_name(tree_size, '.')}"):
            parsed = parse_witnessed_name(key.rpartition("/")[2])
            if parsed is not None and parsed[0] == tree_size:
                found[parsed[1]] = key
        return found


def _kept(storage: LocalStorage, rel: str, checkpoint: bytes) -> bytes:
    """_kept returns the stored witnessed checkpoint to add cosignatures to, when it is this
    checkpoint (same text, the log's signature first); else the plain checkpoint."""
    if storage.exists(rel):
        current = storage.read(rel)
        try:
            same = split_note(current)[0] == split_note(checkpoint)[0]
        except LedgerError:
            same = False
        if same and current.startswith(checkpoint):
            return current
        log.warning("%s does not hold the latest checkpoint; rewritten from it", rel)
    return checkpoint


def _hints(storage: LocalStorage, rel: str) -> dict[str, int]:
    if not storage.exists(rel):
        return {}
    try:
        hints = orjson.loads(storage.read(rel))
    except orjson.JSONDecodeError:
        return {}
    return {k: v for k, v in hints.items() if isinstance(v, int)} if isinstance(hints, dict) else {}


def _hints_bytes(hints: dict[str, int]) -> bytes:
    return orjson.dumps(hints, option=orjson.OPT_SORT_KEYS)
