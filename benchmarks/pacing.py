"""Rate-limit pacing: a backfill against the emulator with its org-wide limit on, against
the least time that limit allows for the pages it needed."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from audit_pipeline.ingest import last_closed_hour
from audit_pipeline.slack.generator import hour_volume
from benchmarks.common import (
    HOUR,
    BenchmarkError,
    Section,
    emulator_process,
    fmt_s,
    module_argv,
    run_child,
)
from benchmarks.config import Sizes

SEED = 3
HOURS = 3
BURST = 5  # the emulator's bucket: this many calls at once, then the steady rate


def run(sizes: Sizes, work: Path, say: Callable[[str], None]) -> Section:
    section = Section("pacing")
    start = last_closed_hour(time.time()) - 72 * HOUR
    wanted = sizes.pacing_pages * sizes.pacing_page_size // HOURS
    factor = sum(hour_volume(SEED, start + h * HOUR, 1_000_000) for h in range(HOURS)) / (
        HOURS * 1_000_000
    )
    per_hour = max(1, round(wanted / factor))
    cpm = sizes.pacing_calls_per_minute
    out = work / "pacing"
    shutil.rmtree(out, ignore_errors=True)
    with emulator_process(
        start=start, end=start + HOURS * HOUR, events_per_hour=per_hour, seed=SEED,
        rate_limit=cpm,
    ) as emulator:  # fmt: skip
        time.sleep(BURST * 60 / cpm)  # let the bucket fill, as between two hourly runs
        say(f"pacing: {HOURS} hours, pages of {sizes.pacing_page_size}, limit {cpm}/min")
        child = run_child(
            module_argv(
                "benchmarks.ingest_worker",
                "pipeline",
                f"--base-url={emulator.base_url}",
                f"--start={start}",
                f"--end={start + HOURS * HOUR}",
                f"--out={out}",
                f"--page-size={sizes.pacing_page_size}",
                f"--calls-per-minute={cpm}",
            )
        )
        stats = emulator.stats()
    result = child.json()
    shutil.rmtree(out, ignore_errors=True)
    pages, requests, limited = stats["pages"], stats["logs_requests"], stats["rate_limited"]
    if result["events"] != stats["entries_served"]:
        raise BenchmarkError(f"committed {result['events']} of {stats['entries_served']} served")
    minimum = max(pages - BURST, 0) * 60 / cpm
    ratio = result["seconds"] / minimum if minimum else float("inf")
    section.check(
        "backfill time / minimum the limit allows",
        f"{ratio:.3f}x",
        ratio <= 1.15 and limited <= max(1, requests // 100),
        "<= 1.15x, ~0 429s",
        f"{fmt_s(result['seconds'])} for {pages} pages ({result['events']:,} events); minimum "
        f"{fmt_s(minimum)}; {requests} requests, {limited} answered 429",
    )
    section.notes.append(
        f"Emulator limit {cpm} calls/min (burst {BURST}); the pipeline's own ceiling "
        f"(--max-calls-per-minute) set to the same {cpm}/min, pages of "
        f"{sizes.pacing_page_size} entries over {HOURS} hours. Minimum = (pages - burst) / "
        "rate. 429s are counted by the emulator."
    )
    section.extra.update({"ratio": ratio, "rate_limited": limited})
    return section
