"""A witness's memory: the latest checkpoint it cosigned per log, and evidence it refused.

::

    <state dir>/lock                              flock(2): one check-and-update at a time
    <state dir>/logs/<sha256(origin)>.checkpoint  the latest cosigned checkpoint (signed note)
    <state dir>/evidence/<time>-<n>.txt           refused submissions with a valid log signature

Checking the submitted old size against the stored checkpoint and storing the new one happen
under one exclusive lock, across threads and processes, so two racing submissions can never
roll the state back (the race c2sp.org/tlog-witness describes). The new checkpoint is
written to a temporary file, fsynced, renamed over the old one and the directory fsynced
before the witness answers: a crash at any point leaves the old or the new checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from audit_pipeline.ledger.layout import LocalStorage

_counter = itertools.count()
_counter_lock = threading.Lock()


class WitnessState:
    """WitnessState stores one witness's per-origin checkpoints in a directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._storage = LocalStorage(self.root)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        (self.root / "evidence").mkdir(parents=True, exist_ok=True)
        for leftover in (self.root / "logs").glob("*.tmp"):
            leftover.unlink(missing_ok=True)

    def _path(self, origin: str) -> Path:
        digest = hashlib.sha256(origin.encode("utf-8")).hexdigest()
        return self.root / "logs" / f"{digest}.checkpoint"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """locked holds the state's exclusive lock (a fresh open file per holder, so the
        lock excludes threads of this process as well as other processes)."""
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def latest(self, origin: str) -> bytes | None:
        """latest returns the signed checkpoint last cosigned for ``origin`` (or None)."""
        try:
            return self._path(origin).read_bytes()
        except FileNotFoundError:
            return None

    def store(self, origin: str, signed_checkpoint: bytes) -> None:
        """store replaces the origin's checkpoint atomically and durably (call it locked)."""
        self._storage.replace(f"logs/{self._path(origin).name}", signed_checkpoint)

    def keep_evidence(self, status: int, reason: str, body: bytes) -> Path:
        """keep_evidence saves a refused, validly signed submission with the reason."""
        with _counter_lock:
            n = next(_counter)
        path = self.root / "evidence" / f"{time.time_ns()}-{os.getpid()}-{n}-{status}.txt"
        path.write_bytes(f"status {status}\nreason {reason}\n\n".encode() + body)
        return path

    def evidence(self) -> list[Path]:
        return sorted((self.root / "evidence").glob("*.txt"))
