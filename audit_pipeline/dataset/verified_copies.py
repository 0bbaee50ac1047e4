"""In-memory copies of verified data files that DuckDB's Parquet reader opens by path.

The dataset build hashes each file's bytes against its manifest and then lets DuckDB decode
exactly those bytes, never the file on disk (a file changed after it was hashed cannot slip
in). Where Linux offers sealed memory files (``memfd_create``), each copy is one, sealed
against any write, truncation or growth before DuckDB opens it, and DuckDB reads it with its
own threads as ``/proc/self/fd/N``. Elsewhere (macOS, Windows) the copies live in an fsspec
in-memory file system registered with the connection: as exact, but DuckDB's reads then go
through Python, which is slower.
"""

from __future__ import annotations

import os
from typing import Protocol

import duckdb

try:  # Linux: sealed memory files (fcntl's seals and resource exist only on Unix)
    import fcntl
    import resource

    _SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    SEALED_FILES = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")
except (ImportError, AttributeError):
    SEALED_FILES = False

_MEMORY_PROTOCOL = "audit-verified"
MAX_FILES = 4096  # copies held at once, at most (sealed: one descriptor each)


class VerifiedCopies(Protocol):
    """Where a group of verified files waits for DuckDB: ``put`` returns the path DuckDB
    reads, ``drop`` releases it once the group is loaded."""

    max_files: int

    def put(self, raw: bytes, name: str) -> str: ...

    def drop(self, path: str) -> None: ...

    def close(self) -> None: ...


def sealed_copy(raw: bytes, name: str) -> int:
    """sealed_copy puts ``raw`` in a new in-memory file sealed against any change (no
    write, truncation or growth through any descriptor) and returns its descriptor."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


class SealedCopies:
    """SealedCopies: one sealed memory file per verified file (Linux)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        # A copy's path (/proc/self/fd/N) names another file once N is reused: DuckDB must
        # not serve one file's bytes from a cache under the other's name.
        con.execute("SET enable_external_file_cache = false")
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 2 * MAX_FILES
        self.max_files = max(1, min(MAX_FILES, soft // 2))  # half the descriptors, at most

    def put(self, raw: bytes, name: str) -> str:
        return f"/proc/self/fd/{sealed_copy(raw, name)}"

    def drop(self, path: str) -> None:
        os.close(int(path.rsplit("/", 1)[1]))

    def close(self) -> None:
        """Nothing held beyond the copies, which their groups drop."""


class MemoryCopies:
    """MemoryCopies: an fsspec in-memory file system of this connection's own (where no
    sealed memory files exist); nothing else in the process writes to it."""

    max_files = MAX_FILES

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        from fsspec.implementations.memory import MemoryFileSystem

        class _Files(MemoryFileSystem):
            protocol = _MEMORY_PROTOCOL
            root_marker = ""

        self.con = con
        self.files = _Files(global_store=False, skip_instance_cache=True)
        self.count = 0
        con.register_filesystem(self.files)

    def put(self, raw: bytes, name: str) -> str:
        self.count += 1
        path = f"{_MEMORY_PROTOCOL}://{id(self)}/{self.count}-{name}.parquet"
        self.files.pipe_file(path, raw)
        return path

    def drop(self, path: str) -> None:
        self.files.rm_file(path)

    def close(self) -> None:
        self.files.store.clear()
        self.con.unregister_filesystem(_MEMORY_PROTOCOL)


def verified_copies(
    con: duckdb.DuckDBPyConnection, *, sealed: bool = SEALED_FILES
) -> VerifiedCopies:
    """verified_copies is where this platform keeps verified files for ``con`` to read."""
    return SealedCopies(con) if sealed else MemoryCopies(con)
