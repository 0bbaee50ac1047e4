"""Data-file checks of a verification: every data file against its manifest (size and
SHA-256 at every depth; at row level also rows, events root, time range, each row against
its leaf: :mod:`.verify_rows`), ids committed twice in an hour or in several hours, and
files under ``lake/`` that no manifest references. With ``jobs`` > 1 the files are checked
in worker processes (:func:`check_data_file` is their picklable task)."""

from __future__ import annotations

import os
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from audit_pipeline.ledger.commit import file_digest, parse_intent
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.events import BatchFileFormat
from audit_pipeline.ledger.findings import LIST_LIMIT, Finding, FindingCode
from audit_pipeline.ledger.hash_ahead import HashAhead
from audit_pipeline.ledger.layout import (
    INTENT_SUFFIX,
    LAKE,
    PENDING,
    LocalStorage,
    NotRegularFileError,
    format_hour,
    manifest_path,
    open_regular,
    parse_numbered_name,
)
from audit_pipeline.ledger.manifest import SignedManifest
from audit_pipeline.ledger.several_hours import id_hashes, ids_in_several_hours
from audit_pipeline.ledger.storage import LedgerFiles
from audit_pipeline.ledger.verify_context import FILES, VerifyContext
from audit_pipeline.ledger.verify_rows import check_rows, read_event_columns
from audit_pipeline.text import plural


@dataclass
class _DataResult:
    findings: list[Finding]
    ids: list[str] | None
    bytes_hashed: int
    events: int
    absent_outside_range: bool = False
    id_hashes: array | None = None  # every id, hashed: the same id in two hours (a notice)


class DataFileChecks(VerifyContext):
    """The data files: each against its manifest, ids across batches, files nobody references."""

    _running: tuple[list[int], dict[int, str], Iterator[_DataResult]] | None = None
    _pool: Executor | None = None
    _ahead: HashAhead[DataFileTask, _DataResult] | None = None
    _ahead_seqs: list[int] | None = None  # the batches queued by _hash_ahead

    def _hash_ahead(self, seq: int, signed: SignedManifest) -> None:
        """_hash_ahead hands a batch's data file to the hashing thread as soon as its
        manifest is parsed, when every data file will be checked at file level by this
        process (a full run, one job, a local directory); :meth:`_start_data` then takes
        the results only if they are exactly the files it would check."""
        if self.depth != FILES or not self._hashes_on_a_thread() or not signed.manifest.data:
            return
        if self._ahead is None:
            self._ahead, self._ahead_seqs = HashAhead(check_data_file), []
        assert self._ahead_seqs is not None
        self._ahead_seqs.append(seq)
        self._ahead.add(self._task(signed, FILES, want_ids=False))

    def _hashes_on_a_thread(self) -> bool:
        """One job on a local directory: file-level checks hash on a helper thread (hashlib
        and the Ed25519 checks let go of the GIL, so it runs beside this thread's checks)."""
        return self.jobs == 1 and isinstance(self.storage, LocalStorage)

    def _task(self, signed: SignedManifest, depth: str, want_ids: bool) -> DataFileTask:
        return DataFileTask(
            self.storage,
            self.file_format,
            signed,
            depth,
            may_be_absent=not self.in_range(signed.manifest.window_start),
            want_ids=want_ids,
            hash_probe=hash(HASH_PROBE),
        )

    def _start_data(self, parsed: Mapping[int, SignedManifest], start: int) -> None:
        """_start_data hands the data files to ``jobs`` worker processes (when there are
        several), so they are hashed and decoded while this process checks the manifests;
        :meth:`_check_data` collects the results in batch order."""
        with_data = {s: m for s, m in sorted(parsed.items()) if m.manifest.data}
        windows = Counter(m.manifest.window_start for m in with_data.values())
        new = [s for s in with_data if s >= start]
        # The batches a trusted checkpoint covers, when asked: at file level (their
        # manifests, and so their files' hashes, are what that checkpoint vouches for).
        todo = list(with_data) if self.recheck_trusted_files else new
        depth = {seq: self.depth if seq >= start else FILES for seq in todo}
        if self._ahead is not None:
            ahead = self._ahead
            if self._ahead_seqs == todo and all(depth[seq] == FILES for seq in todo):
                self._running = (todo, depth, self._ticked(ahead.results(), len(todo)))
                return
            self._stop_data()  # not the files this run checks: checked afresh below
        tasks = [
            self._task(
                with_data[seq], depth[seq], windows[with_data[seq].manifest.window_start] > 1
            )
            for seq in todo
        ]
        self._running = (todo, depth, self._run_tasks(tasks))

    def _stop_data(self) -> None:
        """_stop_data ends the worker processes or threads, if any (also when a check
        failed)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = self._ahead_seqs = None

    def _check_data(self, parsed: Mapping[int, SignedManifest], start: int) -> None:
        with_data = {s: m for s, m in sorted(parsed.items()) if m.manifest.data}
        windows = Counter(m.manifest.window_start for m in with_data.values())
        shared = {s for s, m in with_data.items() if windows[m.manifest.window_start] > 1}
        todo_windows = {m.manifest.window_start for s, m in with_data.items() if s >= start}
        need_ids = [
            s for s in shared if s < start and with_data[s].manifest.window_start in todo_windows
        ]
        if self._running is None:
            self._start_data(parsed, start)
        assert self._running is not None
        (todo, depth, running), self._running = self._running, None
        try:
            results: dict[int, _DataResult] = dict(zip(todo, running, strict=True))
        finally:
            self._stop_data()
        for seq in sorted(results):
            res = results[seq]
            if res.absent_outside_range:
                self._outside_range(with_data[seq])
                continue
            self.findings.extend(res.findings)
            self.checked["data_files"] += 1
            self.checked["bytes_hashed"] += res.bytes_hashed
            if depth[seq] == FILES:  # no event read
                self.checked["rows_not_rederived"] += 1
            else:
                self.checked["events"] += res.events
            if res.ids is not None and res.id_hashes is None:
                res.id_hashes = id_hashes(res.ids)
                if seq not in shared:
                    res.ids = None  # only a window shared with another batch needs them
        if self.checked["rows_not_rederived"]:
            self._notice_rows_not_rederived(self.checked["rows_not_rederived"])
        if self.depth == FILES:
            return
        # Ids of earlier batches that share a window with a new one (incremental mode).
        for seq in sorted(need_ids):
            data = with_data[seq].manifest.data
            assert data is not None
            try:
                os.close(open_regular(self.storage.regular_path(data.path)))
                records = self.file_format.read_events(self.storage.path(data.path))
            except (LedgerError, FileNotFoundError):
                continue
            ids = [r.event_id for r in records]
            results[seq] = _DataResult([], ids, 0, 0, id_hashes=id_hashes(ids))
        self._check_window_duplicates(parsed, results, start)
        self._notice_ids_in_several_hours(parsed, results)

    def _run_tasks(self, tasks: list[DataFileTask]) -> Iterator[_DataResult]:
        """_run_tasks checks the data files in order, in ``jobs`` worker processes when there
        are several (started now; each file is hashed and decoded in one process; results
        come back in batch order), with progress every hundred files. At file level with one
        job a helper thread hashes them while this thread checks the manifests."""
        jobs = self.jobs
        if jobs > 1 and not isinstance(self.storage, LocalStorage):
            self.notice(
                "jobs_not_used",
                "data files",
                f"--jobs {jobs} asked for, but this storage's client is not shared with worker "
                "processes: the data files were checked in this process, one at a time",
            )
            jobs = 1
        files_only = len(tasks) > 1 and all(t.depth == FILES for t in tasks)
        if files_only and (jobs > 1 or self._hashes_on_a_thread()):
            # Hashing releases the GIL: threads, without a process's start-up and pickling.
            self._pool = ThreadPoolExecutor(max_workers=min(jobs, len(tasks)))
            return self._ticked(self._pool.map(check_data_file, tasks), len(tasks))
        if jobs > 1 and len(tasks) > 1:
            workers = min(jobs, len(tasks))
            chunk = max(1, len(tasks) // (jobs * 16))
            self._pool = ProcessPoolExecutor(max_workers=workers)
            results = self._pool.map(check_data_file, tasks, chunksize=chunk)  # submits all
            return self._ticked(results, len(tasks))
        return self._ticked(map(check_data_file, tasks), len(tasks))

    def _ticked(self, results: Iterator[_DataResult], total: int) -> Iterator[_DataResult]:
        for done, res in enumerate(results):
            self._tick(done + 1, total)
            yield res

    def _notice_rows_not_rederived(self, files: int) -> None:
        self.notice(
            "rows_not_rederived",
            "data files",
            f"file level: {plural(files, 'data file')} matched the size and SHA-256 their "
            "signed manifests pin; their rows were not re-derived (leaves, events roots, row "
            "counts, time ranges, windows, id/time columns, ids twice in an hour or in several "
            "hours: checked when committed, and by --depth rows)",
        )

    def _notice_ids_in_several_hours(
        self, parsed: Mapping[int, SignedManifest], results: Mapping[int, _DataResult]
    ) -> None:
        """Ids committed in more than one hour of the batches checked (all of them in a full
        verification; the new ones and their hours' batches in an incremental one)."""

        def read_ids(seq: int) -> list[str]:
            data = parsed[seq].manifest.data
            assert data is not None
            return [r.event_id for r in self.file_format.read_events(self.storage.path(data.path))]

        batches = (
            (seq, parsed[seq].manifest.window_start, res.id_hashes)
            for seq, res in sorted(results.items())
            if res.id_hashes is not None
        )
        for seq, found in ids_in_several_hours(batches, read_ids).items():
            shown = ", ".join(f"{i} (also {format_hour(w)})" for i, w in found[:LIST_LIMIT])
            more = f" and {len(found) - LIST_LIMIT} more" if len(found) > LIST_LIMIT else ""
            self.notice(
                "event_id_in_several_hours",
                manifest_path(seq),
                f"{len(found)} event ids of {format_hour(parsed[seq].manifest.window_start)} "
                f"were also committed in another hour: {shown}{more} ('prove' needs --hour)",
            )

    def _outside_range(self, signed: SignedManifest) -> None:
        m = signed.manifest
        assert m.data is not None and self.data_range is not None
        self.checked["data_outside_range"] += 1
        self.notice(
            "data_outside_range",
            m.data.path,
            f"batch {m.sequence} of {format_hour(m.window_start)} is outside the data range "
            f"{format_hour(self.data_range[0])}..{format_hour(self.data_range[1])}: its data "
            "file is absent; its manifest is checked, its events are not",
        )

    def _tick(self, done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            self.progress(f"checked {done}/{total} data files")

    def _check_window_duplicates(
        self, parsed: Mapping[int, SignedManifest], results: Mapping[int, _DataResult], start: int
    ) -> None:
        seen: dict[int, dict[str, int]] = defaultdict(dict)
        dups: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
        for seq in sorted(results):
            ids = results[seq].ids
            if ids is None:
                continue
            window_ids = seen[parsed[seq].manifest.window_start]
            for event_id in dict.fromkeys(ids):
                first = window_ids.setdefault(event_id, seq)
                if first != seq and seq >= start:
                    dups[seq].append((event_id, first, seq))
        for seq, items in sorted(dups.items()):
            shown = ", ".join(f"{i} (batch {a} and {b})" for i, a, b in items[:LIST_LIMIT])
            more = f" and {len(items) - LIST_LIMIT} more" if len(items) > LIST_LIMIT else ""
            self.add(
                FindingCode.DUPLICATE_EVENT_ID,
                manifest_path(seq),
                f"{len(items)} event ids committed twice in "
                f"{format_hour(parsed[seq].manifest.window_start)}: {shown}{more}",
            )

    def _check_unreferenced(
        self,
        parsed: Mapping[int, SignedManifest],
        size: int,
        partitions: Sequence[str] = (LAKE,),
        unwalked: tuple[str, ...] = (LAKE,),
    ) -> None:
        """``partitions`` (default: all of ``lake/``) are the directories walked; an
        incremental verification walks only the hours it checks, and looks for linked
        directories outside ``unwalked`` (it leaves out the history's manifests and
        checkpoints too)."""
        referenced = {m.manifest.data.path for m in parsed.values() if m.manifest.data}
        leftovers: dict[str, Any] = {}
        for name in self.storage.list_dir(PENDING):
            rel = f"{PENDING}/{name}"
            if parse_numbered_name(name, INTENT_SUFFIX) is None:
                self.notice("uncommitted_leftover", rel, "staged file of an interrupted commit")
                continue
            try:
                intent = parse_intent(self.storage.read(rel))
            except LedgerError as exc:
                self.notice("uncommitted_leftover", rel, f"unreadable intent ({exc})")
                continue
            if intent.signature_ok(self.keyring) and intent.sequence >= size:
                leftovers[intent.path] = intent
            self.notice(
                "uncommitted_leftover",
                rel,
                f"intent of an interrupted commit of batch {intent.sequence}",
            )
        linked: list[str] = []
        walked = [rel for under in partitions for rel in self.storage.walk_files(under, linked)]
        for rel in walked:
            if rel in referenced:
                continue
            intent = leftovers.get(rel)
            if intent is not None and _digest_or_none(self.storage, rel) == (
                intent.size,
                intent.sha256,
            ):
                self.notice(
                    "uncommitted_leftover",
                    rel,
                    f"data of batch {intent.sequence}, never committed (removed by the "
                    "next commit; never part of the dataset)",
                )
                continue
            self.add(
                FindingCode.UNREFERENCED_FILE,
                rel,
                "no manifest references this file (it is not part of the ledger)",
            )
        for rel in sorted({*linked, *self.storage.linked_directories(skip=unwalked)}):
            self.add(
                FindingCode.LINKED_DIRECTORY,
                rel,
                "a symbolic link to a directory inside the data directory: nothing verified "
                "lies behind it, yet globbing readers (pyarrow, DuckDB) would follow it",
            )


@dataclass(frozen=True)
class DataFileTask:
    """DataFileTask is one data file to check: everything a worker process needs (picklable
    for the local data directory)."""

    storage: LedgerFiles
    file_format: BatchFileFormat
    signed: SignedManifest
    depth: str
    may_be_absent: bool = False
    want_ids: bool = False  # the window is shared with another batch: ids are compared
    # hash(HASH_PROBE) in the process that asked: a worker whose string hashes are the same
    # (forked) returns its ids' hashes, else the ids for the asking process to hash
    hash_probe: int | None = None


HASH_PROBE = "audit_pipeline: are string hashes this process's?"


def check_data_file(task: DataFileTask) -> _DataResult:
    """check_data_file checks one batch's data file against its manifest: its size and
    SHA-256 at every depth, its rows too at ``rows`` (one outside the data range may be
    absent; if present it is checked like any other)."""
    m = task.signed.manifest
    data = m.data
    assert data is not None
    findings: list[Finding] = []

    def add(code: FindingCode, detail: str, expected: object = None, actual: object = None) -> None:
        findings.append(
            Finding(
                code,
                data.path,
                None if expected is None else str(expected),
                None if actual is None else str(actual),
                f"batch {m.sequence}: {detail}",
            )
        )

    try:
        size, sha256 = file_digest(task.storage.regular_path(data.path))
    except NotRegularFileError as exc:
        add(FindingCode.NOT_REGULAR_FILE, str(exc))
        return _DataResult(findings, None, 0, 0)
    except FileNotFoundError:
        if task.may_be_absent:
            return _DataResult(findings, None, 0, 0, absent_outside_range=True)
        add(FindingCode.DATA_FILE_MISSING, "the data file is missing")
        return _DataResult(findings, None, 0, 0)
    if size != data.size:
        add(FindingCode.SIZE_MISMATCH, "file size differs from the manifest", data.size, size)
    if sha256 != data.sha256:
        add(
            FindingCode.FILE_HASH_MISMATCH, "SHA-256 differs from the manifest", data.sha256, sha256
        )
    if task.depth == FILES:
        return _DataResult(findings, None, size, 0)
    try:
        columns = read_event_columns(task.file_format, task.storage.path(data.path))
    except LedgerError as exc:
        add(FindingCode.UNREADABLE_DATA_FILE, f"rows cannot be read: {exc}")
        return _DataResult(findings, None, size, 0)
    check_rows(m, columns, add)
    ids = columns.ids
    if task.hash_probe != hash(HASH_PROBE):
        return _DataResult(findings, ids, size, len(ids))
    return _DataResult(
        findings, ids if task.want_ids else None, size, len(ids), id_hashes=id_hashes(ids)
    )


def _digest_or_none(storage: LedgerFiles, rel: str) -> tuple[int, str] | None:
    try:
        return file_digest(storage.regular_path(rel))
    except (NotRegularFileError, FileNotFoundError):
        return None
