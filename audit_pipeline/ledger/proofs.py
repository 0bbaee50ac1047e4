"""Event proofs: one self-contained file that proves an event was recorded, checkable offline.

A proof (``audit_pipeline.event-proof/v1``) is a JSON object::

    {"schema":"audit_pipeline.event-proof/v1",
     "event":{...},                        # the API entry; its canonical JSON is the leaf
     "event_index":41,                     # row index in the batch's event tree
     "event_inclusion_proof":["<b64>",..], # RFC 9162 2.1.3 path, tree size = events.count
     "manifest":{...},                     # the batch manifest envelope (its file bytes are
                                           #   exactly canonical_json of this object)
     "log_index":7,                        # the manifest's sequence number = leaf index
     "log_inclusion_proof":["<b64>",..],   # path in the log tree of checkpoint size
     "checkpoint":"<origin>\\n<size>\\n<b64 root>\\n\\n— <key> <sig>\\n"}

Verifying needs only the proof and the log's public key(s): the checkpoint's signature,
the manifest's signature, ``leaf_hash(manifest bytes)`` included at ``log_index`` under
the checkpoint's root, ``leaf_hash(event bytes)`` included at ``event_index`` under the
manifest's ``events.merkle_root``, and the event's id and time inside the batch window.
Both embedded objects are canonical JSON values, so re-encoding them gives back the exact
hashed bytes (the property :func:`canonical.parse_canonical` enforces).

Size is O(log n): for a year of hourly batches (8,760 manifests, 14 hashes) of 100,000
events (17 hashes), the proof is about 3 KB plus the event itself.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.canonical import canonical_json, parse_canonical, parse_json_strict
from audit_pipeline.ledger.checkpoint import open_checkpoint
from audit_pipeline.ledger.commit import Ledger, LedgerStateError
from audit_pipeline.ledger.cosignature import Cosignature, WitnessKey, cosignatures
from audit_pipeline.ledger.errors import (
    InvalidProofError,
    InvalidSignatureError,
    LedgerError,
    MalformedError,
    RootMismatchError,
)
from audit_pipeline.ledger.events import BatchFileFormat
from audit_pipeline.ledger.keys import Keyring, KeyStatus
from audit_pipeline.ledger.layout import (
    LAKE,
    batch_data_dir,
    batch_data_path,
    format_hour,
    manifest_path,
    open_regular,
    read_named_file,
)
from audit_pipeline.ledger.manifest import (
    SOURCE_NAME_PATTERN,
    Manifest,
    SignedManifest,
    parse_manifest,
    source_name,
)
from audit_pipeline.ledger.note import Verifiers
from audit_pipeline.ledger.tiles import LogHashes, stored_log
from audit_pipeline.ledger.witnessed import cosigned_checkpoint, default_quorum

PROOF_SCHEMA = "audit_pipeline.event-proof/v1"
_FIELDS = {
    "schema",
    "event",
    "event_index",
    "event_inclusion_proof",
    "manifest",
    "log_index",
    "log_inclusion_proof",
    "checkpoint",
}


class EventNotFoundError(ConfigurationError):
    """No committed batch holds the requested event id."""


class AmbiguousEventError(ConfigurationError):
    """The id was committed in more than one hour: each is a separate event, so the caller
    must say which (``--hour``); a proof never silently picks one."""

    def __init__(self, event_id: str, hours: Sequence[int]) -> None:
        shown = ", ".join(format_hour(h) for h in hours)
        super().__init__(
            f"event {event_id} was committed in {len(hours)} hours ({shown}): pass --hour "
            "with one of them (each is a separate event with its own proof)"
        )
        self.hours = tuple(hours)


class EventProofError(InvalidProofError):
    """The parts of an event proof do not fit together (origin, index, window, id)."""


@dataclass(frozen=True)
class VerifiedEvent:
    """VerifiedEvent is what a valid proof establishes."""

    event: Mapping[str, Any]
    event_id: str
    date_create: int
    batch_sequence: int
    event_index: int
    window_start: int
    window_end: int
    log_size: int
    origin: str
    root_hash: bytes
    manifest: Manifest
    checkpoint: bytes
    cosigned_by: tuple[Cosignature, ...] = ()

    def summary(self) -> str:
        when = datetime.fromtimestamp(self.date_create, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = (
            f"OK: event {self.event_id} (date_create {when}) is event "
            f"{self.event_index} of batch {self.batch_sequence}, which is entry "
            f"{self.batch_sequence} of log {self.origin} at size {self.log_size}, signed by "
            f"key {self.manifest.key_name}+{self.manifest.key_id} "
            f"(root {base64.b64encode(self.root_hash).decode()})"
        )
        if self.cosigned_by:
            text += "; checkpoint cosigned by " + ", ".join(
                f"{c.name} ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(c.timestamp))})"
                for c in self.cosigned_by
            )
        return text


def prove_event(
    data_dir: Path,
    event_id: str,
    *,
    file_format: BatchFileFormat,
    batch_hint: int | None = None,
    window_start: int | None = None,
    ledger: Ledger | None = None,
) -> dict[str, Any]:
    """prove_event builds the proof of ``event_id`` against the latest checkpoint (of
    ``ledger`` when given, such as one reading an object store, else of ``data_dir``).

    ``batch_hint`` (a sequence number) or ``window_start`` (the event's hour) narrow the
    search; without them every batch is read, newest first (callers with an index, such
    as the CLI with the auditors' dataset, pass the hint). A search skips batches whose
    data file is absent (a partial copy); a hinted batch without its file is an error.
    """
    ledger = ledger or Ledger(Path(data_dir), file_format=file_format)
    cp_bytes = ledger.latest_checkpoint()
    if cp_bytes is None:
        raise LedgerStateError("the ledger has no checkpoint yet: nothing can be proven")
    cp, _ = open_checkpoint(cp_bytes, ledger.keyring().verifiers())
    # The same checkpoint with the witnesses' cosignatures appended, when they gave any.
    cp_bytes = cosigned_checkpoint(ledger.storage, cp_bytes, cp.tree_size)
    # The log's hashes come from its tiles and the few manifests after them, accepted
    # only when they give the signed root (else every manifest is hashed, as before tiles).
    raws = _Manifests(ledger, cp.tree_size)
    hashes = _log_hashes(ledger, cp.tree_size, cp.root_hash)
    signed, index, leaves = _find_event(ledger, raws, event_id, batch_hint, window_start)
    seq = signed.sequence
    log_proof = hashes.inclusion_proof(seq)
    try:
        merkle.verify_inclusion(seq, cp.tree_size, signed.leaf_hash, log_proof, cp.root_hash)
    except InvalidProofError:  # a tile the root does not use was altered: the manifests
        hashes = _log_hashes(ledger, cp.tree_size, cp.root_hash, use_tiles=False)
        log_proof = hashes.inclusion_proof(seq)
    return {
        "schema": PROOF_SCHEMA,
        "event": _canonical_value(leaves[index][1], f"event {event_id}"),
        "event_index": index,
        "event_inclusion_proof": _b64_list(
            merkle.prove_inclusion(index, len(leaves), [h for h, _ in leaves])
        ),
        "manifest": parse_canonical(signed.raw),
        "log_index": seq,
        "log_inclusion_proof": _b64_list(log_proof),
        "checkpoint": cp_bytes.decode("utf-8"),
    }


def _log_hashes(ledger: Ledger, size: int, root: bytes, *, use_tiles: bool = True) -> LogHashes:
    """The log at the checkpoint's size, from tiles when they reproduce its signed root."""
    try:
        hashes = stored_log(ledger.storage, size, use_tiles=use_tiles)
        if hashes.root() == root:
            return hashes
    except FileNotFoundError as exc:
        raise LedgerStateError(
            f"{exc.filename} is missing but the latest checkpoint covers it: run verify"
        ) from None
    if use_tiles:
        return _log_hashes(ledger, size, root, use_tiles=False)
    raise LedgerStateError("the manifests do not match the latest checkpoint: run verify")


class _Manifests:
    """The bytes of manifests ``0..size-1``, read when asked for (a search reads few)."""

    def __init__(self, ledger: Ledger, size: int) -> None:
        self._ledger, self._size = ledger, size
        self._read: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, seq: int) -> bytes:
        raw = self._read.get(seq)
        if raw is None:
            try:
                raw = self._ledger.storage.read(manifest_path(seq))
            except FileNotFoundError:
                raise LedgerStateError(
                    f"manifest {seq} is missing but the latest checkpoint covers it: run verify"
                ) from None
            self._read[seq] = raw
        return raw


def _parsed(raws: _Manifests, seq: int) -> SignedManifest:
    try:
        signed = parse_manifest(raws[seq])
    except LedgerError as exc:
        raise LedgerStateError(f"manifest {seq} is unreadable ({exc}): run verify") from exc
    if signed.sequence != seq:
        raise LedgerStateError(f"manifest {seq} says it is batch {signed.sequence}: run verify")
    return signed


def _batches_of_hour(ledger: Ledger, window_start: int, size: int) -> list[int]:
    """_batches_of_hour lists, newest first, the sequence numbers whose data files lie in the
    hour's lake directory (their names start with the sequence number). Only a candidate
    list: each one's manifest is still parsed and its window and path compared."""
    seqs = set()
    sources = [None] + [  # other sources' partitions: lake/source=<name>/
        name.removeprefix("source=")
        for name in ledger.storage.list_dir(LAKE)
        if name.startswith("source=") and SOURCE_NAME_PATTERN.match(name.removeprefix("source="))
    ]
    names = [
        n
        for source in sources
        for n in ledger.storage.list_dir(batch_data_dir(window_start, source))
    ]
    for name in names:
        number = name.split("-", 1)[0]
        if number.isdigit() and int(number) < size:
            seqs.add(int(number))
    return sorted(seqs, reverse=True)


def _find_event(
    ledger: Ledger,
    raws: _Manifests,
    event_id: str,
    batch_hint: int | None,
    window_start: int | None,
) -> tuple[SignedManifest, int, list[tuple[bytes, bytes]]]:
    if batch_hint is not None:
        if not 0 <= batch_hint < len(raws):
            raise EventNotFoundError(f"batch {batch_hint} is not covered by the latest checkpoint")
        order = [batch_hint]
    elif window_start is not None:
        order = _batches_of_hour(ledger, window_start, len(raws))
    else:
        order = list(reversed(range(len(raws))))
    absent: list[int] = []
    for seq in order:
        signed = _parsed(raws, seq)
        if window_start is not None and signed.manifest.window_start != window_start:
            continue
        data = signed.manifest.data
        if data is None or (
            window_start is not None
            and data.path
            != batch_data_path(
                window_start,
                seq,
                signed.manifest.kind,
                ledger.file_format.suffix,
                source_name(signed.manifest),
            )
        ):
            continue
        try:
            os.close(open_regular(ledger.storage.regular_path(data.path)))
            records = ledger.file_format.read_events(ledger.storage.path(data.path))
        except FileNotFoundError:
            if batch_hint is not None:
                raise LedgerStateError(
                    f"batch {signed.sequence}'s data file {data.path} is absent: run verify"
                ) from None
            absent.append(signed.sequence)
            continue
        for index, record in enumerate(records):
            if record.event_id == event_id:
                if batch_hint is None and window_start is None:
                    _refuse_if_in_other_hours(ledger, raws, event_id, signed)
                leaves = [(merkle.leaf_hash(r.leaf_data), r.leaf_data) for r in records]
                root = merkle.root_hash([h for h, _ in leaves])
                if root.hex() != signed.manifest.events_root:
                    raise LedgerStateError(
                        f"batch {signed.sequence}'s data file does not match its manifest: "
                        "run verify"
                    )
                return signed, index, leaves
    where = "" if batch_hint is None and window_start is None else " in the batches searched"
    if absent:
        where += f" ({len(absent)} searched batches have no data file here, e.g. {absent[0]})"
    raise EventNotFoundError(f"event {event_id} is not in any committed batch{where}")


def _refuse_if_in_other_hours(
    ledger: Ledger, raws: _Manifests, event_id: str, found: SignedManifest
) -> None:
    """A search without an hour reads the older batches too: an id committed in another
    hour as well raises AmbiguousEventError instead of proving the newest silently."""
    hours = {found.manifest.window_start}
    for seq in reversed(range(found.sequence)):
        signed = _parsed(raws, seq)
        data = signed.manifest.data
        if data is None or signed.manifest.window_start in hours:
            continue
        try:
            records = ledger.file_format.read_events(ledger.storage.path(data.path))
        except FileNotFoundError:
            continue
        if any(r.event_id == event_id for r in records):
            hours.add(signed.manifest.window_start)
    if len(hours) > 1:
        raise AmbiguousEventError(event_id, sorted(hours))


def proof_bytes(proof: Mapping[str, Any]) -> bytes:
    """proof_bytes is the on-disk form of a proof: canonical JSON and a newline."""
    return canonical_json(proof) + b"\n"


def verify_event_proof(
    proof: bytes | str | Mapping[str, Any],
    verifiers: Verifiers | Keyring,
    *,
    witness_keys: Sequence[WitnessKey] = (),
    witness_quorum: int | None = None,
) -> VerifiedEvent:
    """verify_event_proof checks a proof with nothing but trusted public keys.

    With a :class:`Keyring`, the manifest's key must also be valid at its ``created`` time.
    With ``witness_keys`` the checkpoint must carry ``witness_quorum`` (default: all) valid
    cosignatures by them (EventProofError otherwise).
    Raises MalformedError, UnknownKeyError, InvalidSignatureError, InvalidProofError or
    RootMismatchError naming the part that failed.
    """
    doc = proof if isinstance(proof, Mapping) else parse_json_strict(proof)
    if not isinstance(doc, Mapping) or doc.get("schema") != PROOF_SCHEMA:
        raise MalformedError(f"not an event proof (schema {PROOF_SCHEMA})")
    if set(doc) != _FIELDS:
        raise MalformedError(
            f"event proof fields: unexpected {sorted(set(doc) - _FIELDS)}, "
            f"missing {sorted(_FIELDS - set(doc))}"
        )
    keyring = verifiers if isinstance(verifiers, Keyring) else None
    trusted = verifiers.verifiers() if isinstance(verifiers, Keyring) else verifiers

    if not isinstance(doc["checkpoint"], str):
        raise MalformedError("checkpoint is not text")
    cp_bytes = doc["checkpoint"].encode("utf-8")
    cp, _ = open_checkpoint(cp_bytes, trusted)
    cosigned_by = _witnessed(cp_bytes, witness_keys, witness_quorum)
    signed = parse_manifest(_encode(doc["manifest"], "manifest"))
    _check_manifest_signature(signed, trusted, keyring)
    m = signed.manifest
    if m.origin != cp.origin:
        raise EventProofError(f"manifest of log {m.origin!r}, checkpoint of log {cp.origin!r}")
    log_index = _index(doc["log_index"], "log_index")
    if log_index != m.sequence:
        raise EventProofError(f"log_index {log_index} but the manifest is batch {m.sequence}")
    _included(
        "manifest in the log",
        log_index,
        cp.tree_size,
        merkle.leaf_hash(signed.raw),
        _hashes(doc["log_inclusion_proof"], "log_inclusion_proof"),
        cp.root_hash,
    )
    event_raw = _encode(doc["event"], "event")
    event_index = _index(doc["event_index"], "event_index")
    _included(
        "event in its batch",
        event_index,
        m.event_count,
        merkle.leaf_hash(event_raw),
        _hashes(doc["event_inclusion_proof"], "event_inclusion_proof"),
        bytes.fromhex(m.events_root),
    )
    event = doc["event"]
    if not isinstance(event, Mapping):
        raise EventProofError("the event is not a JSON object")
    event_id, date_create = event.get("id"), event.get("date_create")
    if not isinstance(event_id, str) or not isinstance(date_create, int):
        raise EventProofError("the event has no string id or integer date_create")
    if not m.window_start <= date_create < m.window_end:
        raise EventProofError(f"event time {date_create} is outside the batch window")
    return VerifiedEvent(
        event=event,
        event_id=event_id,
        date_create=date_create,
        batch_sequence=m.sequence,
        event_index=event_index,
        window_start=m.window_start,
        window_end=m.window_end,
        log_size=cp.tree_size,
        origin=cp.origin,
        root_hash=cp.root_hash,
        manifest=m,
        checkpoint=cp_bytes,
        cosigned_by=cosigned_by,
    )


def _witnessed(
    cp_bytes: bytes, keys: Sequence[WitnessKey], quorum: int | None
) -> tuple[Cosignature, ...]:
    if not keys:
        return ()
    need = default_quorum(keys, quorum)
    if not 1 <= need <= len(keys):
        raise ConfigurationError(f"witness quorum must be 1..{len(keys)}, got {need}")
    found = cosignatures(cp_bytes, keys)
    if found.invalid:
        raise EventProofError(f"checkpoint cosignatures that do not verify: {found.invalid}")
    if not found.meets(need):
        raise EventProofError(
            f"the checkpoint carries {len(found.valid)} valid cosignatures by the given "
            f"witnesses ({', '.join(found.witnesses) or 'none'}), quorum is {need}"
        )
    return found.valid


def _check_manifest_signature(
    signed: SignedManifest, trusted: Verifiers, keyring: Keyring | None
) -> None:
    sig = signed.signature
    verifier = trusted.verifier(sig.name, sig.key_hash)
    if not verifier.verify(signed.manifest.signed_bytes, sig.sig):
        raise InvalidSignatureError(sig.name, sig.key_hash)
    if keyring is not None:
        status = keyring.status(sig.name, sig.key_hash, signed.manifest.created, signed.sequence)
        if status is not KeyStatus.VALID:
            raise EventProofError(
                f"manifest {signed.sequence} signed by {sig.name}+{sig.key_id}: "
                f"{status.value} at that position (created={signed.manifest.created})"
            )


def _included(
    what: str, index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> None:
    try:
        merkle.verify_inclusion(index, size, leaf, proof, root)
    except RootMismatchError as exc:
        raise RootMismatchError(exc.expected, exc.calculated, f"{what}: root hash") from None
    except InvalidProofError as exc:
        raise InvalidProofError(f"{what}: {exc}") from None


def _encode(value: Any, what: str) -> bytes:
    try:
        return canonical_json(value)
    except LedgerError as exc:
        raise MalformedError(f"{what}: {exc}") from None


def _canonical_value(leaf_data: bytes, what: str) -> Any:
    try:
        return parse_canonical(leaf_data)
    except MalformedError as exc:
        raise LedgerStateError(f"{what}: its leaf is not canonical JSON ({exc})") from exc


def _index(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedError(f"{what} is not a non-negative integer")
    return value


def _b64_list(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


def _hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise MalformedError(f"{what} is not a list")
    out = []
    for i, text in enumerate(value):
        raw = None
        if isinstance(text, str):
            try:
                raw = base64.b64decode(text, validate=True)
            except ValueError:
                raw = None
        if raw is None or len(raw) != merkle.HASH_SIZE or base64.b64encode(raw).decode() != text:
            raise MalformedError(f"{what}[{i}] is not a base64 SHA-256 hash")
        out.append(raw)
    return out


def load_proof(path: Path) -> dict[str, Any]:
    """load_proof reads a proof file (MalformedError if it is not JSON)."""
    try:
        data = read_named_file(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read proof {path}: {exc.strerror}") from exc
    doc = parse_json_strict(data)
    if not isinstance(doc, dict):
        raise MalformedError(f"{path}: not a JSON object")
    return doc


__all__ = [
    "PROOF_SCHEMA",
    "EventNotFoundError",
    "EventProofError",
    "VerifiedEvent",
    "load_proof",
    "proof_bytes",
    "prove_event",
    "verify_event_proof",
]
