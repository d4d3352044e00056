"""The locks that keep answers consistent while documents change, and the queue in front of the CPU model."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from rag.errors import ServiceBusyError


class ReadWriteLock:
    """Many readers or one writer: a reader never sees a document between its new and its old chunks."""

    def __init__(self) -> None:
        self._readers = 0
        self._cond = threading.Condition()
        self._writing = False

    @contextmanager
    def read(self):
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            while self._writing or self._readers:
                self._cond.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class GenerationQueue:
    """One local generation at a time, at most `size` waiting: a CPU model serves questions in turn."""

    def __init__(self, size: int, retry_after: int = 20):
        self._slot = threading.Lock()
        self._waiting = 0
        self._count_lock = threading.Lock()
        self.size = size
        self.retry_after = retry_after

    @contextmanager
    def turn(self):
        with self._count_lock:
            if self._waiting >= self.size:
                raise ServiceBusyError(self.retry_after)
            self._waiting += 1
        try:
            with self._slot:
                yield
        finally:
            with self._count_lock:
                self._waiting -= 1
