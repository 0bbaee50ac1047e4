"""``audit-pipeline emulator``: serve a local Slack Audit Logs API until interrupted.

The first line on stdout is the base URL (``http://HOST:PORT/audit/v1/``), for scripts and
tests that start it with ``--port 0``; everything else goes to stderr. SIGINT and SIGTERM
stop it cleanly (exit 0). The token is a fake one, but it is still never printed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from audit_pipeline.cli.output import DefaultsHelpFormatter
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ingest import format_hour, parse_hour
from audit_pipeline.slack.emulator import DEFAULT_TOKEN, Emulator, EmulatorConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="serve a local Slack Audit Logs API (generated or replayed events)",
        description=(
            "Serve /audit/v1/logs, /schemas and /actions like Slack's Audit Logs API, with "
            "seeded generated events (or the entries of --events-file), the org-wide rate "
            "limit, late arrivals and injected faults. Prints the base URL, then serves until "
            "interrupted. Admin paths (same bearer token): POST /_emulator/entries "
            "(JSON list or JSONL; ?late=1), POST /_emulator/faults (JSON list), "
            "GET /_emulator/stats, GET /_emulator/entries."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0 = any free port)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bearer token /logs requires")
    parser.add_argument("--seed", type=int, default=1, help="seed of generated events and faults")
    parser.add_argument(
        "--start",
        metavar="HOUR",
        help="first generated UTC hour, e.g. 2026-11-28T13 (default: a week before --end)",
    )
    parser.add_argument(
        "--end",
        metavar="HOUR",
        help="end of the generated range, exclusive (default: end of the current hour)",
    )
    parser.add_argument(
        "--events-per-hour", type=int, default=600, metavar="N", help="mean generated volume"
    )
    parser.add_argument(
        "--events-file",
        type=Path,
        metavar="FILE.jsonl",
        help="serve these entries (one JSON object a line) instead of generated ones",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=50,
        metavar="CALLS_PER_MIN",
        help="org-wide /logs calls a minute (0 = off)",
    )
    parser.add_argument(
        "--late-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="hide ~2%% of entries until this long after their hour was first read (0 = off)",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of /logs requests answered with a random fault (5xx, reset, ...)",
    )
    activities = parser.add_argument_group(
        "admin.apps.activities.list (POST http://HOST:PORT/api/admin.apps.activities.list)"
    )
    activities.add_argument(
        "--activities-token",
        default="xoxp-emulator-activities-token",
        help="bearer token the method requires (the audit --token gets missing_scope)",
    )
    activities.add_argument(
        "--workflow-runs-per-hour", type=int, default=4, metavar="N", help="generated runs"
    )
    activities.add_argument(
        "--activities-file",
        type=Path,
        metavar="FILE.jsonl",
        help="serve these activities verbatim (one a line) instead of generated runs",
    )
    activities.add_argument(
        "--activities-rate-limit", type=int, default=50, metavar="CALLS_PER_MIN",
        help="the method's own Tier 3 budget (0 = off)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def _config(args: argparse.Namespace) -> EmulatorConfig:
    if args.events_file is not None and (args.start or args.end):
        raise ConfigurationError(
            "--events-file serves the file's entries; --start/--end only shape generated events"
        )
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        token=args.token,
        seed=args.seed,
        start=parse_hour(args.start) if args.start else None,
        end=parse_hour(args.end) if args.end else None,
        events_per_hour=args.events_per_hour,
        events_file=args.events_file,
        rate_limit_per_min=args.rate_limit,
        late_delay=args.late_delay,
        fault_rate=args.fault_rate,
        warm=True,  # its own process: rendering ahead uses a core the client does not
        activities_token=args.activities_token,
        workflow_runs_per_hour=0 if args.activities_file else args.workflow_runs_per_hour,
        activities_file=args.activities_file,
        activities_rate_limit_per_min=args.activities_rate_limit,
    )


def _describe(emulator: Emulator, config: EmulatorConfig) -> str:
    if config.events_file is not None:
        source = f"{emulator.stats()['entries_added']} entries from {config.events_file}"
    else:
        hours = (emulator.end_time - emulator.start_time) // 3600
        source = (
            f"{hours} generated hours {format_hour(emulator.start_time)} .. "
            f"{format_hour(emulator.end_time - 3600)} UTC, ~{config.events_per_hour} "
            f"events/hour, seed {config.seed}"
        )
    rate = f"{config.rate_limit_per_min}/min" if config.rate_limit_per_min else "off"
    return (
        f"emulator: serving {source}; rate limit {rate}; late delay {config.late_delay:g}s; "
        f"fault rate {config.fault_rate:g}. Stop with Ctrl-C or SIGTERM."
    )


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    emulator = Emulator(config)
    stop = threading.Event()
    restore: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            restore[signum] = signal.signal(signum, on_signal)
    try:
        base_url = emulator.start()
        print(base_url, flush=True)
        print(_describe(emulator, config), file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for signum, handler in restore.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
    stats = emulator.stats()
    print(
        f"emulator: stopped after {stats['logs_requests']} /logs requests, "
        f"{stats['entries_served']} entries served, {stats['rate_limited']} rate limited",
        file=sys.stderr,
    )
    return 0
