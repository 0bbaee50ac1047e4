"""The auditor's commands: ``dataset build|path``, ``query``, ``export-evidence``, ``report``.

``dataset build`` verifies the ledger and publishes the DuckDB dataset atomically;
``query`` runs read-only SQL against it; ``export-evidence`` writes a bundle a third party
verifies offline with ``audit-pipeline verify``; ``report`` writes one self-contained HTML
page. The data directory is ``--data-dir``, else ``$AUDIT_DATA_DIR``, else ``./data``;
the dataset is ``--database``, else ``$AUDIT_DATASET``, else ``<data dir>/audit.duckdb``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from audit_pipeline.cli.object_store import (
    dataset_of_object_store,
    local_copy_for_dataset,
    object_store_arg,
    verified_local_copy,
)
from audit_pipeline.cli.preflight import input_file, output_file, readable_dir, usable_dir
from audit_pipeline.cli.progress import Progress
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.layout import resolve_data_dir
from audit_pipeline.text import plural

if TYPE_CHECKING:
    from audit_pipeline.ledger import Keyring


def _location_options(parser: argparse.ArgumentParser, *, database: bool = True) -> None:
    parser.add_argument("--data-dir", help="data directory (AUDIT_DATA_DIR, default ./data)")
    if database:
        parser.add_argument(
            "--database", help="dataset file (AUDIT_DATASET, default <data dir>/audit.duckdb)"
        )


def _trust_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trusted-keys",
        metavar="FILE",
        help="public keys held outside the data directory (keyring JSON or one vkey a line)",
    )
    parser.add_argument(
        "--trusted-checkpoint",
        metavar="FILE",
        help="a signed checkpoint held elsewhere that the ledger must extend",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    dataset = subparsers.add_parser(
        "dataset",
        help="build the auditors' DuckDB dataset, or print where it is",
        description="The DuckDB dataset over exactly the verified ledger.",
    )
    actions = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="verify the ledger, then rebuild the dataset atomically",
        description=(
            "Verify the ledger; if it is intact, load exactly the data files its signed "
            "manifests list into a new DuckDB file and rename it over the old one. Readers "
            "holding the old file are never blocked. When the previous dataset was built "
            "from a prefix of the verified ledger (same manifest hashes), its rows are kept "
            "and only newer batches are read; anything else rebuilds in full. Every "
            "verification is appended to <data dir>/verification/runs.jsonl."
        ),
    )
    _location_options(build)
    _trust_options(build)
    build.add_argument(
        "--full",
        action="store_true",
        help="read every data file again instead of reusing the previous dataset's rows",
    )
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=run_build)
    path = actions.add_parser("path", help="print the dataset's path")
    _location_options(path)
    path.set_defaults(func=run_path)

    query = subparsers.add_parser(
        "query",
        help="run read-only SQL against the dataset",
        description=(
            "Run SQL against the dataset, read-only, with file access switched off. Tables: "
            "audit_events, quarantine, batches, checkpoints, keys, verification_runs, "
            "dataset_info; views: login_events, logins_by_source, logins_by_user, "
            "admin_changes, app_changes, file_events, file_activity_by_user, anomalies, "
            "anomaly_reasons, workflow_changes, events_per_hour, top_actions, coverage, gaps, "
            "verification_findings. Runs exactly one statement: several (separated by ';') "
            "are refused, run them one at a time. Use '-' to read the SQL from standard input."
        ),
    )
    query.add_argument("sql", help="the SQL statement, or - for standard input")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.add_argument(
        "--full", action="store_true", help="table format: do not shorten long values"
    )
    _location_options(query)
    query.set_defaults(func=run_query_command)

    export = subparsers.add_parser(
        "export-evidence",
        help="write an evidence bundle for a time range (directory or .zip)",
        description=(
            "Copy the data files, manifests, checkpoints and public keys covering the UTC "
            "hours [START, END) into a bundle that 'audit-pipeline verify --data-dir BUNDLE' "
            "checks offline, with a README for whoever receives it."
        ),
    )
    export.add_argument("--start", required=True, help="first hour, UTC, e.g. 2026-11-28T00")
    export.add_argument("--end", required=True, help="end hour (exclusive), UTC")
    export.add_argument("--out", required=True, help="bundle directory, or a path ending .zip")
    _location_options(export, database=False)
    _trust_options(export)
    export.set_defaults(func=run_export)

    report = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report",
        description=(
            "One HTML file with no external assets: verification summary and findings, a "
            "calendar of covered hours (gaps in red), events per hour, top actions, the "
            "current checkpoint and key fingerprints."
        ),
    )
    report.add_argument("--out", required=True, help="the HTML file to write")
    _location_options(report)
    report.set_defaults(func=run_report)


def _note(message: str) -> None:
    """_note prints one line for the person on stderr (stdout carries the query's rows)."""
    print(message, file=sys.stderr, flush=True)


def _check_data_dir(args: argparse.Namespace) -> None:
    """A data directory that is a file or unreadable is an environment problem (exit 3)."""
    readable_dir(resolve_data_dir(args.data_dir))


def _read_file(path: str | None, what: str) -> bytes | None:
    return input_file(path, what) if path else None


def _keyring(path: str | None) -> Keyring | None:
    if not path:
        return None
    from audit_pipeline.ledger import load_trusted_keys

    return load_trusted_keys(Path(path))


def run_build(args: argparse.Namespace) -> int:
    url = object_store_arg(args.data_dir)
    if url is None:
        _check_data_dir(args)
    from audit_pipeline.dataset.build import build_dataset
    from audit_pipeline.witness.config import policy_from_env

    witnesses = policy_from_env()
    keyring = _keyring(args.trusted_keys)
    trusted = _read_file(args.trusted_checkpoint, "trusted checkpoint")
    data_dir = args.data_dir
    if url is not None:
        data_dir = local_copy_for_dataset(url, args.database, keyring, trusted)
    result = build_dataset(
        data_dir,
        database=args.database,
        keyring=keyring,
        trusted_checkpoint=trusted,
        progress=Progress(),
        full=args.full,
        witness_keys=witnesses.keys,
        witness_quorum=witnesses.quorum,
    )
    if args.json:
        doc = {
            "path": str(result.path),
            "tree_size": result.tree_size,
            "root_hash": result.root_hash,
            "batches": result.batches,
            "data_files": result.data_files,
            "events": result.events,
            "quarantined": result.quarantined,
            "verification_run_id": result.verification_run_id,
            "mode": result.mode,
            "reason": result.reason,
            "reused_batches": result.reused_batches,
            "files_read": result.files_read,
            "seconds": round(result.seconds, 3),
        }
        print(json.dumps(doc, indent=1))
    else:
        print(result.summary())
    return 0


def run_path(args: argparse.Namespace) -> int:
    from audit_pipeline.dataset.build import dataset_path

    print(dataset_path(args.data_dir, args.database))
    return 0


def run_query_command(args: argparse.Namespace) -> int:
    url = object_store_arg(args.data_dir)
    if url is None:
        _check_data_dir(args)
    from audit_pipeline.dataset.build import dataset_path
    from audit_pipeline.dataset.query import (
        format_result,
        open_dataset,
        require_one_statement,
        run_query,
    )
    from audit_pipeline.dataset.seal import check_seal

    sql = sys.stdin.read() if args.sql == "-" else args.sql
    if not sql.strip():
        raise ConfigurationError("no SQL given")
    require_one_statement(sql)
    if url is not None:  # the local dataset and the verified copy it was built from
        path, ledger_dir = dataset_of_object_store(url, args.database)
    else:
        path = dataset_path(args.data_dir, args.database)
        ledger_dir = path.parent if (path.parent / "ledger").is_dir() else None
    if os.path.lexists(path):  # never attach a FIFO or link unchecked (it could hang)
        sealed = check_seal(path, ledger_dir)
        sealed.require()
        # Say what the rows are (a verified build, and when), not only the rows.
        _note(sealed.line() + "; rows not re-verified now: 'audit-pipeline verify'")
        _warn_failed_verification(ledger_dir)
    con = open_dataset(path, lock_down=True, sealed=False)
    try:
        result = run_query(con, sql)
    finally:
        con.close()
    sys.stdout.write(format_result(result, args.format, max_cell=None if args.full else 60))
    return 0


def _warn_failed_verification(data_dir: Path | None) -> None:
    """_warn_failed_verification says loudly when the newest recorded verification failed:
    the dataset still holds what was verified before, the ledger no longer verifies."""
    from audit_pipeline.dataset import history

    if data_dir is None:
        return
    try:
        runs = history.load_runs(data_dir)
    except history.HistoryError as exc:
        _note(f"WARNING: the verification history cannot be read: {exc}")
        return
    if runs and not runs[-1].ok:
        latest = runs[-1]
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(latest.verified_at))
        _note(
            f"WARNING: the latest verification ({when}, {latest.trigger}) FAILED with "
            f"{plural(len(latest.findings), 'finding')}; these rows predate it: "
            "run 'audit-pipeline verify'"
        )


def run_export(args: argparse.Namespace) -> int:
    url = object_store_arg(args.data_dir)
    if url is None:
        _check_data_dir(args)
    from audit_pipeline.dataset.evidence import export_evidence
    from audit_pipeline.ingest import parse_hour
    from audit_pipeline.witness.config import policy_from_env

    witnesses = policy_from_env()

    start, end = parse_hour(args.start), parse_hour(args.end)
    if Path(args.out).suffix.lower() == ".zip":
        output_file(Path(args.out), what="evidence bundle")
    else:
        usable_dir(Path(args.out), what="evidence bundle directory")
    keyring = _keyring(args.trusted_keys)
    trusted = _read_file(args.trusted_checkpoint, "trusted checkpoint")
    with contextlib.ExitStack() as stack:
        data_dir = args.data_dir
        if url is not None:  # a verified copy, for this export only
            copy = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".evidence-s3-")))
            data_dir = verified_local_copy(url, copy / "ledger-copy", keyring, trusted)
        result = export_evidence(
            data_dir,
            start=start,
            end=end,
            out=Path(args.out),
            keyring=keyring,
            trusted_checkpoint=trusted,
            witness_keys=witnesses.keys,
            witness_quorum=witnesses.quorum,
        )
    print(result.summary())
    return 0


def run_report(args: argparse.Namespace) -> int:
    url = object_store_arg(args.data_dir)
    if url is None:
        _check_data_dir(args)
    from audit_pipeline.dataset.report import write_checked_report

    data_dir = args.data_dir
    if url is not None:  # the dataset's copy, brought up to the store as verified now
        data_dir = local_copy_for_dataset(url, args.database, None, None)
    out, passed = write_checked_report(
        output_file(Path(args.out), what="report"), data_dir=data_dir, database=args.database
    )
    print(f"report written to {out}")
    if not passed:
        # The page shows the failure; the exit code says it too (1: integrity findings).
        print("the report's verification did not pass: see its banner", file=sys.stderr)
        return 1
    return 0
