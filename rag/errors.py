"""Errors the front ends translate (to an HTTP status, a UI message, a CLI exit code); raised by the engine."""

from __future__ import annotations


class RequestError(ValueError):
    """A request that cannot be honoured as asked; `status` is the HTTP status that fits, `code` a stable name."""

    def __init__(self, message: str, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class DocumentError(RequestError):
    """A document request (upload, delete, source text) that cannot be honoured."""


class ReadOnlyError(RequestError):
    """A write (upload, deletion, refresh, rebuild) asked of a read-only replica (`RAG_READ_ONLY`); only the
    indexer writes to the shared store. Permanent for this process: retrying here never helps."""

    def __init__(self, message: str):
        super().__init__(message, 403, "read_only")


class ServiceBusyError(RuntimeError):
    """The generation queue is full; `retry_after` seconds is a fair wait before trying again."""

    def __init__(self, retry_after: int):
        super().__init__(f"Too many questions waiting for the model; retry in {retry_after} s.")
        self.retry_after = retry_after


class IndexBusyError(RuntimeError):
    """Another indexer holds the lock on this data dir."""


class IndexMismatchError(RuntimeError):
    """The collection was built with another embedding model: its vectors would be meaningless."""


class GeneratorUnavailable(RuntimeError):
    """The configured generator cannot run here (model or library missing); the extractive one stands in."""
