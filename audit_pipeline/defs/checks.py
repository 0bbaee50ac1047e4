"""The checks on ``audit_ledger``: one per invariant, each fed by one verification.

The ledger is a global property, so the checks sit on the unpartitioned ``audit_ledger``
(per-partition checks are a preview in Dagster 1.13 and lose their partition in ranged
runs). ``audit_ledger`` runs the verifier once and turns its report into one
:class:`dagster.AssetCheckResult` per check here; every finding code of the verifier
belongs to exactly one check (codes added later fall to ``ledger_chain_intact``, so
none is ever ignored). Integrity checks, ``ledger_keys_anchored`` and the anchor review
of ``ledger_consistent_with_recorded_checkpoint`` are blocking: a failure fails the run and
keeps the auditor dataset from advancing past an unverified ledger. Coverage blocks only
beyond ``AUDIT_COVERAGE_TOLERANCE_HOURS`` missing hours (up to that, a failure at WARN
severity while the gap-filling sensor retries them). Freshness never blocks: an old
ledger is still a verified one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from audit_pipeline.defs.anchors import AnchorReview, anchor_metadata
from audit_pipeline.ingest import format_hour
from audit_pipeline.ledger import Finding, FindingCode, VerifyReport
from audit_pipeline.text import plural

LEDGER_ASSET = dg.AssetKey("audit_ledger")
MAX_LISTED = 20
# Where the verifier reports findings about the checkpoint held outside the ledger (the one
# Dagster recorded): whatever their code, they are this check's business.
TRUSTED_CHECKPOINT_LOCATION = "trusted checkpoint"


@dataclass(frozen=True)
class LedgerCheck:
    """LedgerCheck is one invariant of the ledger and the finding codes that break it."""

    name: str
    description: str
    codes: frozenset[FindingCode]
    blocking: bool = True
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            self.name,
            asset=LEDGER_ASSET,
            description=self.description,
            blocking=self.blocking,
        )


C = FindingCode
LEDGER_CHAIN_INTACT = LedgerCheck(
    "ledger_chain_intact",
    "Every manifest is present, canonical, signed by a key trusted at its position in the log, and "
    "links to the SHA-256 of its predecessor; stored checkpoints match the log.",
    frozenset(
        {
            C.MISSING_MANIFEST,
            C.MALFORMED_MANIFEST,
            C.UNSUPPORTED_ALGORITHM,
            C.SEQUENCE_MISMATCH,
            C.CHAIN_BREAK,
            C.SECOND_GENESIS,
            C.ORIGIN_MISMATCH,
            C.UNKNOWN_KEY,
            C.KEY_NOT_YET_VALID,
            C.KEY_EXPIRED,
            C.KEY_REVOKED,
            C.BAD_SIGNATURE,
            C.INVALID_WINDOW,
            C.KIND_MISMATCH,
            C.PATH_MISMATCH,
            C.DUPLICATE_WINDOW,
            C.FUTURE_DATED,
            C.TIME_REGRESSION,
            C.UNEXPECTED_FILE,
            C.MALFORMED_CHECKPOINT,
            C.CHECKPOINT_MISMATCH,
            C.LOG_TILE_MISMATCH,
            C.KEYRING_ENTRY_FORGED,
        }
    ),
)


def verification_depth(report: VerifyReport) -> str:
    """verification_depth says how deep a run checked the data files, for the UI."""
    files = report.checked.get("rows_not_rederived", 0)
    if report.depth == "files":
        return "file level (size and SHA-256; rows not re-derived)"
    if files:
        return (
            f"row level for batches from {report.incremental_from}; file level (size and "
            f"SHA-256) for the {files} data files before them"
        )
    return "row level (every leaf re-derived)"


LEDGER_FILES_MATCH_MANIFESTS = LedgerCheck(
    "ledger_files_match_manifests",
    "Every data file a manifest names exists with the size, SHA-256, row count and event "
    "Merkle root the manifest signed: every file's size and SHA-256 on each run (file "
    "level), the rows of the new batches re-derived (row level), and every file's rows on "
    "the periodic full verification.",
    frozenset(
        {
            C.DATA_FILE_MISSING,
            C.SIZE_MISMATCH,
            C.FILE_HASH_MISMATCH,
            C.UNREADABLE_DATA_FILE,
            C.ROW_COUNT_MISMATCH,
            C.EVENTS_ROOT_MISMATCH,
            C.EVENT_RANGE_MISMATCH,
            C.EVENT_RECORD_MISMATCH,
            C.EVENT_OUTSIDE_WINDOW,
            C.NOT_REGULAR_FILE,
            # an object-store data directory: the versions behind each key
            C.PINNED_VERSION_MISSING,
            C.CURRENT_VERSION_DIFFERS,
            C.DELETE_MARKER,
            C.EXTRA_VERSION,
            C.STORE_CHECKSUM_MISMATCH,
            C.STORE_CHECKSUM_MISSING,
            C.STORE_SIZE_MISMATCH,
            C.RETENTION_MISSING,
            C.RETENTION_SHORT,
        }
    ),
)
LEDGER_HAS_NO_UNREFERENCED_FILES = LedgerCheck(
    "ledger_has_no_unreferenced_files",
    "No file under lake/ is outside the ledger (injected files never reach auditors).",
    frozenset({C.UNREFERENCED_FILE, C.LINKED_DIRECTORY, C.UNREFERENCED_OBJECT}),
)
LEDGER_EVENT_IDS_UNIQUE = LedgerCheck(
    "ledger_event_ids_unique",
    "No audit event id is committed twice for an hour.",
    frozenset({C.DUPLICATE_EVENT_ID}),
)
LEDGER_CONSISTENT_WITH_RECORDED_CHECKPOINT = LedgerCheck(
    "ledger_consistent_with_recorded_checkpoint",
    "Today's log extends the signed checkpoint Dagster recorded at the last verification "
    "(an RFC 6962 consistency proof), and that checkpoint still verifies with the keyring: "
    "catches removed newest batches, rollback, forks and swapped keys. The record itself "
    "must exist for a non-empty ledger and be no smaller than any other anchor (the "
    "checkpoints recorded by each sync, the signer's state, witnesses); recorded state "
    "that cannot be true (a last full verification in the future) fails too.",
    frozenset({C.TAIL_TRUNCATED, C.CONSISTENCY_FAILURE}),
)
LEDGER_KEYS_ANCHORED = LedgerCheck(
    "ledger_keys_anchored",
    "Signatures were checked against public keys held outside the data directory "
    "(AUDIT_TRUSTED_KEYS), not the data directory's own keyring, which whoever can write "
    "the directory can extend with a key of their own.",
    frozenset(),
)
LEDGER_COVERS_EVERY_HOUR = LedgerCheck(
    "ledger_covers_every_hour",
    "Every closed hour from the first partition to the last settled hour has a batch. Up "
    "to AUDIT_COVERAGE_TOLERANCE_HOURS (6) missing hours fail as a warning while the "
    "gap-filling sensor retries them; more block the dataset.",
    frozenset({C.HOUR_MISSING, C.RANGE_NOT_COVERED}),
)
LEDGER_FRESH = LedgerCheck(
    "ledger_fresh",
    "The newest committed hour ended no more than AUDIT_FRESHNESS_HOURS (2) hours ago.",
    frozenset({C.STALE_LOG}),
    blocking=False,
    severity=dg.AssetCheckSeverity.WARN,
)

LEDGER_WITNESSES_AGREE = LedgerCheck(
    "ledger_witnesses_agree",
    "No checkpoint a configured witness cosigned is contradicted by the log (removed newest "
    "batches, rollback, fork), no witness refused a commit because of it, and every "
    "cosignature by a witness key verifies. Passes trivially without AUDIT_WITNESSES.",
    frozenset({C.WITNESS_CONFLICT, C.WITNESS_BAD_COSIGNATURE}),
)
LEDGER_WITNESS_QUORUM = LedgerCheck(
    "ledger_witness_quorum",
    "The latest checkpoint carries cosignatures from the quorum of configured witnesses "
    "(AUDIT_WITNESS_QUORUM). Not blocking: an unreachable witness holds no data back and "
    "is caught up by the next commit.",
    frozenset({C.WITNESS_QUORUM_MISSING}),
    blocking=False,
)

LEDGER_CHECKS: tuple[LedgerCheck, ...] = (
    LEDGER_CHAIN_INTACT,
    LEDGER_FILES_MATCH_MANIFESTS,
    LEDGER_HAS_NO_UNREFERENCED_FILES,
    LEDGER_EVENT_IDS_UNIQUE,
    LEDGER_CONSISTENT_WITH_RECORDED_CHECKPOINT,
    LEDGER_KEYS_ANCHORED,
    LEDGER_COVERS_EVERY_HOUR,
    LEDGER_FRESH,
    LEDGER_WITNESSES_AGREE,
    LEDGER_WITNESS_QUORUM,
)
LEDGER_CHECK_SPECS = [check.spec() for check in LEDGER_CHECKS]


def check_for_code(code: FindingCode) -> LedgerCheck:
    """check_for_code returns the check a finding code fails (chain by default)."""
    for check in LEDGER_CHECKS:
        if code in check.codes:
            return check
    return LEDGER_CHAIN_INTACT


def check_for_finding(finding: Finding) -> LedgerCheck:
    if finding.location == TRUSTED_CHECKPOINT_LOCATION:
        return LEDGER_CONSISTENT_WITH_RECORDED_CHECKPOINT
    return check_for_code(finding.code)


def findings_by_check(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {check.name: [] for check in LEDGER_CHECKS}
    for finding in findings:
        grouped[check_for_finding(finding).name].append(finding)
    return grouped


@dataclass(frozen=True)
class Coverage:
    """Coverage compares the committed hours with the hours that should exist by now."""

    expected_from: int
    expected_through: int | None  # last hour (start) that must be committed; None: none yet
    missing: tuple[int, ...]
    newest: int | None  # newest committed hour (start)
    missing_by_source: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, committed: Iterable[int], *, start: int, through: int | None) -> Coverage:
        held = set(committed)
        missing: tuple[int, ...] = ()
        if through is not None and through >= start:
            missing = tuple(h for h in range(start, through + 3600, 3600) if h not in held)
        return cls(start, through, missing, max(held, default=None))

    @classmethod
    def of_sources(
        cls, committed: Mapping[str, Iterable[int]], *, start: int, through: int | None
    ) -> Coverage:
        """of_sources: every source must hold every hour; the newest hour is the oldest of
        the sources' newest (each source must be fresh)."""
        each = {
            name: cls.of(hours, start=start, through=through) for name, hours in committed.items()
        }
        newest = [c.newest for c in each.values()]
        return cls(
            start,
            through,
            tuple(sorted({h for c in each.values() for h in c.missing})),
            None if not newest or None in newest else min(n for n in newest if n is not None),
            {name: c.missing for name, c in each.items() if c.missing},
        )


def _md_cell(value: object) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def findings_table(findings: Sequence[Finding]) -> dg.MetadataValue:
    """findings_table renders the first findings as a Markdown table for the UI."""
    rows = ["| code | location | expected | found | detail |", "|---|---|---|---|---|"]
    for f in findings[:MAX_LISTED]:
        cells = (f.code.value, f.location, f.expected, f.actual, f.detail)
        rows.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if len(findings) > MAX_LISTED:
        rows.append(f"\n… and {len(findings) - MAX_LISTED} more (see the audit_ledger report)")
    return dg.MetadataValue.md("\n".join(rows))


def _finding_metadata(findings: Sequence[Finding]) -> dict[str, Any]:
    if not findings:
        return {"findings": 0}
    return {
        "findings": len(findings),
        "finding_codes": dg.MetadataValue.json(dict(Counter(f.code.value for f in findings))),
        "failed_locations": dg.MetadataValue.json(
            sorted(dict.fromkeys(f.location for f in findings))[:MAX_LISTED]
        ),
        "first_failure": findings[0].line(),
        "failures": findings_table(findings),
    }


def ledger_check_results(
    report: VerifyReport,
    *,
    coverage: Coverage,
    freshness_limit_hours: int,
    now: float,
    anchors: AnchorReview,
    coverage_tolerance_hours: int = 0,
) -> list[dg.AssetCheckResult]:
    """ledger_check_results maps one verification to one result per ledger check."""
    grouped = findings_by_check(report.findings)
    checked = report.checked
    results = []
    for check in LEDGER_CHECKS:
        findings = grouped[check.name]
        metadata: dict[str, Any] = {"tree_size": report.tree_size, **_finding_metadata(findings)}
        passed = not findings
        severity = check.severity
        if check is LEDGER_CHAIN_INTACT:
            metadata["manifests_checked"] = checked.get("manifests", 0)
            metadata["signatures_checked"] = checked.get("signatures", 0)
            if report.missing_sequences:
                metadata["missing_sequences"] = dg.MetadataValue.json(
                    list(report.missing_sequences[:MAX_LISTED])
                )
        elif check is LEDGER_FILES_MATCH_MANIFESTS:
            metadata["data_files_checked"] = checked.get("data_files", 0)
            metadata["bytes_hashed"] = checked.get("bytes_hashed", 0)
            metadata["events_checked"] = checked.get("events", 0)
            metadata["scope"] = (
                "full"
                if report.incremental_from is None
                else f"batches from {report.incremental_from} (after the recorded checkpoint)"
            )
            metadata["depth"] = verification_depth(report)
        elif check is LEDGER_CONSISTENT_WITH_RECORDED_CHECKPOINT:
            metadata.update(anchor_metadata(anchors))
            metadata["consistency_proofs"] = checked.get("consistency_proofs", 0)
            passed = passed and not anchors.problems
        elif check is LEDGER_KEYS_ANCHORED:
            metadata["keyring"] = report.keyring_source
            passed = report.trusted_keys
        elif check is LEDGER_COVERS_EVERY_HOUR:
            passed = passed and not coverage.missing
            metadata["tolerance_hours"] = coverage_tolerance_hours
            if max(len(coverage.missing), len(findings)) <= coverage_tolerance_hours:
                severity = dg.AssetCheckSeverity.WARN  # within tolerance: shown, not blocking
            metadata["expected_from"] = format_hour(coverage.expected_from)
            if coverage.expected_through is not None:
                metadata["expected_through"] = format_hour(coverage.expected_through)
            metadata["missing_hours"] = len(coverage.missing)
            if coverage.missing:
                metadata["missing_hour_list"] = dg.MetadataValue.json(
                    [format_hour(h) for h in coverage.missing[:MAX_LISTED]]
                )
            if coverage.missing_by_source:
                metadata["missing_hours_by_source"] = dg.MetadataValue.json(
                    {
                        name: [format_hour(h) for h in hours[:MAX_LISTED]]
                        for name, hours in coverage.missing_by_source.items()
                    }
                )
        elif check in (LEDGER_WITNESSES_AGREE, LEDGER_WITNESS_QUORUM):
            verdict = report.witnesses
            metadata["witnesses_configured"] = 0 if verdict is None else len(verdict.keys)
            if verdict is not None:
                metadata["quorum"] = verdict.quorum
                metadata["cosigned_by"] = dg.MetadataValue.json(list(verdict.latest))
        elif check is LEDGER_FRESH:
            metadata["limit_hours"] = freshness_limit_hours
            if coverage.newest is None:
                passed = False
                metadata["newest_hour"] = "none committed"
            else:
                age = (now - (coverage.newest + 3600)) / 3600
                metadata["newest_hour"] = format_hour(coverage.newest)
                metadata["hours_since_newest_hour_closed"] = round(age, 2)
                passed = passed and age <= freshness_limit_hours
        results.append(
            dg.AssetCheckResult(
                check_name=check.name,
                asset_key=LEDGER_ASSET,
                passed=passed,
                severity=severity,
                metadata=metadata,
                description=None
                if passed
                else _failure_description(check, findings, coverage, anchors),
            )
        )
    return results


def _failure_description(
    check: LedgerCheck, findings: Sequence[Finding], coverage: Coverage, anchors: AnchorReview
) -> str:
    if check is LEDGER_CONSISTENT_WITH_RECORDED_CHECKPOINT and anchors.problems:
        problems = "; ".join(anchors.problems)
        first = f"; first finding: {findings[0].line()}" if findings else ""
        return (problems + first)[:1000]
    if findings:
        return f"{plural(len(findings), 'finding')}; first: {findings[0].line()}"[:1000]
    if check is LEDGER_KEYS_ANCHORED:
        return (
            "the keys are unanchored: signatures were checked only against the data "
            "directory's own keyring; set AUDIT_TRUSTED_KEYS to a keys file kept elsewhere"
        )
    if check is LEDGER_COVERS_EVERY_HOUR:
        hours = ", ".join(format_hour(h) for h in coverage.missing[:5])
        sources = ", ".join(sorted(coverage.missing_by_source))
        return f"{len(coverage.missing)} hours have no batch ({sources}): {hours}"
    if check is LEDGER_FRESH:
        if coverage.newest is None:
            return "no hour has been committed yet"
        return f"the newest committed hour is {format_hour(coverage.newest)}"
    return "failed"
