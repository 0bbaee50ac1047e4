"""Committing batches: one linear, crash-safe, idempotent chain of signed manifests.

One commit, under an exclusive ``flock`` on ``ledger/lock``:

1. read the log flat (:mod:`.log_view`: the newest checkpoint must verify and the hash
   tiles plus the manifests after them must reproduce its root, else every manifest is
   read; a gap or broken link refuses the commit), clean the leftovers of a crashed
   commit, write the tiles and checkpoint a crash may have skipped;
2. drop events whose ids the window's earlier batches already hold (idempotence);
3. if there are new events: the caller writes them to a staged file under
   ``ledger/pending/``; it is fsynced, read back (the manifest describes the file as
   written, in its row order), and a signed *intent* ``ledger/pending/<seq>.intent``
   (sequence, path, size, SHA-256) is written before the file is hard-linked, mode 0444,
   to ``lake/date=.../hour=../<seq>-<kind><suffix>`` (``link(2)`` never overwrites);
4. the manifest is published at ``ledger/manifests/<seq>.json`` (staged, fsynced, linked:
   exclusive and atomic), which is the commit point;
5. the hash tiles and batch index the new size completes are written (:mod:`.tiles`,
   :mod:`.batch_index`), then a checkpoint for tree size ``seq + 1`` is signed and
   published; the intent is removed.

A crash before step 4 leaves at most a staged file, an intent and an unreferenced data
file that the intent names: the verifier reports them as an uncommitted leftover (a
notice), and the next commit deletes them. A crash after step 4 leaves a committed batch
whose checkpoint the next commit writes. Nothing is ever half committed.

Intent envelope (canonical JSON, signed like a manifest with context
``audit_pipeline.intent/v1\\x00``, so nobody without the key can disguise an injected file
as a leftover)::

    {"signatures":[{"key_id":..,"name":..,"sig":..}],
     "signed":{"format":"audit_pipeline.intent/v1","origin":..,"path":"lake/...",
               "sequence":7,"sha256":"<hex>","size":5123}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import chain as chained
from pathlib import Path
from typing import Any

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.batch_index import index_path, sign_index
from audit_pipeline.ledger.canonical import canonical_json, parse_canonical
from audit_pipeline.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from audit_pipeline.ledger.errors import LedgerError, MalformedError
from audit_pipeline.ledger.events import (
    BatchFileFormat,
    EventLeaf,
    EventRecord,
    read_event_chunks,
    record_mismatch,
    unique_events,
)
from audit_pipeline.ledger.keys import (
    Keyring,
    KeyStatus,
    TrustedKey,
    key_id,
    load_keyring,
    signed_envelope,
)
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    HOUR,
    INTENT_SUFFIX,
    MANIFEST_SUFFIX,
    MANIFESTS,
    PENDING,
    LocalStorage,
    NotRegularFileError,
    batch_data_path,
    checkpoint_path,
    count_numbered,
    format_hour,
    intent_path,
    latest_numbered,
    manifest_path,
    open_regular,
    parse_numbered_name,
)
from audit_pipeline.ledger.log_view import ChainError, LogView, TileMismatch, read_log
from audit_pipeline.ledger.manifest import (
    AUDIT_LOGS_SOURCE,
    GENESIS_PREV,
    SOURCE_NAME_PATTERN,
    DataFile,
    Manifest,
    SignedManifest,
    check_no_floats,
    parse_manifest,
    sign_manifest,
)
from audit_pipeline.ledger.note import Signer
from audit_pipeline.ledger.signer_state import (
    SignerRefusal,
    check_extension,
    load_signer_state,
    record_signed,
)
from audit_pipeline.ledger.tiles import TILE_WIDTH, missing_tiles, publish_tiles

log = logging.getLogger(__name__)

DEFAULT_ORIGIN = "audit-pipeline/ledger"
INTENT_FORMAT = "audit_pipeline.intent/v1"
_INTENT_CONTEXT = INTENT_FORMAT.encode() + b"\x00"
_CHUNK = 1 << 20

# What a commit is given of each event: the whole record, or only its id, time and leaf hash.
Event = EventRecord | EventLeaf
WriteData = Callable[[Sequence[Event], Path], None]


class CommitError(ConfigurationError):
    """The caller asked for a commit the ledger must not make (bad window, bad events)."""


class LedgerStateError(LedgerError):
    """The ledger on disk is not a clean chain; it is not extended until it is verified."""


@dataclass(frozen=True)
class CommitResult:
    """CommitResult says what one ``commit_batch`` call added (``sequence`` None: nothing)."""

    sequence: int | None
    kind: str | None
    events_committed: int
    duplicates_skipped: int
    missing_from_source: tuple[str, ...]
    data_path: str | None
    checkpoint: bytes | None


@dataclass(frozen=True)
class WrittenData:
    """What the read-back of a data file found: its rows, leaf hashes in row order, times."""

    rows: int
    leaf_hashes: list[bytes]
    min_date_create: int | None
    max_date_create: int | None


@dataclass(frozen=True)
class Intent:
    """Intent is a signed promise, written before a data file is linked into the lake."""

    origin: str
    sequence: int
    path: str
    size: int
    sha256: str
    key_name: str
    key_id: str
    sig: bytes

    @staticmethod
    def payload(origin: str, sequence: int, path: str, size: int, sha256: str) -> dict[str, Any]:
        return {
            "format": INTENT_FORMAT,
            "origin": origin,
            "path": path,
            "sequence": sequence,
            "sha256": sha256,
            "size": size,
        }

    @property
    def signed_bytes(self) -> bytes:
        body = self.payload(self.origin, self.sequence, self.path, self.size, self.sha256)
        return _INTENT_CONTEXT + canonical_json(body)

    def signature_ok(self, keyring: Keyring) -> bool:
        key = keyring.find(self.key_name, int(self.key_id, 16))
        return key is not None and key.verifier.verify(self.signed_bytes, self.sig)


def sign_intent(
    signer: Signer, *, origin: str, sequence: int, path: str, size: int, sha256: str
) -> bytes:
    body = Intent.payload(origin, sequence, path, size, sha256)
    return signed_envelope(signer, _INTENT_CONTEXT, body)


def parse_intent(raw: bytes) -> Intent:
    """parse_intent reads an intent file strictly (MalformedError otherwise)."""
    doc = parse_canonical(raw)
    try:
        (entry,) = doc["signatures"]
        body = doc["signed"]
        if set(doc) != {"signatures", "signed"} or body.get("format") != INTENT_FORMAT:
            raise MalformedError("not an intent")
        if set(body) != set(Intent.payload("", 0, "", 0, "")):
            raise MalformedError("intent fields differ from audit_pipeline.intent/v1")
        intent = Intent(
            origin=str(body["origin"]),
            sequence=int(body["sequence"]),
            path=str(body["path"]),
            size=int(body["size"]),
            sha256=str(body["sha256"]),
            key_name=str(entry["name"]),
            key_id=str(entry["key_id"]),
            sig=base64.b64decode(entry["sig"], validate=True),
        )
        int(intent.key_id, 16)
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise MalformedError(f"malformed intent: {exc}") from None
    return intent


def file_digest(path: Path) -> tuple[int, str]:
    """file_digest returns (size, hex SHA-256) of a file, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    with os.fdopen(open_regular(path), "rb") as fh:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


def check_window(window_start: int, window_end: int) -> None:
    if window_start % HOUR or window_end != window_start + HOUR:
        raise CommitError(
            f"a batch window is one UTC hour [H, H+3600); got [{window_start}, {window_end})"
        )


def check_provenance(source: Mapping[str, Any], run_id: str) -> None:
    """check_provenance refuses a source or run id that a manifest could not carry."""
    if not isinstance(run_id, str) or not run_id:
        raise CommitError("run_id must be a non-empty string")
    if not isinstance(source, Mapping):
        raise CommitError("source must be a mapping (the API query that produced the batch)")
    name = source.get("name", AUDIT_LOGS_SOURCE)
    if not isinstance(name, str) or not SOURCE_NAME_PATTERN.match(name):
        raise CommitError(f"source.name {name!r} is not a source name")
    try:
        check_no_floats(source, "source")
        canonical_json(dict(source))
    except MalformedError as exc:
        raise CommitError(f"source cannot be recorded in a manifest: {exc}") from exc


def checked_events(
    window_start: int,
    window_end: int,
    events: Sequence[Event],
    source: Mapping[str, Any],
    run_id: str,
) -> tuple[list[Event], int]:
    """checked_events refuses a commit of a bad window, provenance or event, and returns
    the events without repeats and how many repeats were dropped."""
    check_window(window_start, window_end)
    check_provenance(source, run_id)
    outside = [e for e in events if not window_start <= e.date_create < window_end]
    if outside:
        raise CommitError(
            f"{len(outside)} events lie outside window {format_hour(window_start)} "
            f"(first: {outside[0].event_id} at {outside[0].date_create})"
        )
    return unique_events(events)


class Ledger:
    """Ledger commits batches to, and reads batches from, one data directory.

    ``signer`` is needed only to commit. ``origin`` names the log (default: the chain's own,
    else ``audit-pipeline/ledger``). ``clock`` gives the signing time; a manifest's
    ``created`` never goes backwards along the chain. ``signer_state`` is the file, beside
    the key and outside the data directory, where the signer keeps the newest checkpoint it
    signed (see ``signer_state.py``): with it, a truncated or forked log is refused before
    anything is written; the CLI and Dagster always pass it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        file_format: BatchFileFormat,
        signer: Signer | None = None,
        origin: str | None = None,
        clock: Callable[[], float] = time.time,
        signer_state: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.signer_state = None if signer_state is None else Path(signer_state)
        self.file_format = file_format
        self.signer = signer
        self.origin = origin
        self.clock = clock
        self.storage = LocalStorage(self.data_dir)
        self._chain: list[SignedManifest] = []

    def _step(self, name: str) -> None:
        """_step marks a point of the commit protocol (tests override it to crash there)."""

    # -- reading ---------------------------------------------------------------------------

    def _load_chain(self) -> list[SignedManifest]:
        """_load_chain returns manifests 0..n-1, reading only files not read before.

        Manifest files are write-once, so the parsed prefix is cached. Anything but a clean
        run of sequence numbers with intact links raises LedgerStateError.
        """
        count = self._manifest_count()
        if count < len(self._chain):
            raise LedgerStateError(
                f"the ledger shrank from {len(self._chain)} to {count} manifests"
            )
        for seq in range(len(self._chain), count):
            try:
                signed = parse_manifest(self.storage.read(manifest_path(seq)))
            except LedgerError as exc:
                raise LedgerStateError(f"manifest {seq} is unreadable: {exc}") from exc
            prev = self._chain[-1].sha256 if self._chain else GENESIS_PREV
            if signed.sequence != seq or signed.manifest.prev_manifest_sha256 != prev:
                raise LedgerStateError(f"manifest {seq} does not link to manifest {seq - 1}")
            self._chain.append(signed)
        return list(self._chain)

    def manifests(self) -> list[SignedManifest]:
        """manifests returns the chain in sequence order (LedgerStateError if broken)."""
        return self._load_chain()

    def tree_size(self) -> int:
        return self._view().size

    def committed_windows(self, source: str = AUDIT_LOGS_SOURCE) -> set[int]:
        """committed_windows returns the start of every window of ``source`` with a manifest."""
        return self._view().windows(source)

    def committed_event_ids(self, window_start: int, source: str = AUDIT_LOGS_SOURCE) -> set[str]:
        """committed_event_ids returns every event id committed for the window so far."""
        return self._window_ids(self._view().batches_of(window_start, source), window_start)

    def _manifest_count(self) -> int:
        """_manifest_count is the number of manifests, refusing gaps and foreign names (a
        listing: no manifest is read)."""
        names = [n for n in self.storage.list_dir(MANIFESTS) if not n.startswith(".")]
        count = count_numbered(names, MANIFEST_SUFFIX)
        if count is not None:
            return count
        seqs = []
        for name in names:
            seq = parse_numbered_name(name, MANIFEST_SUFFIX)
            if seq is None:
                if not name.startswith("."):
                    raise LedgerStateError(f"unexpected file {MANIFESTS}/{name}")
                continue
            seqs.append(seq)
        seqs.sort()
        if seqs != list(range(len(seqs))):
            missing = sorted(set(range(seqs[-1] + 1)) - set(seqs)) if seqs else []
            raise LedgerStateError(
                f"the ledger has gaps (missing manifests {_ranges(missing)}); "
                "run 'audit-pipeline verify'"
            )
        return len(seqs)

    def _view(self, *, use_tiles: bool = True) -> LogView:
        """_view reads the log flat (see :mod:`.log_view`): the newest checkpoint must verify
        and the log must still hold it; tiles that do not reproduce its root are set aside
        for the manifests (a warning; ``verify`` names them)."""
        size = self._manifest_count()
        latest = self._latest_checkpoint_size()
        cp = None
        if latest is not None:
            try:
                cp, _ = open_checkpoint(
                    self.storage.read(checkpoint_path(latest)), self._keyring().verifiers()
                )
            except LedgerError as exc:
                raise LedgerStateError(f"checkpoint {latest} does not verify: {exc}") from exc
            if cp.tree_size > size:
                raise LedgerStateError(
                    f"a checkpoint for {cp.tree_size} manifests exists but the log holds "
                    f"{size}: refusing to extend a truncated log (run 'audit-pipeline verify')"
                )
        try:
            return read_log(self.storage, size, cp, self._keyring, use_tiles=use_tiles)
        except ChainError as exc:
            raise LedgerStateError(f"{exc}; run 'audit-pipeline verify'") from exc
        except TileMismatch as exc:
            if use_tiles:
                log.warning("%s: reading every manifest instead (run 'verify')", exc)
                return self._view(use_tiles=False)
            assert cp is not None
            raise LedgerStateError(
                f"the log no longer matches its checkpoint of size {cp.tree_size}: "
                "refusing to extend it (run 'audit-pipeline verify')"
            ) from exc

    def latest_checkpoint(self) -> bytes | None:
        """latest_checkpoint returns the signed checkpoint of the largest tree size."""
        latest = self._latest_checkpoint_size()
        return None if latest is None else self.storage.read(checkpoint_path(latest))

    def _latest_checkpoint_size(self) -> int | None:
        return latest_numbered(self.storage.list_dir(CHECKPOINTS), CHECKPOINT_SUFFIX)

    def window_leaves(self, window_start: int, source: str = AUDIT_LOGS_SOURCE) -> dict[str, bytes]:
        """window_leaves maps each event id committed for the window to its leaf hash (read
        without the lock: the caller uses it to tell changed content from a repeat)."""
        leaves: dict[str, bytes] = {}
        for signed in self._view().batches_of(window_start, source):
            data = signed.manifest.data
            if data is None:
                continue
            for record in self.file_format.read_events(self.storage.path(data.path)):
                leaves.setdefault(record.event_id, record.leaf_hash)
        return leaves

    def _window_ids(self, chain: Sequence[SignedManifest], window_start: int) -> set[str]:
        ids: set[str] = set()
        for signed in chain:
            data = signed.manifest.data
            if signed.manifest.window_start != window_start or data is None:
                continue
            try:
                os.close(open_regular(self.storage.regular_path(data.path)))
                records = self.file_format.read_events(self.storage.path(data.path))
            except FileNotFoundError:
                raise LedgerStateError(
                    f"data file of batch {signed.sequence} is missing: {data.path}"
                ) from None
            except NotRegularFileError as exc:
                raise LedgerStateError(
                    f"data file of batch {signed.sequence} is not readable as a file: {exc}; "
                    "run 'audit-pipeline verify'"
                ) from None
            ids.update(r.event_id for r in records)
        return ids

    # -- committing ------------------------------------------------------------------------

    def _require_signer(self) -> Signer:
        if self.signer is None:
            raise ConfigurationError("this ledger was opened without a signing key")
        return self.signer

    def commit_batch(
        self,
        *,
        window_start: int,
        window_end: int,
        events: Sequence[Event],
        write_data: WriteData,
        source: Mapping[str, Any],
        run_id: str,
    ) -> CommitResult:
        """commit_batch commits the events of one hour that the ledger does not hold yet.

        Kind ``hour`` for a window's first batch, ``empty`` if that batch has no events,
        ``late`` for new events in a window that already has a batch; nothing at all if
        every event is already committed. Ids committed earlier but not passed now are
        reported in ``missing_from_source`` and kept.
        """
        self._require_signer()
        unique, repeated = checked_events(window_start, window_end, events, source, run_id)
        with self.storage.lock():
            self._step("locked")
            try:
                result = self._commit_locked(
                    self._view(), window_start, unique, write_data, source, run_id
                )
            except TileMismatch as exc:  # found before anything was written
                log.warning("%s: reading every manifest instead (run 'verify')", exc)
                result = self._commit_locked(
                    self._view(use_tiles=False), window_start, unique, write_data, source, run_id
                )
        return replace(result, duplicates_skipped=result.duplicates_skipped + repeated)

    def _commit_locked(
        self,
        view: LogView,
        window_start: int,
        unique: Sequence[EventRecord],
        write_data: WriteData,
        source: Mapping[str, Any],
        run_id: str,
    ) -> CommitResult:
        self._check_signer_state(view)
        self._recover(view)
        name = source.get("name") or AUDIT_LOGS_SOURCE
        batches = view.batches_of(window_start, name)
        held = self._window_ids(batches, window_start)
        new = [e for e in unique if e.event_id not in held]
        missing = tuple(sorted(held - {e.event_id for e in unique}))
        skipped = len(unique) - len(new)
        if batches and not new:
            return CommitResult(None, None, 0, skipped, missing, None, None)
        kind = "late" if batches else ("hour" if new else "empty")
        result = self._append(
            view,
            window_start=window_start,
            kind=kind,
            events=new,
            write_data=write_data,
            source=source,
            run_id=run_id,
        )
        return replace(result, duplicates_skipped=skipped, missing_from_source=missing)

    def _append(
        self,
        view: Sequence[SignedManifest] | LogView,
        *,
        window_start: int,
        kind: str,
        events: Sequence[Event],
        write_data: WriteData,
        source: Mapping[str, Any],
        run_id: str,
    ) -> CommitResult:
        """_append writes one batch at the next sequence number (caller holds the lock)."""
        signer = self._require_signer()
        view = _as_view(view)
        seq = view.size
        origin = self._origin(view)
        last = view.last
        created = max(int(self.clock()), last.manifest.created if last else 0)
        self._check_signing_key(signer, created, seq)
        data, written = None, WrittenData(0, [], None, None)
        if events:
            data, written = self._publish_data(
                signer, origin, seq, window_start, kind, events, write_data, source.get("name")
            )
        manifest = Manifest(
            origin=origin,
            sequence=seq,
            prev_manifest_sha256=last.sha256 if last else GENESIS_PREV,
            window_start=window_start,
            window_end=window_start + HOUR,
            kind=kind,
            data=data,
            event_count=written.rows,
            min_date_create=written.min_date_create,
            max_date_create=written.max_date_create,
            events_root=merkle.root_hash(written.leaf_hashes).hex(),
            source=dict(source),
            run_id=run_id,
            created=created,
            key_name=signer.name,
            key_id=key_id(signer.key_hash),
        )
        try:
            signed = sign_manifest(manifest, signer)
        except MalformedError as exc:
            raise CommitError(f"cannot sign manifest {seq}: {exc}") from exc
        self.storage.create_exclusive(manifest_path(seq), signed.raw, mode=0o444)
        self._step("manifest_written")
        grown = view.appended(signed)
        self._write_tiles(grown)
        checkpoint = self._write_checkpoint(signer, grown)
        self._step("checkpoint_written")
        if data is not None:
            self.storage.remove(intent_path(seq))
        self._step("intent_removed")
        log.info(
            "committed batch %d (%s, %s): %d events",
            seq,
            kind,
            format_hour(window_start),
            written.rows,
        )
        return CommitResult(
            sequence=seq,
            kind=kind,
            events_committed=written.rows,
            duplicates_skipped=0,
            missing_from_source=(),
            data_path=data.path if data else None,
            checkpoint=checkpoint,
        )

    def _publish_data(
        self,
        signer: Signer,
        origin: str,
        seq: int,
        window_start: int,
        kind: str,
        events: Sequence[Event],
        write_data: WriteData,
        source: str | None = None,
    ) -> tuple[DataFile, WrittenData]:
        suffix = self.file_format.suffix
        rel = batch_data_path(window_start, seq, kind, suffix, source)
        if os.path.lexists(self.storage.path(rel)):  # recovery already ran: not ours
            raise LedgerStateError(
                f"batch {seq}'s data path {rel} is taken by a file no manifest references "
                "(verify reports it as unreferenced_file); not extended until it is explained "
                "and removed"
            )
        staged = self.storage.stage_path(f"{seq:08d}-{kind}.staged{suffix}")
        write_data(events, staged)
        self._step("data_written")
        if not staged.is_file():
            raise CommitError(f"write_data did not create {staged}")
        self.storage.fsync_file(staged)
        self._step("data_synced")
        size, sha256 = file_digest(staged)
        try:
            rows = chained.from_iterable(read_event_chunks(self.file_format, staged))
            written = self._check_written(seq, window_start, events, rows)
        except LedgerError as exc:
            raise CommitError(
                f"the data file written for batch {seq} is unreadable: {exc}"
            ) from exc
        intent = sign_intent(
            signer, origin=origin, sequence=seq, path=rel, size=size, sha256=sha256
        )
        self.storage.create_exclusive(intent_path(seq), intent)
        self._step("intent_written")
        self.storage.link_no_overwrite(staged, rel, mode=0o444)
        self._step("data_linked")
        return DataFile(path=rel, size=size, sha256=sha256, rows=written.rows), written

    @staticmethod
    def _check_written(
        seq: int, window_start: int, wanted: Sequence[Event], records: Iterable[EventRecord]
    ) -> WrittenData:
        """_check_written refuses a data file that is not exactly the events asked for: the
        same ids with the same leaf hashes (so the same leaf bytes), each row's id and time
        matching its leaf JSON and inside the window. Rows are checked as they are read (a
        part at a time), keeping only their leaf hashes for the events root."""
        leaves: list[bytes] = []
        lo = hi = None
        end = window_start + HOUR
        in_order = True  # so far, row i is wanted[i]: the usual case, checked without sets
        pairs: list[tuple[str, bytes]] = []
        for record in records:
            problem = record_mismatch(record)
            if problem is None and not window_start <= record.date_create < end:
                problem = f"date_create {record.date_create} outside the window"
            if problem:
                raise CommitError(f"batch {seq}: row {record.event_id}: {problem}")
            leaf = record.leaf_hash
            position = len(leaves)
            leaves.append(leaf)
            if in_order:
                expected = wanted[position] if position < len(wanted) else None
                if expected is not None and expected.event_id == record.event_id:
                    if expected.leaf_hash != leaf:
                        raise CommitError(
                            f"batch {seq}: row {record.event_id}: the leaf written differs "
                            "from the event's"
                        )
                else:
                    in_order = False
                    pairs = [(e.event_id, e.leaf_hash) for e in wanted[:position]]
            if not in_order:
                pairs.append((record.event_id, leaf))
            when = record.date_create
            lo = when if lo is None or when < lo else lo
            hi = when if hi is None or when > hi else hi
        if in_order:
            same = len(leaves) == len(wanted)
        else:
            same = sorted(pairs) == sorted((e.event_id, e.leaf_hash) for e in wanted)
        if not same:
            raise CommitError(
                f"batch {seq}: write_data wrote {len(leaves)} rows for "
                f"{len(wanted)} events, or different ids or leaves"
            )
        return WrittenData(len(leaves), leaves, lo, hi)

    def _origin(self, chain: Sequence[SignedManifest] | LogView) -> str:
        view = _as_view(chain)
        if view.origin is None:
            return self.origin or DEFAULT_ORIGIN
        origin = view.origin
        if self.origin is not None and self.origin != origin:
            raise ConfigurationError(f"this ledger's origin is {origin!r}, not {self.origin!r}")
        return origin

    def _keyring(self) -> Keyring:
        return load_keyring(self.data_dir)

    def keyring(self) -> Keyring:
        """keyring is the data directory's own keyring (as trustworthy as the directory)."""
        return self._keyring()

    def _check_signing_key(self, signer: Signer, created: int, position: int) -> None:
        """_check_signing_key refuses to sign what the verifier would reject."""
        status = self._keyring().status(signer.name, signer.key_hash, created, position)
        if status is not KeyStatus.VALID:
            raise ConfigurationError(
                f"signing key {signer.name}+{key_id(signer.key_hash)} is {status.value} in "
                f"the data directory's keyring at batch {position} ({created}); see "
                "'audit-pipeline keys list'"
            )

    def _checked_tip(self, chain: Sequence[SignedManifest] | LogView) -> tuple[int, bytes] | None:
        """_checked_tip returns the newest signed checkpoint (size, bytes) after checking that
        ``chain`` still extends it: a log never signs two inconsistent checkpoints (C2SP), so
        a truncated or rewritten chain is refused before anything is appended to it."""
        latest = self._latest_checkpoint_size()
        if latest is None:
            return None
        previous = self.storage.read(checkpoint_path(latest))
        try:
            cp, _ = open_checkpoint(previous, self._keyring().verifiers())
        except LedgerError as exc:
            raise LedgerStateError(f"checkpoint {latest} does not verify: {exc}") from exc
        view = _as_view(chain)
        if cp.tree_size > view.size:
            raise LedgerStateError(
                f"a checkpoint for {cp.tree_size} manifests exists but the log holds "
                f"{view.size}: refusing to extend a truncated log (run 'audit-pipeline verify')"
            )
        if view.hashes.root(cp.tree_size) != cp.root_hash:
            raise LedgerStateError(
                f"the log no longer matches its checkpoint of size {cp.tree_size}: "
                "refusing to extend it (run 'audit-pipeline verify')"
            )
        return cp.tree_size, previous

    def _check_signer_state(self, chain: Sequence[SignedManifest] | LogView) -> None:
        """_check_signer_state refuses, before anything is written, a log that does not
        extend the newest checkpoint this signer signed (truncated or forked)."""
        view = _as_view(chain)
        if self.signer_state is not None:
            state = load_signer_state(self.signer_state)
            if state is None and view.size:
                log.warning(
                    "no signer state at %s: this signer has no memory of what it signed; "
                    "it starts one now from this log of %d batches",
                    self.signer_state,
                    view.size,
                )
            try:
                check_extension(state, self._origin(view), view.hashes)
            except SignerRefusal as exc:
                if view.from_tiles:  # a tile off the checked root: judge on the manifests
                    raise TileMismatch(str(exc)) from exc
                raise

    def _write_tiles(self, chain: Sequence[SignedManifest] | LogView) -> None:
        """_write_tiles creates the hash tiles and batch index files the log completes, and
        any a ledger written before them lacks (see :mod:`.tiles`, :mod:`.batch_index`),
        before its checkpoint is signed. A file stored with other bytes is left alone and
        logged: readers fall back to the manifests and ``verify`` names it
        (``log_tile_mismatch``)."""
        view = _as_view(chain)
        wanted = missing_tiles(self.storage, view.hashes)
        starts = {*view.unindexed}
        if view.size and view.size % TILE_WIDTH == 0:
            starts.add(view.size - TILE_WIDTH)
        signer = self._require_signer()
        origin = self._origin(view)
        created = int(self.clock())
        for start in sorted(starts):
            if not self.storage.exists(index_path(start)):
                refs = view.refs[start : start + TILE_WIDTH]
                wanted[index_path(start)] = sign_index(signer, origin, view.size, created, refs)
        for path in publish_tiles(self._create_tile, self.storage, wanted):
            log.warning("%s holds other hashes or batches than the log's: run 'verify'", path)

    def _create_tile(self, rel: str, data: bytes) -> None:
        self.storage.create_exclusive(rel, data, mode=0o444)

    def _write_checkpoint(self, signer: Signer, chain: Sequence[SignedManifest] | LogView) -> bytes:
        """_write_checkpoint signs and publishes the checkpoint for the log's size; with a
        signer state, only as a consistent extension of it, recorded there before it is
        published (a crash in between re-signs the same bytes: Ed25519 is deterministic)."""
        view = _as_view(chain)
        size, origin = view.size, self._origin(view)
        state = None if self.signer_state is None else load_signer_state(self.signer_state)
        if self.signer_state is not None:
            check_extension(state, origin, view.hashes)
        tip = self._checked_tip(view)
        if tip is not None and tip[0] == size:
            signed = tip[1]
        else:
            checkpoint = Checkpoint(origin=origin, tree_size=size, root_hash=view.hashes.root())
            signed = sign_checkpoint(checkpoint, signer)
        if self.signer_state is not None and (state is None or state.size < size):
            record_signed(self.signer_state, state, signed, now=int(self.clock()), step=self._step)
        if tip is None or tip[0] < size:
            self.storage.create_exclusive(checkpoint_path(size), signed, mode=0o444)
        return signed

    def _recover(self, view: LogView) -> None:
        """_recover removes what a crashed commit left and signs a missing tip checkpoint.

        It acts only on intents signed by this signer's own key (the data directory's
        keyring is not trusted for this) naming the one lake path their batch may have, and
        never through a linked directory: a forged intent deletes nothing.
        """
        for name in self.storage.list_dir(PENDING):
            rel = f"{PENDING}/{name}"
            if parse_numbered_name(name, INTENT_SUFFIX) is None:
                self._remove_staged(rel)
                continue
            try:
                intent = parse_intent(self.storage.read(rel))
            except LedgerError as exc:
                log.warning("removing unreadable intent %s: %s", rel, exc)
                self._remove_staged(rel)
                continue
            referenced = view.references(intent.path)
            if self._intent_is_ours(intent, view.size) and not referenced:
                self._remove_leftover(intent)
            elif not referenced:
                log.warning(
                    "intent %s is not authenticated by this signer or names a foreign path; "
                    "its file is left for the verifier",
                    rel,
                )
            self._remove_staged(rel)
        tip = self._checked_tip(view)
        if view.size and (tip is None or tip[0] < view.size):
            self._write_tiles(view)
            self._write_checkpoint(self._require_signer(), view)

    def _intent_is_ours(self, intent: Intent, size: int) -> bool:
        """_intent_is_ours: the intent is for the batch the next commit will write (a crash
        can leave no other), at that batch's one lake path, and signed by this signer's
        key, or by a key of the keyring trusted at that position (an intent of the key
        rotated out just before). The path rule is what makes acting on it harmless: the
        only file it can name is the one this commit is about to write."""
        window = _window_of(intent.path)
        if intent.sequence != size or window is None:
            return False
        suffix = self.file_format.suffix
        paths = {batch_data_path(window, size, kind, suffix) for kind in ("hour", "late")}
        if intent.path not in paths:
            return False
        signer = self._require_signer()
        own = Keyring(keys=(TrustedKey.from_vkey(signer.vkey),), source="signer")
        if intent.signature_ok(own):
            return True
        keyring = self._keyring()
        key = keyring.find(intent.key_name, int(intent.key_id, 16))
        return (
            key is not None
            and key.valid_until_size == size
            and key.revoked_at_size is None
            and intent.signature_ok(keyring)
        )

    def _remove_leftover(self, intent: Intent) -> None:
        try:
            digest = file_digest(self.storage.regular_path(intent.path))
        except FileNotFoundError:
            return
        except NotRegularFileError as exc:
            log.warning("uncommitted leftover not removed: %s", exc)
            return
        if digest == (intent.size, intent.sha256):
            self.storage.remove(intent.path)
            log.info("removed uncommitted leftover %s (batch %d)", intent.path, intent.sequence)
        else:
            log.warning("%s differs from its intent; left for the verifier", intent.path)

    def _remove_staged(self, rel: str) -> None:
        if os.path.isdir(self.storage.path(rel)) and not os.path.islink(self.storage.path(rel)):
            log.warning("%s is a directory, not a staged file; left for the verifier", rel)
            return
        self.storage.remove(rel)
        log.info("removed staged file %s of an interrupted commit", rel)


def _as_view(chain: Sequence[SignedManifest] | LogView) -> LogView:
    return chain if isinstance(chain, LogView) else LogView.of_chain(chain)


def _window_of(path: str) -> int | None:
    """_window_of reads the hour a lake path claims (None if it is not a lake data path)."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "lake":
        return None
    try:
        moment = datetime.strptime(f"{parts[1]}/{parts[2]}", "date=%Y-%m-%d/hour=%H")
    except ValueError:
        return None
    return int(moment.replace(tzinfo=UTC).timestamp())


def _ranges(numbers: Sequence[int]) -> str:
    """_ranges spells [3, 4, 5, 9] as '3-5, 9'."""
    parts: list[str] = []
    start = prev = None
    for n in [*numbers, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ", ".join(parts)
