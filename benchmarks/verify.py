"""Verify: a full verification of a month against the SHA-256 floor over the same bytes,
with one and two jobs; and incremental verification after one more hour on ledgers of a
week, a month and a year of history (it must stay flat)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audit_pipeline.ingest import HOUR
from audit_pipeline.lake import (
    PARQUET_FORMAT,
    WindowNormalizer,
    events_from_table,
    write_batch_file,
)
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


def row_floor(data_dir: Path) -> tuple[int, float]:
    """The row-level floor: read each data file's leaf column (``raw_json``) with pyarrow
    and SHA-256 each leaf with the RFC 6962 0x00 prefix; returns (leaf bytes, seconds)."""
    started, total = time.perf_counter(), 0
    for path in sorted((data_dir / "lake").rglob("*.parquet")):
        leaves = pq.read_table(path, columns=["raw_json"]).column("raw_json")
        for leaf in leaves.cast(pa.binary()).to_pylist():
            hashlib.sha256(b"\x00" + leaf).digest()
            total += len(leaf) + 1
    return total, time.perf_counter() - started


def _full_verify(data_dir: Path, repeats: int, say: Callable[[str], None], **kwargs) -> float:
    samples = []
    for rep in range(repeats):
        say(f"verify: full, {kwargs}, run {rep + 1}")
        seconds, _ = timed(lambda: _verified(data_dir, **kwargs))
        samples.append(seconds)
    return median(samples)


def add_hour(ledger: BuiltLedger, events_per_hour: int, writer: Any = None) -> float:
    """add_hour commits the next hour with ``commit_batch`` of ``writer`` (default: a
    ``Ledger`` on the built ledger's directory); returns its seconds."""
    window = ledger.end
    normalizer = WindowNormalizer(window, window + HOUR)
    normalizer.add(generate_hour(7, window, events_per_hour))
    rows = normalizer.finish()
    if writer is None:
        writer = Ledger(
            ledger.data_dir, file_format=PARQUET_FORMAT, signer=load_signing_key(ledger.key_path)
        )
    seconds, _ = timed(
        lambda: writer.commit_batch(
            window_start=window,
            window_end=window + HOUR,
            events=events_from_table(rows.table),
            write_data=lambda _events, path: write_batch_file(rows.table, path),
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
    floors = [row_floor(month.data_dir) for _ in range(sizes.verify_repeats)]
    leaf_bytes, leaf_s = floors[0][0], median([s for _, s in floors])
    section.row(
        "row floor: read the leaf column + SHA-256 each leaf",
        fmt_s(leaf_s),
        f"{leaf_bytes / 2**20:,.0f} MiB of raw JSON leaves, read with pyarrow and hashed",
        status="info",
    )
    repeats = sizes.verify_repeats
    files_s = _full_verify(month.data_dir, repeats, say, depth="files")
    ratio = floor / files_s
    section.check(
        "full verify, file level (vs SHA-256 floor)",
        f"{ratio:.3f}x",
        ratio >= 0.7,
        ">= 0.7x the floor",
        f"{fmt_s(files_s)}: signatures, links, manifests, checkpoints, file sizes and "
        f"SHA-256s; {total / files_s / 2**20:,.0f} MiB/s of files; one helper thread hashes "
        "the data files while the main thread parses manifests and checks signatures "
        "(the floor uses one thread)",
    )
    files_2 = _full_verify(month.data_dir, repeats, say, depth="files", jobs=2)
    section.row(
        "full verify, file level, --jobs 2 (vs SHA-256 floor)",
        f"{floor / files_2:.3f}x",
        f"{fmt_s(files_2)}: data files hashed in 2 worker threads (file level uses threads, "
        "not processes) while the manifests and signatures are checked",
        status="info",
    )
    full = {jobs: _full_verify(month.data_dir, repeats, say, jobs=jobs) for jobs in (1, 2)}
    ratio = leaf_s / full[1]
    section.check(
        "full verify, row level, --jobs 1 (vs row floor)",
        f"{ratio:.3f}x",
        ratio >= 0.4,
        ">= 0.4x the row floor",
        f"{fmt_s(full[1])}: {month.events / full[1]:,.0f} events/s; every leaf re-derived",
    )
    speedup = full[1] / full[2]
    section.check(
        "full verify, row level, --jobs 2 / --jobs 1",
        f"{speedup:.2f}x",
        speedup >= 1.7,
        ">= 1.7x faster (processes)",
        f"{fmt_s(full[2])} with 2 worker processes ({ratio * speedup:.3f}x the row floor)",
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
        "hashlib.sha256; the file level is measured against it. The row level also decodes "
        "each Parquet file and re-derives every leaf: its floor reads each file's leaf "
        "column with pyarrow and hashes each leaf (0x00 || leaf) with hashlib."
    )
    section.extra.update(
        floor=floor,
        row_floor=leaf_s,
        files={1: files_s, 2: files_2},
        full=full,
        incremental=incremental,
    )
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
