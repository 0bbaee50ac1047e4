"""Data-file checks of a verification: every data file against its manifest (size,
SHA-256, rows, events root, time range, each row against its leaf), ids committed twice in
an hour or in several hours, and files under ``lake/`` that no manifest references."""

from __future__ import annotations

import os
from array import array
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from audit_pipeline.ledger.commit import file_digest, parse_intent
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.events import BatchFileFormat, events_root, record_mismatch
from audit_pipeline.ledger.findings import LIST_LIMIT, Finding, FindingCode, first_items
from audit_pipeline.ledger.layout import (
    INTENT_SUFFIX,
    LAKE,
    PENDING,
    NotRegularFileError,
    format_hour,
    manifest_path,
    open_regular,
    parse_numbered_name,
)
from audit_pipeline.ledger.manifest import SignedManifest
from audit_pipeline.ledger.several_hours import id_hashes, ids_in_several_hours
from audit_pipeline.ledger.storage import LedgerFiles
from audit_pipeline.ledger.verify_context import VerifyContext
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

    def _check_data(self, parsed: Mapping[int, SignedManifest], start: int) -> None:
        with_data = {s: m for s, m in sorted(parsed.items()) if m.manifest.data}
        windows = Counter(m.manifest.window_start for m in with_data.values())
        shared = {s for s, m in with_data.items() if windows[m.manifest.window_start] > 1}
        todo = [s for s in with_data if s >= start]
        todo_windows = {with_data[s].manifest.window_start for s in todo}
        need_ids = [
            s for s in shared if s < start and with_data[s].manifest.window_start in todo_windows
        ]

        def work(seq: int) -> _DataResult:
            signed = with_data[seq]
            return _check_data_file(
                self.storage,
                self.file_format,
                signed,
                seq in shared,
                may_be_absent=not self.in_range(signed.manifest.window_start),
            )

        results: dict[int, _DataResult] = {}
        if self.jobs > 1 and len(todo) > 1:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                for done, (seq, res) in enumerate(zip(todo, pool.map(work, todo), strict=True)):
                    results[seq] = res
                    self._tick(done + 1, len(todo))
        else:
            for done, seq in enumerate(todo):
                results[seq] = work(seq)
                self._tick(done + 1, len(todo))
        for seq in sorted(results):
            res = results[seq]
            if res.absent_outside_range:
                self._outside_range(with_data[seq])
                continue
            self.findings.extend(res.findings)
            self.checked["data_files"] += 1
            self.checked["bytes_hashed"] += res.bytes_hashed
            self.checked["events"] += res.events
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
        self, parsed: Mapping[int, SignedManifest], size: int, partitions: Sequence[str] = (LAKE,)
    ) -> None:
        """``partitions`` (default: all of ``lake/``) are the directories walked; an
        incremental verification walks only the hours it checks."""
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
        for rel in sorted({*linked, *self.storage.linked_directories(skip=(LAKE,))}):
            self.add(
                FindingCode.LINKED_DIRECTORY,
                rel,
                "a symbolic link to a directory inside the data directory: nothing verified "
                "lies behind it, yet globbing readers (pyarrow, DuckDB) would follow it",
            )


def _check_data_file(
    storage: LedgerFiles,
    file_format: BatchFileFormat,
    signed: SignedManifest,
    want_ids: bool,
    *,
    may_be_absent: bool = False,
) -> _DataResult:
    """_check_data_file checks one batch's data file against its manifest (one outside the
    data range may be absent; if present it is checked like any other)."""
    m = signed.manifest
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

    path = storage.path(data.path)
    try:
        size, sha256 = file_digest(storage.regular_path(data.path))
    except NotRegularFileError as exc:
        add(FindingCode.NOT_REGULAR_FILE, str(exc))
        return _DataResult(findings, None, 0, 0)
    except FileNotFoundError:
        if may_be_absent:
            return _DataResult(findings, None, 0, 0, absent_outside_range=True)
        add(FindingCode.DATA_FILE_MISSING, "the data file is missing")
        return _DataResult(findings, None, 0, 0)
    if size != data.size:
        add(FindingCode.SIZE_MISMATCH, "file size differs from the manifest", data.size, size)
    if sha256 != data.sha256:
        add(
            FindingCode.FILE_HASH_MISMATCH, "SHA-256 differs from the manifest", data.sha256, sha256
        )
    try:
        records = file_format.read_events(path)
    except LedgerError as exc:
        add(FindingCode.UNREADABLE_DATA_FILE, f"rows cannot be read: {exc}")
        return _DataResult(findings, None, size, 0)
    if len(records) != data.rows:
        add(
            FindingCode.ROW_COUNT_MISMATCH,
            "row count differs from the manifest",
            data.rows,
            len(records),
        )
    root = events_root(records).hex()
    if root != m.events_root:
        add(
            FindingCode.EVENTS_ROOT_MISMATCH,
            "Merkle root recomputed from the rows differs from the manifest",
            m.events_root,
            root,
        )
    times = [r.date_create for r in records]
    span = (min(times, default=None), max(times, default=None))
    if span != (m.min_date_create, m.max_date_create):
        add(
            FindingCode.EVENT_RANGE_MISMATCH,
            "event time range differs from the manifest",
            (m.min_date_create, m.max_date_create),
            span,
        )
    outside = [r.event_id for r in records if not m.window_start <= r.date_create < m.window_end]
    if outside:
        add(
            FindingCode.EVENT_OUTSIDE_WINDOW,
            f"{len(outside)} events outside {format_hour(m.window_start)}: {first_items(outside)}",
        )
    mismatched = [f"{r.event_id} ({p})" for r in records if (p := record_mismatch(r))]
    if mismatched:
        add(
            FindingCode.EVENT_RECORD_MISMATCH,
            f"{plural(len(mismatched), 'row')} whose columns disagree with their leaf: "
            f"{first_items(mismatched)}",
        )
    repeated = [i for i, n in Counter(r.event_id for r in records).items() if n > 1]
    if repeated:
        add(
            FindingCode.DUPLICATE_EVENT_ID,
            f"{len(repeated)} event ids appear twice in the file: {first_items(repeated)}",
        )
    ids = [r.event_id for r in records] if want_ids else None
    hashes = id_hashes(r.event_id for r in records)
    return _DataResult(findings, ids, size, len(records), id_hashes=hashes)


def _digest_or_none(storage: LedgerFiles, rel: str) -> tuple[int, str] | None:
    try:
        return file_digest(storage.regular_path(rel))
    except (NotRegularFileError, FileNotFoundError):
        return None
