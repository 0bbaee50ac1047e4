"""Several processes committing at once produce one linear chain with every batch."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path

import pytest

from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.note import Signer

PROCESSES = 4
COMMITS_EACH = 10
SHARED_HOUR = PROCESSES * COMMITS_EACH  # every process also commits this hour


def _committer(data_dir: Path, skey: str, proc: int, lh, errors) -> None:
    try:
        ledger = Ledger(
            data_dir,
            file_format=lh.JSONL,
            signer=Signer.from_private_key(skey),
            origin=lh.ORIGIN,
            clock=lh.Clock(),
        )
        shared = lh.make_events(SHARED_HOUR, 5, prefix="shared")
        own = lh.make_events(SHARED_HOUR, 1, prefix=f"p{proc}")
        for i in range(COMMITS_EACH):
            lh.commit(ledger, proc * COMMITS_EACH + i)
            if i == COMMITS_EACH // 2:
                lh.commit(ledger, SHARED_HOUR, [*shared, *own])
    except BaseException:
        errors.put(f"process {proc}: {traceback.format_exc()}")
        raise


@pytest.mark.e2e
def test_concurrent_committers_make_one_linear_chain(
    data_dir: Path, signing_key: Signer, key_path: Path, lh
) -> None:
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    skey = key_path.read_text().strip()
    procs = [
        ctx.Process(target=_committer, args=(data_dir, skey, p, lh, errors))
        for p in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert errors.empty(), errors.get()
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    ledger = Ledger(data_dir, file_format=lh.JSONL)
    chain = ledger.manifests()  # raises on any gap or broken link
    hours = [m.manifest.window_start for m in chain]
    # Every process's every hour exactly once, plus one batch per process for the shared
    # hour (the first is "hour", the others "late" with only that process's new event).
    assert sorted(set(hours)) == [lh.hour(h) for h in range(SHARED_HOUR + 1)]
    assert len(chain) == SHARED_HOUR + PROCESSES
    shared = [m.manifest for m in chain if m.manifest.window_start == lh.hour(SHARED_HOUR)]
    assert [m.kind for m in shared] == ["hour"] + ["late"] * (PROCESSES - 1)
    assert [m.event_count for m in shared] == [6] + [1] * (PROCESSES - 1)
    assert len(ledger.committed_event_ids(lh.hour(SHARED_HOUR))) == 5 + PROCESSES
    report = lh.verify(data_dir)
    assert report.ok, report.summary()
    assert report.tree_size == len(chain) and not report.notices
    checkpoints = sorted((data_dir / "ledger/checkpoints").iterdir())
    assert len(checkpoints) == len(chain)
