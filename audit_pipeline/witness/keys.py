"""A witness's own key file: private text ``PRIVATE+KEY+<name>+<id>+<base64(0x04||seed)>``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.cosignature import WitnessSigner
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import read_named_file


def create_witness_key(path: Path, name: str) -> WitnessSigner:
    """create_witness_key writes a new witness key (mode 0600; never overwrites one)."""
    try:
        signer = WitnessSigner.generate(name)
    except LedgerError as exc:
        raise ConfigurationError(f"bad witness name {name!r}: {exc}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"witness key {path} already exists; not overwritten") from None
    try:
        os.write(fd, (signer.private_key_text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return signer


def load_witness_key(path: Path) -> WitnessSigner:
    """load_witness_key reads a witness key file, refusing one others can read."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = read_named_file(path).decode("utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"no witness key at {path}: run 'audit-pipeline witness keys init'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read witness key {path}: {exc}") from None
    if mode & 0o077:
        raise ConfigurationError(f"witness key {path} is readable by others; chmod 600 {path}")
    try:
        return WitnessSigner.from_private_key(text.strip())
    except LedgerError:
        raise ConfigurationError(f"{path} is not a witness private key") from None
