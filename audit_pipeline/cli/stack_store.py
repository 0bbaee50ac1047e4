"""Where ``audit-pipeline stack`` keeps its data: the local demo directory, or SeaweedFS.

``--store seaweedfs`` runs the production shape of storage too: a ``weed mini`` on loopback
(``store/seaweedfs.py``) with an Object Lock bucket, the data directory ``s3://`` in it,
and the standard AWS settings handed to every process of the stack. The signing key and
the keys the instance trusts stay beside the instance (``$DAGSTER_HOME``), never in the
bucket. SeaweedFS keeps its data under ``$DAGSTER_HOME/seaweedfs`` across restarts; its
access keys are new on every start.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from audit_pipeline.cli.dev import TRUSTED_KEYS_FILE
from audit_pipeline.cli.sync import DEMO_KEY_FILE, prepare_demo_data_dir

STORES = ("local", "seaweedfs")
BUCKET = "audit-pipeline"
PREFIX = "demo"
REGION = "us-east-1"
KEY_NAME = "audit-pipeline-stack"


@dataclass(frozen=True)
class StackStore:
    """StackStore is the data directory the stack's processes use and how they reach it."""

    data_dir: str  # a local path or an s3:// URL
    key_path: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # holds a secret


@contextlib.contextmanager
def stack_store(
    kind: str, *, data_dir: Path, home: Path, environ: Mapping[str, str], now: float
) -> Iterator[StackStore]:
    """stack_store prepares the data directory ``kind`` names for as long as the stack runs."""
    if kind == "local":
        prepare_demo_data_dir(data_dir, now=now)
        yield StackStore(str(data_dir), data_dir / DEMO_KEY_FILE)
        return
    with seaweedfs_store(home, environ) as store:
        yield store


@contextlib.contextmanager
def seaweedfs_store(home: Path, environ: Mapping[str, str]) -> Iterator[StackStore]:
    """seaweedfs_store starts SeaweedFS with an Object Lock bucket and a keyring trusting the
    stack's signing key; ``AUDIT_RETENTION_DAYS`` is required (checked before anything
    starts), as for every s3:// data directory."""
    from botocore.exceptions import ClientError

    from audit_pipeline.dataset.seal import DATASET_ENV
    from audit_pipeline.ledger.keys import create_signing_key, load_signing_key
    from audit_pipeline.store.ledger import init_keyring, keyring_of
    from audit_pipeline.store.s3 import S3ObjectStore, s3_client
    from audit_pipeline.store.seaweedfs import create_lock_bucket, start_seaweed
    from audit_pipeline.store.settings import RETENTION_ENV, S3Settings, retention_from_env

    url = f"s3://{BUCKET}/{PREFIX}"
    retention_from_env(environ)
    server = start_seaweed(home / "seaweedfs")
    try:
        env = {
            "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": server.pipeline.access_key_id,
            "AWS_SECRET_ACCESS_KEY": server.pipeline.secret_access_key,
            "AWS_REGION": REGION,
            RETENTION_ENV: environ[RETENTION_ENV].strip(),
            # the dataset of an s3:// log is a local file, built from a verified local copy
            DATASET_ENV: environ.get(DATASET_ENV) or str(home / "audit.duckdb"),
        }
        settings = S3Settings.from_env(url, env)
        try:
            create_lock_bucket(s3_client(settings), BUCKET)
        except ClientError as exc:  # a restart: the bucket is kept under $DAGSTER_HOME
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        store = S3ObjectStore.open(settings)  # refuses a bucket without Object Lock
        key_path = home / "signing-key"
        signer = (
            load_signing_key(key_path)
            if key_path.exists()
            else create_signing_key(key_path, KEY_NAME)
        )
        init_keyring(settings, signer, now=int(time.time()))
        trusted = home / TRUSTED_KEYS_FILE
        if not trusted.exists():  # trust on first use, as for the local demo
            trusted.write_bytes(keyring_of(store).to_bytes())
        yield StackStore(url, key_path, env)
    finally:
        server.stop()
