"""verify_ledger: check a whole data directory and report every finding, offline.

What is checked (each failure is a :class:`Finding` with a :class:`FindingCode`):

- every manifest parses strictly (canonical bytes, allow-listed algorithms), sits at the
  file name its ``sequence`` says, links to the SHA-256 of its predecessor's bytes (the
  genesis to 32 zero bytes, and no other manifest may), carries the log's origin, and is
  signed by a keyring key trusted at its position in the log (and at its ``created`` time
  where the keyring gives times); each keyring entry's signed statement verifies;
- sequence numbers run from 0 without a gap (every missing number is reported);
- each batch is well formed (one UTC hour, kind consistent with its data, data at the one
  path its window, sequence and kind allow), windows have one ``hour``/``empty`` batch
  followed only by ``late`` ones, ``created`` never goes backwards nor into the future;
- every data file: size and SHA-256; at row level (``depth="rows"``, the default) also row
  count, the RFC 6962 root over its rows' leaves, event count and time range, each row's
  id/time against its leaf JSON, each event inside the window, no event id twice in a
  window (file level says in a notice that these were not re-derived);
- no file under ``lake/`` that no manifest references (an uncommitted leftover of a
  crashed commit, proven by a signed intent, is a notice, not a finding);
- every hour from the first to the last committed one has a manifest;
- no symbolic link, FIFO or device is followed or waited on (``not_regular_file``), and no
  directory under the data directory is a symbolic link (``linked_directory``);
- every stored checkpoint: signature, key window, origin, and root equal to the log's
  root at its size (a checkpoint larger than the log means the tail was cut);
- with a trusted checkpoint held elsewhere: an RFC 6962 consistency proof that today's log
  extends it (catches tail truncation, rollback and forks, even after a key leak);
- with a data range (a copy holding the data of some hours only, such as an evidence
  bundle): every hour of the range has a manifest, and only a data file of a batch whose
  hour lies outside the range may be absent (a notice); everything else is checked as usual.

Incremental mode trusts everything a verified checkpoint covers and fully checks only the
manifests and data files after it: the log's hashes come from the hash tiles, which must
reproduce the trusted root, and the earlier batches of the hours it checks from the signed
batch index (:mod:`.log_view`), so the cost follows the new data. When that cannot be done
(a gap, a tile or manifest off the root) it reads every manifest, as a full run does.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.batch_index import BatchRef
from audit_pipeline.ledger.checkpoint import open_checkpoint
from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.events import BatchFileFormat
from audit_pipeline.ledger.findings import (
    COVERAGE_CODES,
    KEY_FINDING_CODES,
    REPORT_SCHEMA,
    Finding,
    FindingCode,
    IntegrityError,
    Notice,
    VerificationIncompleteError,
    VerifyReport,
    merkle_b64,
    sequence_ranges,
)
from audit_pipeline.ledger.keys import Keyring, KeyStatus, load_keyring
from audit_pipeline.ledger.layout import (
    CHECKPOINTS,
    HOUR,
    KEYRING,
    LAKE,
    LEDGER,
    MANIFEST_SUFFIX,
    MANIFESTS,
    LocalStorage,
    NotRegularFileError,
    batch_data_dir,
    batch_data_path,
    checkpoint_path,
    format_hour,
    manifest_path,
    numbered_name,
    parse_numbered_name,
)
from audit_pipeline.ledger.log_view import ChainError, TileMismatch, read_log
from audit_pipeline.ledger.manifest import (
    GENESIS_PREV,
    SignedManifest,
    UnsupportedAlgorithmError,
    parse_manifest,
    signature_status,
    source_name,
)
from audit_pipeline.ledger.merkle import PrefixRoots
from audit_pipeline.ledger.note import Verifiers
from audit_pipeline.ledger.storage import LedgerFiles
from audit_pipeline.ledger.verify_checkpoints import CheckpointChecks
from audit_pipeline.ledger.verify_context import DEPTHS, ROWS
from audit_pipeline.ledger.verify_coverage import CoverageChecks
from audit_pipeline.ledger.verify_data import DataFileChecks
from audit_pipeline.ledger.witnessed import WitnessVerdict, check_witnessed, default_quorum

MAX_CLOCK_SKEW = 300
# Findings about the log's roots: an incremental run that meets one re-reads every manifest.
_ROOT_CODES = frozenset(
    {FindingCode.CHECKPOINT_MISMATCH, FindingCode.CONSISTENCY_FAILURE, FindingCode.WITNESS_CONFLICT}
)


@dataclass
class _Batch:
    seq: int
    raw: bytes
    signed: SignedManifest | None


def verify_ledger(
    data_dir: str | Path,
    *,
    file_format: BatchFileFormat,
    keyring: Keyring | Verifiers | None = None,
    trusted_checkpoint: bytes | None = None,
    incremental: bool = False,
    jobs: int = 1,
    now: float | None = None,
    max_lag: int | None = None,
    data_range: tuple[int, int] | None = None,
    progress: Callable[[str], None] | None = None,
    witness_keys: Sequence[WitnessKey] = (),
    witness_quorum: int | None = None,
    storage: LedgerFiles | None = None,
    depth: str = ROWS,
    recheck_trusted_files: bool = False,
) -> VerifyReport:
    """verify_ledger checks the data directory and returns every finding it has.

    ``keyring`` (or plain ``Verifiers``: keys without validity windows) defaults to the data
    directory's own (say so to the user: it is editable by whoever can write the directory).
    ``trusted_checkpoint`` is a signed checkpoint held elsewhere (one that no trusted key
    signed is a finding); with ``incremental`` only what came after it is fully checked.
    ``max_lag``
    (seconds) makes a newest hour older than ``now - max_lag`` a finding (tail truncation
    seen against the hourly cadence). ``data_range`` ``(start, end)`` (whole UTC hours) is
    for a copy holding the data of those hours only: each of its hours must have a
    manifest, and a data file of a batch outside it may be absent (notice
    ``data_outside_range``); whoever chose the range decides what was checked, so callers
    should say where it came from. With ``witness_keys`` the latest checkpoint must carry
    ``witness_quorum`` (default: all of them) valid cosignatures and no witness may have
    cosigned a history the log no longer extends (see :mod:`.witnessed`). Raises only for
    misuse (ConfigurationError) or when files cannot be read (VerificationIncompleteError).
    ``storage`` reads another kind of data directory (an object store) in place of the
    local ``data_dir``, which then only names it. ``depth`` is how deep each data file is
    checked (``rows``, the default: every leaf re-derived; ``files``: size and SHA-256
    against the signed manifest only, said in a notice; see :data:`.verify_context.DEPTHS`).
    ``jobs`` > 1 checks data files in that many worker processes (local data directories).
    ``recheck_trusted_files`` (with ``incremental``) also checks the data files of the
    batches the trusted checkpoint covers, at file level.
    """
    if storage is None:
        data_dir = Path(data_dir)
        if not (data_dir / LEDGER).is_dir():
            raise ConfigurationError(f"no ledger in {data_dir} (expected {data_dir / LEDGER}/)")
        storage = LocalStorage(data_dir)
    elif not storage.list_dir(LEDGER):
        raise ConfigurationError(f"no ledger in {data_dir} (expected {LEDGER}/ in it)")
    if incremental and trusted_checkpoint is None:
        raise ConfigurationError("incremental verification needs a trusted checkpoint")
    if jobs < 1:
        raise ConfigurationError(f"jobs must be at least 1, got {jobs}")
    if depth not in DEPTHS:
        raise ConfigurationError(f"depth must be one of {', '.join(DEPTHS)}, got {depth!r}")
    if data_range is not None:
        data_range = check_data_range(data_range)
    quorum = default_quorum(witness_keys, witness_quorum)
    if witness_keys and not 1 <= quorum <= len(witness_keys):
        raise ConfigurationError(
            f"witness quorum must be 1..{len(witness_keys)} (the witness keys given), got {quorum}"
        )
    trusted_keys = keyring is not None
    if keyring is None:
        keyring = _own_keyring(data_dir, storage)
    elif isinstance(keyring, Verifiers):
        keyring = Keyring.from_vkeys((v.vkey for v in keyring), source="trusted verifiers")
    run = _Run(
        storage,
        file_format,
        keyring,
        now=time.time() if now is None else now,
        jobs=jobs,
        progress=progress or (lambda _msg: None),
        data_range=data_range,
        depth=depth,
        recheck_trusted_files=recheck_trusted_files,
    )
    run.witness_keys, run.witness_quorum = tuple(witness_keys), quorum
    try:
        return run.verify(trusted_checkpoint, incremental, max_lag, trusted_keys)
    except PermissionError as exc:
        raise VerificationIncompleteError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise VerificationIncompleteError(f"{exc.filename} vanished while verifying") from exc
        raise VerificationIncompleteError(f"I/O error: {exc}") from exc
    finally:
        run._stop_data()  # a hashing thread started while reading manifests, if any


def _own_keyring(data_dir: str | Path, storage: LedgerFiles) -> Keyring:
    if isinstance(storage, LocalStorage):
        return load_keyring(Path(data_dir))
    try:
        raw = storage.read(KEYRING)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no keyring at {data_dir}/{KEYRING}: pass --trusted-keys"
        ) from None
    return Keyring.from_bytes(raw, source=f"{data_dir}/{KEYRING}")


def check_data_range(data_range: tuple[int, int]) -> tuple[int, int]:
    """check_data_range returns ``(start, end)`` as ints, or ConfigurationError naming why not."""
    try:
        start, end = data_range
    except (TypeError, ValueError):
        raise ConfigurationError(f"a data range is (start, end), not {data_range!r}") from None
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in (start, end)):
        raise ConfigurationError(f"a data range is two Unix times, not {data_range!r}")
    if start % HOUR or end % HOUR or end <= start:
        raise ConfigurationError(
            f"a data range is whole UTC hours with its end after its start, not "
            f"{format_hour(start) if start % HOUR == 0 else start}.."
            f"{format_hour(end) if end % HOUR == 0 else end}"
        )
    return start, end


class _Run(DataFileChecks, CheckpointChecks, CoverageChecks):
    """_Run is one verification: the manifests, keyring and windows here, the rest in the
    check classes it inherits (one concern each)."""

    # -- the whole run ---------------------------------------------------------------------

    def verify(
        self,
        trusted_raw: bytes | None,
        incremental: bool,
        max_lag: int | None,
        trusted_keys: bool,
    ) -> VerifyReport:
        if incremental and trusted_raw is not None:
            flat = self._verify_flat(trusted_raw, max_lag, trusted_keys)
            if flat is not None:
                return flat
            self.findings.clear()
            self.notices.clear()
            self.checked.clear()
        batches = self._read_manifests(hash_ahead=not incremental)
        size = max(batches, default=-1) + 1
        missing = [s for s in range(size) if s not in batches]
        for seq in missing:
            self.add(
                FindingCode.MISSING_MANIFEST,
                manifest_path(seq),
                f"manifest {seq} is missing ({len(missing)} missing in all: "
                f"{sequence_ranges(missing)})",
            )
        parsed = {s: b.signed for s, b in batches.items() if b.signed is not None}
        origin = self._origin(parsed)
        # Roots of the log at every prefix size, up to the first gap.
        contiguous = missing[0] if missing else size
        leaves = [batches[s].raw for s in range(contiguous)]
        leaf_hashes = [merkle.leaf_hash(raw) for raw in leaves]
        roots = PrefixRoots(leaf_hashes)

        trusted = self._trusted(trusted_raw, origin, size, contiguous, roots, leaf_hashes)
        start = trusted.tree_size if (incremental and trusted is not None) else 0
        self.progress(f"read {len(batches)} manifests; checking from batch {start}")

        if not trusted_keys:
            self._check_keyring_statements()
        self._start_data(parsed, start)  # in worker processes meanwhile, with --jobs
        try:
            self._check_manifests(batches, start, origin)
            self._check_windows(parsed, start)
            self._check_data(parsed, start)
        finally:
            self._stop_data()
        self._check_unreferenced(parsed, size)
        self._check_checkpoints(parsed, origin, size, contiguous, roots, start)
        self._check_tiles(leaf_hashes, parsed)
        refs = {seq: BatchRef.of(signed) for seq, signed in parsed.items()}
        self._check_coverage(refs, start, max_lag)
        self._check_range_coverage(refs)
        witnesses = self._check_witnesses(origin, size, contiguous, roots, start)

        root = roots.root(size) if contiguous == size and size else None
        return self._report(
            size, root, origin, trusted_raw, trusted_keys, incremental, start, missing, max_lag,
            witnesses,
        )  # fmt: skip

    def _report(
        self,
        size: int,
        root: bytes | None,
        origin: str | None,
        trusted_raw: bytes | None,
        trusted_keys: bool,
        incremental: bool,
        start: int,
        missing: Sequence[int],
        max_lag: int | None,
        witnesses: WitnessVerdict | None,
    ) -> VerifyReport:
        current = None
        intact = not any(f.code not in COVERAGE_CODES for f in self.findings)
        if root is not None and intact and self.storage.exists(checkpoint_path(size)):
            current = self.storage.read(checkpoint_path(size))
        return VerifyReport(
            findings=tuple(self.findings),
            notices=tuple(self.notices),
            checked=dict(self.checked),
            tree_size=size,
            root_hash=root,
            checkpoint=current,
            origin=origin,
            keyring_source=self.keyring.source,
            trusted_keys=trusted_keys,
            incremental_from=start if incremental else None,
            missing_sequences=tuple(missing),
            data_range=self.data_range,
            trusted_checkpoint=trusted_raw is not None,
            max_lag=max_lag,
            witnesses=witnesses,
            depth=self.depth,
        )

    def _verify_flat(
        self, trusted_raw: bytes, max_lag: int | None, trusted_keys: bool
    ) -> VerifyReport | None:
        """An incremental verification that reads only what follows the trusted checkpoint
        (and the earlier batches of the hours it checks): the log's hashes from tiles that
        must reproduce the trusted root, the hours from the signed batch index. None when
        it cannot be done so (a gap, a foreign name, a trusted checkpoint the log does not
        extend, tiles or index off the signed root, a finding about roots): the caller then
        reads every manifest, as before tiles, and reports whatever is wrong."""
        if self.recheck_trusted_files:  # every data file is asked for: every manifest
            return None
        try:
            trusted, _ = open_checkpoint(trusted_raw, self.keyring.verifiers())
        except LedgerError:
            return None
        size = self._log_size(trusted.tree_size)
        if size is None:
            return None
        try:
            view = read_log(self.storage, size, trusted, lambda: self.keyring)
            start = trusted.tree_size
            wanted = set(range(max(start - 1, 0), size))
            for seq in range(start, size):
                m = view.manifest(seq).manifest
                wanted.update(s.sequence for s in view.batches_of(m.window_start, source_name(m)))
            manifests = {seq: view.manifest(seq) for seq in sorted(wanted)}
        except (TileMismatch, ChainError, FileNotFoundError, NotRegularFileError):
            return None
        origin = view.origin
        if any(m.manifest.origin != origin for m in manifests.values()):
            return None
        batches = {seq: _Batch(seq, m.raw, m) for seq, m in manifests.items()}
        partitions = sorted(
            {
                batch_data_dir(m.manifest.window_start, source_name(m.manifest))
                for seq, m in manifests.items()
                if seq >= start
            }
        )
        for partition in partitions if isinstance(self.storage, LocalStorage) else ():
            try:  # a directory on the way that is a link: the whole lake is walked and named
                self.storage.regular_path(f"{partition}/-")
            except NotRegularFileError:
                return None
        refs = {r.seq: r for r in view.coverage_refs()}
        if view.contradicted(manifests) or _fills_old_hour(refs, manifests, start):
            return None
        self.checked["manifests"] = len(batches)
        self.checked["consistency_proofs"] += 1
        self.progress(f"read {len(batches)} manifests; checking from batch {start}")
        if not trusted_keys:
            self._check_keyring_statements()
        self._start_data(manifests, start)  # in worker processes meanwhile, with --jobs
        try:
            self._check_manifests(batches, start, origin)
            self._check_windows(manifests, start)
            self._check_data(manifests, start)
        finally:
            self._stop_data()
        self._check_unreferenced(manifests, size, partitions, (LAKE, MANIFESTS, CHECKPOINTS))
        self._check_checkpoints(manifests, origin, size, size, view.hashes, start)
        self._check_coverage(refs, start, max_lag)
        self._check_range_coverage(refs)
        witnesses = self._check_witnesses(origin, size, size, view.hashes, start)
        if any(f.code in _ROOT_CODES for f in self.findings) or self._unindexed_file(start):
            return None  # judged on every manifest, where the tiles play no part
        return self._report(
            size, view.hashes.root(), origin, trusted_raw, trusted_keys, True, start, (),
            max_lag, witnesses,
        )  # fmt: skip

    def _log_size(self, trusted_size: int) -> int | None:
        """The log's size without listing every manifest: those after the trusted checkpoint
        are probed one by one (the earlier ones are pinned by the tiles, which must give its
        root). None when one is missing and the next stands (a gap: every manifest is
        listed and read instead); a gap further on leaves stored checkpoints past the
        size, which are ``tail_truncated``."""
        storage = self.storage
        if not isinstance(storage, LocalStorage):  # one listing from there on
            size = _count_from(*self.names_from(MANIFESTS, trusted_size, MANIFEST_SUFFIX))
            return None if size is None or trusted_size > size else size

        def present(seq: int) -> bool:  # a dangling link is there too (not_regular_file)
            return os.path.lexists(storage.path(manifest_path(seq)))

        size = trusted_size
        while present(size):
            size += 1
        return None if present(size + 1) else size

    def _unindexed_file(self, start: int) -> bool:
        """Whether an hour checked holds a data file named for a batch before the checkpoint
        that the signed index does not give that hour (every ``hour`` and ``late`` batch
        has one there): the index would be hiding a batch (a ``duplicate_window``, a
        repeated event id), so every manifest is read instead, where the index files are
        compared with the manifests."""
        for f in self.findings:
            number = f.location.rsplit("/", 1)[-1].split("-", 1)[0]
            if f.code == FindingCode.UNREFERENCED_FILE and number.isdigit() and int(number) < start:
                return True
        return False

    # -- keyring ---------------------------------------------------------------------------

    def _check_keyring_statements(self) -> None:
        """Each entry of the data directory's keyring names the keyring key that signed it
        (itself when added, the outgoing key on rotation, the current key on revocation).
        A statement that does not verify is a forged entry; a missing one (a v1 keyring, a
        revocation made without the key) is a notice. An auditor's --trusted-keys copy is
        taken as given."""
        for key in self.keyring.keys:
            where = f"{KEYRING}#{key.name}+{key.key_id}"
            if not key.statement:
                self.notice(
                    "keyring_entry_unsigned",
                    where,
                    "keyring entry carries no signed statement: anyone who can write the data "
                    "directory could have written it (pass --trusted-keys)",
                )
            elif key.statement_signer(self.keyring) is None:
                self.add(
                    FindingCode.KEYRING_ENTRY_FORGED,
                    where,
                    f"the entry's statement by {key.statement.get('by')} does not verify: "
                    "its windows or revocation were edited, or its signer is not in the keyring",
                )

    def _check_witnesses(
        self, origin: str | None, size: int, contiguous: int, roots: PrefixRoots, start: int
    ) -> WitnessVerdict | None:
        if not self.witness_keys:
            return None
        verdict = check_witnessed(
            self.storage,
            self.witness_keys,
            self.witness_quorum,
            origin=origin,
            size=size,
            root_at=lambda n: roots.root(n) if 0 < n <= contiguous else None,
            from_size=start,
        )
        self.checked["witnessed_checkpoints"] += 1
        for code, location, detail, expected, actual in verdict.problems:
            self.add(FindingCode(code), location, detail, expected, actual)
        return verdict

    # -- manifests -------------------------------------------------------------------------

    def _read_manifests(self, hash_ahead: bool = False) -> dict[int, _Batch]:
        """``hash_ahead``: every data file will be checked (a full run), so each can be
        hashed while the manifests after it are read (:meth:`_hash_ahead`)."""
        batches: dict[int, _Batch] = {}
        for name in self.storage.list_dir(MANIFESTS):
            rel = f"{MANIFESTS}/{name}"
            seq = parse_numbered_name(name, MANIFEST_SUFFIX)
            if seq is None:
                self.add(FindingCode.UNEXPECTED_FILE, rel, "not a manifest file name")
                continue
            try:
                raw = self.storage.read(rel)
            except NotRegularFileError as exc:
                self.add(FindingCode.NOT_REGULAR_FILE, rel, str(exc))
                continue
            signed = None
            try:
                signed = parse_manifest(raw)
            except UnsupportedAlgorithmError as exc:
                self.add(FindingCode.UNSUPPORTED_ALGORITHM, rel, str(exc))
            except LedgerError as exc:
                self.add(FindingCode.MALFORMED_MANIFEST, rel, str(exc))
            if signed is not None and hash_ahead:
                self._hash_ahead(seq, signed)
            batches[seq] = _Batch(seq, raw, signed)
        self.checked["manifests"] = len(batches)
        return batches

    def _origin(self, parsed: Mapping[int, SignedManifest]) -> str | None:
        if 0 in parsed:
            return parsed[0].manifest.origin
        origins = Counter(m.manifest.origin for m in parsed.values())
        return origins.most_common(1)[0][0] if origins else None

    def _check_manifests(
        self, batches: Mapping[int, _Batch], start: int, origin: str | None
    ) -> None:
        previous_created: int | None = None
        for seq in sorted(batches):
            signed = batches[seq].signed
            if signed is None:
                previous_created = None
                continue
            m, rel = signed.manifest, manifest_path(seq)
            if seq < start:
                previous_created = m.created
                continue
            if m.sequence != seq:
                self.add(
                    FindingCode.SEQUENCE_MISMATCH,
                    rel,
                    "the signed sequence number differs from the file name",
                    seq,
                    m.sequence,
                )
            if seq == 0:
                if m.prev_manifest_sha256 != GENESIS_PREV:
                    self.add(
                        FindingCode.CHAIN_BREAK,
                        rel,
                        "the genesis manifest must link to 32 zero bytes",
                        GENESIS_PREV,
                        m.prev_manifest_sha256,
                    )
            elif m.prev_manifest_sha256 == GENESIS_PREV:
                self.add(
                    FindingCode.SECOND_GENESIS,
                    rel,
                    f"manifest {seq} claims to start a new chain (previous hash is zero)",
                )
            elif seq - 1 in batches:
                want = _sha256(batches[seq - 1].raw)
                if m.prev_manifest_sha256 != want:
                    self.add(
                        FindingCode.CHAIN_BREAK,
                        rel,
                        f"previous-manifest hash does not match manifest {seq - 1}'s bytes",
                        want,
                        m.prev_manifest_sha256,
                    )
            if origin is not None and m.origin != origin:
                self.add(
                    FindingCode.ORIGIN_MISMATCH, rel, "manifest of another log", origin, m.origin
                )
            self._check_signature(signed, rel)
            self._check_shape(signed, rel)
            if m.created > self.now + MAX_CLOCK_SKEW:
                self.add(
                    FindingCode.FUTURE_DATED,
                    rel,
                    "created after the verification time",
                    f"<= {int(self.now) + MAX_CLOCK_SKEW}",
                    m.created,
                )
            if previous_created is not None and m.created < previous_created:
                self.add(
                    FindingCode.TIME_REGRESSION,
                    rel,
                    f"created before manifest {seq - 1}",
                    f">= {previous_created}",
                    m.created,
                )
            previous_created = m.created

    def _check_signature(self, signed: SignedManifest, rel: str) -> None:
        self.checked["signatures"] += 1
        status = signature_status(signed, self.keyring)
        if status != KeyStatus.VALID.value:
            sig = signed.signature
            self.add(
                KEY_FINDING_CODES[status],
                rel,
                f"signature by {sig.name}+{sig.key_id} at created={signed.manifest.created}: "
                f"{status}",
            )

    def _check_shape(self, signed: SignedManifest, rel: str) -> None:
        m = signed.manifest
        if m.window_start % HOUR or m.window_end != m.window_start + HOUR:
            self.add(
                FindingCode.INVALID_WINDOW,
                rel,
                "the window is not one UTC hour",
                "[H, H+3600)",
                f"[{m.window_start}, {m.window_end})",
            )
        has_data = m.data is not None
        if (m.kind == "empty") == has_data or (m.event_count == 0) == has_data:
            self.add(
                FindingCode.KIND_MISMATCH,
                rel,
                f"kind {m.kind} with {m.event_count} events and "
                f"{'a' if has_data else 'no'} data file",
            )
        if m.data is not None:
            want = batch_data_path(
                m.window_start, m.sequence, m.kind, self.file_format.suffix, source_name(m)
            )
            if m.data.path != want:
                self.add(
                    FindingCode.PATH_MISMATCH,
                    rel,
                    "data file path is not the batch's own",
                    want,
                    m.data.path,
                )
            if m.data.rows != m.event_count:
                self.add(
                    FindingCode.ROW_COUNT_MISMATCH,
                    rel,
                    "manifest rows != events.count",
                    m.event_count,
                    m.data.rows,
                )

    def _check_windows(self, parsed: Mapping[int, SignedManifest], start: int) -> None:
        # Each source has its own first batch per hour (``source.name``; see FORMAT.md).
        by_window: dict[tuple[str, int], list[tuple[int, SignedManifest]]] = defaultdict(list)
        for seq, signed in sorted(parsed.items()):
            by_window[source_name(signed.manifest), signed.manifest.window_start].append(
                (seq, signed)
            )
        for (_, window), batches in by_window.items():
            (first_seq, first), *later = batches
            if first_seq >= start and first.manifest.kind == "late":
                self.add(
                    FindingCode.KIND_MISMATCH,
                    manifest_path(first_seq),
                    f"first batch of {format_hour(window)} is 'late'",
                )
            for seq, other in later:
                if seq >= start and other.manifest.kind != "late":
                    self.add(
                        FindingCode.DUPLICATE_WINDOW,
                        manifest_path(seq),
                        f"second {other.manifest.kind!r} batch for {format_hour(window)} "
                        f"(first: batch {first_seq})",
                    )


def _count_from(names: list[str], first: int) -> int | None:
    """_count_from is the log's size from a listing of manifests that starts at number
    ``first`` (0: the whole directory): the names must be exactly ``first..n-1``; None for
    anything else (a gap, a foreign name: every manifest is read instead)."""
    if names != [numbered_name(first + i, MANIFEST_SUFFIX) for i in range(len(names))]:
        return None
    return first + len(names)


def _fills_old_hour(
    refs: Mapping[int, BatchRef], manifests: Mapping[int, SignedManifest], start: int
) -> bool:
    """Whether a batch after the checkpoint is for an hour between its source's earliest
    and latest earlier ones that no earlier batch holds, as far as the signed index says.
    Either the hour was missing (a backfill) or the index hides its batches (so that a
    second first batch is no ``duplicate_window``): every manifest is read to tell."""
    span: dict[str, tuple[int, int]] = {}
    for seq, ref in refs.items():
        if seq < start:
            low, high = span.get(ref.source, (ref.window_start, ref.window_start))
            span[ref.source] = (min(low, ref.window_start), max(high, ref.window_start))
    held = {
        (source_name(m.manifest), m.manifest.window_start)
        for seq, m in manifests.items()
        if seq < start
    }
    for seq, signed in manifests.items():
        key = (source_name(signed.manifest), signed.manifest.window_start)
        low, high = span.get(key[0], (0, -1))
        if seq >= start and key not in held and low <= key[1] <= high:
            return True
    return False


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


__all__ = [
    "COVERAGE_CODES",
    "REPORT_SCHEMA",
    "Finding",
    "FindingCode",
    "IntegrityError",
    "Notice",
    "VerificationIncompleteError",
    "VerifyReport",
    "check_data_range",
    "merkle_b64",
    "verify_ledger",
]
