"""Helpers of answering: a generator that stops when its client leaves, and the counts of answers by outcome."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any


class AnswerCancelled(Exception):
    """The client asked to stop (it left); raised between generated tokens."""


class StoppableGenerator:
    """A generator whose token stream ends as soon as `cancel` is set."""

    def __init__(self, inner: Any, cancel: threading.Event):
        self._inner = inner
        self._cancel = cancel
        self.name = inner.name

    def stream(self, request: Any) -> Iterator[str]:
        for token in self._inner.stream(request):
            if self._cancel.is_set():
                raise AnswerCancelled()
            yield token

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._inner, attribute)


class AnswerCounters:
    """Answers started, finished, cancelled (the client left) and failed, since the process started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"started": 0, "finished": 0, "cancelled": 0, "failed": 0}

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
