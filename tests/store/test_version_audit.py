"""Tamper detection that knows versions, against SeaweedFS: through S3 and behind its back.

The filer HTTP API writes SeaweedFS's storage directly and bypasses Object Lock: it plays
the insider with access to the storage layer. Every attack must show as a named finding.
"""

from __future__ import annotations

import hashlib
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from audit_pipeline.ledger.storage import ObjectStore
from audit_pipeline.ledger.version_audit import (
    CHECKSUM_MISMATCH,
    CHECKSUM_MISSING,
    CURRENT_VERSION_DIFFERS,
    DELETE_MARKER,
    EXTRA_VERSION,
    PINNED_VERSION_MISSING,
    RETENTION_EXPIRED,
    RETENTION_MISSING,
    RETENTION_SHORT,
    UNREFERENCED_OBJECT,
    Pin,
    audit_versions,
)
from tests.store.conftest import settings_for

pytestmark = pytest.mark.e2e

DATA = "lake/date=2026-01-01/hour=00/00000000-events.parquet"
MANIFEST = "ledger/manifests/00000000.json"
PREFIXES = ("lake/", "ledger/manifests/")
RETENTION = timedelta(days=1)


def _pin(store: ObjectStore, key: str, data: bytes) -> Pin:
    stored = store.put_new(key, data)
    return Pin(key, stored.version_id, hashlib.sha256(data).hexdigest(), len(data))


def _audit(store, pins, *, retention=RETENTION, deep=False):
    found = audit_versions(
        store, pins, PREFIXES, retention=retention, now=datetime.now(UTC), deep=deep
    )
    return {(f.kind, f.key) for f in found}


def _filer(seaweed, data_url: str, method: str, rel: str, body: bytes | None = None) -> int:
    """_filer writes behind S3's back: the storage layer, not the API."""
    settings = settings_for(seaweed, data_url)
    path = f"/buckets/{settings.location.bucket}/{settings.location.key(rel)}"
    request = urllib.request.Request(seaweed.filer_url + path, data=body, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


@pytest.fixture
def pinned(store):
    return [_pin(store, DATA, b"PAR1 original rows PAR1"), _pin(store, MANIFEST, b'{"seq":0}')]


def test_an_untouched_store_has_no_findings(store, pinned) -> None:
    assert _audit(store, pinned, deep=True) == set()


def test_a_delete_marker_through_s3_is_a_finding(store, pinned, seaweed, data_url) -> None:
    settings = settings_for(seaweed, data_url)
    store.client.delete_object(Bucket=settings.location.bucket, Key=settings.location.key(DATA))
    assert not store.exists(DATA)  # readers now see nothing
    assert _audit(store, pinned) == {(DELETE_MARKER, DATA)}
    # the locked version itself is intact and still readable by its pin
    assert store.get(DATA, pinned[0].version_id) == b"PAR1 original rows PAR1"


def test_a_new_version_over_a_key_is_a_finding(store, pinned, seaweed, data_url) -> None:
    settings = settings_for(seaweed, data_url)
    store.client.put_object(
        Bucket=settings.location.bucket, Key=settings.location.key(MANIFEST), Body=b'{"forged":1}'
    )
    assert store.get(MANIFEST) == b'{"forged":1}'  # a reader of the key is fooled...
    assert _audit(store, pinned) == {  # ...the version-aware audit is not
        (EXTRA_VERSION, MANIFEST),
        (CURRENT_VERSION_DIFFERS, MANIFEST),
    }


def test_an_object_nobody_pinned_is_a_finding(store, pinned) -> None:
    store.put_new("lake/date=2026-01-01/hour=00/00000001-events.parquet", b"injected")
    assert _audit(store, pinned) == {
        (UNREFERENCED_OBJECT, "lake/date=2026-01-01/hour=00/00000001-events.parquet")
    }


def test_a_write_through_the_filer_over_a_key_is_an_extra_version(
    store, pinned, seaweed, data_url
) -> None:
    assert _filer(seaweed, data_url, "PUT", DATA, b"forged rows") in (200, 201)
    assert (EXTRA_VERSION, DATA) in _audit(store, pinned)


def test_versions_deleted_through_the_filer_are_missing(store, pinned, seaweed, data_url) -> None:
    _filer(seaweed, data_url, "DELETE", f"{MANIFEST}.versions?recursive=true")
    assert _audit(store, pinned) == {
        (PINNED_VERSION_MISSING, MANIFEST),
        (CURRENT_VERSION_DIFFERS, MANIFEST),
    }


def test_a_locked_version_rewritten_through_the_filer_is_caught(
    store, pinned, seaweed, data_url
) -> None:
    version = pinned[0].version_id
    same_size = b"PAR1 FORGED!!! rows PAR1"[: pinned[0].size]
    _filer(seaweed, data_url, "PUT", f"{DATA}.versions/v_{version}", same_size)
    findings = _audit(store, pinned, deep=True)
    assert (CHECKSUM_MISSING, DATA) in findings
    assert (RETENTION_MISSING, DATA) in findings
    assert (CHECKSUM_MISMATCH, DATA) in findings  # the deep audit rehashes the bytes
    assert {key for _, key in findings} == {DATA}


def test_retention_shorter_than_configured_is_a_finding(store_for) -> None:
    short = store_for(retention=timedelta(hours=1))
    pins = [_pin(short, DATA, b"x")]
    assert _audit(short, pins) == {(RETENTION_SHORT, DATA)}


def test_retention_expires_and_only_then_a_version_can_be_deleted(
    store_for, seaweed, data_url
) -> None:
    brief = store_for(retention=timedelta(seconds=2))
    pin = _pin(brief, DATA, b"kept for two seconds")
    settings = settings_for(seaweed, data_url)
    bucket, key = settings.location.bucket, settings.location.key(DATA)
    with pytest.raises(ClientError) as locked:
        brief.client.delete_object(Bucket=bucket, Key=key, VersionId=pin.version_id)
    assert locked.value.response["Error"]["Code"] == "AccessDenied"
    assert _audit(brief, [pin], retention=timedelta(seconds=2)) == set()

    deadline = time.monotonic() + 15
    while True:
        stored = brief.head(DATA, pin.version_id)
        assert stored is not None and stored.retain_until is not None
        if datetime.now(UTC) > stored.retain_until + timedelta(seconds=1):
            break
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert _audit(brief, [pin], retention=timedelta(seconds=2)) == {(RETENTION_EXPIRED, DATA)}
    brief.client.delete_object(Bucket=bucket, Key=key, VersionId=pin.version_id)
    assert _audit(brief, [pin], retention=timedelta(seconds=2)) == {
        (PINNED_VERSION_MISSING, DATA),
        (CURRENT_VERSION_DIFFERS, DATA),
    }
