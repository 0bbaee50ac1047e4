"""Profiles of the pipeline where targets are missed: pyinstrument sessions, saved as text
under ``benchmarks/profiles/`` and summarized as "where the time goes" tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, module_argv, run_child

PROFILE_DIR = REPO_ROOT / "benchmarks" / "profiles"

# (label, qualified function names whose outermost frames are summed)
INGEST_PARTS = (
    # Pages are fetched and split in the read-ahead thread, which the profile does not
    # sample: what shows is the time the sync waited for a page that was not there yet.
    ("wait for the next page (fetch + split, read ahead)", ("read_ahead",)),
    (
        "normalize pages, spill them to disk (lake)",
        ("WindowNormalizer.add", "SpillingWindowNormalizer.add"),
    ),
    (
        "order the window's pages (lake)",
        ("WindowNormalizer.finish", "SpillingWindowNormalizer.finish"),
    ),
    ("compact ledger records: id, time, leaf hash (lake)", ("event_leaves_from_table",)),
    ("ledger commit, total", ("Ledger.commit_batch",)),
    ("  stream the spill into Parquet (lake)", ("write_batch_stream",)),
    ("  read back + check rows: ids, leaf hashes, leaf JSON (ledger)", ("_check_written",)),
    ("  events Merkle root (ledger)", ("root_hash",)),
    ("  hash the file (ledger)", ("file_digest",)),
)
INCREMENTAL_PARTS = (
    ("the log from tiles and the new manifests (LogView)", ("read_log",)),
    ("hours' extremes from the signed index (coverage)", ("LogView.coverage_refs",)),
    ("probe the manifest names after the checkpoint", ("_Run._log_size",)),
    (
        "index checked against what the run reads",
        ("LogView.contradicted", "_fills_old_hour", "_Run._unindexed_file"),
    ),
    ("lake partitions of the hours checked", ("_Run._check_unreferenced",)),
    ("coverage of every hour", ("_Run._check_coverage",)),
    ("check the new data files", ("check_data_file",)),
)
COMMIT_PARTS = (
    ("the log from tiles and the newest manifests (LogView)", ("read_log",)),
    ("count the manifests (a listing)", ("Ledger._manifest_count",)),
    ("write, read back and check the data file", ("Ledger._publish_data",)),
)
PROVE_PARTS = (
    ("log hashes from tiles, checked against the signed root", ("_log_hashes",)),
    ("inclusion path in the log", ("prove_inclusion",)),
    ("find the event in its batch", ("_find_event",)),
)
VERIFY_PARTS = (
    ("read + parse manifests", ("_Run._read_manifests",)),
    ("check data files, total", ("check_data_file",)),
    ("  SHA-256 of files", ("file_digest",)),
    ("  decode Parquet into columns (lake reader)", ("ParquetBatchFormat.read_event_columns",)),
    ("  leaf hashes", ("leaf_hashes",)),
    ("  events Merkle root: node hashes", ("root_hash",)),
    ("  row id/time vs leaf JSON", ("mismatched_rows",)),
    ("checkpoints and signatures", ("_Run._check_checkpoints", "_Run._check_manifests")),
)


def _name(frame: Any) -> str:
    cls = getattr(frame, "class_name", None)
    return f"{cls}.{frame.function}" if cls else frame.function


def _outermost(root: Any, names: Iterable[str]) -> float:
    wanted = set(names)
    total, stack = 0.0, [root]
    while stack:
        frame = stack.pop()
        if _name(frame) in wanted or frame.function in wanted:
            total += frame.time
            continue
        stack.extend(frame.children)
    return total


def breakdown(session: Any, parts: tuple[tuple[str, tuple[str, ...]], ...]) -> list[tuple]:
    """(label, seconds, share of the profile) for each part."""
    root = session.root_frame()
    total = root.time if root is not None else 0.0
    return [
        (label, seconds, seconds / total if total else 0.0)
        for label, names in parts
        for seconds in [_outermost(root, names) if root is not None else 0.0]
    ]


def _save_text(session: Any, name: str) -> Path:
    from pyinstrument.renderers import ConsoleRenderer

    PROFILE_DIR.mkdir(parents=True, exist_ok=True)  # set by __main__ beside the results
    path = PROFILE_DIR / f"{name}.txt"
    text = ConsoleRenderer(unicode=True, color=False, short_mode=False).render(session)
    path.write_text(text)
    return path


def profile_child(name: str, module_args: list[str], work: Path) -> dict[str, Any]:
    """Runs ``python -m <module_args>`` under pyinstrument; returns its summary."""
    from pyinstrument.session import Session

    out = work / f"{name}.pyisession"
    run_child(module_argv("pyinstrument", "-i", "0.002", "-r", "session", "-o", str(out),
                          "-m", *module_args))  # fmt: skip
    session = Session.load(str(out))
    return {"path": _save_text(session, name), "session": session, "duration": session.duration}


def profile_call(name: str, fn: Callable[[], Any]) -> dict[str, Any]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002)
    profiler.start()
    try:
        fn()
    finally:
        session = profiler.stop()
    return {"path": _save_text(session, name), "session": session, "duration": session.duration}
