"""The tamper-evident ledger: signed, hash-linked batch manifests in an RFC 6962 log.

Layers inside: ``merkle``, ``canonical``, ``note`` and ``checkpoint`` are the primitives;
``events`` (the seam to the lake's file format), ``layout`` (data directory and storage),
``keys``, ``manifest``, ``commit`` (:class:`Ledger`), ``verify`` (:func:`verify_ledger`)
and ``proofs`` (:func:`prove_event` / :func:`verify_event_proof`) build on them. Only the
standard library, ``cryptography`` and ``orjson`` are used. The on-disk formats are in
``FORMAT.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit_pipeline.ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from audit_pipeline.ledger.commit import (
    DEFAULT_ORIGIN,
    CommitError,
    CommitResult,
    Ledger,
    LedgerStateError,
)
from audit_pipeline.ledger.errors import (
    InvalidProofError,
    InvalidSignatureError,
    LedgerError,
    MalformedError,
    RootMismatchError,
    UnknownKeyError,
)
from audit_pipeline.ledger.events import BatchFileFormat, EventRecord, events_root
from audit_pipeline.ledger.keys import (
    Keyring,
    KeyStatus,
    TrustedKey,
    default_signing_key_path,
    load_keyring,
    load_signing_key,
    load_trusted_keys,
)
from audit_pipeline.ledger.layout import HOUR, batch_data_path, resolve_data_dir
from audit_pipeline.ledger.manifest import Manifest, SignedManifest, parse_manifest
from audit_pipeline.ledger.note import Signer, Verifier, Verifiers
from audit_pipeline.ledger.proofs import (
    EventNotFoundError,
    VerifiedEvent,
    prove_event,
    verify_event_proof,
)
from audit_pipeline.ledger.signer_state import (
    SignerRefusal,
    SignerState,
    load_signer_state,
    signer_state_path,
)

if TYPE_CHECKING:
    from audit_pipeline.ledger.verify import (
        Finding,
        FindingCode,
        Notice,
        VerificationIncompleteError,
        VerifyReport,
        verify_ledger,
    )

# The verifier is imported when first used: proving or committing does not pay for it.
_VERIFY = {
    "Finding",
    "FindingCode",
    "Notice",
    "VerificationIncompleteError",
    "VerifyReport",
    "verify_ledger",
}


def __getattr__(name: str) -> Any:
    if name in _VERIFY:
        from audit_pipeline.ledger import verify

        return getattr(verify, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ORIGIN",
    "HOUR",
    "BatchFileFormat",
    "Checkpoint",
    "CommitError",
    "CommitResult",
    "EventNotFoundError",
    "EventRecord",
    "Finding",
    "FindingCode",
    "InvalidProofError",
    "InvalidSignatureError",
    "KeyStatus",
    "Keyring",
    "Ledger",
    "LedgerError",
    "LedgerStateError",
    "MalformedError",
    "Manifest",
    "Notice",
    "RootMismatchError",
    "SignedManifest",
    "Signer",
    "SignerRefusal",
    "SignerState",
    "TrustedKey",
    "UnknownKeyError",
    "VerificationIncompleteError",
    "VerifiedEvent",
    "Verifier",
    "Verifiers",
    "VerifyReport",
    "batch_data_path",
    "default_signing_key_path",
    "events_root",
    "load_keyring",
    "load_signer_state",
    "load_signing_key",
    "load_trusted_keys",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_manifest",
    "prove_event",
    "resolve_data_dir",
    "signer_state_path",
    "verify_event_proof",
    "verify_ledger",
]
