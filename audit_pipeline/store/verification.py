"""Verifying an ``s3://`` data directory: the ledger's own checks, then its versions.

:func:`verify_object_store` opens the bucket (refusing one without Object Lock), runs
:func:`~audit_pipeline.ledger.verify.verify_ledger` over the store's current versions
(what every reader gets), then audits every version under ``lake/``,
``ledger/manifests/``, ``ledger/checkpoints/``, the hash tiles (``ledger/tile/``), the
batch index (``ledger/index/``), ``ledger/staged/`` and ``ledger/witnessed/`` against its
pin (:mod:`~audit_pipeline.ledger.version_audit`).

A data object is pinned to the VersionId its manifest carries (``data_version_id``, what
the create-only put returned), with the manifest's SHA-256 and size. Manifests,
checkpoints, tiles, index files, intents and witness records cannot carry their own
version, and data objects of manifests written before the field existed carry none: their
pin is the key's *first* version. Every object of the ledger is created only if absent and
locked in COMPLIANCE mode, so its first version is the one the pipeline wrote and can never
be removed through S3; any later version or delete marker is somebody's change. The
SHA-256 and size pinned for a manifest, a checkpoint, a tile or an index file are those of
the bytes the verifier read and checked (or the store's own checksum when the first version
is not the one readers get, which is a finding already). Witness records
(``ledger/witnessed/``: a round's cosigned checkpoint, a refusal) are created once like the
rest and pinned the same way. The keyring is read, not version-audited.

The listing made for the pins is the audit's; the store's description of each version the
verifier read stands in for a HEAD of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from audit_pipeline.ledger.batch_index import INDEX, INDEX_SUFFIX
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.events import BatchFileFormat
from audit_pipeline.ledger.keys import Keyring
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    KEYRING,
    LAKE,
    MANIFEST_SUFFIX,
    MANIFESTS,
    checkpoint_path,
    parse_numbered_name,
)
from audit_pipeline.ledger.manifest import SignedManifest, parse_manifest, signature_status
from audit_pipeline.ledger.note import Verifiers
from audit_pipeline.ledger.object_ledger import STAGED, staged_path
from audit_pipeline.ledger.storage import ObjectVersion
from audit_pipeline.ledger.tiles import TILES, parse_tile_path
from audit_pipeline.ledger.verify import FindingCode, VerifyReport, verify_ledger
from audit_pipeline.ledger.version_audit import (
    PINNED_VERSION_MISSING,
    Pin,
    VersionFinding,
    audit_versions,
    with_version_findings,
)
from audit_pipeline.ledger.witnessed import WITNESSED, is_witness_record
from audit_pipeline.store.audit_scope import versions_after
from audit_pipeline.store.data_dir import S3DataDirectory
from audit_pipeline.store.s3 import ObjectLockUnreadableError, S3ObjectStore
from audit_pipeline.store.settings import RETENTION_ENV, S3Settings

_STAGED_NAME = re.compile(r"^[0-9]{8,}-[0-9a-f]{16}\.json$")
AUDITED_PREFIXES = (
    f"{LAKE}/",
    f"{MANIFESTS}/",
    f"{CHECKPOINTS}/",
    f"{TILES}/",
    f"{INDEX}/",
    f"{STAGED}/",
    f"{WITNESSED}/",
)


def verify_object_store(
    settings: S3Settings, *, file_format: BatchFileFormat, **options: Any
) -> VerifyReport:
    """verify_object_store checks the ledger under ``settings.location`` and its versions.

    ``options`` are :func:`verify_ledger`'s. Raises ConfigurationError for a bucket
    without Object Lock, StorageError (exit 3) when the store cannot be read.
    """
    store = S3ObjectStore(settings)
    try:
        store.check_object_lock()  # a bucket without it is refused (ConfigurationError)
        lock = "enabled"
    except ObjectLockUnreadableError as exc:
        lock = f"not checked: {exc}"
    where = str(settings.location)
    with S3DataDirectory(store) as files:
        report = verify_ledger(where, file_format=file_format, storage=files, **options)
        listed = _listed(store, files, report)
        after = None if listed is None else report.incremental_from
        if listed is None:
            listed = [v for prefix in AUDITED_PREFIXES for v in store.list_versions(prefix)]
        pins, unlisted = ledger_pins(files, listed, after)
        found = audit_versions(
            store,
            pins,
            AUDITED_PREFIXES,
            retention=settings.retention,
            now=datetime.now(UTC),
            listed=listed,
            described={key: read.stored for key, read in files.read_versions.items()},
        )
        found += [
            VersionFinding(PINNED_VERSION_MISSING, key, "the store lists no version of it")
            for key in unlisted
        ]
        keyring = options.get("keyring") or _own_keyring(files)
        leftovers = uncommitted_leftovers(files, report, keyring)
        facts = _facts(settings, lock, len(pins), len(listed), after)
        report = with_version_findings(report, found, facts, leftovers)
        if report.intact and report.root_hash is not None and report.checkpoint is None:
            tip = checkpoint_path(report.tree_size)
            if files.exists(tip):  # the leftovers were all that kept it from being named
                report = replace(report, checkpoint=files.read(tip))
    return report


def uncommitted_leftovers(
    files: S3DataDirectory, report: VerifyReport, keyring: Keyring | Verifiers
) -> dict[str, str]:
    """uncommitted_leftovers finds the lake objects no manifest references that an intent
    (``ledger/staged/``) signed by a trusted key of this log describes byte for byte: what
    a committer that lost a race or crashed before its commit point left, never part of the
    ledger and never read by the dataset. Intents of committed batches are not read."""
    if isinstance(keyring, Verifiers):
        keyring = Keyring.from_vkeys((v.vkey for v in keyring), source="trusted verifiers")
    unreferenced = {f.location for f in report.findings if f.code is FindingCode.UNREFERENCED_FILE}
    if not unreferenced:
        return {}
    committed = set()
    for key, raw in files.ledger_bytes.items():
        if key.startswith(f"{MANIFESTS}/"):
            try:
                signed = parse_manifest(raw)
            except LedgerError:
                continue
            if signed.manifest.data is not None:
                committed.add(staged_path(signed.sequence, signed.manifest.data.sha256))
    found: dict[str, str] = {}
    for key in files.store.list_keys(f"{STAGED}/"):
        if key in committed:
            continue
        try:
            signed = parse_manifest(files.read(key))
        except (LedgerError, FileNotFoundError):
            continue
        data = signed.manifest.data
        if (
            data is None
            or data.path not in unreferenced
            or staged_path(signed.sequence, data.sha256) != key
        ):
            continue
        if signature_status(signed, keyring) != "valid":
            continue
        read = files.read_versions.get(data.path)
        if read is None:
            files.read(data.path)
            read = files.read_versions[data.path]
        if (read.sha256, read.size) == (data.sha256, data.size):
            found[data.path] = (
                f"data of an uncommitted batch {signed.sequence} (a lost commit race or a crash "
                f"before the commit point; its intent {key} is signed): never part of the ledger"
            )
    return found


def _listed(
    store: S3ObjectStore, files: S3DataDirectory, report: VerifyReport
) -> list[ObjectVersion] | None:
    """_listed lists what an incremental verification's audit covers (None: everything,
    for a full verification; see :mod:`.audit_scope`)."""
    trusted = report.incremental_from
    if trusted is None:
        return None
    new = [m for m in _read_manifests(files) if m.sequence >= trusted]
    read = list(files.read_versions)
    return versions_after(store, trusted, report.tree_size, new, read, AUDITED_PREFIXES)


def _read_manifests(files: S3DataDirectory) -> list[SignedManifest]:
    """_read_manifests parses the manifests the verifier read (those that parse)."""
    found = []
    for key, raw in sorted(files.ledger_bytes.items()):
        if key.startswith(f"{MANIFESTS}/"):
            try:
                found.append(parse_manifest(raw))
            except LedgerError:
                continue
    return found


def _facts(
    settings: S3Settings, lock: str, pinned: int, listed: int, after: int | None
) -> dict[str, Any]:
    where, days = str(settings.location), settings.retention.days
    scope = (
        "every version under the audited prefixes"
        if after is None
        else f"the versions of what follows the trusted checkpoint (batch {after} on)"
    )
    return {
        "location": where,
        "endpoint": settings.endpoint_text,
        "object_lock": lock,
        "retention_days": days,
        "objects_pinned": pinned,
        "versions_listed": listed,
        "audit_from": after,
        "line": (
            f"object store: {where} at {settings.endpoint_text}: Object Lock {lock}; "
            f"COMPLIANCE retention expected {RETENTION_ENV}={days}; "
            f"{listed} versions of {pinned} pinned objects audited, {scope} (the keyring "
            "is read, not version-audited; the bucket policy is not checked)"
        ),
    }


def _own_keyring(files: S3DataDirectory) -> Keyring:
    return Keyring.from_bytes(files.read(KEYRING), source=files.describe(KEYRING))


def ledger_pins(
    files: S3DataDirectory, listed: Iterable[ObjectVersion], after: int | None = None
) -> tuple[list[Pin], list[str]]:
    """ledger_pins pins every manifest, checkpoint and referenced data file listed (see
    above); it also returns the keys a manifest references or the verifier read that have
    no version at all (their locked version vanished behind S3's back). ``after``: the
    listing is an incremental one from that batch on, and the references that count are
    those of the manifests from there on."""
    first: dict[str, ObjectVersion] = {}
    for entry in sorted(listed, key=_age):
        if not entry.is_delete_marker:
            first.setdefault(entry.key, entry)
    pins: list[Pin] = []
    referenced: dict[str, Any] = {}
    pinned_ids: dict[str, str] = {}
    must_list: set[str] = set()
    for signed in _read_manifests(files):
        manifest = signed.manifest
        if manifest.data is not None:
            referenced[manifest.data.path] = manifest.data
            if after is None or signed.sequence >= after:
                must_list.add(manifest.data.path)
            if manifest.data_version_id is not None:
                pinned_ids[manifest.data.path] = manifest.data_version_id
    for key, entry in sorted(first.items()):
        data = referenced.get(key)
        if data is not None:
            version_id = pinned_ids.get(key, entry.version_id)
            pins.append(Pin(key, version_id, data.sha256, data.size))
        elif _is_ledger_record(key):
            pins.append(_record_pin(files, key, entry))
    expected = must_list | {k for k in files.read_versions if _is_ledger_record(k)}
    return pins, sorted(expected - first.keys())


def _record_pin(files: S3DataDirectory, key: str, first: ObjectVersion) -> Pin:
    read = files.read_versions.get(key)
    if read is not None and read.version_id == first.version_id:
        return Pin(key, first.version_id, read.sha256, read.size)
    stored = files.store.head(key, first.version_id)
    sha256 = stored.sha256 if stored is not None and stored.sha256 else ""
    return Pin(key, first.version_id, sha256, first.size)


def _is_ledger_record(key: str) -> bool:
    if key.startswith(f"{TILES}/"):
        return parse_tile_path(key) is not None
    folder, _, name = key.rpartition("/")
    if folder == STAGED:
        return _STAGED_NAME.match(name) is not None
    if folder == MANIFESTS:
        return parse_numbered_name(name, MANIFEST_SUFFIX) is not None
    if folder == CHECKPOINTS:
        return parse_numbered_name(name, CHECKPOINT_SUFFIX) is not None
    if folder == INDEX:
        return parse_numbered_name(name, INDEX_SUFFIX) is not None
    return is_witness_record(key)


def _age(entry: ObjectVersion) -> tuple[datetime, bool, bool]:
    """_age orders versions oldest first; listings keep whole seconds, so within one second
    a version that is not the latest came first, and a ``null`` version (written with
    versioning off or behind S3's back, never by a create-only put) comes last."""
    moment = entry.last_modified or datetime.max.replace(tzinfo=UTC)
    return moment, entry.version_id == "null", entry.is_latest
