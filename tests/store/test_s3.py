"""S3ObjectStore against a real SeaweedFS: create-only, checksummed, locked, versioned."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.storage import (
    COMPLIANCE,
    ChecksumRejectedError,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
)
from audit_pipeline.store.readers import object_path, pinned_dataset, reader_filesystem
from audit_pipeline.store.s3 import S3ObjectStore, s3_client
from tests.store.conftest import settings_for

pytestmark = pytest.mark.e2e


def _code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def test_put_new_creates_once_with_version_checksum_and_compliance_retention(store) -> None:
    assert isinstance(store, ObjectStore)
    stored = store.put_new("ledger/manifests/00000000.json", b'{"n":0}')
    assert stored.version_id not in ("", "null")
    head = store.head("ledger/manifests/00000000.json")
    assert head is not None
    assert head.version_id == stored.version_id
    assert head.sha256 == hashlib.sha256(b'{"n":0}').hexdigest()
    assert head.size == 7
    assert head.lock_mode == COMPLIANCE
    assert head.retain_until is not None and head.retain_until > head.last_modified
    assert store.get("ledger/manifests/00000000.json", stored.version_id) == b'{"n":0}'
    assert store.exists("ledger/manifests/00000000.json")
    assert not store.exists("ledger/manifests/00000001.json")
    with pytest.raises(ObjectExistsError):
        store.put_new("ledger/manifests/00000000.json", b"other")
    assert store.get("ledger/manifests/00000000.json") == b'{"n":0}'


def test_listing_is_relative_to_the_data_directory_and_sorted(store) -> None:
    for key in ("lake/date=2026-01-01/hour=01/00000001-x.parquet", "ledger/manifests/b", "a"):
        store.put_new(key, b"x")
    assert store.list_keys("ledger/") == ["ledger/manifests/b"]
    assert store.list_keys("") == [
        "a",
        "lake/date=2026-01-01/hour=01/00000001-x.parquet",
        "ledger/manifests/b",
    ]
    versions = store.list_versions("ledger/")
    assert [(v.key, v.is_latest, v.is_delete_marker) for v in versions] == [
        ("ledger/manifests/b", True, False)
    ]


def test_children_are_one_listing_of_what_lies_right_under_a_folder(store) -> None:
    keys = (
        "ledger/keys/keyring.json",
        "ledger/manifests/00000000.json",
        "ledger/manifests/00000001.json",
        "ledger/manifests/00000002.json",
        "ledger/x",
    )
    for key in keys:
        store.put_new(key, b"x")
    assert store.list_children("ledger/") == ["keys", "manifests", "x"]
    assert store.list_children("ledger/manifests/", after="ledger/manifests/00000000.json") == [
        "00000001.json",
        "00000002.json",
    ]
    assert store.list_children("ledger/manifests/", after="ledger/manifests/00000002.json") == []
    assert store.list_children("ledger/index/") == []


def test_missing_objects(store) -> None:
    assert store.head("nothing") is None
    with pytest.raises(ObjectNotFoundError):
        store.get("nothing")
    stored = store.put_new("k", b"v")
    with pytest.raises(ObjectNotFoundError):
        store.get("k", "0" * len(stored.version_id))


def test_the_server_refuses_bytes_that_do_not_match_the_checksum(seaweed, data_url) -> None:
    settings = settings_for(seaweed, data_url)
    client = s3_client(settings)
    wrong = base64.b64encode(hashlib.sha256(b"intended").digest()).decode()
    with pytest.raises(ClientError) as refused:
        client.put_object(
            Bucket=settings.location.bucket,
            Key=settings.location.key("k"),
            Body=b"corrupted in transit",
            IfNoneMatch="*",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=wrong,
        )
    assert _code(refused.value) == "BadDigest"
    store = S3ObjectStore(settings)
    assert not store.exists("k")
    # the store maps the same refusal to its own error
    store.client.meta.events.register(
        "before-sign.s3.PutObject", lambda request, **_: setattr(request, "data", b"evil")
    )
    with pytest.raises(ChecksumRejectedError):
        store.put_new("k", b"good")


def test_overwrite_and_delete_are_refused_even_with_the_pipelines_credentials(
    store, seaweed, data_url
) -> None:
    stored = store.put_new("lake/f.parquet", b"original bytes")
    settings = settings_for(seaweed, data_url)
    client = s3_client(settings)
    bucket, key = settings.location.bucket, settings.location.key("lake/f.parquet")
    with pytest.raises(ClientError) as overwrite:
        client.put_object(Bucket=bucket, Key=key, Body=b"forged", IfNoneMatch="*")
    assert _code(overwrite.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as delete:
        client.delete_object(Bucket=bucket, Key=key, VersionId=stored.version_id)
    assert _code(delete.value) == "AccessDenied"
    with pytest.raises(ClientError) as bypass:
        client.delete_object(
            Bucket=bucket, Key=key, VersionId=stored.version_id, BypassGovernanceRetention=True
        )
    assert _code(bypass.value) == "AccessDenied"
    with pytest.raises(ClientError) as shorten:
        client.put_object_retention(
            Bucket=bucket,
            Key=key,
            VersionId=stored.version_id,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": stored.last_modified},
        )
    assert _code(shorten.value) in ("AccessDenied", "InvalidRequest", "InvalidArgument")
    # the locked version survives all of it, byte for byte
    assert store.get("lake/f.parquet", stored.version_id) == b"original bytes"
    head = store.head("lake/f.parquet", stored.version_id)
    assert head is not None and head.lock_mode == COMPLIANCE


def test_a_bucket_without_object_lock_is_refused_with_the_fix(seaweed) -> None:
    settings = settings_for(seaweed, "s3://audit-no-lock/data")
    s3_client(settings).create_bucket(Bucket="audit-no-lock")
    with pytest.raises(ConfigurationError) as refused:
        S3ObjectStore.open(settings)
    message = str(refused.value)
    assert "audit-no-lock does not have Object Lock enabled" in message
    assert "--object-lock-enabled-for-bucket" in message
    missing = settings_for(seaweed, "s3://audit-never-made/data")
    with pytest.raises(ConfigurationError, match="does not exist"):
        S3ObjectStore.open(missing)


def test_errors_never_carry_credentials(seaweed, data_url) -> None:
    settings = settings_for(seaweed, data_url)
    wrong = replace(settings, secret_access_key="not-the-secret-" + "x" * 20)
    with pytest.raises(StorageError) as failed:
        S3ObjectStore.open(wrong)
    text = str(failed.value) + repr(wrong) + repr(settings)
    assert "SignatureDoesNotMatch" in text or "AccessDenied" in text or "InvalidAccessKeyId" in text
    for secret in (
        settings.secret_access_key,
        wrong.secret_access_key,
        seaweed.pipeline.secret_access_key,
    ):
        assert secret not in text
    assert seaweed.pipeline.secret_access_key not in repr(seaweed.pipeline)


def test_readers_read_parquet_through_pyarrow_and_cannot_write(store, seaweed, data_url) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": ["a", "b"], "n": [1, 2]}), sink)
    data = sink.getvalue().to_pybytes()
    store.put_new("lake/date=2026-01-01/hour=00/00000000-events.parquet", data)
    reader = settings_for(seaweed, data_url, identity="reader")
    filesystem = reader_filesystem(reader)
    path = object_path(reader, "lake/date=2026-01-01/hour=00/00000000-events.parquet")
    table = pq.read_table(path, filesystem=filesystem)
    assert table.column("n").to_pylist() == [1, 2]
    with (
        pytest.raises(OSError),
        filesystem.open_output_stream(object_path(reader, "lake/x")) as out,
    ):
        out.write(b"forged")
    assert not store.exists("lake/x")


def test_duckdb_queries_exactly_the_pinned_files_through_pyarrow(store, seaweed, data_url) -> None:
    schema = pa.schema([("id", pa.string()), ("n", pa.int64())])
    pinned = []
    for hour, rows in enumerate(([("a", 1), ("b", 2)], [("c", 3)], [("evil", 1000)])):
        sink = pa.BufferOutputStream()
        table = pa.table({"id": [r[0] for r in rows], "n": [r[1] for r in rows]}, schema=schema)
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        rel = f"lake/date=2026-01-01/hour={hour:02d}/0000000{hour}-events.parquet"
        store.put_new(rel, data)
        if hour < 2:  # the third file is injected: no manifest pins it
            pinned.append((rel, len(data)))
    reader = settings_for(seaweed, data_url, identity="reader")
    dataset = pinned_dataset(reader, pinned, schema)
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    con.register("events", dataset)
    assert con.execute("SELECT count(*), sum(n) FROM events").fetchone() == (3, 6)
    assert con.execute("SELECT id FROM events WHERE n > 1 ORDER BY id").fetchall() == [
        ("b",),
        ("c",),
    ]
