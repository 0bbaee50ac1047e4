"""Ingest: the same hour of events pulled three ways from one emulator, in one run.

The floor is bare slack-sdk paging that only parses; the pipeline is ``audit-pipeline
sync`` (pull, normalize, hash, write, commit, checkpoint); the peer is a dlt REST API
pipeline writing Parquet to a local filesystem destination. Each run is its own process
(its peak RSS measured with ``wait4``) and the three alternate, so drift on a shared
machine hits all of them alike. Ratios are of medians.

The second source, workflow activities, gets an info row: ``audit-pipeline sync-activities``
over one emulator hour of activities against bare slack-sdk paging of
``admin.apps.activities.list``, from an emulator process of their own.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from audit_pipeline.ingest import last_closed_hour
from audit_pipeline.slack.activities_emulator import DEFAULT_ACTIVITIES_TOKEN
from audit_pipeline.slack.generator import hour_volume
from benchmarks.common import (
    HOUR,
    BenchmarkError,
    Section,
    emulator_process,
    fmt_mb,
    fmt_rate,
    median,
    module_argv,
    run_child,
)
from benchmarks.config import Sizes
from benchmarks.profiles import INGEST_PARTS, breakdown, profile_child

SEED = 1
MEMORY_TARGET = 10**9  # issue 16: < 1.0 GB for a 1M-event hour, flat in the hour's size
ACTIVITIES_PER_RUN = 10  # about what one generated workflow run logs (hours vary +-30 %)


def plan_hour(events: int, now: float) -> tuple[int, int]:
    """An hour two days back and the emulator volume that puts about ``events`` in it."""
    hour = last_closed_hour(now) - 48 * HOUR
    factor = hour_volume(SEED, hour, 1_000_000) / 1_000_000
    return hour, max(1, round(events / factor))


def dlt_available() -> bool:
    return importlib.util.find_spec("dlt") is not None


def _run(kind: str, base_url: str, hour: int, out: Path, *token: str) -> dict:
    if out.exists():
        shutil.rmtree(out)
    child = run_child(
        module_argv(
            "benchmarks.ingest_worker",
            kind,
            f"--base-url={base_url}",
            f"--start={hour}",
            f"--end={hour + HOUR}",
            f"--out={out}",
            *(f"--token={t}" for t in token),
        )
    )
    result = child.json()
    result.update(wall=child.seconds, max_rss=child.max_rss, stderr=child.stderr)
    shutil.rmtree(out, ignore_errors=True)
    return result


def run(sizes: Sizes, work: Path, say: Callable[[str], None], profile: bool = False) -> Section:
    section = Section("ingest")
    hour, per_hour = plan_hour(sizes.ingest_events, time.time())
    expected = hour_volume(SEED, hour, per_hour)
    kinds = ["floor", "pipeline"] + (["dlt"] if dlt_available() else [])
    say(f"ingest: rendering {expected:,} events in the emulator process")
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    with emulator_process(
        start=hour, end=hour + HOUR, events_per_hour=per_hour, seed=SEED
    ) as emulator:
        if emulator.entries != expected:
            raise BenchmarkError(f"emulator holds {emulator.entries}, expected {expected}")
        for rep in range(sizes.ingest_repeats):
            for kind in kinds:
                if kind == "dlt" and rep >= sizes.dlt_repeats:
                    continue
                say(f"ingest: {kind} run {rep + 1}")
                result = _run(kind, emulator.base_url, hour, work / f"ingest-{kind}")
                if result["events"] != expected:
                    raise BenchmarkError(
                        f"{kind} ingested {result['events']} events, expected {expected}"
                    )
                runs[kind].append(result)
        say("ingest: memory by phase (the steps of sync_window, one by one)")
        phases = _run("phases", emulator.base_url, hour, work / "ingest-phases")
        if profile:
            say("ingest: one more pipeline run under pyinstrument")
            out = work / "ingest-profile"
            shutil.rmtree(out, ignore_errors=True)
            found = profile_child(
                "ingest-pipeline",
                ["benchmarks.ingest_worker", "pipeline", f"--base-url={emulator.base_url}",
                 f"--start={hour}", f"--end={hour + HOUR}", f"--out={out}"],
                work,
            )  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
            section.extra["profiles"] = [
                {
                    "title": f"audit-pipeline sync of {expected:,} events",
                    "rows": breakdown(found["session"], INGEST_PARTS),
                    "path": found["path"],
                    "duration": found["duration"],
                }
            ]
    rates = {k: median([r["events"] / r["seconds"] for r in v]) for k, v in runs.items() if v}
    peaks = {k: max(r["max_rss"] for r in v) for k, v in runs.items() if v}
    for kind, label in (
        ("floor", "bare slack-sdk paging (floor)"),
        ("pipeline", "audit-pipeline sync"),
        ("dlt", "dlt rest_api -> Parquet (peer)"),
    ):
        if kind not in rates:
            section.row(label, "skipped", "dlt is not installed", status="skipped")
            continue
        samples = ", ".join(f"{r['events'] / r['seconds']:,.0f}" for r in runs[kind])
        section.row(
            label,
            fmt_rate(rates[kind]),
            f"{expected:,} events; runs: {samples}; peak RSS {fmt_mb(peaks[kind])}; "
            f"start-up {median([r['import_seconds'] for r in runs[kind]]):.2f} s",
            status="info",
        )
    ratio = rates["pipeline"] / rates["floor"]
    section.check(
        "pipeline / floor", f"{ratio:.2f}x", ratio >= 0.5, ">= 0.5x (stretch 0.7x)",
        "stretch met" if ratio >= 0.7 else "",
    )  # fmt: skip
    if "dlt" in rates:
        vs_dlt = rates["pipeline"] / rates["dlt"]
        section.check("pipeline / dlt", f"{vs_dlt:.2f}x", vs_dlt >= 3.0, ">= 3x")
    scale = 1_000_000 / expected
    section.check(
        "pipeline peak RSS",
        fmt_mb(peaks["pipeline"]),
        peaks["pipeline"] * max(1.0, scale) < MEMORY_TARGET if expected >= 1_000_000 else True,
        "< 1.0 GB for a 1M-event hour",
        f"for {expected:,} events"
        + ("" if expected >= 1_000_000 else " (target applies at 1M events: not judged)"),
    )
    section.notes.append(
        f"One hour ({time.strftime('%Y-%m-%dT%H', time.gmtime(hour))} UTC) of "
        f"{expected:,} generated events, pre-rendered by the emulator in its own process "
        f"({emulator.render_seconds:.0f} s), rate limit off, pages of 9,999. Rates are "
        "events / seconds of pulling (timed inside each process after its imports); "
        "peak RSS is the whole process."
    )
    section.notes.append(_phase_table(phases))
    section.extra.update(rates=rates, peaks=peaks, events=expected)
    _activities(section, sizes, work, say, hour)
    return section


def _activities(section: Section, sizes: Sizes, work: Path, say: Callable[[str], None], hour: int):
    """The info row of the second source: ``sync-activities`` against its paging floor."""
    runs_per_hour = max(1, sizes.ingest_activities // ACTIVITIES_PER_RUN)
    say(f"ingest: rendering {runs_per_hour:,} workflow runs in an emulator process")
    runs: dict[str, list[dict]] = {"activities-floor": [], "activities": []}
    with emulator_process(
        start=hour, end=hour + HOUR, events_per_hour=0, seed=SEED,
        workflow_runs_per_hour=runs_per_hour,
    ) as emulator:  # fmt: skip
        expected = emulator.activities
        for rep in range(sizes.ingest_repeats):
            for kind, done in runs.items():
                say(f"ingest: {kind} run {rep + 1}")
                out = work / f"ingest-{kind}"
                result = _run(kind, emulator.web_api_url, hour, out, DEFAULT_ACTIVITIES_TOKEN)
                if result["events"] != expected:
                    raise BenchmarkError(
                        f"{kind} took {result['events']} activities, expected {expected}"
                    )
                done.append(result)
    rate = {k: median([r["events"] / r["seconds"] for r in v]) for k, v in runs.items()}
    synced = runs["activities"]
    samples = ", ".join(f"{r['events'] / r['seconds']:,.0f}" for r in synced)
    section.row(
        "audit-pipeline sync-activities",
        f"{rate['activities']:,.0f} activities/s",
        f"{expected:,} activities; runs: {samples}; "
        f"peak RSS {fmt_mb(max(r['max_rss'] for r in synced))}; "
        f"start-up {median([r['import_seconds'] for r in synced]):.2f} s; "
        f"bare slack-sdk paging {rate['activities-floor']:,.0f} activities/s, "
        f"{rate['activities'] / rate['activities-floor']:.2f}x of it",
        status="info",
    )
    section.notes.append(
        f"The second source: the same hour holding {expected:,} workflow activities "
        f"({runs_per_hour:,} generated runs), served by an emulator process of their own "
        f"(rendered in {emulator.render_seconds:.0f} s), rate limit off, pages of 1,000 (the "
        "method's maximum). The floor pages admin.apps.activities.list with slack-sdk and "
        "only parses; sync-activities pulls, normalizes, writes and commits to a ledger. "
        "The emulator keeps each hour in order and finds a cursor by bisection, so a page "
        "costs it what the page holds."
    )
    section.extra.update(activity_rates=rate, activities=expected)


def _phase_table(phases: dict) -> str:
    """Memory and CPU by step. The CPU columns are what the step cost, all threads and the
    main thread alone: the sync's threads share the GIL, so on a busy machine (or under a
    sampling profiler) wall-clock time says less about where the work is."""
    lines = [
        "Memory and CPU by phase of one pipeline run (resident / peak so far; CPU seconds "
        "of the step, all threads / the main thread; the other threads are the read-ahead "
        "fetch and split, and Arrow's own):",
        "",
        "| phase | RSS | peak | CPU s | main thread |",
        "|---|---|---|---|---|",
    ]
    cpu = main = None
    for raw in phases["stderr"].splitlines():
        if not raw.startswith("{"):
            continue
        item = json.loads(raw)
        step = "" if cpu is None else f"{item['cpu'] - cpu:.2f}"
        step_main = "" if main is None else f"{item['main_cpu'] - main:.2f}"
        cpu, main = item["cpu"], item["main_cpu"]
        lines.append(
            f"| {item['phase']} | {fmt_mb(item['rss'])} | {fmt_mb(item['peak'])} "
            f"| {step} | {step_main} |"
        )
    return "\n".join(lines)
