"""PacedHashing: data files hashed on a helper thread while the verifying thread parses and
checks manifests (file level, one job), with the GIL handed over on purpose.

hashlib lets go of the GIL while it hashes a chunk, so hashing can run beside Python work.
But a thread that lets go of the GIL for a moment (an open, a read, the end of a hash call)
waits up to the switch interval (5 ms) to get it back from a thread busy in Python, so a
helper left alone hashes a file or two while the manifests are checked. Here the verifying
thread steps aside at each manifest (:meth:`PacedHashing.pace`) until the helper is inside
its next hash call, and works while that call runs: the two take turns holding the GIL and
the hashing runs beside the checks. A step shorter than a hash call does not wait: while
the call is expected to run (its bytes at the fastest rate seen so far) the verifying
thread goes on. Every file is still read and hashed in full, in order; only the thread
differs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from audit_pipeline.ledger.commit import HashChunk

T = TypeVar("T")
R = TypeVar("R")


class PacedHashing(Generic[T, R]):
    """PacedHashing runs ``check(task, hash_chunk)`` for each task, in the order added, on
    a helper thread; ``check`` hashes each chunk with ``hash_chunk(digest, chunk)``."""

    def __init__(self, check: Callable[[T, HashChunk], R], tasks: Iterable[T] = ()) -> None:
        self._check = check
        self._queue: deque[T] = deque(tasks)
        self._results: list[R] = []
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._entered = self._seen = 0
        self._hashing_until = 0.0  # when the current hash call should end
        self._seconds_per_byte = 0.0  # the fastest rate seen (0: none yet)
        # Seconds spent hashing, and waiting in pace: a handover costs a thread wake-up,
        # which on a busy machine (no free core) outweighs what it lets run beside.
        self._hashed = self._waited = 0.0
        self._busy = self._idle = self._pacing = False
        self._closed = self._stop = self._done = False
        self._thread = threading.Thread(target=self._work, name="verify-hashing", daemon=True)
        self._thread.start()

    def add(self, task: T) -> None:
        """add queues one more task (before :meth:`close`)."""
        with self._cond:
            self._queue.append(task)
            if self._idle:
                self._cond.notify_all()

    def close(self) -> None:
        """close says no task follows: the helper ends after the last one."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def pace(self) -> None:
        """pace waits (without the GIL) until the helper has entered a hash call since the
        last pace, or has nothing to do: the caller's next step runs beside that call. It
        does not wait while that call should still run, nor once waiting has cost more
        than the hashing it let run beside (the helper then takes the GIL when it can)."""
        now = time.perf_counter()
        if now < self._hashing_until or self._waited > self._hashed + _ALLOWANCE:
            return
        with self._cond:
            self._pacing = True
            while not self._done and self._entered == self._seen and (self._busy or self._queue):
                self._cond.wait()
            self._pacing = False
            self._seen = self._entered
        self._waited += time.perf_counter() - now

    def results(self) -> Iterator[R]:
        """results closes, waits for the helper and yields each task's result in order
        (re-raising what a check raised, as checking in this thread would have)."""
        self.close()
        self._thread.join()
        if self._error is not None:
            raise self._error
        yield from self._results

    def stop(self) -> None:
        """stop lets the helper finish its current task and start no other."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()

    def _hash_chunk(self, digest: Any, chunk: bytes) -> None:
        started = time.perf_counter()
        with self._cond:
            self._hashing_until = started + len(chunk) * self._seconds_per_byte
            self._entered += 1
            if self._pacing:
                self._cond.notify_all()
        digest.update(chunk)  # lets go of the GIL (chunks of 2 KiB and more)
        seconds = time.perf_counter() - started
        self._hashed += seconds
        rate = seconds / max(len(chunk), 1)
        if not self._seconds_per_byte or rate < self._seconds_per_byte:
            self._seconds_per_byte = rate

    def _next(self) -> T | None:
        with self._cond:
            self._busy = False
            if self._pacing:
                self._cond.notify_all()
            while not self._queue and not self._closed and not self._stop:
                self._idle = True
                self._cond.wait()
            self._idle = False
            if self._stop or not self._queue:
                return None
            self._busy = True
            return self._queue.popleft()

    def _work(self) -> None:
        try:
            while (task := self._next()) is not None:
                self._results.append(self._check(task, self._hash_chunk))
        except BaseException as exc:  # handed to the verifying thread by results()
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._busy = False
                self._cond.notify_all()


_ALLOWANCE = 0.005  # seconds of waiting allowed before any hashing was measured
