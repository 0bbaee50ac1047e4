"""``audit-pipeline sync`` and ``audit-pipeline demo``.

``sync`` reads the real API (or any URL in ``SLACK_AUDIT_BASE_URL``) with the token from
``SLACK_AUDIT_TOKEN``; the token is never accepted on the command line, where other users
of the machine could read it. ``demo`` is the only path that talks to the embedded
emulator, and it writes to its own data directory (``data/demo``), marked as emulator data,
so demo events are never mixed with real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from audit_pipeline.dataset.build import build_dataset
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ingest import (
    DEFAULT_LOOKBACK_HOURS,
    HOUR,
    SyncReport,
    check_range,
    format_hour,
    gc_paused,
    last_closed_hour,
    parse_hour,
    sync_hours,
)
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger, verify_ledger
from audit_pipeline.ledger.keys import default_signing_key_path, init_key, load_signing_key
from audit_pipeline.ledger.layout import resolve_data_dir
from audit_pipeline.ledger.note import Signer
from audit_pipeline.slack.client import AuditApiSettings, AuditLogSource

DEMO_DATA_DIR = Path("data/demo")
DEMO_ORIGIN = "audit-pipeline.demo/emulator"
DEMO_MARKER = "EMULATOR-DATA.txt"
DEMO_KEY_FILE = "demo-signing-key"
DEMO_SEED = 2026
DEMO_HOURS = 24
ORIGIN_ENV = "AUDIT_LOG_ORIGIN"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_api_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("API (defaults from SLACK_AUDIT_* environment variables)")
    group.add_argument("--base-url", help="API base URL (SLACK_AUDIT_BASE_URL; Slack's by default)")
    group.add_argument("--page-size", type=int, help="entries per page, 1..9999 (default 9999)")
    group.add_argument("--timeout", type=float, help="seconds per request (default 30)")
    group.add_argument("--max-retries", type=int, help="retry budget per request (default 8)")
    group.add_argument(
        "--max-calls-per-minute",
        type=float,
        help="our own request-rate ceiling inside the org's shared limit (default 40; 0 = none)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    sync = subparsers.add_parser(
        "sync",
        help="sync hours [START, END) from the Audit Logs API into the ledger",
        description=(
            "Read every audit event of the UTC hours [START, END) (plus a lookback of hours "
            "already committed, for late events) and commit them as write-once batches. "
            "The token comes from SLACK_AUDIT_TOKEN only."
        ),
        epilog=(
            "exit codes: 0 ok, 1 integrity findings, 2 usage/configuration error, 3 could not "
            f"complete, {EXIT_SOME_HOURS_FAILED} some hours could not be committed (a page "
            "that cannot be parsed; the others were; the raw page is kept in "
            "<data dir>/failed-pages/ and the next run retries the hour)"
        ),
    )
    sync.add_argument("--start", required=True, help="first hour, UTC, e.g. 2026-11-28T00")
    sync.add_argument("--end", required=True, help="end hour (exclusive), UTC")
    sync.add_argument("--data-dir", help="data directory (AUDIT_DATA_DIR, default ./data)")
    sync.add_argument(
        "--lookback",
        type=int,
        default=DEFAULT_LOOKBACK_HOURS,
        metavar="HOURS",
        help="re-read this many committed hours before START for late events",
    )
    sync.add_argument("--run-id", help="identifier recorded in the manifests (default: random)")
    sync.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    _add_api_options(sync)
    sync.set_defaults(func=run_sync)

    demo = subparsers.add_parser(
        "demo",
        help="run the main job on embedded defaults against the built-in emulator",
        description=(
            "Start the Audit Logs API emulator, sync the last 24 closed hours into the demo "
            "data directory (emulator data only), verify the ledger and print a summary."
        ),
    )
    demo.add_argument("--data-dir", default=str(DEMO_DATA_DIR), help="demo data directory")
    demo.add_argument("--hours", type=int, default=DEMO_HOURS, help="closed hours to sync")
    demo.add_argument("--events-per-hour", type=int, default=600)
    demo.add_argument("--seed", type=int, default=DEMO_SEED)
    demo.set_defaults(func=run_demo)


# Some hours could not be committed (a page the API sent could not be parsed); every other
# hour was. README lists it beside 0/1/2/3.
EXIT_SOME_HOURS_FAILED = 4


def _report_json(report: SyncReport) -> dict:
    return {
        "schema": "audit_pipeline.sync/v1",
        "events_committed": report.events_committed,
        "late_events": report.late_events,
        "quarantined": report.quarantined,
        "batches": [
            {
                "hour": w.hour,
                "sequence": w.sequence,
                "kind": w.kind,
                "events": w.events_committed,
                "quarantined": w.quarantined,
            }
            for w in report.batches
        ],
        "missing_from_source": [
            {"hour": hour, "event_id": event_id} for hour, event_id in report.missing_from_source
        ],
        "revisions": [{"hour": hour, "event_id": event_id} for hour, event_id in report.revisions],
        "failed_hours": [
            {"hour": f.hour, "error": f.message, "offset": f.offset, "saved_page": f.saved_page}
            for f in report.failed
        ],
        "api": {
            "requests": report.stats.requests,
            "pages": report.stats.pages,
            "retries": report.stats.retries,
            "rate_limited": report.stats.rate_limited,
            "window_restarts": report.stats.window_restarts,
        },
        "checkpoint": report.checkpoint.decode() if report.checkpoint else None,
    }


def run_sync(args: argparse.Namespace) -> int:
    start, end = parse_hour(args.start), parse_hour(args.end)
    check_range(start, end, args.lookback)
    closed = last_closed_hour(time.time())
    if end > closed + HOUR:
        raise ConfigurationError(
            f"--end {format_hour(end)} is after the last closed hour {format_hour(closed)}: "
            "an hour is synced once it has ended"
        )
    settings = AuditApiSettings.from_env(
        base_url=args.base_url,
        page_size=args.page_size,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_calls_per_minute=args.max_calls_per_minute,
    )
    data_dir = resolve_data_dir(args.data_dir)
    if (data_dir / DEMO_MARKER).exists():
        raise ConfigurationError(
            f"{data_dir} holds emulator demo data; real syncs go to another data directory"
        )
    signer = load_signing_key(default_signing_key_path())
    ledger = Ledger(
        data_dir, file_format=PARQUET_FORMAT, signer=signer, origin=os.environ.get(ORIGIN_ENV)
    )
    with gc_paused():  # this process runs the sync alone (Dagster never pauses it)
        report = sync_hours(
            start=start,
            end=end,
            lookback_hours=args.lookback,
            source=AuditLogSource(settings),
            ledger=ledger,
            run_id=args.run_id or f"cli-{uuid.uuid4()}",
            progress=_progress,
        )
    print(report.summary(), file=sys.stderr)
    if args.json:
        print(json.dumps(_report_json(report), indent=2))
    return EXIT_SOME_HOURS_FAILED if report.failed else 0


def prepare_demo_data_dir(data_dir: Path, *, now: float) -> Signer:
    """prepare_demo_data_dir marks a directory as emulator data and gives it a signing key
    of its own (demo only: real keys live outside the data directory)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_MARKER).write_text(
        "This data directory holds synthetic events from the audit-pipeline emulator.\n"
        "It is not Slack data. Never point a real sync at it.\n"
    )
    signer, _, _ = init_key(
        data_dir, data_dir / DEMO_KEY_FILE, name="audit-pipeline-demo", now=int(now) - 30 * 86_400
    )
    return signer


def run_demo(args: argparse.Namespace) -> int:
    from audit_pipeline.slack.emulator import running_emulator

    data_dir = Path(args.data_dir)
    now = time.time()
    signer = prepare_demo_data_dir(data_dir, now=now)
    end = last_closed_hour(now) + HOUR
    start = end - args.hours * HOUR
    _progress(f"demo: emulator data for {format_hour(start)} .. {format_hour(end - HOUR)} UTC")
    with running_emulator(
        start=start - DEFAULT_LOOKBACK_HOURS * HOUR,
        end=end,
        events_per_hour=args.events_per_hour,
        seed=args.seed,
        rate_limit_per_min=0,
    ) as emulator:
        _progress(f"demo: emulator serving {emulator.base_url}")
        settings = AuditApiSettings(
            token=emulator.token, base_url=emulator.base_url, max_calls_per_minute=0
        )
        ledger = Ledger(data_dir, file_format=PARQUET_FORMAT, signer=signer, origin=DEMO_ORIGIN)
        report = sync_hours(
            start=start,
            end=end,
            source=AuditLogSource(settings),
            ledger=ledger,
            run_id=f"demo-{uuid.uuid4()}",
            progress=_progress,
        )
    verification = verify_ledger(data_dir, file_format=PARQUET_FORMAT)
    print(report.summary())
    print()
    print(verification.summary())
    if not verification:
        return 1
    dataset = build_dataset(data_dir, report=verification, trigger="audit-pipeline demo")
    print(dataset.summary())
    checkpoint = ledger.latest_checkpoint()
    if checkpoint:
        print("\nlatest signed checkpoint:\n" + checkpoint.decode())
    print(f"data directory: {data_dir.resolve()}")
    print(
        f"next: audit-pipeline query --data-dir {data_dir} "
        '"select action, count(*) n from audit_events group by 1 order by 2 desc limit 5"'
    )
    return 0
