"""Witness cosignatures on checkpoints (c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``).

A witness vouches for a checkpoint by adding one more signature line to its signed note::

    — <witness name> <base64(key id || u64 big-endian timestamp || 64-byte Ed25519 sig)>

- key id: the first 4 bytes, big-endian, of
  ``SHA-256(name || 0x0A || 0x04 || 32-byte Ed25519 public key)`` (type byte 0x04, not the
  0x01 of a log key, so a log key can never be mistaken for a witness key);
- verifier key text: ``<name>+<key id as 8 hex>+<base64(0x04 || public key)>``; private key
  text: ``PRIVATE+KEY+<name>+<key id>+<base64(0x04 || 32-byte seed)>``;
- signed message: ``cosignature/v1\\n``, ``time <decimal timestamp>\\n``, then the whole
  checkpoint text (origin, size, root, extension lines, final newline; no signatures).

The statement a cosignature makes: at that time, this checkpoint was the largest tree the
witness had seen for the origin, and it was consistent with every earlier one it had seen.
Verifiers hold (name, key) pairs, ignore lines by other keys, and count the distinct
witnesses whose cosignatures verify against a quorum.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.note import (
    _check_name,
    _decode_key_data,
    _split_key_text,
    split_note,
)

ALG_COSIGNATURE_V1 = 0x04
HEADER = b"cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_SIG_SIZE = 8 + 64


def cosigner_key_id(name: str, public_key: bytes) -> int:
    """cosigner_key_id returns the 32-bit key id of an Ed25519 cosigner key."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


def cosigned_message(checkpoint_text: str | bytes, timestamp: int) -> bytes:
    """cosigned_message returns the bytes a cosignature signs."""
    body = checkpoint_text.encode("utf-8") if isinstance(checkpoint_text, str) else checkpoint_text
    if not body.endswith(b"\n"):
        raise MalformedError("a cosigned checkpoint text must end with a newline")
    _check_timestamp(timestamp)
    return HEADER + b"time %d\n" % timestamp + body


def format_witness_vkey(name: str, public_key: bytes) -> str:
    """format_witness_vkey writes ``<name>+<hex8>+<base64(0x04 || key)>``."""
    _check_name(name)
    if len(public_key) != 32:
        raise MalformedError("Ed25519 public key must be 32 bytes")
    data = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + public_key).decode("ascii")
    return f"{name}+{cosigner_key_id(name, public_key):08x}+{data}"


@dataclass(frozen=True)
class WitnessKey:
    """WitnessKey is a witness's public key: what a verifier trusts to count toward a quorum."""

    name: str
    public_key: bytes

    @classmethod
    def from_vkey(cls, vkey: str) -> WitnessKey:
        """from_vkey parses witness verifier key text, checking the stated key id."""
        if not isinstance(vkey, str):
            raise MalformedError("witness key must be text")
        name, hash_text, data = _split_key_text(vkey.strip(), "witness key")
        public_key = _decode_key_data(data, "witness key", ALG_COSIGNATURE_V1)
        if int(hash_text, 16) != cosigner_key_id(name, public_key):
            raise MalformedError(f"witness key {name}+{hash_text}: key id does not match the key")
        return cls(name, public_key)

    @property
    def key_id(self) -> int:
        return cosigner_key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        return format_witness_vkey(self.name, self.public_key)

    def verify(self, checkpoint_text: str, timestamp: int, signature: bytes) -> bool:
        """verify reports whether ``signature`` cosigns the text at ``timestamp``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                signature, cosigned_message(checkpoint_text, timestamp)
            )
        except (InvalidSignature, ValueError, MalformedError):
            return False
        return True


class WitnessSigner:
    """WitnessSigner holds a witness's private key; it never shows the key."""

    __slots__ = ("_private", "name", "public_key")

    def __init__(self, name: str, seed: bytes) -> None:
        _check_name(name)
        if len(seed) != 32:
            raise MalformedError("Ed25519 private key seed must be 32 bytes")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.name = name
        self.public_key = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls, name: str) -> WitnessSigner:
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_private_key(cls, skey: str) -> WitnessSigner:
        """from_private_key parses ``PRIVATE+KEY+<name>+<hex8>+<base64(0x04 || seed)>``."""
        if not isinstance(skey, str) or not skey.startswith(_PRIVATE_PREFIX):
            raise MalformedError("witness private key text must start with PRIVATE+KEY+")
        name, hash_text, data = _split_key_text(
            skey.strip()[len(_PRIVATE_PREFIX) :], "witness private key"
        )
        signer = cls(name, _decode_key_data(data, "witness private key", ALG_COSIGNATURE_V1))
        if int(hash_text, 16) != signer.key.key_id:
            raise MalformedError(f"witness private key {name}: key id does not match the key")
        return signer

    @property
    def private_key_text(self) -> str:
        seed = self._private.private_bytes_raw()
        data = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + seed).decode("ascii")
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key.key_id:08x}+{data}"

    @property
    def key(self) -> WitnessKey:
        return WitnessKey(self.name, self.public_key)

    def cosign(self, checkpoint_text: str, timestamp: int | None = None) -> str:
        """cosign returns the signature line (ending in a newline) for the checkpoint text."""
        when = int(time.time()) if timestamp is None else timestamp
        sig = self._private.sign(cosigned_message(checkpoint_text, when))
        return signature_line(self.name, self.key.key_id, when, sig)

    def __repr__(self) -> str:
        return f"WitnessSigner(name={self.name!r})"


def signature_line(name: str, key_id: int, timestamp: int, signature: bytes) -> str:
    """signature_line encodes one cosignature as a note signature line."""
    _check_timestamp(timestamp)
    raw = struct.pack(">IQ", key_id, timestamp) + signature
    return f"— {name} {base64.b64encode(raw).decode('ascii')}\n"


@dataclass(frozen=True)
class Cosignature:
    """Cosignature is one verified cosignature: who, when, and the line as written."""

    name: str
    key_id: int
    timestamp: int
    line: str

    @property
    def witness(self) -> str:
        return f"{self.name}+{self.key_id:08x}"


@dataclass(frozen=True)
class Cosignatures:
    """Cosignatures is what a checkpoint's signature lines say about a set of witness keys:
    the valid cosignatures (one per witness at most) and the invalid ones by known keys."""

    text: str
    valid: tuple[Cosignature, ...]
    invalid: tuple[str, ...]

    def meets(self, quorum: int) -> bool:
        return len(self.valid) >= quorum

    @property
    def witnesses(self) -> list[str]:
        return [c.name for c in self.valid]


def parse_signature(raw: bytes) -> tuple[int, bytes] | None:
    """parse_signature splits a cosignature's bytes (after the key id) into (timestamp, sig)."""
    if len(raw) != _SIG_SIZE:
        return None
    (timestamp,) = struct.unpack(">Q", raw[:8])
    if timestamp > MAX_TIMESTAMP:
        return None
    return timestamp, raw[8:]


def cosignatures(note: bytes, keys: Iterable[WitnessKey]) -> Cosignatures:
    """cosignatures checks the signature lines of the signed checkpoint ``note`` that the
    given witness keys made. Lines by other keys are ignored (the log's own signature among
    them); a line by a known key that does not verify is listed as invalid."""
    text, lines = split_note(note)
    by_id = {(k.name, k.key_id): k for k in keys}
    valid: dict[tuple[str, int], Cosignature] = {}
    invalid: list[str] = []
    for line, name, key_id, raw, _ in lines:
        key = by_id.get((name, key_id))
        if key is None:
            continue
        parsed = parse_signature(raw)
        if parsed is None or not key.verify(text, *parsed):
            invalid.append(f"{name}+{key_id:08x}")
            continue
        found = Cosignature(name, key_id, parsed[0], line + "\n")
        best = valid.get((name, key_id))
        if best is None or found.timestamp > best.timestamp:
            valid[(name, key_id)] = found
    return Cosignatures(text, tuple(valid.values()), tuple(invalid))


def with_cosignatures(note: bytes, lines: Sequence[str]) -> bytes:
    """with_cosignatures returns ``note`` with the signature lines appended (each once)."""
    present = set(note.decode("utf-8").splitlines(keepends=True))
    extra = "".join(line for line in dict.fromkeys(lines) if line not in present)
    combined = note + extra.encode("utf-8")
    split_note(combined)
    return combined


def _check_timestamp(timestamp: int) -> None:
    if not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedError(f"cosignature timestamp must be 0..2^63-1: {timestamp!r}")
