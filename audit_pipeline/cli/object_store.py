"""``s3://`` data directories on the command line: which commands take one, and verify's.

The commands of :data:`COMMANDS_ON_OBJECT_STORE` work on an object-store data directory;
every other command that takes a data directory refuses an ``s3://`` one (``--data-dir``
or ``$AUDIT_DATA_DIR``) with one line and exit code 2 before it does anything, rather
than reading ``s3:`` as a local relative path. ``keys rotate`` and ``keys revoke`` say
what to do instead: they rewrite the keyring, which the bucket holds once and for ever.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from audit_pipeline.cli.errors import command_name
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.layout import DATA_DIR_ENV, format_hour, is_object_store_url

COMMANDS_ON_OBJECT_STORE = frozenset(
    {"verify", "sync", "keys init", "checkpoint", "prove", "dataset build", "export-evidence"}
    | {"report", "query", "keys list", "keys public", "keys restart-signer"}
)

_WIRED = (
    "'verify', 'sync', 'checkpoint', 'prove', 'dataset build', 'query', 'export-evidence', "
    "'report' and 'keys init|list|public|restart-signer'"
)
# a keyring change rewrites ledger/keys/keyring.json, which a bucket under Object Lock
# holds once: what to do instead
_KEYRING_ONCE = (
    "{name} rewrites the keyring, and the keyring in {url} is created once and can never be "
    "replaced (Object Lock). Instead: to stop trusting a key, give verifiers a keys file "
    "outside the bucket that ends or revokes it (verify --trusted-keys FILE, made with "
    "'keys {action}' on a local copy of the keyring); to sign with a new key, start a new "
    "log under another prefix ('keys init --data-dir s3://BUCKET/NEW-PREFIX'); the old one "
    "stays verifiable with its own keyring"
)

Command = Callable[[argparse.Namespace], int | None]


def object_store_arg(data_dir: str | None) -> str | None:
    """object_store_arg: the ``s3://`` data directory of ``--data-dir`` or
    ``$AUDIT_DATA_DIR``, if that is one."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    return str(chosen) if is_object_store_url(chosen) else None


def object_store_url(args: argparse.Namespace) -> str | None:
    """object_store_url is the ``s3://`` data directory a command was given, if any."""
    if not hasattr(args, "data_dir"):
        return None
    chosen = getattr(args, "location", None) or args.data_dir or os.environ.get(DATA_DIR_ENV)
    return str(chosen) if is_object_store_url(chosen) else None


def refuse_unwired(func: Command) -> Command:
    """refuse_unwired wraps a command so it refuses an ``s3://`` data directory unless it
    is one of :data:`COMMANDS_ON_OBJECT_STORE`."""

    def guarded(args: argparse.Namespace) -> int | None:
        url = object_store_url(args)
        name = command_name(args)
        if url is not None and name in ("keys rotate", "keys revoke"):
            action = name.split()[1]
            raise ConfigurationError(_KEYRING_ONCE.format(name=name, url=url, action=action))
        if url is not None and name not in COMMANDS_ON_OBJECT_STORE:
            raise ConfigurationError(
                f"{name} does not work on an object-store data directory ({url}) yet: only "
                f"{_WIRED} do; give a local --data-dir"
            )
        return func(args)

    return guarded


def verify_on_object_store(args: argparse.Namespace, url: str, options: dict[str, Any]) -> int:
    """verify_on_object_store runs ``verify`` on an ``s3://`` data directory: the ledger's
    checks on the current versions, then the version audit (exit 1 on any finding)."""
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.store.settings import S3Settings
    from audit_pipeline.store.verification import verify_object_store

    settings = S3Settings.from_env(url)
    report = verify_object_store(settings, file_format=PARQUET_FORMAT, **options)
    if report.data_range is not None:
        start, end = report.data_range
        _err(f"data range {format_hour(start)}..{format_hour(end)} from --range")
    _err(report.summary())
    if not args.no_record:
        _err(
            "not recorded in a verification history: the pipeline writes nothing but ledger "
            "records to an object-store data directory"
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    return 0 if report.ok else 1


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def object_store_ledger(url: str, *, origin: str | None) -> Any:
    """object_store_ledger opens an ``s3://`` data directory for a sync: the signing key and
    its signer state from their local places, the store checked (Object Lock, a keyring
    trusting the key) before any API call. Witness rounds create their records there
    (``witness/records.py``)."""
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.ledger.keys import default_signing_key_path, load_signing_key
    from audit_pipeline.ledger.signer_state import signer_state_path
    from audit_pipeline.store.ledger import open_ledger
    from audit_pipeline.store.settings import S3Settings

    settings = S3Settings.from_env(url)
    key_path = default_signing_key_path()
    signer = load_signing_key(key_path)
    return open_ledger(
        settings,
        file_format=PARQUET_FORMAT,
        signer=signer,
        key_path=key_path,
        signer_state=signer_state_path(key_path),
        origin=origin,
    )


def init_object_store_key(url: str, key_path: Any, *, name: str) -> int:
    """init_object_store_key creates the signing key locally (if absent) and the store's
    keyring trusting it; the private key never leaves this machine."""
    import time

    from audit_pipeline.ledger.keys import create_signing_key, load_signing_key
    from audit_pipeline.store.ledger import init_keyring
    from audit_pipeline.store.s3 import S3ObjectStore
    from audit_pipeline.store.settings import S3Settings

    settings = S3Settings.from_env(url)
    S3ObjectStore.open(settings)  # Object Lock first: no key is made for a store refused
    created = not key_path.exists()
    signer = create_signing_key(key_path, name) if created else load_signing_key(key_path)
    added = init_keyring(settings, signer, now=int(time.time()))
    _err(
        f"{'created' if created else 'using existing'} signing key {key_path} (mode 0600; "
        "it stays on this machine, never in the bucket)"
    )
    _err(f"{'created' if added else 'already in'} the keyring {url}/ledger/keys/keyring.json")
    print(signer.vkey)
    return 0


def object_store_reader(url: str) -> Any:
    """object_store_reader opens an ``s3://`` data directory for reading (``checkpoint``,
    ``prove``): what it reads is checked against the signed checkpoint, not trusted."""
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.store.ledger import reading_ledger
    from audit_pipeline.store.settings import S3Settings

    return reading_ledger(S3Settings.from_env(url), file_format=PARQUET_FORMAT)


def object_store_keyring(url: str) -> tuple[Any, int]:
    """object_store_keyring reads the store's keyring and the log's size (the number of
    manifests), as ``keys list|public`` show them; reader credentials suffice."""
    from audit_pipeline.ledger.commit_point import manifest_numbers
    from audit_pipeline.store.ledger import keyring_of
    from audit_pipeline.store.s3 import S3ObjectStore
    from audit_pipeline.store.settings import S3Settings

    store = S3ObjectStore(S3Settings.from_env(url))
    keyring = keyring_of(store)
    if keyring is None:
        raise ConfigurationError(
            f"no keyring in {url}: run 'audit-pipeline keys init --data-dir {url}' first"
        )
    return keyring, len(manifest_numbers(store))


def object_store_checkpoint(url: str) -> bytes | None:
    """object_store_checkpoint is the store's newest checkpoint after checking its
    signature against the store's keyring (None: no checkpoint yet)."""
    from audit_pipeline.ledger.checkpoint import open_checkpoint

    keyring, _ = object_store_keyring(url)
    latest = object_store_reader(url).latest_checkpoint()
    if latest is not None:
        open_checkpoint(latest, keyring.verifiers())
    return latest


def dataset_of_object_store(url: str, database: str | None) -> tuple[Any, Any]:
    """dataset_of_object_store is the local dataset of an ``s3://`` data directory and the
    verified local copy it was built from (None if there is none), for ``query``."""
    from pathlib import Path

    from audit_pipeline.dataset.seal import DATASET_ENV
    from audit_pipeline.store.local_copy import local_copy_path

    database = database or os.environ.get(DATASET_ENV)
    if not database:
        raise ConfigurationError(
            f"give --database FILE (or {DATASET_ENV}): the dataset of {url} is a local file, "
            "made by 'dataset build --data-dir URL --database FILE'"
        )
    path = Path(database).expanduser()
    copy = local_copy_path(path)
    return path, copy if copy.is_dir() else None


def local_copy_for_dataset(
    url: str, database: str | None, keyring: Any, trusted_checkpoint: bytes | None
) -> Any:
    """local_copy_for_dataset verifies the ``s3://`` ledger with its versions, then brings
    the local copy the dataset is built from up to date and returns its path (the build
    verifies that copy again, hashing every data file it loads)."""
    from pathlib import Path

    from audit_pipeline.dataset.build import DATASET_ENV
    from audit_pipeline.store.local_copy import local_copy_path

    database = database or os.environ.get(DATASET_ENV)
    if not database:
        raise ConfigurationError(
            f"give --database FILE (or {DATASET_ENV}) for a dataset of {url}: it is built "
            "locally, with a verified local copy of the ledger beside it"
        )
    return verified_local_copy(
        url, local_copy_path(Path(database).expanduser()), keyring, trusted_checkpoint
    )


def verified_local_copy(
    url: str, target: Any, keyring: Any, trusted_checkpoint: bytes | None
) -> Any:
    """verified_local_copy verifies the ``s3://`` ledger with its versions (integrity
    findings: DatasetIntegrityError, exit 1) and brings the local copy at ``target`` up to
    date; whoever reads the copy verifies it again (a cache, never trusted for being
    there)."""
    from audit_pipeline.dataset.build import DatasetIntegrityError
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.store.local_copy import copy_ledger
    from audit_pipeline.store.settings import S3Settings
    from audit_pipeline.store.verification import verify_object_store

    settings = S3Settings.from_env(url)
    report = verify_object_store(
        settings, file_format=PARQUET_FORMAT, keyring=keyring, trusted_checkpoint=trusted_checkpoint
    )
    if not report.intact:
        raise DatasetIntegrityError(
            f"the ledger in {url} did not verify ({len(report.integrity_findings)} findings); "
            "nothing made from it. Run 'audit-pipeline verify --data-dir URL' for the report."
        )
    fetched = copy_ledger(settings, target)
    _err(f"{url}: verified with its versions; local copy {target} ({fetched} objects fetched)")
    return target
