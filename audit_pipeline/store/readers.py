"""Readers' view of an object-store data directory: pyarrow's S3 filesystem, for reading only.

pyarrow cannot send ``If-None-Match``, writes directory-marker objects without checksums
and uploads with trailer checksums, so it never writes to the ledger's bucket: the
pipeline writes through :class:`~audit_pipeline.store.s3.S3ObjectStore`. Give readers
(auditors, the dataset build) credentials that only allow reading as well; this factory
only turns off what pyarrow itself would create or delete.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as pads
from pyarrow import fs

from audit_pipeline.store.s3 import RETRY_ATTEMPTS
from audit_pipeline.store.settings import S3Settings


def reader_filesystem(settings: S3Settings) -> fs.S3FileSystem:
    """reader_filesystem opens the bucket through pyarrow: path-style, no bucket changes."""
    options: dict = {
        "allow_bucket_creation": False,
        "allow_bucket_deletion": False,
        "force_virtual_addressing": False,
        "background_writes": False,
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=RETRY_ATTEMPTS),
    }
    if settings.region:
        options["region"] = settings.region
    if settings.endpoint_url:
        parts = urlsplit(settings.endpoint_url)
        options["scheme"] = parts.scheme or "https"
        options["endpoint_override"] = parts.netloc.rpartition("@")[2]
    if settings.access_key_id and settings.secret_access_key:
        options["access_key"] = settings.access_key_id
        options["secret_key"] = settings.secret_access_key
    return fs.S3FileSystem(**options)


def object_path(settings: S3Settings, rel: str) -> str:
    """object_path is the ``bucket/key`` pyarrow names a data-directory file by."""
    return f"{settings.location.bucket}/{settings.location.key(rel)}"


def pinned_dataset(
    settings: S3Settings,
    files: Iterable[tuple[str, int]],
    schema: pa.Schema,
    filesystem: fs.S3FileSystem | None = None,
) -> pads.FileSystemDataset:
    """pinned_dataset is a Parquet dataset over exactly ``files`` (data-directory path, size).

    The list comes from verified manifests, never from a listing or a glob, so an object
    added beside them is not read; the sizes from the manifests spare a HEAD per file.
    DuckDB queries it through ``con.register(name, dataset)`` without its httpfs extension.
    """
    filesystem = filesystem or reader_filesystem(settings)
    parquet = pads.ParquetFileFormat()
    fragments = [
        parquet.make_fragment(object_path(settings, rel), filesystem, file_size=size)
        for rel, size in files
    ]
    return pads.FileSystemDataset(fragments, schema, parquet, filesystem)
