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
- every data file: size, SHA-256, row count, the RFC 6962 root over its rows' leaves,
  event count and time range, each row's id/time against its leaf JSON, each event inside
  the window, no event id twice in a window;
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
manifests and data files after it; the log root is still recomputed from all manifest
bytes (kilobytes per batch), so the cost follows the new data.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.anchors import UncheckedAttack, not_ruled_out
from audit_pipeline.ledger.checkpoint import Checkpoint, open_checkpoint
from audit_pipeline.ledger.commit import file_digest, parse_intent
from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.errors import (
    InvalidProofError,
    InvalidSignatureError,
    LedgerError,
    MalformedError,
    UnknownKeyError,
)
from audit_pipeline.ledger.events import BatchFileFormat, events_root, record_mismatch
from audit_pipeline.ledger.keys import Keyring, KeyStatus, key_id, load_keyring
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    HOUR,
    INTENT_SUFFIX,
    KEYRING,
    LAKE,
    LEDGER,
    MANIFEST_SUFFIX,
    MANIFESTS,
    PENDING,
    LocalStorage,
    NotRegularFileError,
    batch_data_path,
    checkpoint_path,
    format_hour,
    manifest_path,
    open_regular,
    parse_numbered_name,
)
from audit_pipeline.ledger.manifest import (
    GENESIS_PREV,
    SignedManifest,
    UnsupportedAlgorithmError,
    parse_manifest,
    signature_status,
    source_name,
)
from audit_pipeline.ledger.note import Verifiers
from audit_pipeline.ledger.report_text import finding_lines
from audit_pipeline.ledger.several_hours import id_hashes, ids_in_several_hours
from audit_pipeline.ledger.storage import LedgerFiles
from audit_pipeline.ledger.witnessed import WitnessVerdict, check_witnessed, default_quorum
from audit_pipeline.text import plural

REPORT_SCHEMA = "audit_pipeline.verify/v1"
MAX_CLOCK_SKEW = 300
_LIST_LIMIT = 20


class FindingCode(enum.StrEnum):
    """FindingCode names one kind of integrity failure (stable: scripts match on it)."""

    MISSING_MANIFEST = "missing_manifest"
    MALFORMED_MANIFEST = "malformed_manifest"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    SEQUENCE_MISMATCH = "sequence_mismatch"
    CHAIN_BREAK = "chain_break"
    SECOND_GENESIS = "second_genesis"
    ORIGIN_MISMATCH = "origin_mismatch"
    UNKNOWN_KEY = "unknown_key"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    KEY_EXPIRED = "key_expired"
    KEY_REVOKED = "key_revoked"
    BAD_SIGNATURE = "bad_signature"
    INVALID_WINDOW = "invalid_window"
    KIND_MISMATCH = "kind_mismatch"
    PATH_MISMATCH = "path_mismatch"
    DUPLICATE_WINDOW = "duplicate_window"
    FUTURE_DATED = "future_dated"
    TIME_REGRESSION = "time_regression"
    DATA_FILE_MISSING = "data_file_missing"
    SIZE_MISMATCH = "size_mismatch"
    FILE_HASH_MISMATCH = "file_hash_mismatch"
    UNREADABLE_DATA_FILE = "unreadable_data_file"
    ROW_COUNT_MISMATCH = "row_count_mismatch"
    EVENTS_ROOT_MISMATCH = "events_root_mismatch"
    EVENT_RANGE_MISMATCH = "event_range_mismatch"
    EVENT_RECORD_MISMATCH = "event_record_mismatch"
    EVENT_OUTSIDE_WINDOW = "event_outside_window"
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    UNREFERENCED_FILE = "unreferenced_file"
    UNEXPECTED_FILE = "unexpected_file"
    HOUR_MISSING = "hour_missing"
    MALFORMED_CHECKPOINT = "malformed_checkpoint"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    TAIL_TRUNCATED = "tail_truncated"
    CONSISTENCY_FAILURE = "consistency_failure"
    STALE_LOG = "stale_log"
    RANGE_NOT_COVERED = "range_not_covered"
    NOT_REGULAR_FILE = "not_regular_file"
    LINKED_DIRECTORY = "linked_directory"
    KEYRING_ENTRY_FORGED = "keyring_entry_forged"
    WITNESS_QUORUM_MISSING = "witness_quorum_missing"
    WITNESS_CONFLICT = "witness_conflict"
    WITNESS_BAD_COSIGNATURE = "witness_bad_cosignature"
    # an object-store data directory (see version_audit): versions against what was pinned
    PINNED_VERSION_MISSING = "pinned_version_missing"
    CURRENT_VERSION_DIFFERS = "current_version_differs"
    DELETE_MARKER = "delete_marker"
    EXTRA_VERSION = "extra_version"
    STORE_CHECKSUM_MISMATCH = "store_checksum_mismatch"
    STORE_CHECKSUM_MISSING = "store_checksum_missing"
    STORE_SIZE_MISMATCH = "store_size_mismatch"
    RETENTION_MISSING = "retention_missing"
    RETENTION_SHORT = "retention_short"
    UNREFERENCED_OBJECT = "unreferenced_object"


_KEY_CODES = {
    KeyStatus.UNKNOWN.value: FindingCode.UNKNOWN_KEY,
    KeyStatus.NOT_YET_VALID.value: FindingCode.KEY_NOT_YET_VALID,
    KeyStatus.EXPIRED.value: FindingCode.KEY_EXPIRED,
    KeyStatus.REVOKED.value: FindingCode.KEY_REVOKED,
    "bad_signature": FindingCode.BAD_SIGNATURE,
}


@dataclass(frozen=True)
class Finding:
    """Finding is one integrity failure: what, where, and the values that disagree."""

    code: FindingCode
    location: str
    expected: str | None
    actual: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "location": self.location,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }

    def line(self) -> str:
        values = ""
        if self.expected is not None or self.actual is not None:
            values = f" (expected {self.expected}, found {self.actual})"
        return f"{self.code.value}: {self.location}: {self.detail}{values}"


@dataclass(frozen=True)
class Notice:
    """Notice is something worth knowing that is not an integrity failure."""

    code: str
    location: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "location": self.location, "detail": self.detail}


class VerificationIncompleteError(AuditPipelineError):
    """The verifier could not read what it must check (exit code 3)."""


class IntegrityError(LedgerError):
    """Raised by :meth:`VerifyReport.raise_for_findings`; the message is the summary."""


# Findings about the log's cadence (hours never committed, a log gone stale), not about the
# integrity of what it holds: a ledger with only these is intact as far as it goes.
# A latest checkpoint without its quorum of cosignatures (a witness was down) is a finding
# for whoever asked for witnesses, but says nothing against what the log holds.
COVERAGE_CODES = frozenset(
    {FindingCode.HOUR_MISSING, FindingCode.STALE_LOG, FindingCode.WITNESS_QUORUM_MISSING}
)


@dataclass(frozen=True)
class VerifyReport:
    """VerifyReport holds every finding and notice of one verification; true when intact."""

    findings: tuple[Finding, ...]
    notices: tuple[Notice, ...]
    checked: Mapping[str, int]
    tree_size: int
    root_hash: bytes | None
    checkpoint: bytes | None
    origin: str | None
    keyring_source: str
    trusted_keys: bool
    incremental_from: int | None = None
    missing_sequences: tuple[int, ...] = field(default=())
    data_range: tuple[int, int] | None = None
    trusted_checkpoint: bool = False
    max_lag: int | None = None
    # where an object-store data directory lives and what its versions audit covered
    object_store: Mapping[str, Any] | None = None

    @property
    def not_ruled_out(self) -> tuple[UncheckedAttack, ...]:
        """not_ruled_out: the attacks this run's anchors (if any) could not expose."""
        return not_ruled_out(
            trusted_checkpoint=self.trusted_checkpoint,
            trusted_keys=self.trusted_keys,
            max_lag=self.max_lag is not None,
        )

    @property
    def anchored(self) -> bool:
        """anchored: an outside checkpoint and outside keys were given (nothing above open)."""
        return not self.not_ruled_out

    witnesses: WitnessVerdict | None = None

    def __bool__(self) -> bool:
        return not self.findings

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def integrity_findings(self) -> tuple[Finding, ...]:
        """integrity_findings are the findings other than coverage gaps and staleness."""
        return tuple(f for f in self.findings if f.code not in COVERAGE_CODES)

    @property
    def intact(self) -> bool:
        """intact: everything committed verified (hours may still be missing)."""
        return not self.integrity_findings

    def codes(self) -> Counter[str]:
        return Counter(f.code.value for f in self.findings)

    def raise_for_findings(self) -> None:
        if self.findings:
            raise IntegrityError(self.summary())

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "ok": self.ok,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": merkle_b64(self.root_hash),
            "checkpoint": self.checkpoint.decode() if self.checkpoint else None,
            "keyring": {"source": self.keyring_source, "trusted": self.trusted_keys},
            "anchored": self.anchored,
            "not_ruled_out": [a.to_dict() for a in self.not_ruled_out],
            "incremental_from": self.incremental_from,
            "data_range": (
                None
                if self.data_range is None
                else {"start": self.data_range[0], "end": self.data_range[1]}
            ),
            "checked": dict(self.checked),
            "finding_counts": dict(sorted(self.codes().items())),
            "missing_sequences": list(self.missing_sequences),
            "findings": [f.to_dict() for f in self.findings],
            "notices": [n.to_dict() for n in self.notices],
            "witnesses": None if self.witnesses is None else self.witnesses.to_dict(),
            "object_store": None if self.object_store is None else dict(self.object_store),
        }

    def summary(self) -> str:
        """summary is the human report: a verdict line, then every finding and notice."""
        c = self.checked
        facts = f"{self._scope()}; " + ", ".join(
            plural(c.get(key, 0), word)
            for key, word in (("signatures", "signature"), ("data_files", "data file"))
        )
        facts += f" ({plural(c.get('bytes_hashed', 0), 'byte')}), " + ", ".join(
            plural(c.get(key, 0), word)
            for key, word in (("events", "event"), ("checkpoints", "checkpoint"), ("hours", "hour"))
        )
        facts += " checked"
        if self.data_range is not None:
            start, end = self.data_range
            facts += (
                f"; data of hours {format_hour(start)}..{format_hour(end)} only "
                f"({plural(c.get('data_outside_range', 0), 'absent data file')} outside it)"
            )
        lines = []
        if self.ok:
            root = merkle_b64(self.root_hash) or "-"
            lines.append(f"OK: ledger {self.origin or '(empty)'} intact: {facts}; root {root}")
        else:
            counts = ", ".join(f"{k} x{v}" for k, v in sorted(self.codes().items()))
            lines.append(f"FAIL: {plural(len(self.findings), 'finding')} ({counts}); {facts}")
            if self.missing_sequences:
                lines.append(
                    f"  missing manifests: {len(self.missing_sequences)} "
                    f"({_ranges(self.missing_sequences)})"
                )
            lines.extend(f"  {line}" for line in finding_lines(self.findings))
        if self.witnesses is not None:
            lines.append(f"  {self.witnesses.line()}")
        if self.object_store is not None:
            lines.append(f"  {self.object_store['line']}")
        # absent data outside the range is counted in the facts line: no line per file
        lines.extend(_notice_lines(n for n in self.notices if n.code != "data_outside_range"))
        if not self.trusted_keys:
            lines.append(
                "  keys: used the data directory's own keyring, which anyone who can write "
                "the directory can edit; pass --trusted-keys FILE to use keys held elsewhere"
            )
        if not self.anchored:
            lines.append(
                "  anchored: false: checked against the data directory only, so these were "
                "not ruled out:"
            )
            lines.extend(f"    {attack.line()}" for attack in self.not_ruled_out)
        return "\n".join(lines)

    def _scope(self) -> str:
        if self.incremental_from is None:
            return plural(self.tree_size, "batch")
        if self.incremental_from >= self.tree_size:
            return f"no batches after the trusted checkpoint (size {self.tree_size})"
        return f"batches {self.incremental_from}..{self.tree_size - 1} after the trusted checkpoint"


def merkle_b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _notice_lines(notices: Iterable[Notice], per_code: int = 5) -> list[str]:
    """_notice_lines shows a few notices of each code (a year-long bundle of one day has
    thousands of ``data_outside_range``); the JSON report keeps them all."""
    by_code: dict[str, list[Notice]] = defaultdict(list)
    for n in notices:
        by_code[n.code].append(n)
    lines = []
    for code, group in by_code.items():
        lines.extend(f"  notice: {code}: {n.location}: {n.detail}" for n in group[:per_code])
        if len(group) > per_code:
            lines.append(f"  notice: {code}: ... and {len(group) - per_code} more (see --json)")
    return lines


@dataclass
class _Batch:
    seq: int
    raw: bytes
    signed: SignedManifest | None


@dataclass
class _DataResult:
    findings: list[Finding]
    ids: list[str] | None
    bytes_hashed: int
    events: int
    absent_outside_range: bool = False
    id_hashes: array | None = None  # every id, hashed: the same id in two hours (a notice)


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
    local ``data_dir``, which then only names it.
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


class _Run:
    def __init__(
        self,
        storage: LedgerFiles,
        file_format: BatchFileFormat,
        keyring: Keyring,
        *,
        now: float,
        jobs: int,
        progress: Callable[[str], None],
        data_range: tuple[int, int] | None = None,
    ) -> None:
        self.storage = storage
        self.file_format = file_format
        self.keyring = keyring
        self.now = now
        self.jobs = jobs
        self.progress = progress
        self.data_range = data_range
        self.findings: list[Finding] = []
        self.notices: list[Notice] = []
        self.checked: Counter[str] = Counter()
        self.witness_keys: tuple[WitnessKey, ...] = ()
        self.witness_quorum = 0

    def add(
        self,
        code: FindingCode,
        location: str,
        detail: str,
        expected: object = None,
        actual: object = None,
    ) -> None:
        self.findings.append(
            Finding(
                code,
                location,
                None if expected is None else str(expected),
                None if actual is None else str(actual),
                detail,
            )
        )

    def notice(self, code: str, location: str, detail: str) -> None:
        self.notices.append(Notice(code, location, detail))

    # -- the whole run ---------------------------------------------------------------------

    def verify(
        self,
        trusted_raw: bytes | None,
        incremental: bool,
        max_lag: int | None,
        trusted_keys: bool,
    ) -> VerifyReport:
        batches = self._read_manifests()
        size = max(batches, default=-1) + 1
        missing = [s for s in range(size) if s not in batches]
        for seq in missing:
            self.add(
                FindingCode.MISSING_MANIFEST,
                manifest_path(seq),
                f"manifest {seq} is missing ({len(missing)} missing in all: {_ranges(missing)})",
            )
        parsed = {s: b.signed for s, b in batches.items() if b.signed is not None}
        origin = self._origin(parsed)
        # Roots of the log at every prefix size, up to the first gap.
        contiguous = missing[0] if missing else size
        leaves = [batches[s].raw for s in range(contiguous)]
        leaf_hashes = [merkle.leaf_hash(raw) for raw in leaves]
        roots = _PrefixRoots(leaf_hashes)

        trusted = self._trusted(trusted_raw, origin, size, contiguous, roots, leaf_hashes)
        start = trusted.tree_size if (incremental and trusted is not None) else 0
        self.progress(f"read {len(batches)} manifests; checking from batch {start}")

        if not trusted_keys:
            self._check_keyring_statements()
        self._check_manifests(batches, start, origin)
        self._check_windows(parsed, start)
        self._check_data(parsed, start)
        self._check_unreferenced(parsed, size)
        self._check_checkpoints(parsed, origin, size, contiguous, roots, start)
        self._check_coverage(parsed, start, max_lag)
        self._check_range_coverage(parsed)
        witnesses = self._check_witnesses(origin, size, contiguous, roots, start)

        root = roots.root(size) if contiguous == size and size else None
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
        )

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
        self, origin: str | None, size: int, contiguous: int, roots: _PrefixRoots, start: int
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

    def _read_manifests(self) -> dict[int, _Batch]:
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
                _KEY_CODES[status],
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

    # -- data files ------------------------------------------------------------------------

    def _check_data(self, parsed: Mapping[int, SignedManifest], start: int) -> None:
        with_data = {s: m for s, m in sorted(parsed.items()) if m.manifest.data}
        windows = Counter(m.manifest.window_start for m in with_data.values())
        shared = {s for s, m in with_data.items() if windows[m.manifest.window_start] > 1}
        todo = [s for s in with_data if s >= start]
        todo_windows = {with_data[s].manifest.window_start for s in todo}
        need_ids = [
            s for s in shared if s < start and with_data[s].manifest.window_start in todo_windows
        ]

        def work(seq: int) -> _DataResult:
            signed = with_data[seq]
            return _check_data_file(
                self.storage,
                self.file_format,
                signed,
                seq in shared,
                may_be_absent=not self._in_range(signed.manifest.window_start),
            )

        results: dict[int, _DataResult] = {}
        if self.jobs > 1 and len(todo) > 1:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                for done, (seq, res) in enumerate(zip(todo, pool.map(work, todo), strict=True)):
                    results[seq] = res
                    self._tick(done + 1, len(todo))
        else:
            for done, seq in enumerate(todo):
                results[seq] = work(seq)
                self._tick(done + 1, len(todo))
        for seq in sorted(results):
            res = results[seq]
            if res.absent_outside_range:
                self._outside_range(with_data[seq])
                continue
            self.findings.extend(res.findings)
            self.checked["data_files"] += 1
            self.checked["bytes_hashed"] += res.bytes_hashed
            self.checked["events"] += res.events
        # Ids of earlier batches that share a window with a new one (incremental mode).
        for seq in sorted(need_ids):
            data = with_data[seq].manifest.data
            assert data is not None
            try:
                os.close(open_regular(self.storage.regular_path(data.path)))
                records = self.file_format.read_events(self.storage.path(data.path))
            except (LedgerError, FileNotFoundError):
                continue
            ids = [r.event_id for r in records]
            results[seq] = _DataResult([], ids, 0, 0, id_hashes=id_hashes(ids))
        self._check_window_duplicates(parsed, results, start)
        self._notice_ids_in_several_hours(parsed, results)

    def _notice_ids_in_several_hours(
        self, parsed: Mapping[int, SignedManifest], results: Mapping[int, _DataResult]
    ) -> None:
        """Ids committed in more than one hour of the batches checked (all of them in a full
        verification; the new ones and their hours' batches in an incremental one)."""

        def read_ids(seq: int) -> list[str]:
            data = parsed[seq].manifest.data
            assert data is not None
            return [r.event_id for r in self.file_format.read_events(self.storage.path(data.path))]

        batches = (
            (seq, parsed[seq].manifest.window_start, res.id_hashes)
            for seq, res in sorted(results.items())
            if res.id_hashes is not None
        )
        for seq, found in ids_in_several_hours(batches, read_ids).items():
            shown = ", ".join(f"{i} (also {format_hour(w)})" for i, w in found[:_LIST_LIMIT])
            more = f" and {len(found) - _LIST_LIMIT} more" if len(found) > _LIST_LIMIT else ""
            self.notice(
                "event_id_in_several_hours",
                manifest_path(seq),
                f"{len(found)} event ids of {format_hour(parsed[seq].manifest.window_start)} "
                f"were also committed in another hour: {shown}{more} ('prove' needs --hour)",
            )

    def _in_range(self, window_start: int) -> bool:
        return self.data_range is None or (self.data_range[0] <= window_start < self.data_range[1])

    def _outside_range(self, signed: SignedManifest) -> None:
        m = signed.manifest
        assert m.data is not None and self.data_range is not None
        self.checked["data_outside_range"] += 1
        self.notice(
            "data_outside_range",
            m.data.path,
            f"batch {m.sequence} of {format_hour(m.window_start)} is outside the data range "
            f"{format_hour(self.data_range[0])}..{format_hour(self.data_range[1])}: its data "
            "file is absent; its manifest is checked, its events are not",
        )

    def _tick(self, done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            self.progress(f"checked {done}/{total} data files")

    def _check_window_duplicates(
        self, parsed: Mapping[int, SignedManifest], results: Mapping[int, _DataResult], start: int
    ) -> None:
        seen: dict[int, dict[str, int]] = defaultdict(dict)
        dups: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
        for seq in sorted(results):
            ids = results[seq].ids
            if ids is None:
                continue
            window_ids = seen[parsed[seq].manifest.window_start]
            for event_id in dict.fromkeys(ids):
                first = window_ids.setdefault(event_id, seq)
                if first != seq and seq >= start:
                    dups[seq].append((event_id, first, seq))
        for seq, items in sorted(dups.items()):
            shown = ", ".join(f"{i} (batch {a} and {b})" for i, a, b in items[:_LIST_LIMIT])
            more = f" and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
            self.add(
                FindingCode.DUPLICATE_EVENT_ID,
                manifest_path(seq),
                f"{len(items)} event ids committed twice in "
                f"{format_hour(parsed[seq].manifest.window_start)}: {shown}{more}",
            )

    # -- lake and pending ------------------------------------------------------------------

    def _check_unreferenced(self, parsed: Mapping[int, SignedManifest], size: int) -> None:
        referenced = {m.manifest.data.path for m in parsed.values() if m.manifest.data}
        leftovers: dict[str, Any] = {}
        for name in self.storage.list_dir(PENDING):
            rel = f"{PENDING}/{name}"
            if parse_numbered_name(name, INTENT_SUFFIX) is None:
                self.notice("uncommitted_leftover", rel, "staged file of an interrupted commit")
                continue
            try:
                intent = parse_intent(self.storage.read(rel))
            except LedgerError as exc:
                self.notice("uncommitted_leftover", rel, f"unreadable intent ({exc})")
                continue
            if intent.signature_ok(self.keyring) and intent.sequence >= size:
                leftovers[intent.path] = intent
            self.notice(
                "uncommitted_leftover",
                rel,
                f"intent of an interrupted commit of batch {intent.sequence}",
            )
        linked: list[str] = []
        for rel in self.storage.walk_files(LAKE, linked):
            if rel in referenced:
                continue
            intent = leftovers.get(rel)
            if intent is not None and _digest_or_none(self.storage, rel) == (
                intent.size,
                intent.sha256,
            ):
                self.notice(
                    "uncommitted_leftover",
                    rel,
                    f"data of batch {intent.sequence}, never committed (removed by the "
                    "next commit; never part of the dataset)",
                )
                continue
            self.add(
                FindingCode.UNREFERENCED_FILE,
                rel,
                "no manifest references this file (it is not part of the ledger)",
            )
        for rel in sorted({*linked, *self.storage.linked_directories(skip=(LAKE,))}):
            self.add(
                FindingCode.LINKED_DIRECTORY,
                rel,
                "a symbolic link to a directory inside the data directory: nothing verified "
                "lies behind it, yet globbing readers (pyarrow, DuckDB) would follow it",
            )

    # -- checkpoints -----------------------------------------------------------------------

    def _trusted(
        self,
        raw: bytes | None,
        origin: str | None,
        size: int,
        contiguous: int,
        roots: _PrefixRoots,
        leaf_hashes: list[bytes],
    ) -> Checkpoint | None:
        if raw is None:
            return None
        where = "trusted checkpoint"
        try:
            cp, _ = open_checkpoint(raw, self.keyring.verifiers())
        except (UnknownKeyError, InvalidSignatureError) as exc:
            # Fail closed: the keyring may have been swapped for one that signs a new history.
            code = (
                FindingCode.UNKNOWN_KEY
                if isinstance(exc, UnknownKeyError)
                else FindingCode.BAD_SIGNATURE
            )
            self.add(
                code,
                where,
                f"the checkpoint held elsewhere does not verify with {self.keyring.source}: {exc}",
            )
            return None
        except LedgerError as exc:
            raise ConfigurationError(f"the trusted checkpoint is not a checkpoint: {exc}") from exc
        if origin is not None and cp.origin != origin:
            self.add(
                FindingCode.ORIGIN_MISMATCH, where, "checkpoint of another log", origin, cp.origin
            )
            return None
        if cp.tree_size > size:
            self.add(
                FindingCode.TAIL_TRUNCATED,
                where,
                f"the log has {plural(size, 'manifest')} but a checkpoint held elsewhere commits "
                f"to {cp.tree_size}: the newest {plural(cp.tree_size - size, 'batch')} removed "
                "or the log "
                "rolled back",
                cp.tree_size,
                size,
            )
            return None
        if cp.tree_size > contiguous:
            self.add(
                FindingCode.CONSISTENCY_FAILURE,
                where,
                "manifests it covers are missing; consistency cannot be proven",
            )
            return None
        self.checked["consistency_proofs"] += 1
        if cp.tree_size == 0:
            return cp
        current = roots.root(contiguous)
        try:
            proof = merkle.prove_consistency(cp.tree_size, contiguous, leaf_hashes)
            merkle.verify_consistency(cp.tree_size, contiguous, proof, cp.root_hash, current)
        except InvalidProofError as exc:
            self.add(
                FindingCode.CONSISTENCY_FAILURE,
                where,
                f"today's log does not extend the trusted checkpoint of size {cp.tree_size} "
                f"(history rewritten or forked): {exc}",
                merkle_b64(cp.root_hash),
                merkle_b64(roots.root(cp.tree_size)),
            )
            return None
        return cp

    def _check_checkpoints(
        self,
        parsed: Mapping[int, SignedManifest],
        origin: str | None,
        size: int,
        contiguous: int,
        roots: _PrefixRoots,
        start: int,
    ) -> None:
        verifiers = self.keyring.verifiers()
        sizes = []
        for name in self.storage.list_dir(CHECKPOINTS):
            rel = f"{CHECKPOINTS}/{name}"
            named = parse_numbered_name(name, CHECKPOINT_SUFFIX)
            if named is None:
                self.add(FindingCode.UNEXPECTED_FILE, rel, "not a checkpoint file name")
                continue
            sizes.append(named)
            if named <= start and named != size:
                continue
            self.checked["checkpoints"] += 1
            try:
                cp, opened = open_checkpoint(self.storage.read(rel), verifiers)
            except NotRegularFileError as exc:
                self.add(FindingCode.NOT_REGULAR_FILE, rel, str(exc))
                continue
            except UnknownKeyError as exc:
                self.add(FindingCode.UNKNOWN_KEY, rel, str(exc))
                continue
            except InvalidSignatureError as exc:
                self.add(FindingCode.BAD_SIGNATURE, rel, str(exc))
                continue
            except MalformedError as exc:
                self.add(FindingCode.MALFORMED_CHECKPOINT, rel, str(exc))
                continue
            if cp.tree_size != named:
                self.add(
                    FindingCode.MALFORMED_CHECKPOINT,
                    rel,
                    "file name and tree size differ",
                    named,
                    cp.tree_size,
                )
            if origin is not None and cp.origin != origin:
                self.add(
                    FindingCode.ORIGIN_MISMATCH, rel, "checkpoint of another log", origin, cp.origin
                )
            if cp.tree_size > size:
                self.add(
                    FindingCode.TAIL_TRUNCATED,
                    rel,
                    f"checkpoint commits to {cp.tree_size} manifests but the log has {size}: "
                    f"the newest {cp.tree_size - size} were removed",
                    cp.tree_size,
                    size,
                )
                continue
            signed_at = parsed.get(cp.tree_size - 1)
            if signed_at is not None:
                for sig in opened.sigs:
                    status = self.keyring.status(
                        sig.name, sig.key_hash, signed_at.manifest.created, cp.tree_size - 1
                    )
                    if status is not KeyStatus.VALID:
                        self.add(
                            _KEY_CODES[status.value],
                            rel,
                            f"checkpoint signed by {sig.name}+{key_id(sig.key_hash)}, "
                            f"{status.value} at batch {cp.tree_size - 1}",
                        )
            if 0 < cp.tree_size <= contiguous and roots.root(cp.tree_size) != cp.root_hash:
                self.add(
                    FindingCode.CHECKPOINT_MISMATCH,
                    rel,
                    f"root of the log's first {cp.tree_size} manifests differs from the "
                    "signed checkpoint (manifests changed, reordered or forked)",
                    merkle_b64(cp.root_hash),
                    merkle_b64(roots.root(cp.tree_size)),
                )
        latest = max(sizes, default=0)
        if size and latest < size:
            self.notice(
                "checkpoint_behind",
                CHECKPOINTS,
                f"no checkpoint yet for the newest {plural(size - latest, 'batch')} (a commit was "
                "interrupted after its manifest; the next commit signs one)",
            )

    # -- hours -----------------------------------------------------------------------------

    def _check_range_coverage(self, parsed: Mapping[int, SignedManifest]) -> None:
        """Every hour of the data range needs a manifest, or a copy could claim a range
        whose data it never had (hours between committed ones are ``hour_missing``)."""
        if self.data_range is None:
            return
        start, end = self.data_range
        hours = {m.manifest.window_start for m in parsed.values()}
        first, last = (min(hours), max(hours) + HOUR) if hours else (end, end)
        log = f"{format_hour(first)}..{format_hour(last)}" if hours else "no hours"
        for lo, hi in ((start, min(end, first)), (max(start, last), end)):
            if lo >= hi:
                continue
            self.add(
                FindingCode.RANGE_NOT_COVERED,
                f"hours {format_hour(lo)}..{format_hour(hi)}",
                f"{(hi - lo) // HOUR} hours of the data range {format_hour(start)}.."
                f"{format_hour(end)} have no manifest: the log holds no batch for them, so "
                "no data of theirs can be checked",
                f"{format_hour(start)}..{format_hour(end)}",
                log,
            )

    def _check_coverage(
        self, parsed: Mapping[int, SignedManifest], start: int, max_lag: int | None
    ) -> None:
        hours = _whole_hours(parsed)
        if not hours:
            return
        first, last = min(hours), max(hours)
        self.checked["hours"] = (last - first) // HOUR + 1
        # Each source must cover every hour between its own first and last batches.
        sources = sorted({source_name(m.manifest) for m in parsed.values()})
        for source in sources:
            mine = {s: m for s, m in parsed.items() if source_name(m.manifest) == source}
            self._check_source_coverage(mine, start, source if len(sources) > 1 else None)
        if max_lag is not None and last + HOUR < self.now - max_lag:
            self.add(
                FindingCode.STALE_LOG,
                f"hour {format_hour(last)}",
                f"the newest batch is for an hour that ended more than {max_lag} s before "
                "now: newest batches may have been removed, or syncing stopped",
                f">= {format_hour(int(self.now - max_lag) // HOUR * HOUR - HOUR)}",
                format_hour(last),
            )

    def _check_source_coverage(
        self, parsed: Mapping[int, SignedManifest], start: int, source: str | None
    ) -> None:
        hours = _whole_hours(parsed)
        if not hours:
            return
        first, last = min(hours), max(hours)
        since = first
        if start:
            old = [m.manifest.window_start for s, m in parsed.items() if s < start]
            since = max(old, default=first)
        gaps = [h for h in range(since, last + HOUR, HOUR) if h not in hours]
        of = f" of {source}" if source else ""
        if self.data_range is not None:  # the hours asked for; range_not_covered does the rest
            outside = [h for h in gaps if not self.data_range[0] <= h < self.data_range[1]]
            if outside:
                self.notice(
                    "hours_missing_outside_range",
                    f"{format_hour(outside[0])}..{format_hour(outside[-1])}"
                    + (f" ({source})" if source else ""),
                    f"{plural(len(outside), 'hour')}{of} without a batch outside the data range "
                    "(not part of what this verification checks)",
                )
            gaps = [h for h in gaps if h not in set(outside)]
        for hour in gaps:
            self.add(
                FindingCode.HOUR_MISSING,
                f"hour {format_hour(hour)}" + (f" ({source})" if source else ""),
                f"no manifest{of} for this hour (one of {plural(len(gaps), 'missing hour')} "
                f"between {format_hour(first)} and {format_hour(last)})",
            )


def _whole_hours(parsed: Mapping[int, SignedManifest]) -> set[int]:
    return {m.manifest.window_start for m in parsed.values() if m.manifest.window_start % HOUR == 0}


def _check_data_file(
    storage: LedgerFiles,
    file_format: BatchFileFormat,
    signed: SignedManifest,
    want_ids: bool,
    *,
    may_be_absent: bool = False,
) -> _DataResult:
    """_check_data_file checks one batch's data file against its manifest (one outside the
    data range may be absent; if present it is checked like any other)."""
    m = signed.manifest
    data = m.data
    assert data is not None
    findings: list[Finding] = []

    def add(code: FindingCode, detail: str, expected: object = None, actual: object = None) -> None:
        findings.append(
            Finding(
                code,
                data.path,
                None if expected is None else str(expected),
                None if actual is None else str(actual),
                f"batch {m.sequence}: {detail}",
            )
        )

    path = storage.path(data.path)
    try:
        size, sha256 = file_digest(storage.regular_path(data.path))
    except NotRegularFileError as exc:
        add(FindingCode.NOT_REGULAR_FILE, str(exc))
        return _DataResult(findings, None, 0, 0)
    except FileNotFoundError:
        if may_be_absent:
            return _DataResult(findings, None, 0, 0, absent_outside_range=True)
        add(FindingCode.DATA_FILE_MISSING, "the data file is missing")
        return _DataResult(findings, None, 0, 0)
    if size != data.size:
        add(FindingCode.SIZE_MISMATCH, "file size differs from the manifest", data.size, size)
    if sha256 != data.sha256:
        add(
            FindingCode.FILE_HASH_MISMATCH, "SHA-256 differs from the manifest", data.sha256, sha256
        )
    try:
        records = file_format.read_events(path)
    except LedgerError as exc:
        add(FindingCode.UNREADABLE_DATA_FILE, f"rows cannot be read: {exc}")
        return _DataResult(findings, None, size, 0)
    if len(records) != data.rows:
        add(
            FindingCode.ROW_COUNT_MISMATCH,
            "row count differs from the manifest",
            data.rows,
            len(records),
        )
    root = events_root(records).hex()
    if root != m.events_root:
        add(
            FindingCode.EVENTS_ROOT_MISMATCH,
            "Merkle root recomputed from the rows differs from the manifest",
            m.events_root,
            root,
        )
    times = [r.date_create for r in records]
    span = (min(times, default=None), max(times, default=None))
    if span != (m.min_date_create, m.max_date_create):
        add(
            FindingCode.EVENT_RANGE_MISMATCH,
            "event time range differs from the manifest",
            (m.min_date_create, m.max_date_create),
            span,
        )
    outside = [r.event_id for r in records if not m.window_start <= r.date_create < m.window_end]
    if outside:
        add(
            FindingCode.EVENT_OUTSIDE_WINDOW,
            f"{len(outside)} events outside {format_hour(m.window_start)}: {_first(outside)}",
        )
    mismatched = [f"{r.event_id} ({p})" for r in records if (p := record_mismatch(r))]
    if mismatched:
        add(
            FindingCode.EVENT_RECORD_MISMATCH,
            f"{plural(len(mismatched), 'row')} whose columns disagree with their leaf: "
            f"{_first(mismatched)}",
        )
    repeated = [i for i, n in Counter(r.event_id for r in records).items() if n > 1]
    if repeated:
        add(
            FindingCode.DUPLICATE_EVENT_ID,
            f"{len(repeated)} event ids appear twice in the file: {_first(repeated)}",
        )
    ids = [r.event_id for r in records] if want_ids else None
    hashes = id_hashes(r.event_id for r in records)
    return _DataResult(findings, ids, size, len(records), id_hashes=hashes)


class _PrefixRoots:
    """_PrefixRoots gives the RFC 6962 root of every prefix of the log in O(n log n)."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self._roots: list[bytes] = [merkle.empty_root()]
        stack: list[tuple[int, bytes]] = []
        for leaf in leaf_hashes:
            stack.append((1, leaf))
            while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
                (width, right), (_, left) = stack.pop(), stack.pop()
                stack.append((width * 2, merkle.node_hash(left, right)))
            root = stack[-1][1]
            for _, left in reversed(stack[:-1]):
                root = merkle.node_hash(left, root)
            self._roots.append(root)

    def root(self, size: int) -> bytes:
        return self._roots[size]


def _digest_or_none(storage: LedgerFiles, rel: str) -> tuple[int, str] | None:
    try:
        return file_digest(storage.regular_path(rel))
    except (NotRegularFileError, FileNotFoundError):
        return None


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _first(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f" ... ({len(items)} in all)" if len(items) > _LIST_LIMIT else "")


def _ranges(numbers: Iterable[int]) -> str:
    parts: list[str] = []
    run: list[int] = []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [n]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)


__all__ = [
    "REPORT_SCHEMA",
    "Finding",
    "FindingCode",
    "IntegrityError",
    "Notice",
    "VerificationIncompleteError",
    "VerifyReport",
    "check_data_range",
    "verify_ledger",
]
