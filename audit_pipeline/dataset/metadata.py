"""The dataset's tables about the ledger: batches, checkpoints, keys, verification runs,
``dataset_info`` (how and from what the file was built), and the views over them.

``batches`` gains the new batches' rows in an incremental build; the others are written
whole by every build (they are small: read from the keyring, the checkpoints and the
history).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from audit_pipeline import __version__
from audit_pipeline.dataset import history
from audit_pipeline.dataset.chain import VerifiedChain
from audit_pipeline.dataset.errors import DatasetIntegrityError
from audit_pipeline.dataset.schema import DATASET_SCHEMA_VERSION
from audit_pipeline.dataset.views import create_views
from audit_pipeline.dataset.workflow_views import (
    ActivityFileChanged,
    create_workflow_views,
    load_workflow_activity,
)
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.lake import SCHEMA_VERSION
from audit_pipeline.ledger import (
    Keyring,
    LedgerError,
    SignedManifest,
    VerifyReport,
    load_keyring,
    open_checkpoint,
)
from audit_pipeline.ledger.canonical import canonical_json
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    manifest_path,
    parse_numbered_name,
)
from audit_pipeline.ledger.note import parse_vkey
from audit_pipeline.ledger.verify import merkle_b64


def write_metadata(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    report: VerifyReport,
    chain: VerifiedChain,
    run: history.VerificationRun,
    mode: str,
    reason: str,
    known_checkpoints: Mapping[bytes, tuple[Any, ...]],
) -> dict[str, int]:
    """write_metadata writes the other metadata tables and the views, then checkpoints."""
    ((events,),) = con.sql("SELECT count(*) FROM audit_events").fetchall()
    ((quarantine,),) = con.sql("SELECT count(*) FROM quarantine").fetchall()
    ((data_files,),) = con.sql("SELECT count(data_path) FROM batches").fetchall()
    _insert_checkpoints(con, data_dir, chain, report, known_checkpoints)
    _insert_keys(con, data_dir)
    _insert_runs(con, history.load_runs(data_dir))
    _insert_info(con, data_dir, report, run, events, quarantine, mode, reason)
    try:
        load_workflow_activity(con, data_dir, chain.manifests())
    except (OSError, ActivityFileChanged) as exc:
        raise DatasetIntegrityError(f"{exc}; nothing was published") from exc
    create_views(con)
    create_workflow_views(con)
    con.execute("CHECKPOINT")
    return {
        "batches": len(chain),
        "data_files": data_files,
        "events": events,
        "quarantined": quarantine,
    }


def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: dict[str, list[Any]],
                 select: str) -> None:  # fmt: skip
    """_insert_rows inserts column lists through Arrow (one statement, not one per row)."""
    staged = pa.table(rows)
    con.register("_rows", staged)
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM _rows")
    finally:
        con.unregister("_rows")


def _ts(column: str) -> str:
    return f"to_timestamp({column})"


def insert_batches(
    con: duckdb.DuckDBPyConnection, chain: Sequence[SignedManifest], quarantined: dict[int, int]
) -> None:
    if not chain:
        return
    cols: dict[str, list[Any]] = {k: [] for k in (
        "sequence", "kind", "window_start", "window_end", "data_path", "data_sha256",
        "data_size", "data_rows", "event_count", "quarantined", "min_date_create",
        "max_date_create", "events_merkle_root", "manifest_path", "manifest_sha256",
        "prev_manifest_sha256", "key_name", "key_id", "created", "run_id", "origin", "source",
        "manifest",
    )}  # fmt: skip
    for signed in chain:
        m = signed.manifest
        d = m.data
        values = {
            "sequence": m.sequence,
            "kind": m.kind,
            "window_start": m.window_start,
            "window_end": m.window_end,
            "data_path": d.path if d else None,
            "data_sha256": d.sha256 if d else None,
            "data_size": d.size if d else None,
            "data_rows": d.rows if d else None,
            "event_count": m.event_count,
            "quarantined": quarantined.get(m.sequence, 0),
            "min_date_create": m.min_date_create,
            "max_date_create": m.max_date_create,
            "events_merkle_root": m.events_root,
            "manifest_path": manifest_path(m.sequence),
            "manifest_sha256": signed.sha256,
            "prev_manifest_sha256": m.prev_manifest_sha256,
            "key_name": m.key_name,
            "key_id": m.key_id,
            "created": m.created,
            "run_id": m.run_id,
            "origin": m.origin,
            "source": canonical_json(dict(m.source)).decode(),
            "manifest": signed.raw.decode(),
        }
        for key, value in values.items():
            cols[key].append(value)
    select = ", ".join(
        _ts(c)
        if c in ("window_start", "window_end", "min_date_create", "max_date_create", "created")
        else c
        for c in cols
    )
    _insert_rows(con, "batches", cols, select)


def trusted_keyring(data_dir: Path) -> Keyring | None:
    try:
        return load_keyring(data_dir)
    except ConfigurationError:
        return None


def _insert_checkpoints(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    chain: VerifiedChain,
    report: VerifyReport,
    known: Mapping[bytes, tuple[Any, ...]],
) -> None:
    keyring = trusted_keyring(data_dir)
    if keyring is None:
        return
    verifiers = keyring.verifiers()
    cols: dict[str, list[Any]] = {
        k: [] for k in ("tree_size", "origin", "root_hash", "signed_by", "matches", "path", "note")
    }
    directory = data_dir / CHECKPOINTS
    for name in sorted(os.listdir(directory)) if directory.is_dir() else []:
        size = parse_numbered_name(name, CHECKPOINT_SUFFIX)
        if size is None or size > report.tree_size:
            continue
        raw = (directory / name).read_bytes()
        if raw in known:
            tree_size, origin, root_hash, signed_by = known[raw]
        else:
            try:
                cp, note = open_checkpoint(raw, verifiers)
            except LedgerError:
                continue
            # base64, as in the checkpoint itself and every verification (one encoding)
            tree_size, origin, root_hash = cp.tree_size, cp.origin, merkle_b64(cp.root_hash)
            signed_by = [f"{s.name}+{s.key_hash:08x}" for s in note.sigs]
        cols["tree_size"].append(tree_size)
        cols["origin"].append(origin)
        cols["root_hash"].append(root_hash)
        cols["signed_by"].append(signed_by)
        cols["matches"].append(
            tree_size <= len(chain) and merkle_b64(chain.roots[tree_size]) == root_hash
        )
        cols["path"].append(f"{CHECKPOINTS}/{name}")
        cols["note"].append(raw.decode())
    if cols["tree_size"]:
        _insert_rows(con, "checkpoints", cols, ", ".join(cols))


def _insert_keys(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    keyring = trusted_keyring(data_dir)
    if keyring is None or not keyring.keys:
        return
    cols: dict[str, list[Any]] = {k: [] for k in (
        "name", "key_id", "vkey", "fingerprint", "valid_from", "valid_until", "revoked_at",
    )}  # fmt: skip
    for key in keyring.keys:
        _, _, public = parse_vkey(key.vkey)
        cols["name"].append(key.name)
        cols["key_id"].append(key.key_id)
        cols["vkey"].append(key.vkey)
        cols["fingerprint"].append(hashlib.sha256(public).hexdigest())
        cols["valid_from"].append(key.valid_from)
        cols["valid_until"].append(key.valid_until)
        cols["revoked_at"].append(key.revoked_at)
    select = "name, key_id, vkey, fingerprint, to_timestamp(valid_from), " \
        "to_timestamp(valid_until), to_timestamp(revoked_at)"  # fmt: skip
    _insert_rows(con, "keys", cols, select)


def _insert_runs(con: duckdb.DuckDBPyConnection, runs: Sequence[history.VerificationRun]) -> None:
    if not runs:
        return
    cols: dict[str, list[Any]] = {k: [] for k in (
        "run_id", "verified_at", "trigger", "ok", "tree_size", "root_hash", "finding_count",
        "checkpoint", "report",
    )}  # fmt: skip
    for run in runs:
        cols["run_id"].append(run.run_id)
        cols["verified_at"].append(run.verified_at)
        cols["trigger"].append(run.trigger)
        cols["ok"].append(run.ok)
        cols["tree_size"].append(run.tree_size)
        cols["root_hash"].append(run.root_hash)
        cols["finding_count"].append(len(run.findings))
        cols["checkpoint"].append(run.checkpoint)
        cols["report"].append(json.dumps(dict(run.report), sort_keys=True))
    select = ", ".join(_ts(c) if c == "verified_at" else c for c in cols)
    _insert_rows(con, "verification_runs", cols, select)


def _insert_info(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    report: VerifyReport,
    run: history.VerificationRun,
    events: int,
    quarantined: int,
    mode: str,
    reason: str,
) -> None:
    built_at = int(time.time())
    info = {
        "built_at": str(built_at),
        "built_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(built_at)),
        "audit_pipeline_version": __version__,
        "dataset_schema_version": DATASET_SCHEMA_VERSION,
        "lake_schema_version": SCHEMA_VERSION,
        "data_dir": str(data_dir.resolve()),
        "origin": report.origin or "",
        "tree_size": str(report.tree_size),
        "root_hash": run.root_hash or "",
        "checkpoint": run.checkpoint or "",
        "verification_run_id": run.run_id,
        "events": str(events),
        "quarantined": str(quarantined),
        "duckdb_version": duckdb.__version__,
        "build_mode": mode,
        "build_reason": reason,
        # which witnesses vouched for the checkpoint, when the verification had their keys
        "witnesses": json.dumps(report.witnesses.to_dict()) if report.witnesses else "",
    }
    _insert_rows(
        con, "dataset_info", {"key": list(info), "value": list(info.values())}, "key, value"
    )
