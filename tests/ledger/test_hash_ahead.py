"""HashAhead: the helper thread that checks data files while manifests are parsed must give
every result in order, hand back what a check raised, and stop without the rest."""

from __future__ import annotations

import hashlib
import threading

import pytest

from audit_pipeline.ledger.hash_ahead import HashAhead


def _sha(task: bytes) -> str:
    return hashlib.sha256(task).hexdigest()


def test_results_come_back_in_the_order_added() -> None:
    tasks = [bytes([n]) * (5000 * n + 1) for n in range(40)]
    ahead = HashAhead(_sha)
    for task in tasks:
        ahead.add(task)
    assert list(ahead.results()) == [_sha(t) for t in tasks]


def test_no_task_gives_no_result() -> None:
    assert list(HashAhead(_sha).results()) == []


def test_what_a_check_raised_is_raised_to_the_caller() -> None:
    def check(task: int) -> int:
        if task == 3:
            raise PermissionError(13, "Permission denied", f"file {task}")
        return task

    ahead = HashAhead(check)
    for task in range(6):
        ahead.add(task)
    with pytest.raises(PermissionError, match="Permission denied"):
        list(ahead.results())


def test_stop_ends_the_helper_before_the_queue_is_done() -> None:
    started, release = threading.Event(), threading.Event()

    def check(task: int) -> int:
        started.set()
        release.wait(5)
        return task

    ahead = HashAhead(check)
    for task in range(1000):
        ahead.add(task)
    assert started.wait(5)
    stopper = threading.Thread(target=ahead.stop, daemon=True)
    stopper.start()
    stopper.join(0.2)
    release.set()
    stopper.join(5)
    assert not stopper.is_alive() and len(ahead._results) < 1000
