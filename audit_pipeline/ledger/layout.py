"""The data directory layout, and the storage seam every ledger write goes through.

::

    <data dir>/
      lake/date=YYYY-MM-DD/hour=HH/<seq>-<kind><suffix>   batch data files, mode 0444
      ledger/manifests/<seq>.json                          one signed manifest per batch
      ledger/checkpoints/<tree size>.checkpoint            signed C2SP checkpoints
      ledger/keys/keyring.json                             trusted public keys
      ledger/pending/                                      write-ahead intents, staged files
      ledger/lock                                          flock(2) target for committers

``<seq>`` and ``<tree size>`` are zero-padded to 8 digits (longer numbers are written in
full; readers parse the number and require the canonical spelling). The sequence number of
a batch is its leaf index in the log tree. Paths stored in manifests are relative, POSIX
style, so a copy of the directory verifies anywhere.

:class:`LocalStorage` is the only code that touches the file system for writes. Its
operations are the ones an object store with conditional writes also offers (create if
absent, list, read, delete), so another backend can replace it; the lock then becomes the
conditional create of the next manifest.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from audit_pipeline.errors import ConfigurationError

HOUR = 3600
SEQ_WIDTH = 8
DATA_DIR_ENV = "AUDIT_DATA_DIR"
DEFAULT_DATA_DIR = "data"

LAKE = "lake"
LEDGER = "ledger"
MANIFESTS = "ledger/manifests"
CHECKPOINTS = "ledger/checkpoints"
KEYS = "ledger/keys"
KEYRING = "ledger/keys/keyring.json"
PENDING = "ledger/pending"
LOCK = "ledger/lock"

MANIFEST_SUFFIX = ".json"
CHECKPOINT_SUFFIX = ".checkpoint"
INTENT_SUFFIX = ".intent"
_NUMBERED = re.compile(r"^([0-9]+)(\.[a-z]+)$")


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """resolve_data_dir picks the data directory: ``--data-dir``, else ``$AUDIT_DATA_DIR``,
    else ``./data``."""
    chosen = explicit if explicit not in (None, "") else os.environ.get(DATA_DIR_ENV)
    return Path(chosen or DEFAULT_DATA_DIR).expanduser()


def numbered_name(number: int, suffix: str) -> str:
    return f"{number:0{SEQ_WIDTH}d}{suffix}"


def parse_numbered_name(name: str, suffix: str) -> int | None:
    """parse_numbered_name returns N for the canonical spelling of ``<N><suffix>``, else None."""
    match = _NUMBERED.match(name)
    if not match or match.group(2) != suffix:
        return None
    number = int(match.group(1))
    return number if numbered_name(number, suffix) == name else None


def manifest_path(seq: int) -> str:
    return f"{MANIFESTS}/{numbered_name(seq, MANIFEST_SUFFIX)}"


def checkpoint_path(tree_size: int) -> str:
    return f"{CHECKPOINTS}/{numbered_name(tree_size, CHECKPOINT_SUFFIX)}"


def intent_path(seq: int) -> str:
    return f"{PENDING}/{numbered_name(seq, INTENT_SUFFIX)}"


def format_hour(window_start: int) -> str:
    return datetime.fromtimestamp(window_start, UTC).strftime("%Y-%m-%dT%H:00Z")


def batch_data_dir(window_start: int, source: str | None = None) -> str:
    """batch_data_dir is the hour's hive-style partition directory under ``lake/``; sources
    other than the audit logs have their own, under ``lake/source=<name>/``."""
    moment = datetime.fromtimestamp(window_start, UTC)
    top = LAKE if source in (None, "slack_audit_logs") else f"{LAKE}/source={source}"
    return f"{top}/date={moment:%Y-%m-%d}/hour={moment:%H}"


def batch_data_path(
    window_start: int, seq: int, kind: str, suffix: str, source: str | None = None
) -> str:
    """batch_data_path is the one place a batch's data file may live (hive-style partition)."""
    return f"{batch_data_dir(window_start, source)}/{seq:0{SEQ_WIDTH}d}-{kind}{suffix}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_relative(rel: str) -> None:
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a clean relative path: {rel!r}")


class LocalStorage:
    """LocalStorage keeps the ledger in a local directory with POSIX durability rules.

    Every file that must never change is created by writing a staged file under
    ``ledger/pending/``, fsyncing it, hard-linking it to its final name (``link(2)`` fails
    if the name exists: no overwrite, no half-written final file) and fsyncing the
    directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, rel: str) -> Path:
        _check_relative(rel)
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def read(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def read_all(self, rels: list[str]) -> list[bytes]:
        """read_all reads many small files (a year of manifests) without per-path objects;
        FileNotFoundError names the first one missing."""
        for rel in rels:
            _check_relative(rel)
        root = str(self.root)
        out = []
        for rel in rels:
            with open(f"{root}/{rel}", "rb") as f:
                out.append(f.read())
        return out

    def size(self, rel: str) -> int:
        return self.path(rel).stat().st_size

    def list_dir(self, rel: str) -> list[str]:
        """list_dir returns the sorted entry names of a directory ([] if it does not exist)."""
        try:
            return sorted(os.listdir(self.path(rel)))
        except FileNotFoundError:
            return []

    def walk_files(self, rel: str) -> list[str]:
        """walk_files returns every non-directory path under ``rel``, relative to the root."""
        base = self.path(rel)
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                found.append((Path(dirpath) / name).relative_to(self.root).as_posix())
        return found

    def ensure_dirs(self) -> None:
        for rel in (LAKE, MANIFESTS, CHECKPOINTS, KEYS, PENDING):
            self.path(rel).mkdir(parents=True, exist_ok=True)

    def _make_parent(self, target: Path) -> None:
        parent = target.parent
        if parent.is_dir():
            return
        missing = []
        while not parent.is_dir():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                directory.mkdir()
            _fsync_dir(directory.parent)

    def stage_path(self, name: str) -> Path:
        """stage_path returns a fresh path under ``ledger/pending/`` for a file being built."""
        pending = self.path(PENDING)
        pending.mkdir(parents=True, exist_ok=True)
        target = pending / name
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return target

    def write_staged(self, name: str, data: bytes) -> Path:
        staged = self.stage_path(name)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return staged

    @staticmethod
    def fsync_file(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def link_no_overwrite(self, staged: Path, rel: str, *, mode: int | None = None) -> None:
        """link_no_overwrite publishes a durable staged file at ``rel``; FileExistsError if
        something is already there. The staged name is removed afterwards."""
        target = self.path(rel)
        self._make_parent(target)
        if mode is not None:
            os.chmod(staged, mode)
        os.link(staged, target)
        _fsync_dir(target.parent)
        staged.unlink()
        _fsync_dir(staged.parent)

    def create_exclusive(self, rel: str, data: bytes, *, mode: int | None = None) -> None:
        """create_exclusive writes ``data`` at ``rel`` atomically, only if ``rel`` is absent."""
        staged = self.write_staged(f".{Path(rel).name}.{os.getpid()}.tmp", data)
        try:
            self.link_no_overwrite(staged, rel, mode=mode)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
            raise

    def replace(self, rel: str, data: bytes, *, mode: int = 0o644) -> None:
        """replace atomically swaps in new contents (for mutable config such as the keyring)."""
        target = self.path(rel)
        self._make_parent(target)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_dir(target.parent)

    def remove(self, rel: str) -> bool:
        """remove deletes one file (read-only files too: only the directory is written)."""
        try:
            self.path(rel).unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.path(rel).parent)
        return True

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """lock holds an exclusive ``flock(2)`` on ``ledger/lock`` (blocks until free)."""
        target = self.path(LOCK)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise ConfigurationError(f"cannot lock the ledger at {target}: {exc}") from exc
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
