"""The background-thread iteration of the input side (``prefetch``)."""

import threading
import time

import pytest

from breast_cancer_classifier.core.prefetch import prefetch


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "prefetch"]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_come_out_in_order(depth):
    assert list(prefetch(iter(range(50)), depth)) == list(range(50))
    assert not _prefetch_threads()


def test_depth_0_runs_in_the_calling_thread():
    seen = []

    def items():
        for i in range(3):
            seen.append(threading.current_thread())
            yield i

    assert list(prefetch(items(), 0)) == [0, 1, 2]
    assert seen == [threading.current_thread()] * 3


def test_work_runs_in_another_thread_at_most_depth_plus_one_ahead():
    produced = []

    def items():
        for i in range(10):
            produced.append((i, threading.current_thread()))
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)  # let the worker run as far ahead as it may
    # Item 0 is with the consumer, items 1-2 wait in the queue, item 3 waits to be put.
    assert len(produced) == 4
    assert all(thread is not threading.current_thread() for _, thread in produced)
    assert list(stream) == list(range(1, 10))


def test_an_error_is_raised_in_the_consumer_at_its_place():
    def items():
        yield 1
        yield 2
        raise ValueError("bad item 3")

    got = []
    with pytest.raises(ValueError, match="bad item 3"):
        for item in prefetch(items(), 1):
            got.append(item)
    assert got == [1, 2]
    assert not _prefetch_threads()


def test_stopping_early_stops_the_worker():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    stream = prefetch(endless(), 1)
    for item in stream:
        if item == 5:
            break
    stream.close()
    assert not _prefetch_threads()
