"""Benchmark sizes: ``tiny`` (the CI smoke test, seconds), ``small`` (minutes), ``full``
(the issue's sizes; under 30 minutes on 2 cores). Every knob can be overridden."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    name: str
    # ingest: one hour of about this many events, pulled three ways
    ingest_events: int
    ingest_repeats: int
    dlt_repeats: int
    # the ledger of history: one batch per hour; prefixes of it stand for week and month
    year_hours: int
    events_per_hour: int
    week_hours: int
    month_hours: int
    verify_repeats: int
    # query and proofs on the "year"
    query_repeats: int
    proof_repeats: int
    # rate-limit pacing: requests at this org-wide rate, pages of this many entries
    pacing_calls_per_minute: int
    pacing_pages: int
    pacing_page_size: int
    # orchestration: a backfill of this many hours as one run vs one run per partition
    backfill_hours: int
    per_partition_runs: int
    orchestration_events_per_hour: int
    cli_launch: bool
    # object store: hours synced to SeaweedFS and to a local directory, side by side
    object_store_hours: int

    def with_overrides(self, **changes: Any) -> Sizes:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in known and v is not None})


TINY = Sizes(
    name="tiny",
    ingest_events=3_000,
    ingest_repeats=1,
    dlt_repeats=1,
    year_hours=48,
    events_per_hour=20,
    week_hours=12,
    month_hours=24,
    verify_repeats=1,
    query_repeats=2,
    proof_repeats=2,
    pacing_calls_per_minute=1200,
    pacing_pages=12,
    pacing_page_size=20,
    backfill_hours=3,
    per_partition_runs=3,
    orchestration_events_per_hour=10,
    cli_launch=False,
    object_store_hours=2,
)

SMALL = Sizes(
    name="small",
    ingest_events=100_000,
    ingest_repeats=2,
    dlt_repeats=1,
    year_hours=24 * 30,
    events_per_hour=300,
    week_hours=24 * 7,
    month_hours=24 * 14,
    verify_repeats=2,
    query_repeats=3,
    proof_repeats=10,
    pacing_calls_per_minute=600,
    pacing_pages=100,
    pacing_page_size=100,
    backfill_hours=48,
    per_partition_runs=12,
    orchestration_events_per_hour=50,
    cli_launch=True,
    object_store_hours=12,
)

FULL = Sizes(
    name="full",
    ingest_events=1_000_000,
    ingest_repeats=3,
    dlt_repeats=1,
    year_hours=24 * 365,
    events_per_hour=600,
    week_hours=24 * 7,
    month_hours=24 * 30,
    verify_repeats=3,
    query_repeats=5,
    proof_repeats=20,
    pacing_calls_per_minute=600,
    pacing_pages=300,
    pacing_page_size=100,
    backfill_hours=24 * 30,
    per_partition_runs=24,
    orchestration_events_per_hour=100,
    cli_launch=True,
    object_store_hours=48,
)

SIZES = {s.name: s for s in (TINY, SMALL, FULL)}
