"""Sync: every audit event of an hour, exactly once, from the API into the ledger.

Hour H is the API window ``oldest = H``, ``latest = H + 3599`` (both inclusive), and the
ledger window ``[H, H + 3600)``. A sync of hours ``[start, end)`` also re-reads the
``lookback`` hours before ``start`` that the ledger already holds, because Slack publishes
no latency bound: events that showed up late for those hours are committed as ``late``
batches. Hours before ``start`` that were never committed are gaps for the gap-filling
sensor or a backfill to sync, not for the lookback.

Exactly once: a window is read completely before anything of it is committed, and the
ledger commit drops (under its lock) every id already committed for that window, so
reruns, overlapping lookbacks, restarted windows and concurrent runs add nothing twice.
An id that the ledger holds but the API no longer returns is reported, never deleted.

No hour blocks the next: an entry that cannot be stored faithfully is a quarantine row, and
a page that cannot be followed at all (after the client's retries) fails its hour alone,
with the raw page kept under ``<data dir>/failed-pages/``; the other hours are synced, the
report lists the failed ones (the CLI exits 4), and the next run reads them again.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.lake.fidelity import REVISION_PREFIX
from audit_pipeline.lake.normalize import SpilledWindow, SpillingWindowNormalizer
from audit_pipeline.lake.parquet import event_leaves_from_table, write_batch_stream
from audit_pipeline.ledger import Ledger
from audit_pipeline.ledger.events import EventLeaf
from audit_pipeline.ledger.layout import DATA_MODE, HOUR, LocalStorage, format_hour
from audit_pipeline.slack.client import AuditLogSource, FetchStats, UnparseablePageError
from audit_pipeline.slack.read_ahead import read_ahead

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK_HOURS = 6
FAILED_PAGES_DIR = "failed-pages"
_HOUR_FORMATS = ("%Y-%m-%dT%H", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d-%H:%M")


def parse_hour(text: str) -> int:
    """parse_hour reads a UTC hour like ``2026-11-28T13`` and returns its Unix start."""
    for fmt in _HOUR_FORMATS:
        try:
            moment = datetime.strptime(text.strip().removesuffix("Z"), fmt)
        except ValueError:
            continue
        moment = moment.replace(tzinfo=UTC)
        if moment.minute or moment.second:
            break
        return int(moment.timestamp())
    raise ConfigurationError(
        f"not a UTC hour: {text!r} (expected YYYY-MM-DDTHH, e.g. 2026-11-28T13)"
    )


def last_closed_hour(now: float) -> int:
    """last_closed_hour returns the start of the newest hour that has fully ended."""
    return int(now // HOUR) * HOUR - HOUR


@dataclass(frozen=True)
class WindowResult:
    """What one window's sync did."""

    window_start: int
    lookback: bool
    fetched: int
    sequence: int | None
    kind: str | None
    events_committed: int
    quarantined: int
    duplicates_skipped: int
    missing_from_source: tuple[str, ...]
    revised: tuple[str, ...] = ()

    @property
    def hour(self) -> str:
        return format_hour(self.window_start)

    def progress_line(self, done: int, total: int, label: str = "") -> str:
        return (
            f"[{done}/{total}] {label}{self.hour}"
            + (" (lookback)" if self.lookback else "")
            + f": {self.fetched} read, {self.events_committed} new"
            + (f" -> #{self.sequence} {self.kind}" if self.sequence is not None else "")
        )


@dataclass(frozen=True)
class FailedWindow:
    """An hour that could not be committed because the API sent a page that cannot be
    followed; ``saved_page`` is the raw page as received, relative to the data dir."""

    window_start: int
    lookback: bool
    message: str
    offset: int
    saved_page: str

    @property
    def hour(self) -> str:
        return format_hour(self.window_start)


@dataclass
class SyncReport:
    """The outcome of a sync, for the CLI summary and Dagster metadata."""

    windows: list[WindowResult] = field(default_factory=list)
    failed: list[FailedWindow] = field(default_factory=list)
    stats: FetchStats = field(default_factory=FetchStats)
    actions: Counter[str] = field(default_factory=Counter)
    checkpoint: bytes | None = None

    @property
    def events_committed(self) -> int:
        return sum(w.events_committed for w in self.windows)

    @property
    def late_events(self) -> int:
        return sum(w.events_committed for w in self.windows if w.kind == "late")

    @property
    def quarantined(self) -> int:
        return sum(w.quarantined for w in self.windows)

    @property
    def revisions(self) -> list[tuple[str, str]]:
        """(hour, event id) of each committed id whose changed content this sync recorded."""
        return [(w.hour, i) for w in self.windows for i in w.revised]

    @property
    def batches(self) -> list[WindowResult]:
        return [w for w in self.windows if w.sequence is not None]

    @property
    def missing_from_source(self) -> list[tuple[str, str]]:
        return [(w.hour, i) for w in self.windows for i in w.missing_from_source]

    def summary(self) -> str:
        lines = [
            f"windows read: {len(self.windows)}; batches committed: {len(self.batches)}; "
            f"events committed: {self.events_committed} (late: {self.late_events}); "
            f"quarantined: {self.quarantined}; revisions: {len(self.revisions)}",
            f"API: {self.stats.requests} requests, {self.stats.pages} pages, "
            f"{self.stats.retries} retries ({self.stats.rate_limited} rate-limited), "
            f"{self.stats.window_restarts} window restarts",
        ]
        for w in self.batches:
            lines.append(
                f"  {w.hour}  #{w.sequence} {w.kind}: {w.events_committed} events"
                + (f", {w.quarantined} quarantined" if w.quarantined else "")
            )
        for hour, event_id in self.missing_from_source:
            lines.append(f"  WARNING {hour}: committed id {event_id} no longer returned by the API")
        for hour, event_id in self.revisions:
            lines.append(
                f"  WARNING {hour}: committed event {event_id} came back with different "
                "content: recorded as a revision (see the dataset's revisions view)"
            )
        for f in self.failed:
            lines.append(
                f"  ERROR {f.hour}: not committed (data error at byte {f.offset} of a page; "
                f"raw page kept in {f.saved_page}; the next run retries this hour): {f.message}"
            )
        return "\n".join(lines)


class _BatchWriter:
    """The ledger's ``write_data`` callback: writes the rows of the events it is given.

    The window's rows stream from its spill file into the Parquet writer a page at a time;
    it keeps just the counts the report needs.
    """

    def __init__(self, window: SpilledWindow, phase: Callable[[str], None] | None = None) -> None:
        self.window: SpilledWindow | None = window
        self.phase = phase or _no_phase
        self.quarantined = 0
        self.revision_ids: set[str] = set()
        self.actions: Counter[str] = Counter()

    def __call__(self, new_events: Sequence[EventLeaf], path: Path) -> None:
        window, self.window = self.window, None
        if window is None:
            raise RuntimeError("write_data is called once per commit")
        wanted = None
        if len(new_events) != window.row_count:
            wanted = pa.array([e.event_id for e in new_events], pa.string())
        self.phase("commit: ids checked, writing the file")
        write_batch_stream(self._counted(window.batches(), wanted), path)
        # Arrow's allocator keeps freed memory for reuse; hand the pages' back now, before
        # the ledger reads the file back.
        pa.default_memory_pool().release_unused()
        self.phase("commit: file written, table released")

    def _counted(
        self, batches: Iterator[pa.RecordBatch], wanted: pa.Array | None
    ) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if wanted is not None:
                batch = batch.filter(pc.is_in(batch["event_id"], value_set=wanted))
            reasons, ids = batch.column("quarantine_reason"), batch.column("event_id")
            revised = ids.filter(pc.starts_with(ids, REVISION_PREFIX)).to_pylist()
            self.revision_ids.update(revised)
            self.quarantined += len(reasons) - reasons.null_count - len(revised)
            for item in pc.value_counts(batch.column("action")).to_pylist():
                if item["values"]:
                    self.actions[item["values"]] += item["counts"]
            yield batch


def _no_phase(_name: str) -> None:
    pass


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around work in a process that runs nothing else.

    For the ``audit-pipeline sync`` command only: a window's ledger records are many acyclic
    objects that reference counting frees, and collector passes re-walk the live ones
    (measured ~5% of a 200k-event sync now that rows live in Arrow buffers). Never inside
    Dagster or any process with other threads: the pause is process-wide. The previous
    state is restored on the way out, whatever happens.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def sync_window(
    window_start: int,
    *,
    source: AuditLogSource,
    ledger: Ledger,
    run_id: str,
    lookback: bool = False,
    actions: Counter[str] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> WindowResult:
    """sync_window reads one hour completely, then commits what is new in it.

    ``on_phase`` is called with the name of each step as it ends (pages read, rows sorted,
    records built, file written, committed): benchmarks measure memory there.
    """
    phase = on_phase or _no_phase
    window_end = window_start + HOUR
    committed = (
        ledger.window_leaves(window_start) if window_start in ledger.committed_windows() else {}
    )
    pages_before, fetched = source.stats.pages, 0
    # The window's rows wait on disk (sorted pages in an Arrow file), not in memory.
    with tempfile.TemporaryDirectory(prefix="audit-pipeline-window-") as spill:
        normalizer = SpillingWindowNormalizer(
            window_start, window_end, committed, directory=Path(spill)
        )
        del committed
        # The next page is fetched while this one is normalized (2 cores: the wait overlaps).
        for page in read_ahead(source.iter_pages(window_start, window_end - 1)):
            fetched += len(page)
            normalizer.add(page.entries)
            del page
        phase("pages read and normalized")
        rows = normalizer.finish()
        del normalizer
        pa.default_memory_pool().release_unused()  # the pages' copies, now on disk
        phase("rows sorted into one table")
        events = event_leaves_from_table(rows.keys)
        phase("ledger records built")
        writer = _BatchWriter(rows, phase)
        duplicates_in_window = rows.duplicates_skipped
        revisions = rows.revisions
        del rows
        result = ledger.commit_batch(
            window_start=window_start,
            window_end=window_end,
            events=events,
            write_data=writer,
            source={
                "api_url": source.logs_url,
                "oldest": window_start,
                "latest": window_end - 1,
                "pages": source.stats.pages - pages_before,
                "entries_returned": fetched,
            },
            run_id=run_id,
        )
    phase("committed: file read back, checked, signed")
    del events
    writer.window = None
    if actions is not None:
        actions.update(writer.actions)
    revised = tuple(of_id for row_id, of_id in revisions if row_id in writer.revision_ids)
    for event_id in revised:
        log.warning(
            "%s: committed event %s came back with different content: recorded as a revision",
            format_hour(window_start),
            event_id,
        )
    # A committed id that came back changed is not missing: its revision is recorded.
    changed = {of_id for _, of_id in revisions}
    missing = tuple(i for i in result.missing_from_source if i not in changed)
    for event_id in missing:
        log.warning(
            "%s: committed event %s is no longer returned by the API (kept, not deleted)",
            format_hour(window_start),
            event_id,
        )
    return WindowResult(
        window_start=window_start,
        lookback=lookback,
        fetched=fetched,
        sequence=result.sequence,
        kind=result.kind,
        events_committed=result.events_committed,
        quarantined=writer.quarantined,
        duplicates_skipped=result.duplicates_skipped + duplicates_in_window,
        missing_from_source=missing,
        revised=revised,
    )


def _failed_window(
    data_dir: Path, hour: int, lookback: bool, exc: UnparseablePageError
) -> FailedWindow:
    """Keep the page that failed an hour (write-once, named by hour and content hash)."""
    digest = hashlib.sha256(exc.body).hexdigest()[:16]
    stamp = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H")  # no ':' in file names
    rel = f"{FAILED_PAGES_DIR}/{stamp}-{digest}.page"
    path = data_dir / rel
    with suppress(FileExistsError):  # never through a linked directory
        LocalStorage(data_dir).create_exclusive(rel, exc.body, mode=DATA_MODE)
    return FailedWindow(
        window_start=hour,
        lookback=lookback,
        message=str(exc),
        offset=exc.offset,
        saved_page=str(path.relative_to(data_dir)),
    )


def check_range(start: int, end: int, lookback_hours: int) -> None:
    """check_range refuses a sync range that is empty, unaligned, or has a negative lookback."""
    if start % HOUR or end % HOUR:
        raise ConfigurationError("sync windows must start and end on a UTC hour")
    if end <= start:
        raise ConfigurationError(
            f"empty range: end {format_hour(end)} is not after start {format_hour(start)}"
        )
    if lookback_hours < 0:
        raise ConfigurationError(f"lookback must be >= 0 hours, got {lookback_hours}")


def sync_hours(
    *,
    start: int,
    end: int,
    source: AuditLogSource,
    ledger: Ledger,
    run_id: str,
    lookback_hours: int = DEFAULT_LOOKBACK_HOURS,
    progress: Callable[[str], None] | None = None,
    on_commit: Callable[[WindowResult], None] | None = None,
) -> SyncReport:
    """sync_hours syncs hours ``[start, end)`` plus the lookback, oldest first.
    ``on_commit`` runs after each window that committed a batch (the witnesses' turn)."""
    check_range(start, end, lookback_hours)
    held = ledger.committed_windows()
    lookback = [h for h in range(start - lookback_hours * HOUR, start, HOUR) if h in held]
    report = SyncReport(stats=source.stats)
    plan: list[tuple[int, bool]] = [(h, True) for h in lookback]
    plan += [(h, False) for h in range(start, end, HOUR)]
    return run_windows(
        plan,
        lambda hour, is_lookback: sync_window(
            hour,
            source=source,
            ledger=ledger,
            run_id=run_id,
            lookback=is_lookback,
            actions=report.actions,
        ),
        ledger=ledger,
        report=report,
        progress=progress,
        on_commit=on_commit,
    )


def run_windows(
    plan: Sequence[tuple[int, bool]],
    window: Callable[[int, bool], WindowResult],
    *,
    ledger: Ledger,
    report: SyncReport,
    progress: Callable[[str], None] | None = None,
    on_commit: Callable[[WindowResult], None] | None = None,
    label: str = "",
) -> SyncReport:
    """run_windows syncs each planned ``(hour, is_lookback)`` with ``window``, oldest first,
    for any source: a page that cannot be parsed costs only its hour (kept, reported, retried
    by the next run); ``on_commit`` runs after each window that committed a batch."""
    for done, (hour, is_lookback) in enumerate(plan, 1):
        try:
            result = window(hour, is_lookback)
        except UnparseablePageError as exc:
            failed = _failed_window(ledger.data_dir, hour, is_lookback, exc)
            report.failed.append(failed)
            where = f"{label}{format_hour(hour)}"  # the one hour format of every other line
            log.error("%s: not committed: %s (page kept in %s)", where, exc, failed.saved_page)
            if progress:
                progress(f"[{done}/{len(plan)}] {where}: FAILED (data error), see summary")
            continue
        report.windows.append(result)
        if on_commit is not None and result.sequence is not None:
            on_commit(result)
        if progress:
            progress(result.progress_line(done, len(plan), label))
    report.checkpoint = ledger.latest_checkpoint()
    return report
