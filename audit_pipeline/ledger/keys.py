"""Signing keys and the keyring of trusted public keys, with validity windows.

The private signing key is one file in Go's ``note`` skey format
(``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``), mode 0600, kept outside the
data directory: ``$AUDIT_SIGNING_KEY`` or ``$XDG_CONFIG_HOME/audit-pipeline/signing-key``
(``~/.config/...``). Its text never appears in logs or error messages.

The keyring ``ledger/keys/keyring.json`` (``audit_pipeline.keyring/v2``; v1 is still read)
lists the public keys (``vkey`` in signed-note form) whose signatures the verifier accepts,
each with the log positions (tree sizes) and times it may sign at, and a statement signed
by the key that made the entry::

    {
      "keys": [
        {"revoked_at": null, "valid_from": 1735689600, "valid_until": 1738368000,
         "valid_from_size": 0, "valid_until_size": 744,
         "vkey": "audit-pipeline+1c2a3b4d+AXk...",
         "statement": {"by": "audit-pipeline+1c2a3b4d", "sig": "<base64>"}},
        {"revoked_at": null, "valid_from": 1738368000, "valid_until": null,
         "valid_from_size": 744,
         "vkey": "audit-pipeline+9f8e7d6c+AbQ...",
         "statement": {"by": "audit-pipeline+1c2a3b4d", "sig": "<base64>"}}
      ],
      "schema": "audit_pipeline.keyring/v2"
    }

The manifest at sequence s is accepted when ``valid_from_size <= s < valid_until_size`` and
not ``s >= revoked_at_size`` (absent/null = unbounded), whatever ``created`` it claims; the
time window (``valid_from <= created < valid_until``, not ``created >= revoked_at``) is
checked on top. Rotation closes the old key's window at the size where the new key's opens.
Anyone who can write the data directory can edit this file (or put an older signed entry
back), so an auditor passes a keyring or vkeys held elsewhere (``verify --trusted-keys``)
and the data directory's own keyring is only a convenience.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import note
from audit_pipeline.ledger.canonical import canonical_json, parse_json_strict
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import (
    KEYRING,
    MANIFEST_SUFFIX,
    MANIFESTS,
    LocalStorage,
    checkpoint_path,
    parse_numbered_name,
    read_named_file,
)

SIGNING_KEY_ENV = "AUDIT_SIGNING_KEY"
KEYRING_SCHEMA_V1 = "audit_pipeline.keyring/v1"
KEYRING_SCHEMA = "audit_pipeline.keyring/v2"
KEYRING_SCHEMAS = (KEYRING_SCHEMA_V1, KEYRING_SCHEMA)
DEFAULT_KEY_NAME = "audit-pipeline"


class KeyStatus(enum.StrEnum):
    """KeyStatus is what the keyring says about a signing key at a given time."""

    VALID = "valid"
    UNKNOWN = "unknown_key"
    NOT_YET_VALID = "key_not_yet_valid"
    EXPIRED = "key_expired"
    REVOKED = "key_revoked"


def key_id(key_hash: int) -> str:
    return f"{key_hash:08x}"


def signed_envelope(signer: note.Signer, context: bytes, body: Mapping[str, Any]) -> bytes:
    """signed_envelope is ``{"signatures":[{key_id,name,sig}],"signed":body}`` in canonical
    JSON, signed over ``context || canonical(body)`` (intents, batch index files)."""
    sig = signer.sign(context + canonical_json(dict(body)))
    entry = {
        "key_id": key_id(signer.key_hash),
        "name": signer.name,
        "sig": base64.b64encode(sig).decode(),
    }
    return canonical_json({"signatures": [entry], "signed": dict(body)})


_POSITIONS = ("valid_from_size", "valid_until_size", "revoked_at_size")
_TIMES = ("valid_from", "valid_until", "revoked_at")
ENTRY_CONTEXT = b"audit_pipeline.keyring-entry/v2\x00"


@dataclass(frozen=True)
class TrustedKey:
    """TrustedKey is one keyring entry: a public key, the log positions (tree sizes) and
    times it may sign at, and the signature of the key that made the entry."""

    vkey: str
    verifier: note.Verifier = field(compare=False, repr=False)
    valid_from: int | None = None
    valid_until: int | None = None
    revoked_at: int | None = None
    valid_from_size: int | None = None
    valid_until_size: int | None = None
    revoked_at_size: int | None = None
    statement: Mapping[str, str] | None = field(default=None, compare=False)

    @classmethod
    def from_vkey(cls, vkey: str, **window: Any) -> TrustedKey:
        return cls(vkey, note.Verifier.from_vkey(vkey), **window)

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_hash(self) -> int:
        return self.verifier.key_hash

    @property
    def key_id(self) -> str:
        return key_id(self.verifier.key_hash)

    def status_at(self, when: int | float, position: int | None = None) -> KeyStatus:
        """status_at judges a signature made at log position ``position`` (a manifest's
        sequence number; ``tree size - 1`` for a checkpoint) claiming time ``when``.

        Positions decide whatever the claimed time: a revoked key cannot sign past the
        recorded tree size by dating its signature earlier. Time windows still apply on
        top (v1 keyrings have nothing else).
        """
        if position is not None:
            if self.revoked_at_size is not None and position >= self.revoked_at_size:
                return KeyStatus.REVOKED
            if self.valid_from_size is not None and position < self.valid_from_size:
                return KeyStatus.NOT_YET_VALID
            if self.valid_until_size is not None and position >= self.valid_until_size:
                return KeyStatus.EXPIRED
        if self.revoked_at is not None and when >= self.revoked_at:
            return KeyStatus.REVOKED
        if self.valid_from is not None and when < self.valid_from:
            return KeyStatus.NOT_YET_VALID
        if self.valid_until is not None and when >= self.valid_until:
            return KeyStatus.EXPIRED
        return KeyStatus.VALID

    def body(self) -> dict[str, Any]:
        """body is the entry without its statement: what the statement signs."""
        return {
            "revoked_at": self.revoked_at,
            "revoked_at_size": self.revoked_at_size,
            "valid_from": self.valid_from,
            "valid_from_size": self.valid_from_size,
            "valid_until": self.valid_until,
            "valid_until_size": self.valid_until_size,
            "vkey": self.vkey,
        }

    def signed_by(self, signer: note.Signer) -> TrustedKey:
        """signed_by returns the entry with a statement signed by ``signer``."""
        sig = signer.sign(ENTRY_CONTEXT + canonical_json(self.body()))
        statement = {
            "by": f"{signer.name}+{key_id(signer.key_hash)}",
            "sig": base64.b64encode(sig).decode(),
        }
        return replace(self, statement=statement)

    def statement_signer(self, keyring: Keyring) -> TrustedKey | None:
        """statement_signer returns the keyring key whose signature on this entry verifies
        (None: unsigned, unknown signer, or a signature that does not verify)."""
        if not self.statement:
            return None
        name, _, hex_id = str(self.statement.get("by", "")).rpartition("+")
        try:
            signer = keyring.find(name, int(hex_id, 16))
            sig = base64.b64decode(str(self.statement.get("sig", "")), validate=True)
        except (ValueError, binascii.Error):
            return None
        message = ENTRY_CONTEXT + canonical_json(self.body())
        return signer if signer is not None and signer.verifier.verify(message, sig) else None

    def public_line(self) -> str:
        """public_line is the vkey followed by its window as ``field=value`` words (the
        fields of a keyring entry), as ``keys public`` prints it: a file of such lines
        given to ``--trusted-keys`` keeps a revocation or a rotation's end in force."""
        fields = (*_POSITIONS, *_TIMES)
        window = [f"{k}={getattr(self, k)}" for k in fields if getattr(self, k) is not None]
        return " ".join([self.vkey, *window])

    def to_dict(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.body().items() if v is not None or k in _TIMES}
        if self.statement:
            doc["statement"] = dict(self.statement)
        return doc


class MalformedKeyringError(ConfigurationError):
    """The keyring or trusted-keys file cannot be used as written."""


@dataclass(frozen=True)
class Keyring:
    """Keyring is the set of trusted public keys, looked up by (name, key hash)."""

    keys: tuple[TrustedKey, ...] = ()
    source: str = "keyring"

    def __post_init__(self) -> None:
        seen: set[tuple[str, int]] = set()
        for key in self.keys:
            ident = (key.name, key.key_hash)
            if ident in seen:
                raise MalformedKeyringError(
                    f"{self.source}: two keys named {key.name} share key id {key.key_id}"
                )
            seen.add(ident)

    @classmethod
    def from_vkeys(cls, vkeys: Iterable[str], *, source: str = "vkeys") -> Keyring:
        return cls(tuple(TrustedKey.from_vkey(v) for v in vkeys), source)

    def find(self, name: str, key_hash: int) -> TrustedKey | None:
        for key in self.keys:
            if key.name == name and key.key_hash == key_hash:
                return key
        return None

    def status(
        self, name: str, key_hash: int, when: int | float, position: int | None = None
    ) -> KeyStatus:
        key = self.find(name, key_hash)
        return KeyStatus.UNKNOWN if key is None else key.status_at(when, position)

    def verifiers(self) -> note.Verifiers:
        return note.Verifiers(k.verifier for k in self.keys)

    def select(self, ref: str) -> TrustedKey:
        """select finds one key by hex key id, ``name+keyid`` or full vkey."""
        ref = ref.strip()
        matches = [k for k in self.keys if ref in (k.key_id, k.vkey, f"{k.name}+{k.key_id}")]
        if not matches:
            raise ConfigurationError(f"no key {ref!r} in {self.source}")
        if len(matches) > 1:
            raise ConfigurationError(f"key id {ref!r} is ambiguous in {self.source}; use name+id")
        return matches[0]

    def with_key(self, key: TrustedKey) -> Keyring:
        return replace(self, keys=(*self.keys, key))

    def with_replaced(self, old: TrustedKey, new: TrustedKey) -> Keyring:
        return replace(self, keys=tuple(new if k is old else k for k in self.keys))

    def to_bytes(self) -> bytes:
        doc = {"keys": [k.to_dict() for k in self.keys], "schema": KEYRING_SCHEMA}
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "keyring") -> Keyring:
        try:
            doc = parse_json_strict(data)
        except LedgerError as exc:
            raise MalformedKeyringError(f"{source}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("schema") not in KEYRING_SCHEMAS:
            raise MalformedKeyringError(f"{source}: not a keyring (schema {KEYRING_SCHEMA})")
        if set(doc) != {"schema", "keys"} or not isinstance(doc["keys"], list):
            raise MalformedKeyringError(f"{source}: expected exactly 'schema' and a 'keys' list")
        v1 = doc["schema"] == KEYRING_SCHEMA_V1
        keys = tuple(_key_from_dict(e, source, i, v1=v1) for i, e in enumerate(doc["keys"]))
        return cls(keys, source)


def _key_from_dict(entry: Any, source: str, index: int, *, v1: bool = False) -> TrustedKey:
    where = f"{source}: keys[{index}]"
    if not isinstance(entry, Mapping):
        raise MalformedKeyringError(f"{where}: not an object")
    allowed = {"vkey", *_TIMES} if v1 else {"vkey", "statement", *_TIMES, *_POSITIONS}
    unknown = set(entry) - allowed
    if unknown or "vkey" not in entry:
        raise MalformedKeyringError(f"{where}: needs 'vkey'; unknown fields {sorted(unknown)}")
    times: dict[str, Any] = {}
    for name in (*_TIMES, *_POSITIONS):
        value = entry.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise MalformedKeyringError(f"{where}: {name} must be a non-negative integer or null")
        times[name] = value
    statement = entry.get("statement")
    if statement is not None:
        if not isinstance(statement, Mapping) or set(statement) != {"by", "sig"}:
            raise MalformedKeyringError(f"{where}: statement must be {{'by', 'sig'}}")
        times["statement"] = {k: str(v) for k, v in statement.items()}
    if (
        times["valid_from"] is not None
        and times["valid_until"] is not None
        and times["valid_until"] < times["valid_from"]
    ):
        raise MalformedKeyringError(f"{where}: valid_until is before valid_from")
    try:
        return TrustedKey.from_vkey(str(entry["vkey"]), **times)
    except LedgerError as exc:
        raise MalformedKeyringError(f"{where}: bad vkey: {exc}") from exc


def parse_trusted_keys(data: bytes, *, source: str) -> Keyring:
    """parse_trusted_keys reads a keyring JSON file, or vkeys one per line ('#' comments)."""
    text = data.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        return Keyring.from_bytes(data, source=source)
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise MalformedKeyringError(f"{source}: no public keys in it")
    try:
        return Keyring(tuple(_public_line_key(words, source) for words in lines), source)
    except LedgerError as exc:
        raise MalformedKeyringError(f"{source}: {exc}") from exc


def _public_line_key(words: list[str], source: str) -> TrustedKey:
    """_public_line_key reads ``vkey [field=value ...]`` (see TrustedKey.public_line)."""
    window: dict[str, int] = {}
    for word in words[1:]:
        name, _, value = word.partition("=")
        if name not in (*_POSITIONS, *_TIMES) or not value.isdigit() or name in window:
            raise MalformedKeyringError(
                f"{source}: {word!r} after a vkey is not a key window "
                f"(want field=number, fields {', '.join((*_POSITIONS, *_TIMES))})"
            )
        window[name] = int(value)
    return TrustedKey.from_vkey(words[0], **window)


def load_trusted_keys(path: Path) -> Keyring:
    try:
        data = read_named_file(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read trusted keys {path}: {exc.strerror}") from exc
    return parse_trusted_keys(data, source=str(path))


def keyring_file(data_dir: Path) -> Path:
    return Path(data_dir) / KEYRING


def load_keyring(data_dir: Path) -> Keyring:
    """load_keyring reads the data directory's own keyring (ConfigurationError if absent)."""
    path = keyring_file(data_dir)
    try:
        data = LocalStorage(Path(data_dir)).read(KEYRING)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no keyring at {path}: run 'audit-pipeline keys init' or pass --trusted-keys"
        ) from None
    except LedgerError as exc:
        raise ConfigurationError(f"cannot read keyring {path}: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read keyring {path}: {exc.strerror}") from exc
    return Keyring.from_bytes(data, source=str(path))


def save_keyring(data_dir: Path, keyring: Keyring) -> None:
    LocalStorage(Path(data_dir)).replace(KEYRING, keyring.to_bytes())


def default_signing_key_path(environ: Mapping[str, str] | None = None) -> Path:
    """default_signing_key_path: ``$AUDIT_SIGNING_KEY``, else the XDG config location."""
    env = os.environ if environ is None else environ
    if env.get(SIGNING_KEY_ENV):
        return Path(env[SIGNING_KEY_ENV]).expanduser()
    config = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(config) / "audit-pipeline" / "signing-key"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def create_signing_key(path: Path, name: str = DEFAULT_KEY_NAME) -> note.Signer:
    """create_signing_key writes a new Ed25519 key to ``path`` (mode 0600, never overwrites)."""
    try:
        skey, _ = note.generate_key(name)
    except LedgerError as exc:
        raise ConfigurationError(f"bad key name {name!r}: {exc}") from exc
    try:
        _write_private(Path(path), skey)
    except FileExistsError:
        raise ConfigurationError(f"signing key {path} already exists; not overwritten") from None
    return note.Signer.from_private_key(skey)


def load_signing_key(path: Path) -> note.Signer:
    """load_signing_key reads a private key file, refusing one others can read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = read_named_file(path).decode("utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"no signing key at {path}: run 'audit-pipeline keys init' or set {SIGNING_KEY_ENV}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        cause = getattr(exc, "strerror", None) or exc
        raise ConfigurationError(f"cannot read signing key {path}: {cause}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigurationError(
            f"signing key {path} is accessible by group/others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    try:
        return note.Signer.from_private_key(text.strip())
    except (LedgerError, ValueError):
        # The underlying message could quote the key text: never show it.
        raise ConfigurationError(f"{path} does not hold a valid signing key") from None


def log_size(data_dir: Path) -> int:
    """log_size is the number of manifests in the data directory: the log position from
    which a keyring change takes effect (read under the ledger lock, as commits are)."""
    names = LocalStorage(Path(data_dir)).list_dir(MANIFESTS)
    return sum(parse_numbered_name(n, MANIFEST_SUFFIX) is not None for n in names)


def init_key(
    data_dir: Path, key_path: Path, *, name: str, now: int
) -> tuple[note.Signer, bool, bool]:
    """init_key makes sure a signing key exists and the keyring trusts it from ``now`` and
    from the log's current size on (a self-signed entry).

    Returns (signer, key file created, key added to the keyring). Safe to repeat.
    """
    storage = LocalStorage(Path(data_dir))
    key_path = Path(key_path)
    created = not key_path.exists()
    signer = create_signing_key(key_path, name) if created else load_signing_key(key_path)
    with storage.lock():
        path = keyring_file(data_dir)
        keyring = load_keyring(data_dir) if path.exists() else Keyring(source=str(path))
        if keyring.find(signer.name, signer.key_hash) is not None:
            return signer, created, False
        entry = TrustedKey.from_vkey(
            signer.vkey, valid_from=now, valid_from_size=log_size(data_dir)
        ).signed_by(signer)
        save_keyring(data_dir, keyring.with_key(entry))
    return signer, created, True


def rotate_key(
    data_dir: Path, key_path: Path, *, now: int, name: str | None = None
) -> tuple[note.Signer, note.Signer]:
    """rotate_key replaces the signing key: the old key's window closes at ``now`` and at the
    log's current size, the new one's opens there; the outgoing key signs both entries.
    Returns (old signer, new signer)."""
    key_path = Path(key_path)
    old = load_signing_key(key_path)
    storage = LocalStorage(Path(data_dir))
    staged = key_path.with_name(key_path.name + ".new")
    with storage.lock():
        keyring = load_keyring(data_dir)
        if staged.exists():
            # A rotation crashed after trusting its new key: finish it instead of starting over.
            pending = load_signing_key(staged)
            if keyring.find(pending.name, pending.key_hash) is not None:
                os.replace(staged, key_path)
                return old, pending
            staged.unlink()
        old_entry = keyring.find(old.name, old.key_hash)
        if old_entry is None:
            raise ConfigurationError(
                f"the current key {old.name}+{key_id(old.key_hash)} is not in the keyring"
            )
        size = log_size(data_dir)
        if size and not storage.exists(checkpoint_path(size)):
            raise ConfigurationError(
                f"the checkpoint of the log's {size} batches is missing (an interrupted "
                "commit): let the next sync sign it before rotating, so the outgoing key "
                "signs everything up to the rotation"
            )
        new = create_signing_key(staged, name or old.name)
        closed = replace(old_entry, valid_until=now, valid_until_size=size).signed_by(old)
        opened = TrustedKey.from_vkey(new.vkey, valid_from=now, valid_from_size=size)
        keyring = keyring.with_replaced(old_entry, closed).with_key(opened.signed_by(old))
        save_keyring(data_dir, keyring)
        os.replace(staged, key_path)
    return old, new


def revoke_key(
    data_dir: Path,
    ref: str,
    *,
    at: int,
    at_size: int | None = None,
    signer: note.Signer | None = None,
) -> TrustedKey:
    """revoke_key marks a keyring key revoked from log position ``at_size`` (default: the
    log's current size) and time ``at`` on: its signatures on batches at or past that
    position fail with ``key_revoked`` whatever time they claim. ``signer`` (the current
    signing key) signs the entry; without it the entry is left unsigned."""
    if at_size is not None and at_size < 0:  # the keyring would refuse itself afterwards
        raise ConfigurationError(f"a log position is a tree size >= 0, got {at_size}")
    storage = LocalStorage(Path(data_dir))
    with storage.lock():
        keyring = load_keyring(data_dir)
        entry = keyring.select(ref)
        size = log_size(data_dir) if at_size is None else at_size
        revoked = replace(entry, revoked_at=at, revoked_at_size=size, statement=None)
        if signer is not None:
            if keyring.find(signer.name, signer.key_hash) is None:
                raise ConfigurationError(
                    f"{signer.name}+{key_id(signer.key_hash)} is not in the keyring: it cannot "
                    "sign the revocation"
                )
            revoked = revoked.signed_by(signer)
        save_keyring(data_dir, keyring.with_replaced(entry, revoked))
    return revoked
