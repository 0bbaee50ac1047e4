"""The ledger's :class:`~audit_pipeline.ledger.storage.ObjectStore` on S3 with Object Lock.

Every write is ``PutObject`` with ``If-None-Match: *`` (create only), the SHA-256 of the
bytes in ``x-amz-checksum-sha256`` (the server refuses other bytes) together with
``ChecksumAlgorithm=SHA256`` (AWS's Object Lock rule), and COMPLIANCE retention for the
configured period from now. The returned ``VersionId`` is what a manifest pins.

The client uses path-style addressing (local servers, dotted bucket names) and botocore's
``standard`` retry mode. Errors are turned into the ledger's storage errors with the
operation, key and S3 error code only: never credentials, never request headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError
from botocore.utils import parse_timestamp

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.storage import (
    COMPLIANCE,
    ChecksumRejectedError,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectVersion,
    StorageError,
    StoredObject,
    WriteConflictError,
)
from audit_pipeline.store.settings import S3Settings

RETRY_ATTEMPTS = 5
_SESSION_LOCK = threading.Lock()
_SHARED: boto3.session.Session | None = None
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NotFound"})
_LOCK_FIX = (
    "create the bucket with Object Lock enabled "
    "(aws s3api create-bucket --bucket {bucket} --object-lock-enabled-for-bucket, or "
    "enable it on a versioned bucket with aws s3api put-object-lock-configuration); "
    "the ledger never writes to a bucket that could let it delete or overwrite"
)


class ObjectLockUnreadableError(StorageError):
    """ObjectLockUnreadableError: the credentials (a reader's) may not read the bucket's
    Object Lock configuration; a writer must stop, a verifier says what it did not check."""


def s3_client(settings: S3Settings) -> Any:
    """s3_client builds a boto3 S3 client: path-style, standard retries, our credentials."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": RETRY_ATTEMPTS},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    with _SESSION_LOCK:
        return _session().client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=config,
        )


def _session() -> boto3.session.Session:
    """_session is the process's one boto3 session (as boto3's own default session is):
    building one parses botocore's service models and registers its handlers, a few
    hundred milliseconds that would otherwise be spent on every store opened. Its clients
    are thread-safe; creating them is not, so the caller holds ``_SESSION_LOCK``."""
    global _SHARED
    if _SHARED is None:
        core = botocore.session.Session()
        factory = core.get_component("response_parser_factory")
        factory.set_parser_defaults(timestamp_parser=_timestamp)
        _SHARED = boto3.session.Session(botocore_session=core)
    return _SHARED


def _timestamp(value: str) -> datetime:
    """_timestamp reads the ISO 8601 times of S3's XML without dateutil (botocore's default,
    most of the time of a year's version listing); other spellings (the HTTP dates of a
    HEAD) go to botocore's own parser."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sha256_hex_from_b64(value: str | None) -> str | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


class S3ObjectStore:
    """S3ObjectStore keeps a data directory under ``s3://bucket/prefix``, write-once."""

    def __init__(self, settings: S3Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.location = settings.location
        self.client = client if client is not None else s3_client(settings)

    @classmethod
    def open(cls, settings: S3Settings) -> S3ObjectStore:
        """open connects and refuses a bucket without Object Lock (ConfigurationError)."""
        store = cls(settings)
        store.check_object_lock()
        return store

    # -- start-up check -------------------------------------------------------------------

    def check_object_lock(self) -> None:
        """check_object_lock refuses a bucket whose Object Lock is not enabled."""
        bucket = self.location.bucket
        try:
            answer = self.client.get_object_lock_configuration(Bucket=bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in ("ObjectLockConfigurationNotFoundError", "InvalidRequest"):
                raise ConfigurationError(
                    f"bucket {bucket} does not have Object Lock enabled: "
                    + _LOCK_FIX.format(bucket=bucket)
                ) from None
            if code == "NoSuchBucket":
                raise ConfigurationError(
                    f"bucket {bucket} does not exist at {self.settings.endpoint_text}: "
                    + _LOCK_FIX.format(bucket=bucket)
                ) from None
            if code == "AccessDenied":
                raise ObjectLockUnreadableError(
                    f"these credentials may not read bucket {bucket}'s Object Lock configuration"
                ) from None
            raise self._error("GetObjectLockConfiguration", bucket, exc) from None
        except BotoCoreError as exc:
            raise self._error("GetObjectLockConfiguration", bucket, exc) from None
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise ConfigurationError(
                f"bucket {bucket} does not have Object Lock enabled: "
                + _LOCK_FIX.format(bucket=bucket)
            )

    # -- ObjectStore ----------------------------------------------------------------------

    def put_new(self, key: str, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).digest()
        now = datetime.now(UTC)
        retain_until = now + self.settings.retention
        full = self.location.key(key)
        try:
            answer = self.client.put_object(
                Bucket=self.location.bucket,
                Key=full,
                Body=data,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
                ObjectLockMode=COMPLIANCE,
                ObjectLockRetainUntilDate=retain_until,
            )
        except ClientError as exc:
            code = _code(exc)
            if code == "PreconditionFailed" or _status(exc) == 412:
                raise ObjectExistsError(f"{full} already exists") from None
            if code in ("ConditionalRequestConflict", "OperationAborted") or _status(exc) == 409:
                raise WriteConflictError(f"{full}: concurrent conditional write") from None
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                raise ChecksumRejectedError(f"{full}: the server received other bytes") from None
            raise self._error("PutObject", full, exc) from None
        except BotoCoreError as exc:
            raise self._error("PutObject", full, exc) from None
        version_id = answer.get("VersionId")
        if not version_id or version_id == "null":
            raise StorageError(
                f"{full}: the bucket returned no version id (is versioning suspended?)"
            )
        return StoredObject(
            key=key,
            version_id=version_id,
            size=len(data),
            sha256=digest.hex(),
            last_modified=now,
            lock_mode=COMPLIANCE,
            retain_until=retain_until,
        )

    def get(self, key: str, version_id: str | None = None) -> bytes:
        full = self.location.key(key)
        args = {"Bucket": self.location.bucket, "Key": full}
        if version_id is not None:
            args["VersionId"] = version_id
        try:
            return self.client.get_object(**args)["Body"].read()
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND or _status(exc) == 404:
                raise ObjectNotFoundError(_name(full, version_id) + " not found") from None
            raise self._error("GetObject", full, exc) from None
        except BotoCoreError as exc:
            raise self._error("GetObject", full, exc) from None

    def get_described(self, key: str) -> tuple[bytes, StoredObject]:
        """get_described returns the current version's bytes and the store's description of
        that same version (one GET: its headers carry the version id, the server's SHA-256
        and the retention), so a reader needs no HEAD beside it. Bytes that do not match
        the server's own checksum are still returned (HEAD, then GET of that version
        without checksum mode), for the verifier to hash and name."""
        full = self.location.key(key)
        args = {"Bucket": self.location.bucket, "Key": full, "ChecksumMode": "ENABLED"}
        try:
            answer = self.client.get_object(**args)
            data = answer["Body"].read()
        except FlexibleChecksumError:
            stored = self.head(key)
            if stored is None:
                raise ObjectNotFoundError(f"{full} not found") from None
            return self.get(key, stored.version_id), stored
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND or _status(exc) == 404:
                raise ObjectNotFoundError(f"{full} not found") from None
            raise self._error("GetObject", full, exc) from None
        except BotoCoreError as exc:
            raise self._error("GetObject", full, exc) from None
        return data, _described(key, answer)

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        full = self.location.key(key)
        args = {"Bucket": self.location.bucket, "Key": full, "ChecksumMode": "ENABLED"}
        if version_id is not None:
            args["VersionId"] = version_id
        try:
            answer = self.client.head_object(**args)
        except ClientError as exc:
            # a delete marker answers 404 (current) or 405 (by version id)
            if _code(exc) in _NOT_FOUND or _status(exc) in (404, 405):
                return None
            raise self._error("HeadObject", full, exc) from None
        except BotoCoreError as exc:
            raise self._error("HeadObject", full, exc) from None
        return _described(key, answer)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def list_keys(self, prefix: str) -> list[str]:
        keys = []
        for page in self._pages("list_objects_v2", prefix):
            keys.extend(self.location.rel(item["Key"]) for item in page.get("Contents", ()))
        return sorted(keys)

    def list_children(self, prefix: str, after: str | None = None) -> list[str]:
        """list_children names what lies right under ``prefix`` (a folder, ending in
        ``/``): its keys' next segments, one listing of S3's common prefixes rather than
        every key below; with ``after`` (a key), only names that sort after it
        (StartAfter: the listing starts there)."""
        names = set()
        marker = {} if after is None else {"StartAfter": self.location.key(after)}
        for page in self._pages("list_objects_v2", prefix, Delimiter="/", **marker):
            for item in page.get("Contents", ()):
                names.add(self.location.rel(item["Key"])[len(prefix) :])
            for item in page.get("CommonPrefixes", ()):
                names.add(self.location.rel(item["Prefix"])[len(prefix) :].rstrip("/"))
        if after is not None:  # a store that ignored the marker lists no more for it
            names = {n for n in names if prefix + n > after}
        return sorted(names)

    def list_versions(self, prefix: str, after: str | None = None) -> list[ObjectVersion]:
        """list_versions lists every version under ``prefix``; with ``after``, only those of
        keys that sort after it (S3's KeyMarker: the listing starts there)."""
        found = []
        marker = {} if after is None else {"KeyMarker": self.location.key(after)}
        for page in self._pages("list_object_versions", prefix, **marker):
            for item in page.get("Versions", ()):
                found.append(self._version(item, delete_marker=False))
            for item in page.get("DeleteMarkers", ()):
                found.append(self._version(item, delete_marker=True))
        if after is not None:  # a store that ignored the marker lists no more for it
            found = [v for v in found if v.key > after]
        return sorted(found, key=lambda v: (v.key, v.version_id))

    # -- helpers --------------------------------------------------------------------------

    def _pages(self, operation: str, prefix: str, **options: str):
        full = self.location.key(prefix)
        try:
            paginator = self.client.get_paginator(operation)
            yield from paginator.paginate(Bucket=self.location.bucket, Prefix=full, **options)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(operation, full, exc) from None

    def _version(self, item: dict, *, delete_marker: bool) -> ObjectVersion:
        return ObjectVersion(
            key=self.location.rel(item["Key"]),
            version_id=item.get("VersionId") or "null",
            is_latest=bool(item.get("IsLatest")),
            is_delete_marker=delete_marker,
            size=int(item.get("Size", 0)),
            last_modified=_utc(item.get("LastModified")),
        )

    def _error(self, operation: str, key: str, exc: Exception) -> StorageError:
        if isinstance(exc, ClientError):
            what = f"{_code(exc)} (HTTP {_status(exc)})"
        else:
            what = type(exc).__name__
        return StorageError(
            f"{operation} {self.location.bucket}/{key} at {self.settings.endpoint_text} "
            f"failed: {what}"
        )


def _described(key: str, answer: dict) -> StoredObject:
    """_described reads a HEAD's or GET's headers into the version's description."""
    return StoredObject(
        key=key,
        version_id=answer.get("VersionId") or "null",
        size=int(answer.get("ContentLength", 0)),
        sha256=sha256_hex_from_b64(answer.get("ChecksumSHA256")),
        last_modified=_utc(answer.get("LastModified")),
        lock_mode=answer.get("ObjectLockMode"),
        retain_until=_utc(answer.get("ObjectLockRetainUntilDate")),
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _name(key: str, version_id: str | None) -> str:
    return f"{key} (version {version_id})" if version_id else key


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
