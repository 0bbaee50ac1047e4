"""Coverage checks of a verification: hours without a batch (per source), hours of a data
range without a manifest, and a log gone stale against the hourly cadence."""

from __future__ import annotations

from collections.abc import Mapping

from audit_pipeline.ledger.batch_index import BatchRef
from audit_pipeline.ledger.findings import FindingCode
from audit_pipeline.ledger.layout import HOUR, format_hour
from audit_pipeline.ledger.verify_context import VerifyContext
from audit_pipeline.text import plural


class CoverageChecks(VerifyContext):
    """Hours: each source covers every hour between its first and last batch, a data range
    is covered, and the newest hour is recent enough."""

    def _check_range_coverage(self, refs: Mapping[int, BatchRef]) -> None:
        """Every hour of the data range needs a manifest, or a copy could claim a range
        whose data it never had (hours between committed ones are ``hour_missing``)."""
        if self.data_range is None:
            return
        start, end = self.data_range
        hours = {r.window_start for r in refs.values()}
        first, last = (min(hours), max(hours) + HOUR) if hours else (end, end)
        log = f"{format_hour(first)}..{format_hour(last)}" if hours else "no hours"
        for lo, hi in ((start, min(end, first)), (max(start, last), end)):
            if lo >= hi:
                continue
            self.add(
                FindingCode.RANGE_NOT_COVERED,
                f"hours {format_hour(lo)}..{format_hour(hi)}",
                f"{(hi - lo) // HOUR} hours of the data range {format_hour(start)}.."
                f"{format_hour(end)} have no manifest: the log holds no batch for them, so "
                "no data of theirs can be checked",
                f"{format_hour(start)}..{format_hour(end)}",
                log,
            )

    def _check_coverage(
        self, refs: Mapping[int, BatchRef], start: int, max_lag: int | None
    ) -> None:
        hours = _whole_hours(refs)
        if not hours:
            return
        first, last = min(hours), max(hours)
        self.checked["hours"] = (last - first) // HOUR + 1
        # Each source must cover every hour between its own first and last batches.
        sources = sorted({r.source for r in refs.values()})
        for source in sources:
            mine = {s: r for s, r in refs.items() if r.source == source}
            self._check_source_coverage(mine, start, source if len(sources) > 1 else None)
        if max_lag is not None and last + HOUR < self.now - max_lag:
            self.add(
                FindingCode.STALE_LOG,
                f"hour {format_hour(last)}",
                f"the newest batch is for an hour that ended more than {max_lag} s before "
                "now: newest batches may have been removed, or syncing stopped",
                f">= {format_hour(int(self.now - max_lag) // HOUR * HOUR - HOUR)}",
                format_hour(last),
            )

    def _check_source_coverage(
        self, refs: Mapping[int, BatchRef], start: int, source: str | None
    ) -> None:
        hours = _whole_hours(refs)
        if not hours:
            return
        first, last = min(hours), max(hours)
        since = first
        if start:
            old = [r.window_start for s, r in refs.items() if s < start]
            since = max(old, default=first)
        gaps = [h for h in range(since, last + HOUR, HOUR) if h not in hours]
        of = f" of {source}" if source else ""
        if self.data_range is not None:  # the hours asked for; range_not_covered does the rest
            outside = [h for h in gaps if not self.data_range[0] <= h < self.data_range[1]]
            if outside:
                self.notice(
                    "hours_missing_outside_range",
                    f"{format_hour(outside[0])}..{format_hour(outside[-1])}"
                    + (f" ({source})" if source else ""),
                    f"{plural(len(outside), 'hour')}{of} without a batch outside the data range "
                    "(not part of what this verification checks)",
                )
            gaps = [h for h in gaps if h not in set(outside)]
        for hour in gaps:
            self.add(
                FindingCode.HOUR_MISSING,
                f"hour {format_hour(hour)}" + (f" ({source})" if source else ""),
                f"no manifest{of} for this hour (one of {plural(len(gaps), 'missing hour')} "
                f"between {format_hour(first)} and {format_hour(last)})",
            )


def _whole_hours(refs: Mapping[int, BatchRef]) -> set[int]:
    return {r.window_start for r in refs.values() if r.window_start % HOUR == 0}
