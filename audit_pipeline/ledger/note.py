"""C2SP signed notes (c2sp.org/signed-note), compatible with Go's golang.org/x/mod/sumdb/note.

Only Ed25519 keys (signature type 0x01) exist here.

Byte format
-----------
A signed note is UTF-8 text with no control characters other than newline. It is the note
text, which ends in a newline, then a blank line, then one or more signature lines::

    <text ending in \\n>
    \\n
    — <key name> <base64(key hash || signature)>\\n      (U+2014 EM DASH, then a space)

The text is separated from the signatures by the *last* blank line, so the text itself may
contain blank lines. A key name is non-empty UTF-8 without Unicode spaces or ``+``.
The signature covers the text bytes exactly (final newline included, blank line not).

The key hash (key ID) is the first four bytes, big-endian, of::

    SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)

and the keys are written as text:

    public (verifier) key:  <name>+<hash as 8 hex digits>+<base64(0x01 || public key)>
    private (signer) key:   PRIVATE+KEY+<name>+<hash>+<base64(0x01 || 32-byte seed)>

Worked example (the C2SP spec's key)::

    example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k

verifies the note::

    This is an example message.

    — example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=

whose signature decodes to 68 bytes: ``53 0d 90 3a`` (the key hash) and the 64-byte
Ed25519 signature of ``b"This is an example message.\\n"``.

Verification rules (Go's ``Open``): signatures by keys the verifier does not know are kept
as unverified and otherwise ignored (that is how key rotation and witness cosignatures
work); a signature by a known key that does not verify rejects the whole note; a note with
no verified signature is rejected; more than 100 signature lines is malformed.

Compatibility: stricter than Go in three ways that never reject what Go itself writes:
base64 must be canonical (no stray padding bits), key hashes in key text are lower-case
hex, and every signature by a known key is verified (Go skips a repeated one).
"""  # noqa: E501 (a signature line is longer than a source line)

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_pipeline.ledger.errors import (
    AmbiguousKeyError,
    InvalidSignatureError,
    MalformedError,
    UnknownKeyError,
)

ALG_ED25519 = 1
MAX_SIGNATURES = 100

_SIG_PREFIX = "— "
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-f]{8}")
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64


def key_hash(name: str, public_key: bytes) -> int:
    """key_hash returns the 32-bit key ID of an Ed25519 key: the first 4 bytes, big-endian,
    of SHA-256(name || "\\n" || 0x01 || public_key)."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


def is_valid_name(name: object) -> bool:
    """is_valid_name reports whether ``name`` can name a key: non-empty, no Unicode spaces,
    no ``+``, no control characters, encodable as UTF-8."""
    if not isinstance(name, str) or not name or "+" in name:
        return False
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" for ch in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def format_vkey(name: str, public_key: bytes) -> str:
    """format_vkey returns the verifier key text ``<name>+<hex8>+<base64(0x01 || key)>``."""
    _check_name(name)
    if len(public_key) != _ED25519_KEY_SIZE:
        raise MalformedError(f"Ed25519 public key has {len(public_key)} bytes, want 32")
    encoded = base64.b64encode(bytes([ALG_ED25519]) + public_key).decode("ascii")
    return f"{name}+{key_hash(name, public_key):08x}+{encoded}"


def parse_vkey(vkey: str) -> tuple[str, int, bytes]:
    """parse_vkey returns (name, key hash, 32-byte Ed25519 public key) from verifier key text,
    checking that the stated hash is the one the key derives."""
    if not isinstance(vkey, str):
        raise MalformedError(f"verifier key must be text, got {type(vkey).__name__}")
    name, hash_text, key_data = _split_key_text(vkey, "verifier key")
    public_key = _decode_key_data(key_data, "verifier key")
    stated = int(hash_text, 16)
    if stated != key_hash(name, public_key):
        raise MalformedError(
            f"verifier key {name}+{hash_text}: key hash does not match the key it names"
        )
    return name, stated, public_key


def generate_key(name: str) -> tuple[str, str]:
    """generate_key returns a new Ed25519 key pair as (private key text, verifier key text).

    The private text is secret: whoever holds it can sign as ``name``.
    """
    _check_name(name)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public_key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    encoded = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
    skey = f"{_PRIVATE_PREFIX}{name}+{key_hash(name, public_key):08x}+{encoded}"
    return skey, format_vkey(name, public_key)


class Verifier:
    """Verifier checks signatures by one Ed25519 key, known by ``name`` and ``key_hash``."""

    __slots__ = ("_key", "key_hash", "name", "public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        _check_name(name)
        if not isinstance(public_key, bytes) or len(public_key) != _ED25519_KEY_SIZE:
            raise MalformedError("Ed25519 public key must be 32 bytes")
        self.name = name
        self.public_key = public_key
        self.key_hash = key_hash(name, public_key)
        try:
            self._key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise MalformedError(f"key {name}: not a valid Ed25519 public key") from None

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """from_vkey parses verifier key text ``<name>+<hex8>+<base64(0x01 || key)>``."""
        name, _, public_key = parse_vkey(vkey)
        return cls(name, public_key)

    @property
    def vkey(self) -> str:
        return format_vkey(self.name, self.public_key)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """verify reports whether ``sig`` is this key's Ed25519 signature of ``msg``."""
        if len(sig) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(bytes(sig), bytes(msg))
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self.name, self.public_key) == (other.name, other.public_key)

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


class Signer:
    """Signer signs with one Ed25519 private key; it never shows the key in repr or errors."""

    __slots__ = ("_private", "key_hash", "name", "public_key")

    def __init__(self, name: str, seed: bytes) -> None:
        _check_name(name)
        if not isinstance(seed, bytes) or len(seed) != _ED25519_KEY_SIZE:
            raise MalformedError("Ed25519 private key seed must be 32 bytes")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.name = name
        self.public_key = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_hash = key_hash(name, self.public_key)

    @classmethod
    def from_private_key(cls, skey: str) -> Signer:
        """from_private_key parses Go's private key text
        ``PRIVATE+KEY+<name>+<hex8>+<base64(0x01 || seed)>``; the stated hash must be the
        hash of the public key the seed derives. Errors never quote the text."""
        if not isinstance(skey, str):
            raise MalformedError(f"private key must be text, got {type(skey).__name__}")
        if not skey.startswith(_PRIVATE_PREFIX):
            raise MalformedError("private key text must start with PRIVATE+KEY+")
        name, hash_text, key_data = _split_key_text(skey[len(_PRIVATE_PREFIX) :], "private key")
        seed = _decode_key_data(key_data, "private key")
        signer = cls(name, seed)
        if int(hash_text, 16) != signer.key_hash:
            raise MalformedError(
                f"private key for {name}: key hash does not match the key it holds"
            )
        return signer

    @property
    def vkey(self) -> str:
        return format_vkey(self.name, self.public_key)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.public_key)

    def sign(self, msg: bytes) -> bytes:
        """sign returns the 64-byte Ed25519 signature of ``msg``."""
        return self._private.sign(bytes(msg))

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_hash={self.key_hash:#010x})"


class Verifiers:
    """Verifiers is a set of trusted keys looked up by (name, key hash)."""

    def __init__(self, verifiers: Iterable[Verifier] = ()) -> None:
        self._by_id: dict[tuple[str, int], list[Verifier]] = {}
        for v in verifiers:
            if not isinstance(v, Verifier):
                raise TypeError(f"Verifiers takes Verifier objects, got {type(v).__name__}")
            known = self._by_id.setdefault((v.name, v.key_hash), [])
            if v not in known:
                known.append(v)

    def verifier(self, name: str, key_hash: int) -> Verifier:
        """verifier returns the key with this name and hash: UnknownKeyError if there is
        none, AmbiguousKeyError if two different trusted keys collide on both."""
        known = self._by_id.get((name, key_hash))
        if not known:
            raise UnknownKeyError(name, key_hash)
        if len(known) > 1:
            raise AmbiguousKeyError(name, key_hash)
        return known[0]

    def __iter__(self) -> Iterator[Verifier]:
        for known in self._by_id.values():
            yield from known

    def __len__(self) -> int:
        return sum(len(known) for known in self._by_id.values())

    def __repr__(self) -> str:
        return f"Verifiers({list(self)!r})"


@dataclass(frozen=True)
class Signature:
    """Signature is one signature line: key name, key hash and the base64 text as written."""

    name: str
    key_hash: int
    base64: str


@dataclass(frozen=True)
class Note:
    """Note is an opened note: its text, the signatures that verified, and the signatures
    by keys the verifier does not know (kept, not trusted)."""

    text: str
    sigs: tuple[Signature, ...]
    unverified_sigs: tuple[Signature, ...] = ()


def sign_note(text: str, *signers: Signer) -> bytes:
    """sign_note returns the signed note: ``text``, a blank line, one line per signer.

    ``text`` must end in a newline and be a valid note text (no control characters other
    than newline), so that :func:`open_note` can always open what this writes.
    """
    if not signers:
        raise MalformedError("sign_note needs at least one signer")
    if not isinstance(text, str) or not text.endswith("\n"):
        raise MalformedError("malformed note: text must end with a newline")
    _check_note_chars(text)
    body = text.encode("utf-8")
    lines = []
    for signer in signers:
        if not is_valid_name(signer.name):
            raise MalformedError(f"invalid signer name {signer.name!r}")
        sig = struct.pack(">I", signer.key_hash) + signer.sign(body)
        lines.append(f"{_SIG_PREFIX}{signer.name} {base64.b64encode(sig).decode('ascii')}\n")
    return body + b"\n" + "".join(lines).encode("utf-8")


def open_note(msg: bytes, verifiers: Verifiers) -> Note:
    """open_note parses the signed note ``msg`` and checks its signatures against
    ``verifiers`` (Go's ``note.Open``), returning the note when at least one verifies.

    Raises MalformedError for a note that does not follow the format,
    InvalidSignatureError when a known key's signature fails, and UnknownKeyError (naming
    the first unknown key, with the parsed note attached) when no signature verifies.
    """
    text, parsed = split_note(msg)
    body = text.encode("utf-8")
    verified: list[Signature] = []
    verified_ids: set[tuple[str, int]] = set()
    unverified: list[Signature] = []
    unverified_lines: set[str] = set()
    for line, name, key_id, raw_sig, b64 in parsed:
        try:
            verifier = verifiers.verifier(name, key_id)
        except UnknownKeyError:
            if line not in unverified_lines:
                unverified_lines.add(line)
                unverified.append(Signature(name, key_id, b64))
            continue
        if verifier.name != name or verifier.key_hash != key_id:
            raise AssertionError("note: verifier lookup returned a different key")
        if not verifier.verify(body, raw_sig):
            raise InvalidSignatureError(name, key_id)
        if (name, key_id) not in verified_ids:
            verified_ids.add((name, key_id))
            verified.append(Signature(name, key_id, b64))
    note = Note(text=text, sigs=tuple(verified), unverified_sigs=tuple(unverified))
    if not verified:
        first = note.unverified_sigs[0]
        raise UnknownKeyError(first.name, first.key_hash, note=note)
    return note


def split_note(msg: bytes) -> tuple[str, list[tuple[str, str, int, bytes, str]]]:
    """split_note parses the signed note ``msg`` without checking any signature: it returns
    the text and, per signature line, (line, key name, key hash, signature bytes, base64).
    Cosignature verifiers use it to pick the lines their keys made."""
    if not isinstance(msg, (bytes, bytearray, memoryview)):
        raise MalformedError(f"signed note must be bytes, got {type(msg).__name__}")
    msg = bytes(msg)
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedError(f"malformed note: not valid UTF-8 at byte {e.start}") from None
    _check_note_chars(decoded)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise MalformedError("malformed note: no blank line before the signatures")
    text, sig_block = decoded[: split + 1], decoded[split + 2 :]
    if not sig_block or not sig_block.endswith("\n"):
        raise MalformedError("malformed note: signature block must end with a newline")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError(
            f"malformed note: {len(lines)} signature lines, at most {MAX_SIGNATURES}"
        )
    return text, [(line, *_parse_signature_line(line, n)) for n, line in enumerate(lines, 1)]


def _parse_signature_line(line: str, number: int) -> tuple[str, int, bytes, str]:
    where = f"malformed note: signature line {number}"
    if not line.startswith(_SIG_PREFIX):
        raise MalformedError(f"{where} does not start with an em dash and a space")
    name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not is_valid_name(name):
        raise MalformedError(f"{where} has no valid key name")
    raw = b64decode_canonical(b64)
    if raw is None or len(raw) < 5:
        raise MalformedError(f"{where} has no valid base64 signature")
    return name, int.from_bytes(raw[:4], "big"), raw[4:], b64


_BAD_NOTE_CHAR = re.compile("[\x00-\x09\x0b-\x1f\ud800-\udfff]")


def _check_note_chars(text: str) -> None:
    found = _BAD_NOTE_CHAR.search(text)
    if found is None:
        return
    i, ch = found.start(), found.group()
    if ch < "\x20":
        raise MalformedError(f"malformed note: control character {ord(ch):#04x} at position {i}")
    raise MalformedError(f"malformed note: not valid Unicode at position {i}")


def _check_name(name: object) -> None:
    if not is_valid_name(name):
        raise MalformedError(f"invalid key name {name!r}: must be non-empty, without spaces or '+'")


def _split_key_text(text: str, what: str) -> tuple[str, str, str]:
    """_split_key_text splits ``<name>+<hex8>+<key data>`` (errors do not quote the text)."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise MalformedError(f"malformed {what}: want <name>+<hex key hash>+<base64 key>")
    name, hash_text, key_data = parts
    if not is_valid_name(name):
        raise MalformedError(f"malformed {what}: invalid key name")
    if not _HEX8.fullmatch(hash_text):
        raise MalformedError(f"malformed {what}: key hash must be 8 lower-case hex digits")
    return name, hash_text, key_data


def _decode_key_data(key_data: str, what: str, alg: int = ALG_ED25519) -> bytes:
    raw = b64decode_canonical(key_data)
    if raw is None or not raw:
        raise MalformedError(f"malformed {what}: key data is not canonical base64")
    if raw[0] != alg:
        raise MalformedError(f"malformed {what}: unknown key algorithm {raw[0]:#04x}")
    if len(raw) != 1 + _ED25519_KEY_SIZE:
        raise MalformedError(
            f"malformed {what}: Ed25519 key has {len(raw) - 1} bytes, want {_ED25519_KEY_SIZE}"
        )
    return raw[1:]


def b64decode_canonical(text: str) -> bytes | None:
    """b64decode_canonical decodes standard padded base64, or returns None unless ``text``
    is the one canonical encoding of its bytes."""
    if not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw
