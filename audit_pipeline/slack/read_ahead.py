"""Read the next page while the previous one is being processed.

A window's pages are requested one after the other (each needs the previous page's cursor),
and the caller then spends most of its time normalizing each page. Fetching page k+1 in a
thread while page k is normalized overlaps the network wait (and, against the emulator,
the server's own work on another core) with that CPU work. At most ``depth`` pages wait
in the queue, so memory stays a few pages whatever the window's size.

Errors keep their meaning: an exception raised while fetching (an unparseable page, an API
error) is raised to the consumer at the point where that page would have arrived, after
every page before it. If the consumer stops early, the thread stops after its current
request and the page iterator is closed in the thread that ran it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Empty, Full, Queue
from typing import TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.1
_ITEM, _DONE, _ERROR = range(3)


def read_ahead(pages: Iterator[T], depth: int = 1) -> Iterator[T]:
    """read_ahead yields ``pages`` in order while up to ``depth`` next ones are fetched."""
    queue: Queue[tuple[int, object]] = Queue(maxsize=depth)
    stop = threading.Event()

    def offer(kind: int, value: object) -> bool:
        while not stop.is_set():
            try:
                queue.put((kind, value), timeout=_POLL_SECONDS)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not offer(_ITEM, page):
                    break
            else:
                offer(_DONE, None)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(_ERROR, exc)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="audit-pipeline-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            try:
                kind, value = queue.get(timeout=_POLL_SECONDS)
            except Empty:
                if not worker.is_alive() and queue.empty():
                    raise RuntimeError("the page reader stopped without a result") from None
                continue
            if kind == _ITEM:
                yield value  # type: ignore[misc]
            elif kind == _DONE:
                return
            else:
                raise value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
