"""Tamper detection that knows versions: compare what the store holds with what was pinned.

Object Lock protects versions, not keys: anyone with write access can still add a version
over a key or a delete marker in front of it, and readers see the current version. And a
store's back door (SeaweedFS's filer, a storage admin) can bypass the lock entirely. So
an audit of an object store compares, for every pinned ``(key, version id, sha256,
size)``, the store's own description of that key:

- ``pinned-version-missing``: the pinned version is gone;
- ``current-version-differs``: readers would get another version than the pinned one;
- ``delete-marker``: a delete marker hides a key (readers see nothing);
- ``extra-version``: a key has versions besides the pinned one;
- ``checksum-mismatch`` / ``size-mismatch``: the pinned version's server-side SHA-256 or
  size is not the pinned one (and, with ``deep=True``, its bytes do not hash to it);
- ``checksum-missing``: the store keeps no SHA-256 for the pinned version;
- ``retention-missing`` / ``retention-short``: the pinned version is not under COMPLIANCE
  retention, or is retained for less than the configured period from its creation;
- ``unreferenced-object``: a key under an audited prefix that nothing pins.

Retention that has legitimately expired is reported as ``retention-expired`` (a notice:
the store no longer refuses a delete), never silently accepted.

Cost: one paged version listing per prefix gives every version id, delete marker and
size; a key's current and pinned versions are then described by at most one HEAD each,
none when the caller already holds the store's description of the current version (the
verifier's read of it) and that version is the pinned one. What HEADs remain run on a
small thread pool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from audit_pipeline.ledger.storage import (
    COMPLIANCE,
    ObjectNotFoundError,
    ObjectStore,
    ObjectVersion,
    StoredObject,
)
from audit_pipeline.ledger.verify import (
    COVERAGE_CODES,
    Finding,
    FindingCode,
    Notice,
    VerifyReport,
)

PINNED_VERSION_MISSING = "pinned-version-missing"
CURRENT_VERSION_DIFFERS = "current-version-differs"
DELETE_MARKER = "delete-marker"
EXTRA_VERSION = "extra-version"
CHECKSUM_MISMATCH = "checksum-mismatch"
CHECKSUM_MISSING = "checksum-missing"
SIZE_MISMATCH = "size-mismatch"
RETENTION_MISSING = "retention-missing"
RETENTION_SHORT = "retention-short"
RETENTION_EXPIRED = "retention-expired"
UNREFERENCED_OBJECT = "unreferenced-object"

NOTICES = frozenset({RETENTION_EXPIRED})
# the store's clock and the writer's may disagree a little about "now"
CLOCK_SLACK = timedelta(seconds=60)
# concurrent HEAD requests of one audit (a boto3 client is thread-safe; its default
# connection pool holds 10)
AUDIT_JOBS = 8


@dataclass(frozen=True)
class Pin:
    """Pin is what a manifest recorded about one object it created."""

    key: str
    version_id: str
    sha256: str
    size: int


@dataclass(frozen=True)
class VersionFinding:
    """VersionFinding names one way the store disagrees with the pins."""

    kind: str
    key: str
    detail: str

    @property
    def is_tampering(self) -> bool:
        return self.kind not in NOTICES


def audit_versions(
    store: ObjectStore,
    pins: Iterable[Pin],
    prefixes: Iterable[str],
    *,
    retention: timedelta,
    now: datetime,
    deep: bool = False,
    listed: Iterable[ObjectVersion] | None = None,
    described: Mapping[str, StoredObject] | None = None,
    jobs: int = AUDIT_JOBS,
) -> list[VersionFinding]:
    """audit_versions returns every disagreement between ``store`` and ``pins``.

    ``prefixes`` are the key prefixes that must hold nothing but pinned objects (the lake
    and the manifests), listed here unless ``listed`` holds their versions already;
    ``retention`` is the configured minimum COMPLIANCE period; ``described`` maps keys to
    the store's description of their current version, as a reader just got it.
    """
    pinned = {pin.key: pin for pin in pins}
    if listed is None:
        listed = [entry for prefix in prefixes for entry in store.list_versions(prefix)]
    by_key: dict[str, list[ObjectVersion]] = {}
    for entry in listed:
        by_key.setdefault(entry.key, []).append(entry)
    findings: list[VersionFinding] = []
    for key in sorted(by_key.keys() - pinned.keys()):
        ids = ", ".join(v.version_id for v in by_key[key])
        findings.append(VersionFinding(UNREFERENCED_OBJECT, key, f"no manifest pins it ({ids})"))
    described = described or {}

    def audit(key: str) -> list[VersionFinding]:
        return _audit_pin(store, pinned[key], by_key.get(key, []), described, retention, now, deep)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for found in pool.map(audit, sorted(pinned)):
            findings.extend(found)
    return findings


def _audit_pin(
    store: ObjectStore,
    pin: Pin,
    versions: list[ObjectVersion],
    described: Mapping[str, StoredObject],
    retention: timedelta,
    now: datetime,
    deep: bool,
) -> list[VersionFinding]:
    out: list[VersionFinding] = []
    key = pin.key
    for entry in versions:
        if entry.is_delete_marker:
            out.append(VersionFinding(DELETE_MARKER, key, f"delete marker {entry.version_id}"))
        elif entry.version_id != pin.version_id:
            out.append(VersionFinding(EXTRA_VERSION, key, f"version {entry.version_id}"))
    current = described[key] if key in described else store.head(key)
    if current is None:
        if not any(v.is_delete_marker and v.is_latest for v in versions):
            out.append(VersionFinding(CURRENT_VERSION_DIFFERS, key, "no current version"))
    elif current.version_id != pin.version_id:
        out.append(
            VersionFinding(
                CURRENT_VERSION_DIFFERS,
                key,
                f"current version {current.version_id}, pinned {pin.version_id}",
            )
        )
    if current is not None and current.version_id == pin.version_id:
        stored: StoredObject | None = current
    else:
        stored = store.head(key, pin.version_id)
    if stored is None:
        out.append(VersionFinding(PINNED_VERSION_MISSING, key, f"version {pin.version_id}"))
        return out
    if stored.size != pin.size:
        out.append(VersionFinding(SIZE_MISMATCH, key, f"{stored.size} bytes, pinned {pin.size}"))
    if stored.sha256 is None:
        out.append(VersionFinding(CHECKSUM_MISSING, key, "the store keeps no SHA-256"))
    elif stored.sha256 != pin.sha256:
        out.append(VersionFinding(CHECKSUM_MISMATCH, key, f"store says sha256 {stored.sha256}"))
    if deep:
        out.extend(_rehash(store, pin))
    if stored.lock_mode != COMPLIANCE or stored.retain_until is None:
        out.append(
            VersionFinding(RETENTION_MISSING, key, f"lock mode {stored.lock_mode or 'none'}")
        )
    else:
        created = stored.last_modified
        if created is not None and stored.retain_until + CLOCK_SLACK < created + retention:
            out.append(
                VersionFinding(
                    RETENTION_SHORT,
                    key,
                    f"retained until {stored.retain_until.isoformat()}, "
                    f"less than {retention} after {created.isoformat()}",
                )
            )
        if stored.retain_until <= now:
            out.append(
                VersionFinding(
                    RETENTION_EXPIRED, key, f"retention ended {stored.retain_until.isoformat()}"
                )
            )
    return out


def _rehash(store: ObjectStore, pin: Pin) -> list[VersionFinding]:
    try:
        data = store.get(pin.key, pin.version_id)
    except ObjectNotFoundError:
        return [VersionFinding(PINNED_VERSION_MISSING, pin.key, f"version {pin.version_id}")]
    digest = hashlib.sha256(data).hexdigest()
    if digest != pin.sha256:
        return [VersionFinding(CHECKSUM_MISMATCH, pin.key, f"bytes hash to {digest}")]
    return []


_FINDING_CODES = {
    PINNED_VERSION_MISSING: "pinned_version_missing",
    CURRENT_VERSION_DIFFERS: "current_version_differs",
    DELETE_MARKER: "delete_marker",
    EXTRA_VERSION: "extra_version",
    CHECKSUM_MISMATCH: "store_checksum_mismatch",
    CHECKSUM_MISSING: "store_checksum_missing",
    SIZE_MISMATCH: "store_size_mismatch",
    RETENTION_MISSING: "retention_missing",
    RETENTION_SHORT: "retention_short",
    UNREFERENCED_OBJECT: "unreferenced_object",
}


def with_version_findings(
    report: VerifyReport,
    found: Iterable[VersionFinding],
    facts: dict[str, Any],
    leftovers: Mapping[str, str] | None = None,
) -> VerifyReport:
    """with_version_findings adds the version audit to a verification of the same store:
    each disagreement a named finding (a notice for expired retention), ``facts`` (where
    the store is, its retention) shown with the verdict. A key the verifier already named
    as an unreferenced file is not named twice. ``leftovers`` maps the data objects a
    signed intent of this log vouches for (an uncommitted commit: lost race or crash) to
    why: those are notices, not unreferenced files."""
    leftovers = leftovers or {}
    unreferenced = {FindingCode.UNREFERENCED_FILE, FindingCode.UNREFERENCED_OBJECT}
    already = {f.location for f in report.findings if f.code is FindingCode.UNREFERENCED_FILE}
    findings = [
        f for f in report.findings if not (f.code in unreferenced and f.location in leftovers)
    ]
    notices = list(report.notices)
    notices += [Notice("uncommitted_leftover", k, why) for k, why in sorted(leftovers.items())]
    for item in found:
        if item.kind == UNREFERENCED_OBJECT and item.key in leftovers:
            continue
        if not item.is_tampering:
            notices.append(Notice(item.kind.replace("-", "_"), item.key, item.detail))
        elif not (item.kind == UNREFERENCED_OBJECT and item.key in already):
            code = FindingCode(_FINDING_CODES[item.kind])
            findings.append(Finding(code, item.key, None, None, f"object store: {item.detail}"))
    intact = not any(f.code not in COVERAGE_CODES for f in findings)
    return replace(
        report,
        findings=tuple(findings),
        notices=tuple(notices),
        checkpoint=report.checkpoint if intact else None,
        object_store=facts,
    )
