"""Tables of the dataset (DDL with ``COMMENT ON`` text); the views are in ``views.py``."""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pyarrow as pa

from audit_pipeline.dataset import workflow_views
from audit_pipeline.lake import COLUMN_DOCS, EVENT_SCHEMA

DATASET_SCHEMA_VERSION = "1"

# Columns of EVENT_SCHEMA that become JSON in DuckDB, so ``->`` and ``->>`` work directly.
_JSON_COLUMNS = frozenset({"details", "raw_json"})
# Provenance added to every row: which signed batch holds it, and where in its event tree.
PROVENANCE_DOCS = {
    "batch_sequence": "Sequence number of the signed manifest (batch) that holds this row "
    "(join batches.sequence).",
    "row_index": "Position of the row in its batch file: its leaf index in the batch's "
    "event Merkle tree, used by 'audit-pipeline prove'.",
}
EVENT_COLUMNS = tuple(f.name for f in EVENT_SCHEMA if f.name != "quarantine_reason")
QUARANTINE_COLUMNS = (
    "event_id",
    "date_create",
    "quarantine_reason",
    "raw_json",
    "leaf_hash",
    "entry_bytes",
)


def _duckdb_type(field: pa.Field) -> str:
    if field.name in _JSON_COLUMNS:
        return "JSON"
    if pa.types.is_timestamp(field.type):
        return "TIMESTAMPTZ"
    if pa.types.is_binary(field.type) or pa.types.is_fixed_size_binary(field.type):
        return "BLOB"
    if pa.types.is_string(field.type):
        return "VARCHAR"
    if pa.types.is_integer(field.type):
        return "BIGINT"
    raise TypeError(f"no DuckDB type for lake column {field.name} ({field.type})")


def audit_events_column_types() -> dict[str, str]:
    """audit_events_column_types maps each audit_events column to its DuckDB type."""
    by_name = {f.name: f for f in EVENT_SCHEMA}
    types = {name: _duckdb_type(by_name[name]) for name in EVENT_COLUMNS}
    return {**types, "batch_sequence": "BIGINT", "row_index": "BIGINT"}


def _columns_ddl(names: tuple[str, ...]) -> str:
    by_name = {f.name: f for f in EVENT_SCHEMA}
    parts = []
    for name in names:
        field = by_name[name]
        null = "" if field.nullable else " NOT NULL"
        parts.append(f"{name} {_duckdb_type(field)}{null}")
    parts += ["batch_sequence BIGINT NOT NULL", "row_index BIGINT NOT NULL"]
    return ", ".join(parts)


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


TABLES: dict[str, tuple[str, str]] = {
    "audit_events": (
        f"CREATE TABLE audit_events ({_columns_ddl(EVENT_COLUMNS)})",
        "One row per committed audit event, exactly the rows of the verified batch files "
        "(quarantined entries are in quarantine). Rows are stored in time order.",
    ),
    "quarantine": (
        f"CREATE TABLE quarantine ({_columns_ddl(QUARANTINE_COLUMNS)})",
        "Entries the API returned that could not be stored as events, with the reason and "
        "their exact bytes (entry_bytes), and revisions (event_id revision-…: a committed "
        "id returned with different content; see the revisions view); committed and "
        "provable like any event.",
    ),
    "batches": (
        """CREATE TABLE batches (
            sequence BIGINT NOT NULL, kind VARCHAR NOT NULL,
            window_start TIMESTAMPTZ NOT NULL, window_end TIMESTAMPTZ NOT NULL,
            data_path VARCHAR, data_sha256 VARCHAR, data_size BIGINT, data_rows BIGINT,
            event_count BIGINT NOT NULL, quarantined BIGINT NOT NULL,
            min_date_create TIMESTAMPTZ, max_date_create TIMESTAMPTZ,
            events_merkle_root VARCHAR NOT NULL,
            manifest_path VARCHAR NOT NULL, manifest_sha256 VARCHAR NOT NULL,
            prev_manifest_sha256 VARCHAR NOT NULL,
            key_name VARCHAR NOT NULL, key_id VARCHAR NOT NULL,
            created TIMESTAMPTZ NOT NULL, run_id VARCHAR NOT NULL, origin VARCHAR NOT NULL,
            source JSON, manifest JSON NOT NULL)""",
        "One row per signed manifest in the verified ledger: its hour window, kind "
        "(hour, late, empty), data file and hashes, and the key that signed it. "
        "event_count is the manifest's (it includes the batch's quarantined rows).",
    ),
    "checkpoints": (
        """CREATE TABLE checkpoints (
            tree_size BIGINT NOT NULL, origin VARCHAR NOT NULL, root_hash VARCHAR NOT NULL,
            signed_by VARCHAR[] NOT NULL, matches_ledger BOOLEAN NOT NULL,
            path VARCHAR NOT NULL, note VARCHAR NOT NULL)""",
        "Signed checkpoints (C2SP tree heads) of the ledger; matches_ledger says the root "
        "equals the Merkle root of the verified manifests at that size.",
    ),
    "keys": (
        """CREATE TABLE keys (
            name VARCHAR NOT NULL, key_id VARCHAR NOT NULL, vkey VARCHAR NOT NULL,
            fingerprint VARCHAR NOT NULL, valid_from TIMESTAMPTZ, valid_until TIMESTAMPTZ,
            revoked_at TIMESTAMPTZ)""",
        "Public keys the data directory's keyring trusts, with validity windows; "
        "fingerprint is the SHA-256 of the Ed25519 public key.",
    ),
    "verification_runs": (
        """CREATE TABLE verification_runs (
            run_id VARCHAR NOT NULL, verified_at TIMESTAMPTZ NOT NULL, trigger VARCHAR,
            ok BOOLEAN NOT NULL, tree_size BIGINT, root_hash VARCHAR, finding_count BIGINT,
            checkpoint VARCHAR, report JSON)""",
        "Every verification of the ledger ever recorded (from verification/runs.jsonl), "
        "with the verifier's full report: the history auditors ask for.",
    ),
    "dataset_info": (
        "CREATE TABLE dataset_info (key VARCHAR NOT NULL, value VARCHAR)",
        "How and from what this dataset file was built.",
    ),
    workflow_views.TABLE: (workflow_views.TABLE_DDL, workflow_views.TABLE_COMMENT),
}


# Tables every build writes whole (small: read from the keyring, the checkpoints and the
# history). An incremental build keeps the rows of audit_events, quarantine and batches of
# the batches it reuses.
# workflow_activity (the second source's rows, small) is also written whole every build.
METADATA_TABLES = (
    "checkpoints",
    "keys",
    "verification_runs",
    "dataset_info",
    workflow_views.TABLE,
)


def create_tables(con: duckdb.DuckDBPyConnection, names: Iterable[str] | None = None) -> None:
    """create_tables creates every table (or only ``names``) with its comments."""
    wanted = list(TABLES) if names is None else list(names)
    for name in wanted:
        con.execute(TABLES[name][0])
    comment_tables(con, wanted)


def comment_tables(con: duckdb.DuckDBPyConnection, names: Iterable[str] | None = None) -> None:
    """comment_tables (re)writes the table and column comments of ``names`` (default all),
    so a file carried over from an earlier build gets today's text."""
    wanted = list(TABLES) if names is None else list(names)
    for name in wanted:
        con.execute(f"COMMENT ON TABLE {name} IS {_q(TABLES[name][1])}")
    if workflow_views.TABLE in wanted:
        workflow_views.comment_table(con)
    for table, columns in (("audit_events", EVENT_COLUMNS), ("quarantine", QUARANTINE_COLUMNS)):
        if table not in wanted:
            continue
        for column in columns:
            con.execute(f"COMMENT ON COLUMN {table}.{column} IS {_q(COLUMN_DOCS[column])}")
        for column, doc in PROVENANCE_DOCS.items():
            con.execute(f"COMMENT ON COLUMN {table}.{column} IS {_q(doc)}")
