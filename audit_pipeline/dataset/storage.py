"""The on-disk format of ``audit.duckdb``: one that DuckDB 1.x opens, not only 2.0.

DuckDB 2.0 writes new files in its newest storage format by default, which every 1.x
release (Python module, CLI, the JDBC driver inside DBeaver) refuses ("Trying to read a
database file with version number 999"). Auditors use the tools they have, so the dataset
is created with the v1.0.0 storage format (header version 64), which DuckDB 1.0 and every
later release reads. An existing file keeps the format it was created with.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

STORAGE_COMPATIBILITY = "v1.0.0"
STORAGE_VERSION_NUMBER = 64  # what a DuckDB file header says for that format
_MAGIC = b"DUCK"


def connect_new(path: Path) -> duckdb.DuckDBPyConnection:
    """connect_new creates (or opens) ``path`` so that new storage uses the 1.x format."""
    return duckdb.connect(
        str(path), config={"storage_compatibility_version": STORAGE_COMPATIBILITY}
    )


def storage_version_number(path: Path) -> int | None:
    """storage_version_number reads the format number from a DuckDB file's header, or None
    if the file is not a DuckDB database."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[8:12] != _MAGIC:
        return None
    return int.from_bytes(header[12:20], "little")
