"""The data directory layout, and the storage seam every ledger write goes through.

::

    <data dir>/
      lake/date=YYYY-MM-DD/hour=HH/<seq>-<kind><suffix>   batch data files, mode 0444
      ledger/manifests/<seq>.json                          one signed manifest per batch
      ledger/checkpoints/<tree size>.checkpoint            signed C2SP checkpoints
      ledger/keys/keyring.json                             trusted public keys
      ledger/witnessed/<tree size>.checkpoint              the same, cosigned by witnesses
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
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.ledger.errors import LedgerError

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
DIR_MODE = 0o755
DATA_MODE = 0o444


class NotRegularFileError(LedgerError):
    """A symbolic link, FIFO, device or directory stands where a regular file should be
    (or the path runs through a linked directory): it is never followed nor waited on."""

    def __init__(self, path: str | Path, kind: str) -> None:
        self.path = str(path)
        self.kind = kind
        super().__init__(f"{path} is {kind}, not a regular file: not followed, not read")


def file_kind(mode: int) -> str:
    """file_kind names a file type the way a finding says it."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def open_regular(path: str | Path) -> int:
    """open_regular opens a file for reading only if it is a regular file: the last
    component is not followed (``O_NOFOLLOW``), a FIFO does not block the open
    (``O_NONBLOCK``), and the type is checked on the open descriptor (``fstat``) before a
    byte is read. NotRegularFileError otherwise; FileNotFoundError if absent."""
    return open_regular_for_writing(path, os.O_RDONLY, 0)


def open_regular_for_writing(path: str | Path, flags: int, mode: int) -> int:
    """open_regular_for_writing opens (or creates) a file to write, lock or append to only
    if it is a regular file, as :func:`open_regular` does for reading: a symbolic link is
    not followed, and a FIFO neither blocks the open (a writer of a FIFO otherwise waits
    for a reader forever) nor is written to. NotRegularFileError otherwise."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFileError(path, "a symbolic link") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            raise NotRegularFileError(path, file_kind(os.lstat(path).st_mode)) from None
        raise
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        raise NotRegularFileError(path, file_kind(kind))
    os.set_blocking(fd, True)
    return fd


def read_regular(path: str | Path) -> bytes:
    """read_regular returns the bytes of a regular file (see :func:`open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as fh:
        return fh.read()


def read_named_file(path: str | Path) -> bytes:
    """read_named_file reads a file a person or setting names (a key, trusted keys, a proof):
    links are followed (a mounted secret often is one) and a pipe is read (``<(command)``),
    but the open never waits for a writer (a FIFO nobody writes to reads as empty), and a
    device or directory, which would block or read forever, is an OSError naming its type."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise OSError(errno.EINVAL, f"{file_kind(mode)}, not a regular file", str(path))
        os.set_blocking(fd, True)
        return fh.read()


def make_dir(path: Path) -> None:
    """make_dir creates one directory with mode 0755 whatever the umask."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    os.chmod(path, DIR_MODE)


def make_dirs(path: Path) -> None:
    """make_dirs creates ``path`` and its missing parents, each 0755 whatever the umask."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        make_dir(directory)


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """resolve_data_dir picks the data directory: ``--data-dir``, else ``$AUDIT_DATA_DIR``,
    else ``./data``."""
    chosen = explicit if explicit not in (None, "") else os.environ.get(DATA_DIR_ENV)
    if is_object_store_url(chosen):
        raise ConfigurationError(
            f"{chosen} is an object-store data directory, which this does not use yet: use a "
            "local data directory (see 'Object storage' in the README for what works there)"
        )
    return Path(chosen or DEFAULT_DATA_DIR).expanduser()


def is_object_store_url(value: object) -> bool:
    """is_object_store_url: is this data directory an ``s3://`` URL (also spelled by a
    ``Path``, which folds ``//`` to ``/``), never a local relative path called ``s3:``?"""
    return value is not None and str(value).startswith("s3:/")


def numbered_name(number: int, suffix: str) -> str:
    return f"{number:0{SEQ_WIDTH}d}{suffix}"


def count_numbered(names: list[str], suffix: str) -> int | None:
    """count_numbered is ``n`` when the sorted ``names`` are exactly ``0..n-1`` spelled
    canonically (a directory listing of manifests; checked without parsing each name),
    else None (the caller parses them to say what is wrong)."""
    if names != [numbered_name(i, suffix) for i in range(len(names))]:
        return None
    return len(names)


def latest_numbered(names: list[str], suffix: str) -> int | None:
    """latest_numbered is the largest N of the names ``<N><suffix>`` spelled canonically
    (a listing of checkpoints), None if there is none; the longest, then greatest, name
    is tried first so that a listing of canonical names is not parsed one by one."""
    candidates = sorted((n for n in names if n.endswith(suffix)), key=lambda n: (len(n), n))
    for name in reversed(candidates):
        number = parse_numbered_name(name, suffix)
        if number is not None:
            return number
    return None


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
        """read returns a regular file's bytes (NotRegularFileError for a link, FIFO,
        device, or a path through a linked directory: never followed, never waited on)."""
        return read_regular(self.regular_path(rel))

    def regular_path(self, rel: str) -> Path:
        """regular_path returns the path of ``rel`` after checking that no directory on
        the way down from the root is a symbolic link (the file itself is checked when
        opened with :func:`open_regular`)."""
        path = self.path(rel)
        current = str(self.root)  # strings, not Paths: verify walks every data file
        for part in rel.split("/")[:-1]:
            current = f"{current}/{part}"
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                return path
            if not stat.S_ISDIR(mode):
                raise NotRegularFileError(path, f"reached through {file_kind(mode)} ({current})")
        return path

    def read_all(self, rels: list[str]) -> list[bytes]:
        """read_all reads many small files (a year of manifests) without per-path objects;
        FileNotFoundError names the first one missing."""
        for rel in rels:
            _check_relative(rel)
        root = str(self.root)
        out = []
        for rel in rels:
            with os.fdopen(open_regular(f"{root}/{rel}"), "rb") as f:
                out.append(f.read())
        return out

    def size(self, rel: str) -> int:
        return self.path(rel).stat().st_size

    def list_dir(self, rel: str, after: str | None = None) -> list[str]:
        """list_dir returns the sorted entry names of a directory ([] if it does not exist);
        with ``after``, only those that sort after it (as an object store's listing)."""
        try:
            names = sorted(os.listdir(self.path(rel)))
        except FileNotFoundError:
            return []
        return names if after is None else [n for n in names if n > after]

    def walk_files(self, rel: str, linked_dirs: list[str] | None = None) -> list[str]:
        """walk_files returns every non-directory path under ``rel``, relative to the root,
        without following links; a symbolic link to a directory is listed in
        ``linked_dirs`` (when given), never entered."""
        base = self.path(rel)
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in list(dirnames):
                if os.path.islink(os.path.join(dirpath, name)):
                    dirnames.remove(name)
                    if linked_dirs is not None:
                        linked_dirs.append(self._relative(dirpath, name))
            for name in sorted(filenames):
                found.append(self._relative(dirpath, name))
        return found

    def linked_directories(self, skip: tuple[str, ...] = ()) -> list[str]:
        """linked_directories lists every symbolic link to a directory under the root (and
        the root's own top-level entries), not entering ``skip`` (walked elsewhere)."""
        found: list[str] = []
        for dirpath, dirnames, _ in os.walk(self.root):
            for name in list(dirnames):
                rel = self._relative(dirpath, name)
                if os.path.islink(os.path.join(dirpath, name)):
                    found.append(rel)
                    dirnames.remove(name)
                elif rel in skip:
                    dirnames.remove(name)
        return sorted(found)

    def _relative(self, dirpath: str, name: str) -> str:
        root = str(self.root)
        if os.sep == "/" and dirpath.startswith(root + "/"):
            return f"{dirpath[len(root) + 1 :]}/{name}"  # os.walk joined it onto the root
        return (Path(dirpath) / name).relative_to(self.root).as_posix()

    def ensure_dirs(self) -> None:
        for rel in (LAKE, MANIFESTS, CHECKPOINTS, KEYS, PENDING):
            make_dirs(self.path(rel))

    def _make_parent(self, target: Path) -> None:
        parent = target.parent
        if parent.is_dir():
            return
        missing = []
        while not parent.is_dir():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            make_dir(directory)
            _fsync_dir(directory.parent)

    def stage_path(self, name: str) -> Path:
        """stage_path returns a fresh path under ``ledger/pending/`` for a file being built."""
        pending = self.path(PENDING)
        make_dirs(pending)
        target = self.regular_path(f"{PENDING}/{name}")
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return target

    def write_staged(self, name: str, data: bytes) -> Path:
        staged = self.stage_path(name)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return staged

    @staticmethod
    def fsync_file(path: Path) -> None:
        fd = open_regular(path)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def link_no_overwrite(self, staged: Path, rel: str, *, mode: int | None = None) -> None:
        """link_no_overwrite publishes a durable staged file at ``rel``; FileExistsError if
        something is already there. The staged name is removed afterwards."""
        target = self.path(rel)
        self._make_parent(target)
        self.regular_path(rel)  # never publish through a linked directory
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
        self.regular_path(rel)  # never write through a linked directory
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = open_regular_for_writing(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_dir(target.parent)

    def remove(self, rel: str) -> bool:
        """remove deletes one file (read-only files too: only the directory is written),
        never through a linked directory (NotRegularFileError): it stays inside the root."""
        try:
            self.regular_path(rel).unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.path(rel).parent)
        return True

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """lock holds an exclusive ``flock(2)`` on ``ledger/lock`` (blocks until free)."""
        target = self.path(LOCK)
        make_dirs(target.parent)
        try:
            fd = open_regular_for_writing(target, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                # the environment (a read-only mount, permissions): could not complete, 3
                raise AuditPipelineError(
                    f"cannot lock the ledger at {target}: {exc.strerror}"
                ) from exc
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
