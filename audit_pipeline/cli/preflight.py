"""Local preconditions a command checks before any network call, lock or write.

A command that refuses must leave nothing behind, so these probes only create a temporary
entry and remove it again. Writability is probed by trying (``os.access`` says yes to root
even where the kernel then refuses, as in ``/proc``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from audit_pipeline.cli.errors import LocalEnvironmentError, describe_os_error
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.keys import KeyStatus, keyring_file, load_keyring
from audit_pipeline.ledger.layout import read_named_file
from audit_pipeline.ledger.note import Signer


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _probe_create(directory: Path) -> str | None:
    """_probe_create returns why nothing can be created in ``directory``, or None."""
    try:
        probe = tempfile.mkdtemp(prefix=".audit-pipeline-probe-", dir=directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.rmdir(probe)
    return None


def usable_dir(path: Path, *, what: str = "data directory", create: bool = False) -> Path:
    """usable_dir checks that ``path`` is (or can become) a writable directory.

    With ``create`` the directory is made; without it nothing is left behind either way.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise LocalEnvironmentError(f"{what} {path} is not a directory")
        cause = _probe_create(path)
        if cause:
            raise LocalEnvironmentError(f"{what} {path} is not writable: {cause}")
        return path
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise LocalEnvironmentError(f"cannot create {what} {path}: {ancestor} is not a directory")
    cause = _probe_create(ancestor)
    if cause:
        raise LocalEnvironmentError(f"cannot create {what} {path}: {ancestor}: {cause}")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalEnvironmentError(
                f"cannot create {what} {path}: {describe_os_error(exc)}"
            ) from exc
    return path


def readable_dir(path: Path, *, what: str = "data directory") -> Path:
    """readable_dir checks that ``path`` is an existing directory we may list."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LocalEnvironmentError(f"{what} {path} is not a directory")
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise LocalEnvironmentError(f"{what} {path} is not readable: permission denied")
    return path


def output_file(path: Path, *, what: str = "output") -> Path:
    """output_file checks that ``path`` can be written: its directory exists and takes new
    files, and it is not a directory itself."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        cause = "it is a directory"
    elif not parent.exists():
        cause = f"{parent} does not exist"
    elif not parent.is_dir():
        cause = f"{parent} is not a directory"
    else:
        cause = _probe_create(parent)
        cause = cause and f"{parent}: {cause}"
    if cause:
        raise LocalEnvironmentError(f"cannot write {what} {path}: {cause}")
    return path


def input_file(path: str, what: str) -> bytes:
    """input_file reads a file a flag names (``-``: standard input); ConfigurationError (2)
    naming it and the cause when it cannot (missing, a FIFO or device, unreadable)."""
    try:
        return sys.stdin.buffer.read() if path == "-" else read_named_file(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from exc


def ready_to_commit(data_dir: Path, signer: Signer) -> None:
    """ready_to_commit checks what a commit will need, before any API call or lock: a
    writable data directory whose keyring trusts the signing key now."""
    usable_dir(data_dir)
    if not keyring_file(data_dir).is_file():
        raise ConfigurationError(
            f"no keyring at {keyring_file(data_dir)}: run 'audit-pipeline keys init "
            f"--data-dir {data_dir}' first (it creates the signing key and trusts it)"
        )
    status = load_keyring(data_dir).status(signer.name, signer.key_hash, int(time.time()))
    if status is not KeyStatus.VALID:
        raise ConfigurationError(
            f"signing key {signer.name}+{signer.key_hash:08x} is {status.value} in the keyring "
            f"{keyring_file(data_dir)}; see 'audit-pipeline keys list --data-dir {data_dir}'"
        )
