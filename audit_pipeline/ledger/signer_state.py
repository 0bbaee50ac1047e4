"""Signer state: the last checkpoint a signing key signed, kept beside the key.

A log must never sign two checkpoints that are not one extension of the other (C2SP
``tlog-checkpoint``). The data directory cannot be the memory for that: whoever can write
it can delete the newest manifests and checkpoints, and the next ordinary commit would
then sign a second, different tree of a size already signed. So the signer remembers, in a
file outside the data directory (default: the signing key's path + ``.state``, mode 0600;
``$AUDIT_SIGNER_STATE`` overrides), the newest checkpoint it signed::

    {"checkpoint":"<the signed note text>","origin":"audit-pipeline/ledger",
     "resets":[{"at":1764550805,"previous":{"origin":..,"root_hash":..,"size":..},
                "reason":"restored the 2026-12-01 backup"}],
     "root_hash":"<base64>","schema":"audit_pipeline.signer-state/v1","size":8,
     "updated":1764550805}

Before it signs a checkpoint for tree size n the signer checks, with an RFC 6962
consistency proof computed from the log's leaves, that the new tree extends the one in its
state; a shorter log is *truncated by N batches*, a log whose first ``size`` leaves hash to
another root is a *fork at size K*, and the commit is refused (:class:`SignerRefusal`).
The state is written atomically (a new 0600 file, fsync, ``rename(2)``, fsync of the
directory): a crash leaves the old state or the new one, never a mix, and both let the
next commit complete. Starting over on purpose (a new data directory, a restored backup)
is :func:`reset_signer_state`, which keeps every earlier state in ``resets``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.checkpoint import parse_checkpoint
from audit_pipeline.ledger.errors import InvalidProofError, LedgerError
from audit_pipeline.ledger.tiles import LogHashes
from audit_pipeline.text import plural

SIGNER_STATE_ENV = "AUDIT_SIGNER_STATE"
STATE_SCHEMA = "audit_pipeline.signer-state/v1"
STATE_SUFFIX = ".state"
_MAX_STATE_BYTES = 1 << 22

Step = Callable[[str], None]


class SignerRefusal(LedgerError):
    """The signer refuses a checkpoint that does not extend the last one it signed."""


class SignerStateError(ConfigurationError):
    """The signer state file cannot be read or written; nothing is signed until fixed."""


@dataclass(frozen=True)
class SignerState:
    """SignerState is the newest checkpoint this signing key signed (size 0: none yet)."""

    origin: str | None
    size: int
    root_hash: bytes
    checkpoint: str
    updated: int
    resets: tuple[Mapping[str, Any], ...] = field(default=())

    def summary(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "size": self.size,
        }

    def to_bytes(self) -> bytes:
        doc = {
            "checkpoint": self.checkpoint,
            "origin": self.origin,
            "resets": list(self.resets),
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "schema": STATE_SCHEMA,
            "size": self.size,
            "updated": self.updated,
        }
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def signer_state_path(key_path: Path, environ: Mapping[str, str] | None = None) -> Path:
    """signer_state_path: ``$AUDIT_SIGNER_STATE``, else the signing key's path + ``.state``."""
    env = os.environ if environ is None else environ
    if env.get(SIGNER_STATE_ENV):
        return Path(env[SIGNER_STATE_ENV]).expanduser()
    key_path = Path(key_path)
    return key_path.with_name(key_path.name + STATE_SUFFIX)


def load_signer_state(path: Path) -> SignerState | None:
    """load_signer_state reads the state file (None when there is none yet).

    SignerStateError when it is not a regular file of this schema: a half-written or edited
    state is never guessed around.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SignerStateError(f"cannot open signer state {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SignerStateError(f"signer state {path} is not a regular file")
        if info.st_size > _MAX_STATE_BYTES:
            raise SignerStateError(f"signer state {path} is larger than {_MAX_STATE_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read()
    finally:
        os.close(fd)
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or doc.get("schema") != STATE_SCHEMA:
            raise ValueError(f"schema is not {STATE_SCHEMA}")
        size, updated = doc["size"], doc["updated"]
        if type(size) is not int or size < 0 or type(updated) is not int:
            raise ValueError("size and updated must be non-negative integers")
        root = base64.b64decode(doc["root_hash"], validate=True)
        if len(root) != merkle.HASH_SIZE:
            raise ValueError("root_hash is not a SHA-256 hash")
        origin, note = doc["origin"], doc["checkpoint"]
        resets = doc.get("resets", [])
        if not isinstance(note, str) or not isinstance(resets, list):
            raise ValueError("checkpoint must be text and resets a list")
        if size:
            cp = parse_checkpoint(note.split("\n\n", 1)[0] + "\n")
            if (cp.origin, cp.tree_size, cp.root_hash) != (origin, size, root):
                raise ValueError("the checkpoint text disagrees with origin/size/root_hash")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SignerStateError(
            f"signer state {path} is unreadable ({exc}); nothing is signed until it is "
            "repaired or 'audit-pipeline keys restart-signer' records a deliberate restart"
        ) from None
    except LedgerError as exc:
        raise SignerStateError(f"signer state {path} holds a malformed checkpoint: {exc}") from None
    return SignerState(origin, size, root, note, updated, tuple(resets))


def save_signer_state(path: Path, state: SignerState, *, step: Step | None = None) -> None:
    """save_signer_state replaces the state atomically and durably (mode 0600 whatever the
    umask; the old file stays in place until the new one is complete and synced)."""
    step = step or (lambda _name: None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    data = state.to_bytes()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            half = len(data) // 2
            _write_all(fd, data[:half])
            step("state_half_written")
            _write_all(fd, data[half:])
            step("state_written")
            os.fsync(fd)
        finally:
            os.close(fd)
        step("state_synced")
        os.replace(tmp, path)
        step("state_replaced")
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SignerStateError(f"cannot write signer state {path}: {exc.strerror}") from None


def check_extension(
    state: SignerState | None, origin: str, leaf_hashes: Sequence[bytes] | LogHashes
) -> None:
    """check_extension refuses a log (its leaf hashes, or its :class:`~.tiles.LogHashes`)
    that is not a consistent extension of the newest checkpoint the signer signed: another
    origin, truncated, or forked."""
    if state is None or (state.size == 0 and state.origin in (None, origin)):
        return
    where = "the last checkpoint this key signed"
    if state.origin != origin:
        raise SignerRefusal(
            f"this signing key last signed log {state.origin!r} (size {state.size}), not "
            f"{origin!r}: refusing to sign another log; if that is deliberate, run "
            "'audit-pipeline keys restart-signer'"
        )
    if isinstance(leaf_hashes, LogHashes):
        log = leaf_hashes
    else:
        leaves = list(leaf_hashes)
        log = LogHashes(len(leaves), 0, lambda _rel: None, lambda lo, hi: leaves[lo:hi])
    size = log.size
    if size < state.size:
        raise SignerRefusal(
            f"the log was truncated by {plural(state.size - size, 'batch')}: it holds {size} but "
            f"{where} covers {state.size}; refusing to sign a second tree of a size already "
            "signed (restore the missing manifests, or run 'audit-pipeline keys "
            "restart-signer' to start over on purpose)"
        )
    root = log.root()
    proof = log.consistency_proof(state.size)
    try:
        merkle.verify_consistency(state.size, size, proof, state.root_hash, root)
    except InvalidProofError:
        raise SignerRefusal(
            f"fork at size {state.size}: the log's first {state.size} batches are not the "
            f"ones {where} covers (root {merkle_b64(state.root_hash)}); refusing to sign a "
            "checkpoint inconsistent with it"
        ) from None


def record_signed(
    path: Path,
    previous: SignerState | None,
    checkpoint: bytes,
    *,
    now: int,
    step: Step | None = None,
) -> SignerState:
    """record_signed makes ``checkpoint`` (just signed, not yet published) the new state."""
    text = checkpoint.decode()
    cp = parse_checkpoint(text.split("\n\n", 1)[0] + "\n")
    state = SignerState(
        origin=cp.origin,
        size=cp.tree_size,
        root_hash=cp.root_hash,
        checkpoint=text,
        updated=now,
        resets=previous.resets if previous else (),
    )
    save_signer_state(path, state, step=step)
    return state


def reset_signer_state(
    path: Path, *, reason: str, now: int, adopt: bytes | None = None
) -> SignerState:
    """reset_signer_state starts the signer over on purpose, recording why and what it
    forgets. ``adopt`` is a checkpoint (the restored log's newest, already verified by the
    caller) to continue from; without it the next log signed may be any log."""
    if not reason or not reason.strip():
        raise ConfigurationError("a restart of the signer needs a reason (--reason)")
    previous = load_signer_state(path)
    entry = {
        "at": now,
        "previous": previous.summary() if previous else None,
        "reason": reason.strip(),
    }
    resets = (*(previous.resets if previous else ()), entry)
    if adopt is None:
        state = SignerState(None, 0, merkle.empty_root(), "", now, resets)
        save_signer_state(path, state)
        return state
    return record_signed(path, SignerState(None, 0, b"", "", now, resets), adopt, now=now)


def merkle_b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
