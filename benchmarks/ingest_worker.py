"""One ingest run in its own process: ``floor``, ``pipeline`` or ``dlt`` (audit logs),
``activities-floor`` or ``activities`` (workflow activities, the second source).

``python -m benchmarks.ingest_worker KIND --base-url URL --start S --end E --out DIR``
imports what it needs, then times only the pull itself and prints one JSON line:
``{"kind", "events", "seconds", "import_seconds"}`` (activities count as events). The
parent measures the whole process (wall time and peak RSS through ``wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_T0 = time.perf_counter()
_PULL_STARTED = [_T0]


def _pull_starts() -> float:
    """_pull_starts marks the start of the timed pull (each kind imports what it needs
    first, so start-up is everything before this) and returns the time."""
    _PULL_STARTED[0] = time.perf_counter()
    return _PULL_STARTED[0]


PAGE_SIZE = 9999
ACTIVITIES_PAGE_SIZE = 1000  # the method's maximum
OPTIONS = argparse.Namespace(page_size=PAGE_SIZE, calls_per_minute=0)


def floor(base_url: str, token: str, start: int, end: int, out: Path) -> int:
    """Bare slack-sdk paging: every page requested and parsed, nothing else."""
    from slack_sdk.audit_logs import AuditLogsClient

    client = AuditLogsClient(token=token, base_url=base_url)
    return _page_through(
        lambda cursor: (
            client.logs(oldest=start, latest=end - 1, limit=PAGE_SIZE, cursor=cursor).body
        ),
        "entries",
    )


def _page_through(fetch: Callable[[str | None], dict], items: str) -> tuple[int, float]:
    """Follows ``next_cursor`` from the first page to the last (``fetch(cursor)`` gives a
    page's parsed body); returns how many ``items`` the pages held and the seconds taken."""
    started = _pull_starts()
    count, cursor = 0, None
    while True:
        body = fetch(cursor)
        count += len(body[items])
        cursor = (body.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return count, time.perf_counter() - started


def pipeline(base_url: str, token: str, start: int, end: int, out: Path) -> int:
    """``audit-pipeline sync`` end to end: pull, normalize, hash, write, commit, checkpoint."""
    os.environ.update(SLACK_AUDIT_TOKEN=token, SLACK_AUDIT_BASE_URL=base_url)
    return _sync_command("sync", OPTIONS.page_size, start, end, out)


def activities_floor(base_url: str, token: str, start: int, end: int, out: Path) -> int:
    """Bare slack-sdk paging of ``admin.apps.activities.list`` over the hour (the arguments
    ``sync-activities`` sends): every page requested and parsed, nothing else."""
    from slack_sdk import WebClient

    client = WebClient(token=token, base_url=base_url)
    return _page_through(
        lambda cursor: (
            client.admin_apps_activities_list(
                min_date_created=start * 1_000_000,
                max_date_created=end * 1_000_000 - 1,
                min_log_level="trace",
                sort_direction="asc",
                limit=ACTIVITIES_PAGE_SIZE,
                cursor=cursor,
            ).data
        ),
        "activities",
    )


def activities(base_url: str, token: str, start: int, end: int, out: Path) -> int:
    """``audit-pipeline sync-activities`` end to end, into a ledger of its own."""
    os.environ.update(SLACK_ACTIVITIES_TOKEN=token, SLACK_ACTIVITIES_BASE_URL=base_url)
    return _sync_command("sync-activities", ACTIVITIES_PAGE_SIZE, start, end, out)


def _sync_command(command: str, page_size: int, start: int, end: int, out: Path) -> int:
    """Runs one sync command through the CLI's entry point into a fresh data directory;
    returns the events the ledger then holds and the seconds the command took."""
    from audit_pipeline.cli import main
    from audit_pipeline.ingest import format_hour
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.ledger import Ledger
    from audit_pipeline.ledger.keys import init_key

    data_dir, key = out / "data", out / "signing-key"
    data_dir.mkdir(parents=True)
    init_key(data_dir, key, name="bench", now=start - 86_400)
    os.environ.update(AUDIT_SIGNING_KEY=str(key))
    argv = [
        command,
        f"--start={format_hour(start)}",
        f"--end={format_hour(end)}",
        f"--data-dir={data_dir}",
        "--lookback=0",
        f"--max-calls-per-minute={OPTIONS.calls_per_minute}",
        f"--page-size={page_size}",
        "--run-id=bench",
    ]
    started = _pull_starts()
    code = main(argv)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"audit-pipeline {command} exited {code}")
    chain = Ledger(data_dir, file_format=PARQUET_FORMAT).manifests()
    return sum(m.manifest.event_count for m in chain), seconds


def dlt_rest_api(base_url: str, token: str, start: int, end: int, out: Path) -> int:
    """The peer: a dlt REST API source against the emulator, Parquet on a local filesystem."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "auth": {"type": "bearer", "token": token},
                "paginator": {
                    "type": "cursor",
                    "cursor_path": "response_metadata.next_cursor",
                    "cursor_param": "cursor",
                },
            },
            "resources": [
                {
                    "name": "audit_events",
                    "endpoint": {
                        "path": "logs",
                        "params": {"oldest": start, "latest": end - 1, "limit": PAGE_SIZE},
                        "data_selector": "entries",
                    },
                }
            ],
        }
    )
    pipe = dlt.pipeline(
        pipeline_name="bench_slack_audit",
        pipelines_dir=str(out / "dlt-pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(out / "lake").as_uri()),
        dataset_name="slack_audit",
    )
    started = _pull_starts()
    pipe.run(source, loader_file_format="parquet")
    seconds = time.perf_counter() - started
    counts = pipe.last_trace.last_normalize_info.row_counts
    return int(counts.get("audit_events", 0)), seconds


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def phases(base_url: str, token: str, start: int, end: int, out: Path) -> int:
    """``ingest.sync_window`` as the sync command runs it, with resident memory and CPU
    seconds (all threads, and the main thread alone) at the end of each of its steps (its
    ``on_phase`` hook): where a big hour's peak and time come from. Prints one JSON line
    per phase to stderr."""
    from audit_pipeline.ingest import gc_paused, sync_window
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.ledger import Ledger
    from audit_pipeline.ledger.keys import init_key
    from audit_pipeline.slack.client import AuditApiSettings, AuditLogSource

    marks: list[dict[str, Any]] = []

    def mark(name: str) -> None:
        marks.append(
            {
                "phase": name,
                "rss": _rss(),
                "peak": _peak(),
                "cpu": time.process_time(),
                "main_cpu": time.thread_time(),
            }
        )

    data_dir = out / "data"
    data_dir.mkdir(parents=True)
    signer, _, _ = init_key(data_dir, out / "signing-key", name="bench", now=start - 86_400)
    ledger = Ledger(data_dir, file_format=PARQUET_FORMAT, signer=signer)
    source = AuditLogSource(
        AuditApiSettings(
            token=token, base_url=base_url, max_calls_per_minute=0, page_size=OPTIONS.page_size
        )
    )
    mark("imports and set-up")
    started = _pull_starts()
    with gc_paused():
        result = sync_window(
            start, source=source, ledger=ledger, run_id="bench-phases", on_phase=mark
        )
    seconds = time.perf_counter() - started
    for item in marks:
        print(json.dumps(item), file=sys.stderr)
    return result.events_committed, seconds


KINDS = {
    "floor": floor,
    "pipeline": pipeline,
    "dlt": dlt_rest_api,
    "phases": phases,
    "activities-floor": activities_floor,
    "activities": activities,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", default="xoxp-emulator-token")
    parser.add_argument("--start", type=int, required=True)
    parser.add_argument("--end", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE, help="pipeline only")
    parser.add_argument("--calls-per-minute", type=float, default=0, help="pipeline only")
    args = parser.parse_args(argv)
    OPTIONS.page_size, OPTIONS.calls_per_minute = args.page_size, args.calls_per_minute
    args.out.mkdir(parents=True, exist_ok=True)
    events, seconds = KINDS[args.kind](args.base_url, args.token, args.start, args.end, args.out)
    setup = _PULL_STARTED[0] - _T0  # imports and set-up, up to the timed pull
    result: dict[str, Any] = {
        "kind": args.kind,
        "events": events,
        "seconds": seconds,
        "import_seconds": setup,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
