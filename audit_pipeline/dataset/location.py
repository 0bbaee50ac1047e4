"""Where the auditors' dataset lives, without DuckDB: the verifier-only install needs it to
find (and check the seal of) a dataset it never opens."""

from __future__ import annotations

import os
from pathlib import Path

from audit_pipeline.ledger import resolve_data_dir

DATASET_FILENAME = "audit.duckdb"
DATASET_ENV = "AUDIT_DATASET"


def dataset_path(data_dir: str | Path | None = None, explicit: str | Path | None = None) -> Path:
    """dataset_path: ``explicit``, else ``$AUDIT_DATASET``, else ``<data dir>/audit.duckdb``."""
    chosen = explicit or os.environ.get(DATASET_ENV)
    if chosen:
        return Path(chosen).expanduser()
    return resolve_data_dir(data_dir) / DATASET_FILENAME
