"""Findings, notices and the report of one ledger verification (what ``verify`` prints and
``--json`` writes; the codes are stable: scripts match on them)."""

from __future__ import annotations

import base64
import enum
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from audit_pipeline.errors import AuditPipelineError
from audit_pipeline.ledger.anchors import UncheckedAttack, not_ruled_out
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.keys import KeyStatus
from audit_pipeline.ledger.layout import format_hour
from audit_pipeline.ledger.report_text import finding_lines
from audit_pipeline.ledger.witnessed import WitnessVerdict
from audit_pipeline.text import plural

REPORT_SCHEMA = "audit_pipeline.verify/v1"
LIST_LIMIT = 20  # items named in one finding; the rest are counted


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
    LOG_TILE_MISMATCH = "log_tile_mismatch"
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


KEY_FINDING_CODES = {
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
    # how deep data files were checked: "rows" (every leaf re-derived) or "files" (size and
    # SHA-256 against the signed manifest only)
    depth: str = "rows"

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
            "checked": {"depth": self.depth, **self.checked},
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
            if key != "events" or self.depth != "files"  # the file level reads no event
        )
        facts += " checked"
        not_rederived = c.get("rows_not_rederived", 0)
        if not_rederived:
            facts += "; file level: rows not re-derived"
            if self.depth != "files":
                facts += f" for {plural(not_rederived, 'data file')} the trusted checkpoint covers"
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
                    f"({sequence_ranges(self.missing_sequences)})"
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


def first_items(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:LIST_LIMIT])
    return shown + (f" ... ({len(items)} in all)" if len(items) > LIST_LIMIT else "")


def sequence_ranges(numbers: Iterable[int]) -> str:
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
