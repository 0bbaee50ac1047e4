"""The emulator in its own process, every page rendered before the first request.

``python -m benchmarks.emulator_server --start H --end H --events-per-hour N`` prints the
base URL once the whole range is rendered (so no reader ever waits on the generator and all
readers get the same bytes), then serves until SIGTERM. A separate process gives the server
its own core and keeps its memory out of the reader's peak RSS. With
``--workflow-runs-per-hour`` it also serves ``admin.apps.activities.list`` (its rate limit
off), those activities rendered up front too; the line printed then ends with their count.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from audit_pipeline.slack.emulator import Emulator, EmulatorConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", type=int, required=True, help="first hour, Unix seconds")
    parser.add_argument("--end", type=int, required=True, help="end hour, exclusive")
    parser.add_argument("--events-per-hour", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate-limit", type=int, default=0, help="calls/min (0 = off)")
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--workflow-runs-per-hour", type=int, default=0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    started = time.perf_counter()
    emulator = Emulator(
        EmulatorConfig(
            start=args.start,
            end=args.end,
            events_per_hour=args.events_per_hour,
            seed=args.seed,
            rate_limit_per_min=args.rate_limit,
            burst=args.burst,
            prerender=True,
            cache_entries=1,
            workflow_runs_per_hour=args.workflow_runs_per_hour,
            activities_rate_limit_per_min=0,
        )
    )
    base_url = emulator.start()
    activities = len(emulator.activities.all_activities()) if args.workflow_runs_per_hour else 0
    stats = emulator.stats()
    line = [base_url, stats["cached_entries"], f"{time.perf_counter() - started:.2f}"]
    print(*line, *([activities] if activities else []), flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        emulator.stop()
    final = emulator.stats()
    print(
        f"served {final['entries_served']} entries in {final['pages']} pages; "
        f"{final['rate_limited']} rate limited",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
