"""Where an object-store data directory lives: ``s3://BUCKET/PREFIX`` plus the AWS settings.

The standard variables configure it, as every AWS tool reads them: ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``) for a non-AWS server, ``AWS_REGION`` (or
``AWS_DEFAULT_REGION``), and credentials through boto3's own chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, instance roles). The one
project setting is ``AUDIT_RETENTION_DAYS``: how long Object Lock keeps every object in
COMPLIANCE mode. It has no default: a retention nobody chose is a surprise either way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from audit_pipeline.errors import ConfigurationError

SCHEME = "s3://"
RETENTION_ENV = "AUDIT_RETENTION_DAYS"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_s3_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


@dataclass(frozen=True)
class S3Location:
    """S3Location is a bucket and a key prefix (no leading or trailing slash, maybe empty)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """parse reads ``s3://BUCKET[/PREFIX]``; ConfigurationError names what is wrong."""
        if not is_s3_url(url):
            raise ConfigurationError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[len(SCHEME) :].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ConfigurationError(
                f"not a valid S3 bucket name in {url!r}: 3-63 characters of a-z, 0-9, '.', '-'"
            )
        prefix = prefix.strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ConfigurationError(f"not a clean key prefix in {url!r}")
        return cls(bucket, prefix)

    def key(self, rel: str) -> str:
        """key maps a data-directory path (``ledger/manifests/...``) to the bucket's key."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rel(self, key: str) -> str:
        """rel is the inverse of :meth:`key`."""
        if not self.prefix:
            return key
        head = self.prefix + "/"
        if not key.startswith(head):
            raise ValueError(f"{key!r} is outside {self}")
        return key[len(head) :]

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else SCHEME + self.bucket


@dataclass(frozen=True)
class S3Settings:
    """S3Settings is everything needed to open the store; credentials never print."""

    location: S3Location
    retention: timedelta
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, url: str, environ: Mapping[str, str] | None = None) -> S3Settings:
        """from_env reads the standard AWS settings and ``AUDIT_RETENTION_DAYS``.

        Credentials are left to boto3's chain (None here) unless set in ``environ``.
        """
        env = os.environ if environ is None else environ
        return cls(
            location=S3Location.parse(url),
            retention=retention_from_env(env),
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        )

    @property
    def endpoint_text(self) -> str:
        """endpoint_text is the endpoint for messages: scheme, host and port, no userinfo."""
        if not self.endpoint_url:
            return "AWS S3"
        parts = urlsplit(self.endpoint_url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def retention_from_env(env: Mapping[str, str]) -> timedelta:
    """retention_from_env parses the required ``AUDIT_RETENTION_DAYS`` (a positive integer)."""
    raw = env.get(RETENTION_ENV, "").strip()
    if not raw:
        raise ConfigurationError(
            f"{RETENTION_ENV} is required for an s3:// data directory: the number of days "
            "Object Lock keeps every object in COMPLIANCE mode (nobody, not even the bucket "
            "owner, can delete it before then), e.g. 2557 for seven years"
        )
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{RETENTION_ENV} must be a whole number of days >= 1")
    return timedelta(days=int(raw))
