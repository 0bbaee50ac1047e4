"""Verify: a full verification of a month against the SHA-256 floor over the same bytes,
with one and two jobs; and incremental verification after one more hour on ledgers of a
week, a month and a year of history (it must stay flat)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from audit_pipeline.ingest import HOUR, _BatchWriter
from audit_pipeline.lake import PARQUET_FORMAT, WindowNormalizer, events_from_table
from audit_pipeline.ledger import Ledger, load_signing_key, verify_ledger
from audit_pipeline.slack.generator import generate_hour
from benchmarks.common import BenchmarkError, Section, fmt_s, median, timed
from benchmarks.config import Sizes
from benchmarks.ledgers import (
    BuiltLedger,
    ledger_files,
    prefix_copy,
    sha256_floor,
)
from benchmarks.profiles import (
    COMMIT_PARTS,
    INCREMENTAL_PARTS,
    VERIFY_PARTS,
    breakdown,
    profile_call,
)


def _verified(data_dir: Path, **kwargs) -> object:
    report = verify_ledger(data_dir, file_format=PARQUET_FORMAT, **kwargs)
    if not report:
        raise BenchmarkError(f"{data_dir} did not verify: {report.summary()[:500]}")
    return report


def _leaf_floor(data_dir: Path) -> tuple[int, float]:
    """SHA-256 over every leaf (0x00 || raw_json), decoded beforehand: pure hashing."""
    leaves = []
    for path in sorted((data_dir / "lake").rglob("*.parquet")):
        leaves.extend(r.leaf_data for r in PARQUET_FORMAT.read_events(path))
    started = time.perf_counter()
    for leaf in leaves:
        hashlib.sha256(b"\x00" + leaf).digest()
    return sum(len(x) + 1 for x in leaves), time.perf_counter() - started


def add_hour(ledger: BuiltLedger, events_per_hour: int) -> float:
    """add_hour commits the next hour with ``Ledger.commit_batch``; returns its seconds."""
    window = ledger.end
    normalizer = WindowNormalizer(window, window + HOUR)
    normalizer.add(generate_hour(7, window, events_per_hour))
    rows = normalizer.finish()
    writer = Ledger(
        ledger.data_dir, file_format=PARQUET_FORMAT, signer=load_signing_key(ledger.key_path)
    )
    seconds, _ = timed(
        lambda: writer.commit_batch(
            window_start=window,
            window_end=window + HOUR,
            events=events_from_table(rows.table),
            write_data=_BatchWriter(rows.table),
            source={"benchmark": "one more hour"},
            run_id="benchmark-add-hour",
        )
    )
    return seconds


def run(
    sizes: Sizes,
    work: Path,
    year: BuiltLedger,
    say: Callable[[str], None],
    profile: bool = False,
) -> Section:
    section = Section("verify")
    month = prefix_copy(year, work / "verify-month", sizes.month_hours)
    files = ledger_files(month.data_dir)
    say(f"verify: {len(files)} files, {month.events:,} events ({sizes.month_hours} hours)")
    floor_s, total = [], 0
    for _ in range(sizes.verify_repeats):
        seconds, total = timed(lambda: sha256_floor(files))
        floor_s.append(seconds)
    floor = median(floor_s)
    section.row(
        "SHA-256 floor (every ledger file)",
        fmt_s(floor),
        f"{total / 2**20:,.0f} MiB at {total / floor / 2**20:,.0f} MiB/s",
        status="info",
    )
    leaf_bytes, leaf_s = _leaf_floor(month.data_dir)
    section.row(
        "SHA-256 of the leaves alone (info)",
        fmt_s(leaf_s),
        f"{leaf_bytes / 2**20:,.0f} MiB of raw JSON leaves, already decoded",
        status="info",
    )
    full: dict[int, float] = {}
    for jobs in (1, 2):
        samples = []
        for rep in range(sizes.verify_repeats):
            say(f"verify: full, jobs={jobs}, run {rep + 1}")
            seconds, _ = timed(lambda jobs=jobs: _verified(month.data_dir, jobs=jobs))
            samples.append(seconds)
        full[jobs] = median(samples)
        ratio = floor / full[jobs]
        detail = (
            f"{month.events / full[jobs]:,.0f} events/s, {total / full[jobs] / 2**20:,.1f} MiB/s "
            f"of files; {ratio:.3f}x the floor"
        )
        if jobs == 1:
            section.check(
                "full verify, --jobs 1 (speed vs floor)",
                f"{ratio:.3f}x",
                ratio >= 0.7,
                ">= 0.7x the floor",
                f"{fmt_s(full[1])}: " + detail,
            )
        else:
            section.row(
                "full verify, --jobs 2",
                f"{ratio:.3f}x",
                f"{fmt_s(full[2])}: {detail}; {full[1] / full[2]:.2f}x faster than 1 job",
                status="info",
            )
    profiles: list[tuple[str, dict, tuple]] = []
    if profile:
        say("verify: one more full verification under pyinstrument")
        found = profile_call("verify-month", lambda: _verified(month.data_dir, jobs=1))
        profiles.append(
            (f"full verification of {month.events:,} events, --jobs 1", found, VERIFY_PARTS)
        )
    incremental: dict[str, float] = {}
    commits: dict[str, float] = {}
    for label, hours in (
        ("1 week", sizes.week_hours),
        ("1 month", sizes.month_hours),
        ("1 year", sizes.year_hours),
    ):
        copy = prefix_copy(year, work / f"verify-incremental-{hours}", hours)
        trusted = copy.checkpoints[hours]
        if profile and hours == sizes.year_hours:
            found = profile_call("commit-after-a-year", lambda copy=copy: add_hour(copy, 1))
            commit_s = found["duration"]
            profiles.append((f"one commit_batch after {hours:,} batches", found, COMMIT_PARTS))
            found = profile_call(
                "incremental-verify-after-a-year",
                lambda copy=copy, trusted=trusted: _verified(
                    copy.data_dir, trusted_checkpoint=trusted, incremental=True
                ),
            )
            profiles.append(
                (f"incremental verify after {hours:,} batches", found, INCREMENTAL_PARTS)
            )
        else:
            commit_s = add_hour(copy, sizes.events_per_hour)
        samples = []
        for _ in range(sizes.verify_repeats):
            seconds, _ = timed(
                lambda copy=copy, trusted=trusted: _verified(
                    copy.data_dir, trusted_checkpoint=trusted, incremental=True
                )
            )
            samples.append(seconds)
        incremental[label] = median(samples)
        commits[label] = commit_s
        section.row(
            f"incremental verify after 1 more hour, {label} of history",
            fmt_s(incremental[label]),
            f"{hours:,} batches before; commit of that hour took {fmt_s(commit_s)}",
            status="info",
        )
    growth = incremental["1 year"] / incremental["1 week"]
    section.check(
        "incremental verify, year / week",
        f"{growth:.2f}x",
        growth <= 1.5,
        "flat (<= 1.5x)",
        f"1 year {fmt_s(incremental['1 year'])}, 1 week {fmt_s(incremental['1 week'])}",
    )
    section.check(
        "commit of one hour, 1 year of history",
        fmt_s(commits["1 year"]),
        commits["1 year"] <= 0.2,
        "<= 0.2 s and flat",
        f"{sizes.year_hours:,} batches before; 1 week {fmt_s(commits['1 week'])}, "
        f"year / week {commits['1 year'] / max(commits['1 week'], 1e-9):.2f}x",
    )
    section.notes.append(
        f"Month: the first {sizes.month_hours} hourly batches of the generated year "
        f"({month.events:,} events, {total / 2**20:,.0f} MiB of files). The floor reads and "
        "hashes every file verification reads (data files, manifests, checkpoints) once with "
        "hashlib.sha256. Verification also decodes each Parquet file and re-hashes every "
        "leaf, which is why the leaf-only hashing time is shown."
    )
    section.extra.update(floor=floor, full=full, incremental=incremental)
    section.extra["profiles"] = [
        {
            "title": title,
            "rows": breakdown(found["session"], parts),
            "path": found["path"],
            "duration": found["duration"],
        }
        for title, found, parts in profiles
    ]
    return section
