"""Reading pages ahead keeps their order, their errors and the page iterator's cleanup."""

from __future__ import annotations

import threading

import pytest

from audit_pipeline.slack.read_ahead import read_ahead


def test_every_page_in_order_and_the_reader_ends() -> None:
    assert list(read_ahead(iter(range(50)))) == list(range(50))
    assert list(read_ahead(iter([]))) == []
    assert not [t for t in threading.enumerate() if t.name == "audit-pipeline-read-ahead"]


def test_an_error_arrives_after_the_pages_before_it() -> None:
    def pages():
        yield 1
        yield 2
        raise ValueError("page 3 is garbled")

    got = []
    with pytest.raises(ValueError, match="garbled"):
        for page in read_ahead(pages()):
            got.append(page)
    assert got == [1, 2]


def test_stopping_early_closes_the_page_iterator_in_its_thread() -> None:
    closed = threading.Event()
    threads = set()

    def pages():
        try:
            for i in range(1000):
                threads.add(threading.current_thread().name)
                yield i
        finally:
            threads.add(threading.current_thread().name)
            closed.set()

    reader = read_ahead(pages(), depth=2)
    assert [next(reader), next(reader)] == [0, 1]
    reader.close()
    assert closed.is_set()
    assert threads == {"audit-pipeline-read-ahead"}


def test_the_consumer_failing_stops_the_reader() -> None:
    with pytest.raises(RuntimeError, match="normalizer"):
        for page in read_ahead(iter(range(10**6))):
            if page == 3:
                raise RuntimeError("normalizer failed")
    assert not [t for t in threading.enumerate() if t.name == "audit-pipeline-read-ahead"]
