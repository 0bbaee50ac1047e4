"""PacedHashing: the helper thread that hashes data files while manifests are checked must
return every result in order, hand back what a check raised, and never leave a pace or a
stop waiting."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from audit_pipeline.ledger.paced_hashing import PacedHashing


def _digest(task: bytes, hash_chunk) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(task), 4096):
        hash_chunk(digest, task[start : start + 4096])
    return digest.hexdigest()


def test_results_come_back_in_order_while_the_caller_paces() -> None:
    tasks = [bytes([n]) * (5000 * n + 1) for n in range(40)]
    paced = PacedHashing(_digest, tasks[:10])
    for task in tasks[10:]:
        paced.pace()
        paced.add(task)
    for _ in range(100):  # more paces than hash calls left: none may wait forever
        paced.pace()
    assert list(paced.results()) == [hashlib.sha256(t).hexdigest() for t in tasks]
    paced.pace()  # after the end


def test_a_pace_with_nothing_queued_returns_at_once() -> None:
    paced: PacedHashing[bytes, str] = PacedHashing(_digest)
    done = threading.Event()
    threading.Thread(target=lambda: (paced.pace(), done.set()), daemon=True).start()
    assert done.wait(5)
    paced.add(b"x" * 10_000)
    assert list(paced.results()) == [hashlib.sha256(b"x" * 10_000).hexdigest()]


def test_what_a_check_raised_is_raised_to_the_caller() -> None:
    def check(task: int, hash_chunk) -> int:
        if task == 3:
            raise PermissionError(13, "Permission denied", f"file {task}")
        return task

    paced = PacedHashing(check, range(6))
    with pytest.raises(PermissionError, match="Permission denied"):
        list(paced.results())


def test_stop_ends_the_helper_before_the_queue_is_done() -> None:
    started, release = threading.Event(), threading.Event()

    def check(task: int, hash_chunk) -> int:
        started.set()
        release.wait(5)
        return task

    paced = PacedHashing(check, range(1000))
    assert started.wait(5)
    stopper = threading.Thread(target=paced.stop, daemon=True)
    stopper.start()
    while not paced._stop:
        time.sleep(0.001)
    release.set()
    stopper.join(5)
    assert not stopper.is_alive() and paced._results == [0]
