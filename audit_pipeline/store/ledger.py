"""Opening an ``s3://`` data directory for committing: the store, its keyring, local state.

The bucket holds the ledger's records and the public keyring; everything secret or
mutable per committer stays on its machine: the signing key, the signer state beside it,
and the pages kept after a failed hour (under ``<key dir>/object-store/<bucket>/<prefix>``,
named in the sync report), because the bucket only takes records it can keep forever.
"""

from __future__ import annotations

import time
from pathlib import Path

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.events import BatchFileFormat
from audit_pipeline.ledger.keys import Keyring, KeyStatus, TrustedKey, key_id
from audit_pipeline.ledger.layout import KEYRING, MANIFESTS
from audit_pipeline.ledger.note import Signer
from audit_pipeline.ledger.object_ledger import ObjectStoreLedger
from audit_pipeline.ledger.storage import ObjectExistsError, ObjectNotFoundError
from audit_pipeline.store.data_dir import S3DataDirectory
from audit_pipeline.store.s3 import S3ObjectStore
from audit_pipeline.store.settings import S3Settings


def local_dir_for(settings: S3Settings, key_path: Path) -> Path:
    """local_dir_for is the committer's local directory for this store (beside the key)."""
    location = settings.location
    return Path(key_path).parent / "object-store" / location.bucket / (location.prefix or "_")


def keyring_of(store: S3ObjectStore) -> Keyring | None:
    try:
        raw = store.get(KEYRING)
    except ObjectNotFoundError:
        return None
    return Keyring.from_bytes(raw, source=f"{store.location}/{KEYRING}")


def open_ledger(
    settings: S3Settings,
    *,
    file_format: BatchFileFormat,
    signer: Signer,
    key_path: Path,
    signer_state: Path,
    origin: str | None = None,
) -> ObjectStoreLedger:
    """open_ledger checks what a commit needs (Object Lock, a keyring trusting the key now)
    before any API call, and returns the ledger committing to the store."""
    store = S3ObjectStore.open(settings)
    where = str(settings.location)
    keyring = keyring_of(store)
    if keyring is None:
        raise ConfigurationError(
            f"no keyring at {where}/{KEYRING}: run 'audit-pipeline keys init --data-dir "
            f"{where}' first (it creates the signing key and trusts it)"
        )
    status = keyring.status(signer.name, signer.key_hash, int(time.time()))
    if status is not KeyStatus.VALID:
        raise ConfigurationError(
            f"signing key {signer.name}+{key_id(signer.key_hash)} is {status.value} in the "
            f"keyring {where}/{KEYRING}"
        )
    return ObjectStoreLedger(
        store,
        S3DataDirectory(store),
        location=where,
        local_dir=local_dir_for(settings, key_path),
        file_format=file_format,
        signer=signer,
        origin=origin,
        signer_state=signer_state,
    )


def reading_ledger(settings: S3Settings, *, file_format: BatchFileFormat) -> ObjectStoreLedger:
    """reading_ledger reads the ledger under ``settings.location`` (no key: it cannot
    commit); reader credentials suffice."""
    store = S3ObjectStore(settings)
    files = S3DataDirectory(store)
    return ObjectStoreLedger(
        store,
        files,
        location=str(settings.location),
        local_dir=files.cache_dir,
        file_format=file_format,
    )


def init_keyring(settings: S3Settings, signer: Signer, *, now: int) -> bool:
    """init_keyring creates the store's keyring trusting ``signer`` from now (a
    self-signed entry); True if it did, False if the keyring trusts the key already.

    The keyring is created once, like every object in the bucket: adding, rotating or
    revoking keys in an existing one is refused here (not supported on an object store
    yet), never done by overwriting it.
    """
    store = S3ObjectStore.open(settings)
    where = f"{settings.location}/{KEYRING}"
    keyring = keyring_of(store)
    if keyring is None:
        size = len(store.list_keys(f"{MANIFESTS}/"))
        entry = TrustedKey.from_vkey(signer.vkey, valid_from=now, valid_from_size=size).signed_by(
            signer
        )
        try:
            store.put_new(KEYRING, Keyring(source=where).with_key(entry).to_bytes())
            return True
        except ObjectExistsError:
            keyring = keyring_of(store)
    if keyring is not None and keyring.find(signer.name, signer.key_hash) is not None:
        return False
    raise ConfigurationError(
        f"the keyring {where} exists and does not trust signing key "
        f"{signer.name}+{key_id(signer.key_hash)}; changing a keyring on an object store "
        "is not supported yet: use the key it trusts"
    )
