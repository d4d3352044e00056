"""The service's locks: readers never see a document between its new and old chunks; the CPU model serves one
question at a time and turns extra ones away with a fair wait instead of queueing without end."""

from __future__ import annotations

import threading
import time

import pytest

from rag.errors import ServiceBusyError
from rag.service.locks import GenerationQueue, ReadWriteLock


def test_a_writer_waits_for_readers_and_readers_wait_for_the_writer() -> None:
    lock = ReadWriteLock()
    events: list[str] = []
    reading = threading.Event()

    def reader() -> None:
        with lock.read():
            reading.set()
            time.sleep(0.1)
            events.append("read done")

    def writer() -> None:
        reading.wait()
        with lock.write():
            events.append("write")

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert events == ["read done", "write"]

    with lock.read(), lock.read():  # readers share
        events.append("two readers")
    assert events[-1] == "two readers"


def test_the_queue_serves_one_at_a_time_and_refuses_beyond_its_size() -> None:
    queue = GenerationQueue(size=2, retry_after=7)
    inside = threading.Event()
    release = threading.Event()
    overlap: list[int] = []
    active = 0

    def hold() -> None:
        nonlocal active
        with queue.turn():
            active += 1
            overlap.append(active)
            inside.set()
            release.wait(5)
            active -= 1

    first = threading.Thread(target=hold)
    first.start()
    inside.wait(5)
    second = threading.Thread(target=hold)  # waits for the first
    second.start()
    time.sleep(0.05)
    with pytest.raises(ServiceBusyError) as busy, queue.turn():
        pass
    assert busy.value.retry_after == 7
    release.set()
    first.join(5)
    second.join(5)
    assert overlap == [1, 1]  # never two generations at once
    with queue.turn():  # free again
        pass
