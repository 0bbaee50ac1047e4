"""HashAhead: data files checked on one helper thread, in the order they are queued, while
the verifying thread goes on parsing manifests and checking signatures (file level, one
job). hashlib and the Ed25519 checks let go of the GIL, so the two threads run side by
side; every file is still read and hashed in full."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class HashAhead(Generic[T, R]):
    """HashAhead runs ``check(task)`` on a helper thread for each task added, in order."""

    def __init__(self, check: Callable[[T], R]) -> None:
        self._check = check
        self._queue: deque[T] = deque()
        self._results: list[R] = []
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._idle = self._closed = self._stop = False
        self._thread = threading.Thread(target=self._work, name="verify-hashing", daemon=True)
        self._thread.start()

    def add(self, task: T) -> None:
        with self._cond:
            self._queue.append(task)
            if self._idle:
                self._cond.notify()

    def results(self) -> Iterator[R]:
        """results waits for every task and yields their results in order (re-raising what
        a check raised, as checking in this thread would have)."""
        self.stop(finish=True)
        if self._error is not None:
            raise self._error
        yield from self._results

    def stop(self, finish: bool = False) -> None:
        """stop ends the helper: after every queued task (``finish``), or after the current one."""
        with self._cond:
            self._closed = True
            self._stop = self._stop or not finish
            self._cond.notify()
        self._thread.join()

    def _next(self) -> T | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._idle = True
                self._cond.wait()
            self._idle = False
            return None if self._stop or not self._queue else self._queue.popleft()

    def _work(self) -> None:
        try:
            while (task := self._next()) is not None:
                self._results.append(self._check(task))
        except BaseException as exc:  # handed to the verifying thread by results()
            self._error = exc
