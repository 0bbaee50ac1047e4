"""``python -m benchmarks`` (``make bench``): speed, memory and scale, side by side in one run.

Runs the benchmarks of issue 7 (ingest, verify, query, proofs, pacing, orchestration), of
issue 11 (witnesses) and of issue 13 (object_store: SeaweedFS against a local directory),
prints a table and writes ``benchmarks/RESULTS.md`` with the machine it ran on. Sizes:
``--size tiny`` (seconds; what the smoke test runs), ``small`` (minutes), ``full`` (the
issue's sizes, under 30 minutes on 2 cores). Absolute numbers drift on a shared machine;
the targets are judged on ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import profiles
from benchmarks.common import REPO_ROOT, BenchmarkError, Section, machine_facts
from benchmarks.config import SIZES, Sizes
from benchmarks.ledgers import BuiltLedger, build_ledger
from benchmarks.report import render_results, render_table

NAMES = (
    "ingest",
    "verify",
    "query",
    "proofs",
    "pacing",
    "orchestration",
    "witnesses",
    "object_store",
)
NEED_YEAR = {"verify", "query", "proofs", "witnesses", "object_store"}
# 2025-12-01T00:00Z, a Monday: the generated year starts on one so weeks line up.
YEAR_START = 1764547200


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of {', '.join(NAMES)}"
    )
    parser.add_argument("--work-dir", type=Path, help="scratch space (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch space")
    parser.add_argument(
        "--results",
        type=Path,
        default=REPO_ROOT / "benchmarks" / "RESULTS.md",
        help="where to write the results (default benchmarks/RESULTS.md)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile the pipeline's ingest and verify with pyinstrument (default: full size)",
    )
    knobs = parser.add_argument_group("per-benchmark knobs (override the size)")
    for name, kind in (
        ("ingest_events", int),
        ("ingest_repeats", int),
        ("dlt_repeats", int),
        ("year_hours", int),
        ("events_per_hour", int),
        ("verify_repeats", int),
        ("query_repeats", int),
        ("proof_repeats", int),
        ("pacing_pages", int),
        ("pacing_calls_per_minute", int),
        ("backfill_hours", int),
        ("per_partition_runs", int),
        ("object_store_hours", int),
    ):
        knobs.add_argument("--" + name.replace("_", "-"), dest=name, type=kind)
    return parser


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(NAMES))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    sizes: Sizes = SIZES[args.size].with_overrides(**vars(args))
    if sizes.week_hours >= sizes.year_hours or sizes.month_hours >= sizes.year_hours:
        print("--year-hours must exceed the week and month prefixes", file=sys.stderr)
        return 2
    profile = args.profile if args.profile is not None else sizes.name == "full"
    profiles.PROFILE_DIR = args.results.parent / "profiles"
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        os.environ.pop(var, None)
    facts = machine_facts()
    started = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="audit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sections: list[Section] = []
    failures: list[str] = []
    year: BuiltLedger | None = None
    try:
        if NEED_YEAR & set(only):
            _say(f"building the history: {sizes.year_hours:,} hourly batches")
            year = build_ledger(
                work / "year",
                start=YEAR_START,
                hours=sizes.year_hours,
                events_per_hour=sizes.events_per_hour,
                checkpoint_sizes=(sizes.week_hours, sizes.month_hours),
                progress=_say,
            )
            _say(f"history built: {year.events:,} events in {year.seconds:.0f} s")
        for name in NAMES:
            if name not in only:
                continue
            section = _run_one(name, sizes, work, year, failures, profile)
            if section is not None:
                sections.append(section)
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    facts["duration"] = f"{time.perf_counter() - started:.0f} s"
    print(render_table(sections))
    results = render_results(sections, facts, sizes, year, failures, args.results.parent)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(results)
    _say(f"wrote {args.results} ({facts['duration']})")
    return 1 if failures else 0


def _run_one(
    name: str,
    sizes: Sizes,
    work: Path,
    year: BuiltLedger | None,
    failures: list[str],
    profile: bool,
) -> Section | None:
    from benchmarks import (
        ingest,
        object_store,
        orchestration,
        pacing,
        proofs,
        query,
        verify,
        witnesses,
    )

    runners: dict[str, Callable[[], Section]] = {
        "ingest": lambda: ingest.run(sizes, work, _say, profile),
        "verify": lambda: verify.run(sizes, work, year, _say, profile),
        "query": lambda: query.run(sizes, work, year, _say),
        "proofs": lambda: proofs.run(sizes, work, year, _say, profile),
        "pacing": lambda: pacing.run(sizes, work, _say),
        "orchestration": lambda: orchestration.run(sizes, work, _say),
        "witnesses": lambda: witnesses.run(sizes, work, year, _say),
        "object_store": lambda: object_store.run(sizes, work, year, _say),
    }
    started = time.perf_counter()
    try:
        section = runners[name]()
    except (BenchmarkError, Exception) as exc:  # one broken benchmark must not hide the rest
        _say(f"{name}: FAILED: {exc}")
        failures.append(f"{name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        return None
    section.seconds = time.perf_counter() - started
    _say(f"{name}: done in {section.seconds:.0f} s")
    return section


if __name__ == "__main__":
    sys.exit(main())
