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
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit_pipeline.cli.object_store import object_store_arg, object_store_ledger
from audit_pipeline.cli.output import invoked_as
from audit_pipeline.cli.preflight import ready_to_commit, usable_dir
from audit_pipeline.cli.progress import Progress
from audit_pipeline.dataset.build import build_dataset
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ingest import (
    DEFAULT_LOOKBACK_HOURS,
    HOUR,
    SyncReport,
    check_range,
    gc_paused,
    last_closed_hour,
    parse_hour,
    sync_hours,
)
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger, verify_ledger
from audit_pipeline.ledger.keys import default_signing_key_path, init_key, load_signing_key
from audit_pipeline.ledger.layout import format_hour, resolve_data_dir
from audit_pipeline.ledger.note import Signer
from audit_pipeline.ledger.signer_state import signer_state_path
from audit_pipeline.slack.client import AUDIT_HISTORY_START, AuditApiSettings, AuditLogSource
from audit_pipeline.text import plural
from audit_pipeline.witness.committer import CommitWitnessing
from audit_pipeline.witness.config import make_policy, policy_from_env
from audit_pipeline.witness.local import running_local_witness

DEMO_DATA_DIR = Path("data/demo")
DEMO_ORIGIN = "audit-pipeline.demo/emulator"
DEMO_MARKER = "EMULATOR-DATA.txt"
DEMO_KEY_FILE = "demo-signing-key"
DEMO_SEED = 2026
DEMO_HOURS = 24
DEMO_WORKFLOW_RUNS_PER_HOUR = 4
ORIGIN_ENV = "AUDIT_LOG_ORIGIN"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


DEV_PORT = 3000  # make dev's default PORT


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


def add_range_options(parser: argparse.ArgumentParser) -> None:
    """add_range_options: the hours, data directory, lookback and output of a sync."""
    parser.add_argument("--start", required=True, help="first hour, UTC, e.g. 2026-11-28T00")
    parser.add_argument("--end", required=True, help="end hour (exclusive), UTC")
    parser.add_argument("--data-dir", help="data directory (AUDIT_DATA_DIR, default ./data)")
    parser.add_argument(
        "--lookback",
        type=int,
        default=DEFAULT_LOOKBACK_HOURS,
        metavar="HOURS",
        help="re-read this many committed hours before START for late events",
    )
    parser.add_argument("--run-id", help="identifier recorded in the manifests (default: random)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def closed_range(
    args: argparse.Namespace, *, history_start: int | None = AUDIT_HISTORY_START
) -> tuple[int, int]:
    """closed_range is the checked [start, end) of a sync; only ended hours are synced."""
    start, end = parse_hour(args.start), parse_hour(args.end)
    check_range(start, end, args.lookback)
    check_sync_bounds(start, end, now=time.time(), history_start=history_start)
    return start, end


def real_ledger(data_dir_arg: str | None) -> Ledger:
    """real_ledger opens the data directory a real sync commits to (never demo data), after
    checking everything local a commit needs: nothing is fetched before that."""
    if (url := object_store_arg(data_dir_arg)) is not None:
        return object_store_ledger(url, origin=os.environ.get(ORIGIN_ENV))
    data_dir = resolve_data_dir(data_dir_arg)
    if (data_dir / DEMO_MARKER).exists():
        raise ConfigurationError(
            f"{data_dir} holds emulator demo data; real syncs go to another data directory"
        )
    key_path = default_signing_key_path()
    signer = load_signing_key(key_path)
    ready_to_commit(data_dir, signer)
    return Ledger(
        data_dir,
        file_format=PARQUET_FORMAT,
        signer=signer,
        origin=os.environ.get(ORIGIN_ENV),
        signer_state=signer_state_path(key_path),
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
    add_range_options(sync)
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


def check_sync_bounds(
    start: int, end: int, *, now: float, history_start: int | None = AUDIT_HISTORY_START
) -> None:
    """check_sync_bounds refuses hours the API cannot serve, before any call is spent."""
    if history_start is not None and start < history_start:
        raise ConfigurationError(
            f"--start {format_hour(start)} is before {format_hour(AUDIT_HISTORY_START)}: "
            "Slack keeps no audit log data from before March 2018"
        )
    closed = last_closed_hour(now)
    if end > closed + HOUR:
        raise ConfigurationError(
            f"--end {format_hour(end)} is in the future: the largest allowed --end is "
            f"{format_hour(closed + HOUR)} (the end of the last closed hour "
            f"{format_hour(closed)}; an hour is synced once it has ended)"
        )


def run_sync(args: argparse.Namespace) -> int:
    return run_source_sync(args, AuditApiSettings, AuditLogSource, sync_hours)


def run_source_sync(
    args: argparse.Namespace,
    settings_class: type[AuditApiSettings],
    source_class: Callable[[Any], Any],
    sync: Callable[..., SyncReport],
    source_name: str | None = None,
) -> int:
    """run_source_sync reads one source's settings from the environment and the flags,
    syncs the range into the real ledger and prints the summary (``--json``: on stdout)."""
    start, end = closed_range(args)
    settings = settings_class.from_env(
        base_url=args.base_url,
        page_size=args.page_size,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_calls_per_minute=args.max_calls_per_minute,
    )
    ledger = real_ledger(args.data_dir)
    progress = Progress()  # one bar; witness lines end it before they print
    witnessing = CommitWitnessing(ledger, policy_from_env(), progress=progress)
    with gc_paused():  # this process runs the sync alone (Dagster never pauses it)
        report = sync(
            start=start,
            end=end,
            lookback_hours=args.lookback,
            source=source_class(settings),
            ledger=ledger,
            run_id=args.run_id or f"cli-{uuid.uuid4()}",
            progress=progress,
            on_commit=witnessing if witnessing.policy else None,
        )
    # the per-hour lines were the progress: one line for the whole, then any warning
    print(sync_story(report), file=sys.stderr)
    for hour, event_id in report.missing_from_source:
        print(
            f"  warning: {format_hour(parse_hour(hour))}: committed event {event_id} is no "
            "longer returned by the API (kept, not deleted)",
            file=sys.stderr,
        )
    if args.json:
        doc = _report_json(report)
        if source_name:
            doc["source"] = source_name
        doc["witnesses"] = [r.to_dict() for r in witnessing.rounds]
        print(json.dumps(doc, indent=2))
    if witnessing.alarms:
        print(
            "INTEGRITY ALARM: witnesses refused because the log does not extend what they "
            "cosigned: " + "; ".join(f"{o.label}: {o.detail}" for o in witnessing.alarms),
            file=sys.stderr,
        )
        return 1
    return EXIT_SOME_HOURS_FAILED if report.failed else 0


def demo_witness_dir(data_dir: Path) -> Path:
    """demo_witness_dir: the local demo witness's key and state, beside the data directory."""
    return Path(data_dir).resolve().parent / f"{Path(data_dir).name}-witness"


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


def _demo_workflow_runs(
    emulator: Any, ledger: Ledger, start: int, end: int, on_commit: Callable[..., Any]
) -> SyncReport:
    """The demo's second source: the emulator's workflow runs, with their own token."""
    from audit_pipeline.ingest_activities import sync_activity_hours
    from audit_pipeline.slack.activities_client import ActivitiesApiSettings, ActivitySource

    settings = ActivitiesApiSettings(
        token=emulator.config.activities_token,
        base_url=emulator.base_url.replace("/audit/v1/", "/api/"),
        max_calls_per_minute=0,
    )
    return sync_activity_hours(
        start=start,
        end=end,
        source=ActivitySource(settings),
        ledger=ledger,
        run_id=f"demo-{uuid.uuid4()}",
        progress=Progress(),
        on_commit=on_commit,
    )


def run_demo(args: argparse.Namespace) -> int:
    from audit_pipeline.slack.emulator import running_emulator

    data_dir = usable_dir(Path(args.data_dir), create=True)
    now = time.time()
    fresh = not (data_dir / "ledger" / "manifests").is_dir()
    signer = prepare_demo_data_dir(data_dir, now=now)
    end = last_closed_hour(now) + HOUR
    start = end - args.hours * HOUR
    _progress(
        f"demo: emulator data for {format_hour(start)}..{format_hour(end - HOUR)} "
        f"({plural(args.hours, 'hour')})"
    )
    with (
        running_emulator(
            start=start - DEFAULT_LOOKBACK_HOURS * HOUR,
            end=end,
            events_per_hour=args.events_per_hour,
            seed=args.seed,
            rate_limit_per_min=0,
            workflow_runs_per_hour=DEMO_WORKFLOW_RUNS_PER_HOUR,
            activities_rate_limit_per_min=0,
        ) as emulator,
        running_local_witness(
            demo_witness_dir(data_dir), DEMO_ORIGIN, signer.verifier, forget=fresh
        ) as witness,
    ):
        _progress(f"demo: emulator serving {emulator.base_url}")
        settings = AuditApiSettings(
            token=emulator.token, base_url=emulator.base_url, max_calls_per_minute=0
        )
        _progress(f"demo: witness {witness.key.vkey} at {witness.url}")
        ledger = Ledger(
            data_dir,
            file_format=PARQUET_FORMAT,
            signer=signer,
            origin=DEMO_ORIGIN,
            signer_state=signer_state_path(data_dir / DEMO_KEY_FILE, {}),
        )
        # quiet per commit (the bar shows the hours); the last round is said once, below
        witnessing = CommitWitnessing(ledger, make_policy([witness], None))
        report = sync_hours(
            start=start,
            end=end,
            source=AuditLogSource(settings),
            ledger=ledger,
            run_id=f"demo-{uuid.uuid4()}",
            progress=Progress(),
            on_commit=witnessing,
        )
        workflow_report = _demo_workflow_runs(emulator, ledger, start, end, witnessing)
        if not report.batches and not workflow_report.batches:
            witnessing()  # nothing new: still catch the witness up with the latest checkpoint
        if witnessing.last is not None:
            _progress(witnessing.last.summary())
    verification = verify_ledger(data_dir, file_format=PARQUET_FORMAT, witness_keys=[witness.key])
    print(sync_story(report))
    print("workflow activities: " + sync_story(workflow_report))
    print(verification.summary())
    if not verification:
        return 1
    dataset = build_dataset(data_dir, report=verification, trigger="audit-pipeline demo")
    print(f"witness key (verify --witness-key): {witness.key.vkey}")
    print(dataset.summary())
    checkpoint = ledger.latest_checkpoint()
    if checkpoint:
        print("\nlatest signed checkpoint (hand it to auditors with the public keys):")
        print("\n".join(f"  {line}".rstrip() for line in checkpoint.decode().splitlines()))
    print(f"\ndata directory: {data_dir.resolve()}")
    print("next:")
    print(next_commands(data_dir))
    return 0


def sync_story(report: SyncReport) -> str:
    """sync_story is a sync in one line (the per-hour lines were the progress)."""
    s = report.stats
    return (
        f"synced {plural(len(report.windows), 'hour')}: "
        f"{plural(report.events_committed, 'event')} in {plural(len(report.batches), 'batch')} "
        f"({report.late_events} late, {report.quarantined} quarantined); API: "
        f"{plural(s.requests, 'request')}, {plural(s.retries, 'retry')}"
    )


def next_commands(data_dir: Path, *, dev: bool = True) -> str:
    """next_commands are the README's next steps, typed as they work from here."""
    tool = f"{invoked_as()} "
    where = shlex.quote(str(data_dir))
    lines = [
        f'  {tool}query --data-dir {where} "select * from top_actions limit 5"',
        f"  {tool}verify --data-dir {where}",
        f"  {tool}report --data-dir {where} --out report.html",
    ]
    if dev:
        lines.append(f"  make dev      # the Dagster UI on http://127.0.0.1:{DEV_PORT}")
    return "\n".join(lines)
