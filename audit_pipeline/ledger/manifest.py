"""Batch manifests: the signed, hash-linked record of what one commit added.

A manifest file ``ledger/manifests/<seq>.json`` is canonical JSON (UTF-8, keys sorted by
code point, no whitespace; see ``canonical.py``) of an envelope::

    {"signatures":[{"key_id":"<hex8>","name":"<key name>","sig":"<base64, 64 bytes>"}],
     "signed":{<payload>}}

and the payload (``format`` audit_pipeline.manifest/v2; v1 is still read and verified)
holds every field a verifier needs, all inside the signed bytes::

    {"algorithms":{"canonicalization":"canonical-json/v1","file_hash":"sha256",
                   "merkle":"rfc6962-sha256","signature":"ed25519"},
     "created":1735693205,                       # Unix seconds, signing time
     "data":{"path":"lake/date=2025-01-01/hour=00/00000000-hour.parquet",
             "rows":2,"sha256":"<hex>","size":5123}   # null for kind "empty"
     "events":{"count":2,"max_date_create":1735690000,"merkle_root":"<hex>",
               "min_date_create":1735689700}        # min/max null when count is 0
     "format":"audit_pipeline.manifest/v2",
     "key":{"key_id":"<hex8>","name":"audit-pipeline"},
     "kind":"hour",                              # "hour" | "late" | "empty"
     "origin":"audit-pipeline/ledger",           # the log's name, as in its checkpoints
     "prev_manifest_sha256":"<hex>",             # SHA-256 of manifest seq-1's file bytes
     "run_id":"...", "sequence":0,
     "source":{"api_url":"...","oldest":...,"latest":...,"pages":...},
     "window":{"end":1735693200,"start":1735689600}}   # [start, end), one UTC hour

The signature is Ed25519 over ``<format> || 0x00 || canonical payload`` (the NUL context
keeps it from ever being a valid signed-note signature). The genesis manifest (sequence 0)
links to 32 zero bytes. The manifest's leaf in the log tree is
``leaf_hash(exact file bytes)``; verifiers hash what is on disk, never a re-serialization.

On an object store the payload may also carry ``"data_version_id":"<the data object's
VersionId>"`` (top level, beside ``data``; absent for local ledgers, for batches without
data and in manifests written before it existed): the version the create-only put of the
data object returned, which the verifier audits the store against. Earlier readers keep
it as an unknown signed field, so it needs no new ``format``.

Compatibility: readers refuse envelopes that are not canonical, have duplicate keys, extra
envelope fields (they would be unsigned), or algorithm names outside the allow-list.
Unknown payload fields are kept and round-tripped (they are signed); a change old readers
must not accept gets a new ``format``. v2 has v1's fields; what changed is the meaning a
v1 reader would get wrong: the signing key's validity is judged by the manifest's position
in the log (its sequence number against the keyring's tree-size windows), never by the
``created`` time the signer chose, so a v1 reader must not accept v2 manifests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.canonical import canonical_json, canonical_json_parsed, parse_canonical
from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.keys import Keyring, KeyStatus, key_id
from audit_pipeline.ledger.note import Signer

MANIFEST_FORMAT_V1 = "audit_pipeline.manifest/v1"
MANIFEST_FORMAT = "audit_pipeline.manifest/v2"
MANIFEST_FORMATS = (MANIFEST_FORMAT_V1, MANIFEST_FORMAT)
SIGNING_CONTEXT = MANIFEST_FORMAT.encode() + b"\x00"
ALGORITHMS: Mapping[str, str] = {
    "canonicalization": "canonical-json/v1",
    "file_hash": "sha256",
    "merkle": "rfc6962-sha256",
    "signature": "ed25519",
}
KINDS = ("hour", "late", "empty")
# ``source.name`` (optional) says which API a batch came from; absent means the audit logs.
AUDIT_LOGS_SOURCE = "slack_audit_logs"
SOURCE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
GENESIS_PREV = "00" * 32
BAD_SIGNATURE = "bad_signature"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX8 = re.compile(r"^[0-9a-f]{8}$")
# an S3 VersionId: printable ASCII, at most 1024 bytes; "null" is what an unversioned
# write gets, never a create-only put under Object Lock
_VERSION_ID = re.compile(r"^[\x21-\x7e]{1,1024}$")
DATA_VERSION_ID = "data_version_id"
_FIELDS = (
    "algorithms",
    "created",
    "data",
    "events",
    "format",
    "key",
    "kind",
    "origin",
    "prev_manifest_sha256",
    "run_id",
    "sequence",
    "source",
    "window",
)


class UnsupportedAlgorithmError(MalformedError):
    """A manifest names an algorithm outside the allow-list."""


@dataclass(frozen=True)
class DataFile:
    """DataFile pins one batch data file: where it is and exactly what it holds."""

    path: str
    size: int
    sha256: str
    rows: int


@dataclass(frozen=True)
class Manifest:
    """Manifest is the signed payload of one batch (see the module docstring)."""

    origin: str
    sequence: int
    prev_manifest_sha256: str
    window_start: int
    window_end: int
    kind: str
    data: DataFile | None
    event_count: int
    min_date_create: int | None
    max_date_create: int | None
    events_root: str
    source: Mapping[str, Any]
    run_id: str
    created: int
    key_name: str
    key_id: str
    algorithms: Mapping[str, str] = field(default_factory=lambda: dict(ALGORITHMS))
    unrecognized_fields: Mapping[str, Any] = field(default_factory=dict)
    format: str = MANIFEST_FORMAT
    data_version_id: str | None = None  # the data object's VersionId on an object store

    def to_dict(self) -> dict[str, Any]:
        data = None
        if self.data is not None:
            data = {
                "path": self.data.path,
                "rows": self.data.rows,
                "sha256": self.data.sha256,
                "size": self.data.size,
            }
        pin = {} if self.data_version_id is None else {DATA_VERSION_ID: self.data_version_id}
        return {
            **self.unrecognized_fields,
            **pin,
            "algorithms": dict(self.algorithms),
            "created": self.created,
            "data": data,
            "events": {
                "count": self.event_count,
                "max_date_create": self.max_date_create,
                "merkle_root": self.events_root,
                "min_date_create": self.min_date_create,
            },
            "format": self.format,
            "key": {"key_id": self.key_id, "name": self.key_name},
            "kind": self.kind,
            "origin": self.origin,
            "prev_manifest_sha256": self.prev_manifest_sha256,
            "run_id": self.run_id,
            "sequence": self.sequence,
            "source": dict(self.source),
            "window": {"end": self.window_end, "start": self.window_start},
        }

    @property
    def signed_bytes(self) -> bytes:
        """signed_bytes is the exact message the signature covers."""
        return self.format.encode() + b"\x00" + canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, payload: Any) -> Manifest:
        """from_dict validates a payload; MalformedError names the first bad field."""
        d = _obj(payload, "signed", set(), required=False)
        missing = [f for f in _FIELDS if f not in d]
        if missing:
            raise MalformedError(f"manifest payload lacks {', '.join(missing)}")
        if d["format"] not in MANIFEST_FORMATS:
            raise MalformedError(f"unsupported manifest format {d['format']!r}")
        algorithms = _obj(d["algorithms"], "algorithms", set(ALGORITHMS))
        for name, value in algorithms.items():
            if value != ALGORITHMS[name]:
                raise UnsupportedAlgorithmError(
                    f"algorithms.{name} is {value!r}; only {ALGORITHMS[name]!r} is accepted"
                )
        window = _obj(d["window"], "window", {"start", "end"})
        events = _obj(
            d["events"], "events", {"count", "max_date_create", "merkle_root", "min_date_create"}
        )
        key = _obj(d["key"], "key", {"key_id", "name"})
        data = None
        if d["data"] is not None:
            f = _obj(d["data"], "data", {"path", "rows", "sha256", "size"})
            data = DataFile(
                path=_str(f["path"], "data.path"),
                size=_int(f["size"], "data.size"),
                sha256=_hex64(f["sha256"], "data.sha256"),
                rows=_int(f["rows"], "data.rows"),
            )
        version_id = d.get(DATA_VERSION_ID)
        if DATA_VERSION_ID in d:
            if data is None:
                raise MalformedError(f"{DATA_VERSION_ID} without a data file")
            if not isinstance(version_id, str) or not _VERSION_ID.match(version_id):
                raise MalformedError(f"{DATA_VERSION_ID} is not a version id: {version_id!r}")
            if version_id == "null":
                raise MalformedError(f"{DATA_VERSION_ID} is 'null' (an unversioned write)")
        if d["kind"] not in KINDS:
            raise MalformedError(f"kind {d['kind']!r} is not one of {', '.join(KINDS)}")
        source = d["source"]
        if not isinstance(source, Mapping):
            raise MalformedError("source is not an object")
        check_no_floats(source, "source")
        if "name" in source and (
            not isinstance(source["name"], str) or not SOURCE_NAME_PATTERN.match(source["name"])
        ):
            raise MalformedError(f"source.name {source['name']!r} is not a source name")
        return cls(
            origin=_str(d["origin"], "origin"),
            sequence=_int(d["sequence"], "sequence"),
            prev_manifest_sha256=_hex64(d["prev_manifest_sha256"], "prev_manifest_sha256"),
            window_start=_int(window["start"], "window.start"),
            window_end=_int(window["end"], "window.end"),
            kind=d["kind"],
            data=data,
            event_count=_int(events["count"], "events.count"),
            min_date_create=_opt_int(events["min_date_create"], "events.min_date_create"),
            max_date_create=_opt_int(events["max_date_create"], "events.max_date_create"),
            events_root=_hex64(events["merkle_root"], "events.merkle_root"),
            source=dict(source),
            run_id=_str(d["run_id"], "run_id"),
            created=_int(d["created"], "created"),
            key_name=_str(key["name"], "key.name"),
            key_id=_hex8(key["key_id"], "key.key_id"),
            algorithms=dict(algorithms),
            unrecognized_fields={
                k: v for k, v in d.items() if k not in _FIELDS and k != DATA_VERSION_ID
            },
            format=d["format"],
            data_version_id=version_id,
        )


def source_name(manifest: Manifest) -> str:
    """source_name is the API a batch came from (``source.name``; the audit logs if absent).

    Hours, kinds and event ids are per source: each source has its own ``hour``/``empty``
    batch of an hour and its own ``late`` batches."""
    name = manifest.source.get("name")
    return name if isinstance(name, str) and name else AUDIT_LOGS_SOURCE


@dataclass(frozen=True)
class ManifestSignature:
    name: str
    key_id: str
    sig: bytes

    @property
    def key_hash(self) -> int:
        return int(self.key_id, 16)


@dataclass(frozen=True)
class SignedManifest:
    """SignedManifest is the envelope as stored: payload, signature and the exact bytes."""

    manifest: Manifest
    signature: ManifestSignature
    raw: bytes = field(repr=False)
    # the payload's canonical bytes as stored (``parse_manifest`` slices them from ``raw``)
    payload: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def signed_bytes(self) -> bytes:
        """signed_bytes is the message the signature covers: the payload as stored when
        parsed (canonical, so the same bytes as re-encoding the manifest), else re-encoded."""
        if self.payload is None:
            return self.manifest.signed_bytes
        return self.manifest.format.encode() + b"\x00" + self.payload

    @property
    def sequence(self) -> int:
        return self.manifest.sequence

    @property
    def sha256(self) -> str:
        """sha256 is the hex digest the next manifest's ``prev_manifest_sha256`` must carry."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def leaf_hash(self) -> bytes:
        """leaf_hash is this manifest's RFC 6962 leaf in the log tree."""
        return merkle.leaf_hash(self.raw)

    def to_dict(self) -> dict[str, Any]:
        return parse_canonical(self.raw)


def sign_manifest(manifest: Manifest, signer: Signer) -> SignedManifest:
    """sign_manifest signs the payload and returns the envelope with its canonical bytes."""
    if (manifest.key_name, manifest.key_id) != (signer.name, key_id(signer.key_hash)):
        raise ValueError("manifest key fields do not name the signer")
    sig = signer.sign(manifest.signed_bytes)
    envelope = {
        "signatures": [
            {
                "key_id": manifest.key_id,
                "name": manifest.key_name,
                "sig": base64.b64encode(sig).decode(),
            },
        ],
        "signed": manifest.to_dict(),
    }
    raw = canonical_json(envelope)
    return SignedManifest(manifest, ManifestSignature(signer.name, manifest.key_id, sig), raw)


def parse_manifest(raw: bytes) -> SignedManifest:
    """parse_manifest reads exact manifest bytes; MalformedError if anything is off.

    The bytes must be canonical (so there is one spelling of each manifest), the envelope
    must hold exactly one signature by the key the payload names, and every algorithm must
    be on the allow-list.
    """
    raw = bytes(raw)
    doc = parse_canonical(raw)
    envelope = _obj(doc, "manifest", {"signatures", "signed"})
    sigs = envelope["signatures"]
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise MalformedError("manifest must carry exactly one signature")
    entry = _obj(sigs[0], "signatures[0]", {"key_id", "name", "sig"})
    sig_text = _str(entry["sig"], "signatures[0].sig")
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError("signatures[0].sig is not base64") from None
    if len(sig) != 64 or base64.b64encode(sig).decode() != sig_text:
        raise MalformedError("signatures[0].sig is not a canonical base64 Ed25519 signature")
    signature = ManifestSignature(
        _str(entry["name"], "signatures[0].name"),
        _hex8(entry["key_id"], "signatures[0].key_id"),
        sig,
    )
    manifest = Manifest.from_dict(envelope["signed"])
    if (signature.name, signature.key_id) != (manifest.key_name, manifest.key_id):
        raise MalformedError(
            f"signature by {signature.name}+{signature.key_id} but the payload names "
            f"{manifest.key_name}+{manifest.key_id}"
        )
    # ``raw`` is canonical: {"signatures":[...],"signed":<payload>}, the payload last.
    head = b'{"signatures":' + canonical_json_parsed(sigs) + b',"signed":'
    payload = raw[len(head) : -1] if raw.startswith(head) else None
    return SignedManifest(manifest, signature, raw, payload)


def signature_status(signed: SignedManifest, keyring: Keyring) -> str:
    """signature_status checks the signature and the key's window at the manifest's
    position in the log (and at its ``created`` time, for windows given in seconds).

    Returns ``"valid"``, one of the :class:`KeyStatus` failure values, or ``bad_signature``.
    A signature is checked before the window, so a forged signature under a revoked key id
    still reads ``bad_signature``.
    """
    sig = signed.signature
    key = keyring.find(sig.name, sig.key_hash)
    if key is None:
        return KeyStatus.UNKNOWN.value
    if not key.verifier.verify(signed.signed_bytes, sig.sig):
        return BAD_SIGNATURE
    return key.status_at(signed.manifest.created, position=signed.sequence).value


def _obj(value: Any, where: str, fields: set[str], *, required: bool = True) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"{where} is not an object")
    if required and set(value) != fields:
        extra, missing = sorted(set(value) - fields), sorted(fields - set(value))
        raise MalformedError(f"{where}: unexpected fields {extra}, missing {missing}")
    return value


def _int(value: Any, where: str) -> int:
    if type(value) is int and value >= 0:  # what a parser gives (the check below is slower)
        return value
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedError(f"{where} is not a non-negative integer: {value!r}")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _str(value: Any, where: str) -> str:
    if type(value) is str and value:
        return value
    if not isinstance(value, str) or not value:
        raise MalformedError(f"{where} is not a non-empty string")
    return value


def _hex64(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise MalformedError(f"{where} is not 64 lowercase hex digits")
    return value


def _hex8(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HEX8.match(value):
        raise MalformedError(f"{where} is not 8 lowercase hex digits")
    return value


def check_no_floats(value: Any, where: str) -> None:
    """check_no_floats refuses floats anywhere in a value: manifests hold integers only."""
    if isinstance(value, float):
        raise MalformedError(f"{where} holds a float; manifests use integers only")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if type(v) not in _NOT_FLOATS:
                check_no_floats(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if type(v) not in _NOT_FLOATS:
                check_no_floats(v, f"{where}[{i}]")


_NOT_FLOATS = frozenset({str, int, bool, type(None)})  # nothing inside to look at either
