"""Committing to an object store: the same chain as :class:`~.commit.Ledger`, no shared lock.

Committers on different machines share only the store (:class:`~.storage.ObjectStore`,
create-only writes under Object Lock). One commit of batch ``N``:

1. list the manifests (the head ``N-1``), check the chain links and that it extends the
   newest checkpoint this signer signed (signer state, local) and the store's newest
   checkpoint; sign the tip checkpoint a crashed committer left unsigned;
2. drop events the window's batches already hold; write the data file locally (once);
3. sign manifest ``N`` and create ``ledger/staged/<N>-<sha256 prefix>.json`` holding it:
   the *intent*, a signed promise naming the data object it is about to create;
4. create the data object at its one lake path (``<N>-<kind>``); the store answers with
   its VersionId;
5. sign the intent's payload again with that ``data_version_id`` (the pin) and create
   ``ledger/manifests/<N>.json``: the commit point (:mod:`.commit_point`);
6. create the checkpoint for ``N+1`` (recorded in the signer state first).

A lost race (a 412 at step 3, 4 or 5) re-reads the head and rebuilds on the winner. What a
loser or a crash leaves (an intent, maybe a data object) can never be deleted: the
verifier names such a data object an uncommitted leftover, because a signed intent of
this log vouches for exactly those bytes at that path, and nothing reads it. A committer
whose data path at ``N`` is taken by a crashed commit's leftover *rolls it forward*: the
intent is manifest ``N`` exactly as the crashed committer would have committed it (same
chain below it), so it is pinned to the data object's version and created as manifest
``N`` (signed by the committer finishing it), and the committer moves on to ``N+1``.

Signing keys and the signer state stay on the committer's machine; the store holds the
public keyring (``ledger/keys/keyring.json``) only.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from audit_pipeline.ledger.commit import (
    CommitError,
    CommitResult,
    Ledger,
    LedgerStateError,
    WriteData,
    _as_view,
    checked_events,
    file_digest,
)
from audit_pipeline.ledger.commit_point import Head, commit_next
from audit_pipeline.ledger.errors import LedgerError, MalformedError
from audit_pipeline.ledger.events import BatchFileFormat, EventRecord, events_root
from audit_pipeline.ledger.keys import Keyring, key_id
from audit_pipeline.ledger.layout import (
    HOUR,
    KEYRING,
    LEDGER,
    batch_data_path,
    checkpoint_path,
    format_hour,
    manifest_path,
)
from audit_pipeline.ledger.log_view import LogView, TileMismatch
from audit_pipeline.ledger.manifest import (
    AUDIT_LOGS_SOURCE,
    GENESIS_PREV,
    DataFile,
    Manifest,
    SignedManifest,
    parse_manifest,
    sign_manifest,
    signature_status,
    source_name,
)
from audit_pipeline.ledger.note import Signer
from audit_pipeline.ledger.signer_state import check_extension, load_signer_state, record_signed
from audit_pipeline.ledger.storage import (
    LedgerFiles,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectStore,
)

log = logging.getLogger(__name__)

STAGED = f"{LEDGER}/staged"


def staged_path(seq: int, data_sha256: str) -> str:
    """staged_path is where the intent of batch ``seq`` with that data file is created."""
    return f"{STAGED}/{seq:08d}-{data_sha256[:16]}.json"


class ConcurrentWindowError(LedgerStateError):
    """Another committer committed part of this hour's events while this one was building
    its batch: nothing of this attempt was committed; running the sync again commits the
    rest (every event is kept by the API and skipped here when already held)."""

    exit_code = 3


@dataclass
class _Staged:
    """The data file of one commit, written once and reused across lost races."""

    path: Path
    ids: frozenset[str]
    size: int
    sha256: str
    records: list[EventRecord]


class _Committed(Exception):
    """This attempt's manifest is committed already (another committer rolled it forward)."""

    def __init__(self, seq: int) -> None:
        self.seq = seq


class _Nothing(Exception):
    def __init__(self, skipped: int, missing: tuple[str, ...]) -> None:
        self.skipped, self.missing = skipped, missing


class ObjectStoreLedger(Ledger):
    """ObjectStoreLedger commits batches to, and reads them from, a ledger in an object store.

    ``files`` reads the store as a data directory (the verifier's
    :class:`~.storage.LedgerFiles`); ``location`` names the store for messages;
    ``local_dir`` is a local directory for what cannot go to the bucket (pages kept after a
    failed hour). Reading the chain, the key and chain checks are :class:`~.commit.Ledger`'s;
    committing, checkpoints and the keyring are the store's.
    """

    def __init__(
        self,
        store: ObjectStore,
        files: LedgerFiles,
        *,
        location: str,
        local_dir: Path,
        file_format: BatchFileFormat,
        signer: Signer | None = None,
        origin: str | None = None,
        clock: Callable[[], float] = time.time,
        signer_state: Path | None = None,
    ) -> None:
        super().__init__(
            local_dir,
            file_format=file_format,
            signer=signer,
            origin=origin,
            clock=clock,
            signer_state=signer_state,
        )
        self.store = store
        self.storage = files  # type: ignore[assignment]  # its read side: list_dir, read
        self.location = location

    # -- reading ---------------------------------------------------------------------------

    def committed_event_ids(self, window_start: int, source: str = AUDIT_LOGS_SOURCE) -> set[str]:
        batches = self._view().batches_of(window_start, source)
        return {r.event_id for r in self._window_records(batches, window_start, source)}

    def window_leaves(self, window_start: int, source: str = AUDIT_LOGS_SOURCE) -> dict[str, bytes]:
        leaves: dict[str, bytes] = {}
        batches = self._view().batches_of(window_start, source)
        for record in self._window_records(batches, window_start, source):
            leaves.setdefault(record.event_id, record.leaf_hash)
        return leaves

    def _window_records(
        self, chain: Sequence[SignedManifest], window_start: int, source: str
    ) -> list[EventRecord]:
        records: list[EventRecord] = []
        for signed in chain:
            data = signed.manifest.data
            if signed.manifest.window_start != window_start or data is None:
                continue
            if source_name(signed.manifest) != source:
                continue
            records.extend(self._read_data(signed))
        return records

    def _read_data(self, signed: SignedManifest) -> list[EventRecord]:
        """_read_data reads a committed data object after checking it is the one pinned."""
        data = signed.manifest.data
        assert data is not None
        try:
            raw = self.store.get(data.path)
        except ObjectNotFoundError:
            raise LedgerStateError(
                f"data file of batch {signed.sequence} is missing: {data.path}"
            ) from None
        if len(raw) != data.size or hashlib.sha256(raw).hexdigest() != data.sha256:
            raise LedgerStateError(
                f"data file of batch {signed.sequence} ({data.path}) is not the one its "
                "manifest pins; run 'audit-pipeline verify'"
            )
        with tempfile.TemporaryDirectory(prefix="audit-pipeline-") as tmp:
            path = Path(tmp) / f"batch{self.file_format.suffix}"
            path.write_bytes(raw)
            return self.file_format.read_events(path)

    # -- committing ------------------------------------------------------------------------

    def commit_batch(
        self,
        *,
        window_start: int,
        window_end: int,
        events: Sequence[EventRecord],
        write_data: WriteData,
        source: Mapping[str, Any],
        run_id: str,
    ) -> CommitResult:
        """commit_batch commits the events of one hour the ledger does not hold yet (see
        :meth:`~.commit.Ledger.commit_batch`), racing other committers by create-only
        writes of the next manifest."""
        signer = self._require_signer()
        unique, repeated = checked_events(window_start, window_end, events, source, run_id)
        name = source.get("name") or AUDIT_LOGS_SOURCE
        with tempfile.TemporaryDirectory(prefix="audit-pipeline-commit-") as tmp:
            work = _Work(self, signer, Path(tmp), window_start, unique, write_data, source, run_id)
            try:
                seq = commit_next(self.store, lambda n, head: work.build(n, head, name)).seq
                assert work.view is not None and work.signed is not None
                grown = work.view.appended(work.signed)
            except _Committed as done:  # rare: read as it stood when it was committed
                seq = done.seq
                grown = LogView.of_chain(self._load_chain()[: seq + 1])
            except _Nothing as nothing:
                skipped = repeated + nothing.skipped
                return CommitResult(None, None, 0, skipped, nothing.missing, None, None)
        self._step("manifest_written")
        self._write_tiles(grown)
        checkpoint = self._write_checkpoint(signer, grown)
        self._step("checkpoint_written")
        signed = grown.manifest(seq)
        data = signed.manifest.data
        log.info(
            "committed batch %d (%s, %s): %d events",
            seq,
            signed.manifest.kind,
            format_hour(window_start),
            signed.manifest.event_count,
        )
        return CommitResult(
            sequence=seq,
            kind=signed.manifest.kind,
            events_committed=signed.manifest.event_count,
            duplicates_skipped=repeated + work.skipped,
            missing_from_source=work.missing,
            data_path=data.path if data else None,
            checkpoint=checkpoint,
        )

    def _keyring(self) -> Keyring:
        try:
            raw = self.store.get(KEYRING)
        except ObjectNotFoundError:
            raise ConfigurationError(
                f"no keyring at {self.location}/{KEYRING}: run 'audit-pipeline keys init "
                f"--data-dir {self.location}' first"
            ) from None
        return Keyring.from_bytes(raw, source=f"{self.location}/{KEYRING}")

    def _create_tile(self, rel: str, data: bytes) -> None:
        self.store.put_new(rel, data)

    def _write_checkpoint(self, signer: Signer, chain: Sequence[SignedManifest] | LogView) -> bytes:
        """_write_checkpoint signs the checkpoint for the log's size (recorded in the signer
        state first) and creates it; one another committer created first is kept if it
        verifies for the same tree."""
        view = _as_view(chain)
        origin, size = self._origin(view), view.size
        state = None if self.signer_state is None else load_signer_state(self.signer_state)
        if self.signer_state is not None:
            check_extension(state, origin, view.hashes)
        root = view.hashes.root()
        signed = sign_checkpoint(Checkpoint(origin, size, root), signer)
        if self.signer_state is not None and (state is None or state.size < size):
            record_signed(self.signer_state, state, signed, now=int(self.clock()), step=self._step)
        rel = checkpoint_path(size)
        try:
            self.store.put_new(rel, signed)
            return signed
        except ObjectExistsError:
            existing = self.store.get(rel)
        try:
            cp, _ = open_checkpoint(existing, self._keyring().verifiers())
        except LedgerError as exc:
            raise LedgerStateError(f"{rel} exists and does not verify: {exc}") from exc
        if (cp.origin, cp.tree_size, cp.root_hash) != (origin, size, root):
            raise LedgerStateError(f"{rel} exists for another log or tree")
        return existing

    def _intent_for(
        self, key: str, last: SignedManifest | None, seq: int, data: DataFile
    ) -> SignedManifest | None:
        """_intent_for returns the intent at ``key`` if it is manifest ``seq`` on top of
        ``last`` for exactly ``data``, signed by a key trusted there (else None)."""
        try:
            signed = parse_manifest(self.store.get(key))
        except (LedgerError, ObjectNotFoundError):
            return None
        prev = last.sha256 if last else GENESIS_PREV
        m = signed.manifest
        if m.sequence != seq or m.prev_manifest_sha256 != prev or m.data != data:
            return None
        return signed if signature_status(signed, self._keyring()) == "valid" else None

    def _held_version(self, data: DataFile) -> str | None:
        """_held_version is the version id of the object at ``data.path`` when it is exactly
        ``data`` (a crashed attempt wrote the same bytes there), else None."""
        stored = self.store.head(data.path)
        if stored is None or (stored.size, stored.sha256) != (data.size, data.sha256):
            return None
        return stored.version_id

    def _pinned(self, intent: SignedManifest, version_id: str) -> SignedManifest:
        """_pinned is the manifest to commit for ``intent``: its payload with the data
        object's version id, signed by this committer."""
        signer = self._require_signer()
        manifest = replace(
            intent.manifest,
            data_version_id=version_id,
            key_name=signer.name,
            key_id=key_id(signer.key_hash),
        )
        self._check_signing_key(signer, manifest.created, manifest.sequence)
        try:
            return sign_manifest(manifest, signer)
        except MalformedError as exc:
            raise CommitError(f"cannot sign manifest {manifest.sequence}: {exc}") from exc

    def _roll_forward(self, last: SignedManifest | None, seq: int, rel: str) -> bool:
        """_roll_forward commits the crashed commit whose intent names ``rel`` at ``seq``,
        when the data object there is exactly the one the intent describes; False when no
        trusted intent describes it (other intents for ``seq``, such as this committer's
        own, name other bytes at the same path)."""
        stored = self.store.head(rel)
        try:
            raw = None if stored is None else self.store.get(rel, stored.version_id)
        except ObjectNotFoundError:
            raw = None
        if stored is None or raw is None:
            return False
        digest = hashlib.sha256(raw).hexdigest()
        prev = last.sha256 if last else GENESIS_PREV
        keyring = self._keyring()
        for key in self.store.list_keys(f"{STAGED}/{seq:08d}-"):
            try:
                signed = parse_manifest(self.store.get(key))
            except (LedgerError, ObjectNotFoundError):
                continue
            m, data = signed.manifest, signed.manifest.data
            if data is None or data.path != rel or m.sequence != seq:
                continue
            if (len(raw), digest) != (data.size, data.sha256) or m.prev_manifest_sha256 != prev:
                continue
            if signature_status(signed, keyring) != "valid":
                continue
            try:
                self.store.put_new(manifest_path(seq), self._pinned(signed, stored.version_id).raw)
                log.warning("rolled forward the interrupted commit of batch %d (%s)", seq, rel)
            except ObjectExistsError:
                pass
            return True
        return False


def same_batch(a: Manifest, b: Manifest) -> bool:
    """same_batch: two manifests commit the same batch, whichever committer pinned and
    signed it (an intent and the manifest made from it)."""
    unsigned = {"data_version_id": None, "key_name": "", "key_id": ""}
    return replace(a, **unsigned) == replace(b, **unsigned)


def _not_an_intent(key: str) -> SignedManifest:
    raise LedgerStateError(
        f"{key} is taken by an object that is not this batch's signed intent: "
        "run 'audit-pipeline verify'"
    )


class _Work:
    """_Work is one commit_batch call: what it wrote so far, rebuilt on every lost race."""

    def __init__(
        self,
        ledger: ObjectStoreLedger,
        signer: Signer,
        tmp: Path,
        window_start: int,
        unique: list[EventRecord],
        write_data: WriteData,
        source: Mapping[str, Any],
        run_id: str,
    ) -> None:
        self.ledger, self.signer, self.tmp = ledger, signer, tmp
        self.window_start, self.unique, self.write_data = window_start, unique, write_data
        self.source, self.run_id = source, run_id
        self.staged: _Staged | None = None
        self.view: LogView | None = None  # the log the manifest last offered extends
        self.tip: tuple[int, bytes] | None = None  # its newest checkpoint
        self.signed: SignedManifest | None = None  # that manifest
        self.last: tuple[int, Manifest] | None = None  # the manifest last offered
        self.skipped = 0
        self.missing: tuple[str, ...] = ()

    def _read(self, seq: int) -> LogView:
        """_read is the log of ``seq`` manifests read flat (:mod:`.log_view`), checked
        against this signer's state and the newest checkpoint; a tile off the signed root
        is set aside for the manifests, as a local commit does."""
        ledger = self.ledger
        try:
            view = ledger._view()
            if view.size != seq:
                raise ObjectExistsError(f"the head moved past {seq - 1} while it was read")
            try:
                ledger._check_signer_state(view)
            except TileMismatch as exc:
                log.warning("%s: reading every manifest instead (run 'verify')", exc)
                view = ledger._view(use_tiles=False)
                ledger._check_signer_state(view)
            self.tip = ledger._checked_tip(view)
        except LedgerStateError:
            # a checkpoint past the log read a moment ago: another commit landed in
            # between (a rebase), unless the manifests are really gone (truncation)
            if ledger._manifest_count() > seq:
                raise ObjectExistsError(f"the head moved past {seq - 1}") from None
            raise
        return view

    def build(self, seq: int, head: Head | None, name: str) -> bytes:
        ledger = self.ledger
        view = self._read(seq)
        last = self.last
        if (
            last is not None
            and last[0] < seq
            and same_batch(view.manifest(last[0]).manifest, last[1])
        ):
            raise _Committed(last[0])
        tip = self.tip
        if view.size and (tip is None or tip[0] < view.size):
            ledger._write_tiles(view)
            ledger._write_checkpoint(self.signer, view)  # a crashed commit's tip
        batches = view.batches_of(self.window_start, name)
        held = {r.event_id for r in ledger._window_records(batches, self.window_start, name)}
        new = [e for e in self.unique if e.event_id not in held]
        self.missing = tuple(sorted(held - {e.event_id for e in self.unique}))
        self.skipped = len(self.unique) - len(new)
        if batches and not new:
            raise _Nothing(self.skipped, self.missing)
        kind = "late" if batches else ("hour" if new else "empty")
        origin = ledger._origin(view)
        top = view.last
        created = max(int(ledger.clock()), top.manifest.created if top else 0)
        ledger._check_signing_key(self.signer, created, seq)
        staged = self._stage(seq, new) if new else None
        data = None
        if staged is not None:
            rel = batch_data_path(
                self.window_start, seq, kind, ledger.file_format.suffix, self.source.get("name")
            )
            data = DataFile(path=rel, size=staged.size, sha256=staged.sha256, rows=len(new))
        records = staged.records if staged else []
        times = [r.date_create for r in records]
        manifest = Manifest(
            origin=origin,
            sequence=seq,
            prev_manifest_sha256=top.sha256 if top else GENESIS_PREV,
            window_start=self.window_start,
            window_end=self.window_start + HOUR,
            kind=kind,
            data=data,
            event_count=len(records),
            min_date_create=min(times, default=None),
            max_date_create=max(times, default=None),
            events_root=events_root(records).hex(),
            source=dict(self.source),
            run_id=self.run_id,
            created=created,
            key_name=self.signer.name,
            key_id=key_id(self.signer.key_hash),
        )
        try:
            signed = sign_manifest(manifest, self.signer)
        except MalformedError as exc:
            raise CommitError(f"cannot sign manifest {seq}: {exc}") from exc
        if staged is not None and data is not None:
            intent = staged_path(seq, staged.sha256)
            try:
                ledger.store.put_new(intent, signed.raw)
            except ObjectExistsError:
                # a crashed attempt at the same batch with the same data: finish that one
                signed = ledger._intent_for(intent, top, seq, data) or _not_an_intent(intent)
            ledger._step("intent_written")
            try:
                version_id = ledger.store.put_new(data.path, staged.path.read_bytes()).version_id
            except ObjectExistsError:
                held = ledger._held_version(data)
                if held is None:
                    if ledger._roll_forward(top, seq, data.path):
                        raise
                    if ledger._manifest_count() > seq:
                        raise  # another committer took ``seq`` meanwhile: rebase
                    raise LedgerStateError(
                        f"{data.path} is taken by an object no signed intent of batch {seq} "
                        "describes: run 'audit-pipeline verify'"
                    ) from None
                version_id = held
            ledger._step("data_linked")
            signed = ledger._pinned(signed, version_id)
        self.last = (seq, signed.manifest)
        self.view, self.signed = view, signed
        return signed.raw

    def _stage(self, seq: int, new: list[EventRecord]) -> _Staged:
        """_stage writes the data file once; a rebuild needs the same events (a concurrent
        commit of some of them is ConcurrentWindowError)."""
        ids = frozenset(e.event_id for e in new)
        if self.staged is not None:
            if self.staged.ids != ids:
                raise ConcurrentWindowError(
                    f"another committer committed some events of {format_hour(self.window_start)}"
                    " while this batch was built: nothing of it was committed; sync the hour "
                    "again"
                )
            return self.staged
        path = self.tmp / f"batch{self.ledger.file_format.suffix}"
        self.write_data(new, path)
        self.ledger._step("data_written")
        if not path.is_file():
            raise CommitError(f"write_data did not create {path}")
        size, sha256 = file_digest(path)
        try:
            records = self.ledger.file_format.read_events(path)
        except LedgerError as exc:
            raise CommitError(
                f"the data file written for batch {seq} is unreadable: {exc}"
            ) from exc
        Ledger._check_written(seq, self.window_start, new, records)
        self.staged = _Staged(path, ids, size, sha256, records)
        return self.staged
