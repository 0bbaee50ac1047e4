"""Query: a year of hourly batches in the auditors' DuckDB dataset, against the same rows
in one Parquet file (and, for reference, the 8,760 batch files read directly).

The build is measured against its peer: DuckDB itself reading the same verified file list
(the data files the manifests name, in the same order) into a table of a new database file.
The build does more (hashes every file against its manifest, stores rows in time order,
indexes ``event_id``, writes the ledger's tables and seals the file); the target bounds what
that costs."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import duckdb

from audit_pipeline.dataset.build import build_dataset, verified_chain
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import verify_ledger
from benchmarks.common import BenchmarkError, Section, fmt_ms, fmt_s, median, timed
from benchmarks.config import Sizes
from benchmarks.ledgers import BuiltLedger

GROUP_BY = "SELECT action, count(*) AS n FROM {src} GROUP BY action ORDER BY n DESC, action"
LOOKUP = "SELECT * FROM {src} WHERE event_id = ?"


def _timed_query(con, sql: str, params: list, repeats: int) -> tuple[float, list]:
    con.execute(sql, params).fetchall()  # warm-up, not counted
    samples, rows = [], []
    for _ in range(repeats):
        seconds, rows = timed(lambda: con.execute(sql, params).fetchall())
        samples.append(seconds)
    return median(samples), rows


def _duckdb_loads(path: Path, files: list[str]) -> float:
    """_duckdb_loads times DuckDB reading ``files`` into a table of a new database file."""
    listing = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    with duckdb.connect(str(path)) as con:
        seconds, _ = timed(
            lambda: (
                con.execute(f"CREATE TABLE audit_events AS SELECT * FROM read_parquet({listing})"),
                con.execute("CHECKPOINT"),
            )
        )
    path.unlink()
    return seconds


def run(sizes: Sizes, work: Path, year: BuiltLedger, say: Callable[[str], None]) -> Section:
    section = Section("query")
    database = work / "audit.duckdb"
    say("query: verifying the year against its own checkpoint and building the dataset")
    report = verify_ledger(
        year.data_dir,
        file_format=PARQUET_FORMAT,
        trusted_checkpoint=year.checkpoints[year.hours],
        incremental=True,
    )
    build_s, built = timed(lambda: build_dataset(year.data_dir, database=database, report=report))
    say("query: DuckDB reading the same verified file list into a table (the build's peer)")
    verified = [
        str(year.data_dir / m.manifest.data.path)
        for m in verified_chain(year.data_dir, report)
        if m.manifest.data is not None
    ]
    peer_s = _duckdb_loads(work / "peer.duckdb", verified)
    files = sorted(str(p) for p in (year.data_dir / "lake").rglob("*.parquet"))
    single = work / "one-file.parquet"
    listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    say(f"query: writing the same rows to one Parquet file ({len(files):,} files in)")
    with duckdb.connect() as con:
        copy_s, _ = timed(
            lambda: con.execute(
                f"COPY (SELECT * FROM read_parquet({listing}) ORDER BY date_create, event_id) "
                f"TO '{single}' (FORMAT parquet, COMPRESSION zstd)"
            )
        )
    section.row(
        "dataset build (load + index)",
        fmt_s(build_s),
        f"{built.events:,} events from {built.data_files:,} files; one-file copy {fmt_s(copy_s)}",
        status="info",
    )
    build_ratio = build_s / peer_s
    section.check(
        "dataset build / DuckDB reading the verified files into a table",
        f"{build_ratio:.2f}x",
        build_ratio <= 1.5,
        "<= 1.5x",
        f"build {fmt_s(build_s)}, DuckDB {fmt_s(peer_s)} (CREATE TABLE AS read_parquet of the "
        f"{len(verified):,} files, then CHECKPOINT)",
    )
    dataset = duckdb.connect(str(database), read_only=True)
    flat = duckdb.connect()
    sources = {
        "dataset": (dataset, "audit_events"),
        "one file": (flat, f"read_parquet('{single}')"),
        "batch files": (flat, f"read_parquet({listing})"),
    }
    counts = {
        name: con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
        for name, (con, src) in sources.items()
    }
    if len(set(counts.values())) != 1 or counts["dataset"] != year.events:
        raise BenchmarkError(f"row counts differ: {counts}, ledger holds {year.events}")
    group: dict[str, float] = {}
    answers = {}
    for name, (con, src) in sources.items():
        repeats = sizes.query_repeats if name != "batch files" else min(2, sizes.query_repeats)
        say(f"query: group by action over {name}")
        group[name], answers[name] = _timed_query(con, GROUP_BY.format(src=src), [], repeats)
    if answers["dataset"] != answers["one file"]:
        raise BenchmarkError("group-by answers differ between the dataset and the one file")
    ids = [row[0] for row in flat.execute(
        f"SELECT event_id FROM read_parquet('{single}') USING SAMPLE 5 ROWS (reservoir, 42)"
    ).fetchall()]  # fmt: skip
    random.Random(7).shuffle(ids)
    lookup: dict[str, float] = {}
    for name, (con, src) in sources.items():
        repeats = sizes.query_repeats if name != "batch files" else 1
        say(f"query: lookups by event id in {name}")
        per_id = []
        for event_id in ids[: 5 if name != "batch files" else 1]:
            seconds, rows = _timed_query(con, LOOKUP.format(src=src), [event_id], repeats)
            if len(rows) != 1:
                raise BenchmarkError(f"lookup of {event_id} in {name} found {len(rows)} rows")
            per_id.append(seconds)
        lookup[name] = median(per_id)
    dataset.close()
    flat.close()
    ratio = group["dataset"] / group["one file"]
    section.check(
        "group by action: dataset / one file",
        f"{ratio:.2f}x",
        ratio <= 2.0,
        "<= 2x",
        f"dataset {fmt_ms(group['dataset'])}, one file {fmt_ms(group['one file'])}, "
        f"{len(files):,} batch files read directly {fmt_ms(group['batch files'])}",
    )
    section.check(
        "lookup by event id (dataset)",
        fmt_ms(lookup["dataset"]),
        lookup["dataset"] < 0.1,
        "< 100 ms",
        f"one file {fmt_ms(lookup['one file'])}, batch files {fmt_ms(lookup['batch files'])}",
    )
    section.notes.append(
        f"{year.hours:,} hourly batches, {year.events:,} events. The dataset is the DuckDB file "
        "`audit-pipeline dataset build` writes (native table, index on event_id); the one "
        "file holds the same rows sorted by time (zstd). Medians of "
        f"{sizes.query_repeats} runs after one warm-up, in-process DuckDB "
        f"{duckdb.__version__}."
    )
    section.extra.update(
        {"group": group, "lookup": lookup, "build": {"build": build_s, "duckdb": peer_s}}
    )
    return section
