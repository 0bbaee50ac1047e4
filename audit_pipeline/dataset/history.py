"""The verification history: every verification run, appended to a JSON-lines log.

SOC 2 and SEC 17a-4 auditors ask not only "is the log intact now?" but "was it checked,
when, and what did each check find?". The dataset file is derived and may be deleted or
rebuilt at any time, so that history cannot live only inside it: each run is appended as
one line to ``<data dir>/verification/runs.jsonl`` (outside ``lake/`` and ``ledger/``,
which the verifier owns), and every build loads the whole file into
``verification_runs``. Deleting
or rebuilding ``audit.duckdb`` therefore never loses a run. Dataset builds, evidence
exports, ``audit-pipeline verify`` and the ``audit_ledger`` Dagster asset all append
(:func:`record`); ``trigger`` says which.

One line per run (canonical JSON)::

    {"checkpoint": "<signed note text or null>", "ok": true, "report": {...},
     "root_hash": "<hex or null>", "run_id": "<uuid4 hex>",
     "schema": "audit_pipeline.verification_run/v1", "tree_size": 42,
     "trigger": "dataset build", "verified_at": 1764403200}

``report`` is the verifier's own JSON report (``VerifyReport.to_json()``), kept whole.
The log is evidence about the ledger, not part of it: it is not signed, and a stranger
re-runs ``audit-pipeline verify`` rather than trusting it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_pipeline.errors import AuditPipelineError
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import (
    LocalStorage,
    make_dirs,
    open_regular_for_writing,
    read_regular,
)

RUNS_LOG = "verification/runs.jsonl"
RUN_SCHEMA = "audit_pipeline.verification_run/v1"


class HistoryError(AuditPipelineError):
    """The verification history cannot be read or written."""


@dataclass(frozen=True)
class VerificationRun:
    """One verification as recorded: when, by what, the outcome and the full report."""

    run_id: str
    verified_at: int
    trigger: str
    ok: bool
    tree_size: int | None
    root_hash: str | None
    checkpoint: str | None
    report: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "ok": self.ok,
            "report": dict(self.report),
            "root_hash": self.root_hash,
            "run_id": self.run_id,
            "schema": RUN_SCHEMA,
            "tree_size": self.tree_size,
            "trigger": self.trigger,
            "verified_at": self.verified_at,
        }

    @property
    def findings(self) -> list[Mapping[str, Any]]:
        found = self.report.get("findings")
        return [f for f in found if isinstance(f, Mapping)] if isinstance(found, list) else []


def runs_log_path(data_dir: Path) -> Path:
    return Path(data_dir) / RUNS_LOG


def report_to_dict(report: Any) -> dict[str, Any]:
    """report_to_dict returns the verifier's report as a dict (``to_json`` gives text)."""
    raw = report.to_json() if hasattr(report, "to_json") else report
    if isinstance(raw, bytes | str):
        raw = json.loads(raw)
    if not isinstance(raw, Mapping):
        raise TypeError(f"a verification report must serialize to an object, not {raw!r}")
    return dict(raw)


def new_run(
    report: Any,
    *,
    trigger: str,
    tree_size: int | None,
    root_hash: str | None,
    checkpoint: str | None,
    verified_at: int | None = None,
) -> VerificationRun:
    """new_run wraps a verifier report as a history entry (not yet written)."""
    return VerificationRun(
        run_id=uuid.uuid4().hex,
        verified_at=int(time.time()) if verified_at is None else verified_at,
        trigger=trigger,
        ok=bool(report),
        tree_size=tree_size,
        root_hash=root_hash,
        checkpoint=checkpoint,
        report=report_to_dict(report),
    )


def record(data_dir: Path, report: Any, *, trigger: str) -> VerificationRun:
    """record appends a verifier report to the history under ``trigger`` (who verified:
    ``audit-pipeline verify``, a Dagster run, ...); HistoryError if it cannot be written."""
    run = new_run(
        report,
        trigger=trigger,
        tree_size=report.tree_size,
        root_hash=report.root_hash.hex() if report.root_hash else None,
        checkpoint=report.checkpoint.decode() if report.checkpoint else None,
    )
    append_run(data_dir, run)
    return run


@contextlib.contextmanager
def _locked_append(data_dir: Path) -> Iterator[int]:
    # never through a linked directory, never into a FIFO (that would wait forever)
    path = LocalStorage(data_dir).regular_path(RUNS_LOG)
    make_dirs(path.parent)
    fd = open_regular_for_writing(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.fchmod(fd, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def append_run(data_dir: Path, run: VerificationRun) -> None:
    """append_run adds one line to the history log, durably (one write, then fsync)."""
    line = json.dumps(run.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    path = runs_log_path(data_dir)
    try:
        with _locked_append(data_dir) as fd:
            data = (line + "\n").encode()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
    except (OSError, LedgerError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise HistoryError(f"cannot append to the verification history {path}: {cause}") from exc


def load_runs(data_dir: Path) -> list[VerificationRun]:
    """load_runs reads every recorded run, oldest first ([] if none were recorded).

    A line that is not a run (a torn write after a crash, a hand edit) is skipped rather
    than hiding every other run; its line number is kept as a run with ``ok`` false and
    trigger ``unreadable history line`` so the gap is visible.
    """
    path = runs_log_path(data_dir)
    try:
        text = read_regular(path).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except (OSError, LedgerError) as exc:
        raise HistoryError(f"cannot read the verification history {path}: {exc}") from exc
    runs: list[VerificationRun] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            runs.append(_run_from_dict(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            runs.append(
                VerificationRun(
                    run_id=f"unreadable-line-{number}",
                    verified_at=0,
                    trigger="unreadable history line",
                    ok=False,
                    tree_size=None,
                    root_hash=None,
                    checkpoint=None,
                    report={"error": f"{path.name} line {number} is not a verification run"},
                )
            )
    return runs


def _run_from_dict(doc: Any) -> VerificationRun:
    if not isinstance(doc, dict) or doc.get("schema") != RUN_SCHEMA:
        raise ValueError("not a verification run")
    report = doc["report"]
    if not isinstance(report, dict):
        raise ValueError("report is not an object")
    tree_size = doc.get("tree_size")
    return VerificationRun(
        run_id=str(doc["run_id"]),
        verified_at=int(doc["verified_at"]),
        trigger=str(doc["trigger"]),
        ok=bool(doc["ok"]),
        tree_size=None if tree_size is None else int(tree_size),
        root_hash=doc.get("root_hash"),
        checkpoint=doc.get("checkpoint"),
        report=report,
    )
