"""`rag index --watch`: refresh once files settle, and keep going whatever a refresh meets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from index.loaders import SUPPORTED_SUFFIXES

log = logging.getLogger(__name__)


class _Debouncer(FileSystemEventHandler):
    """Collapses a burst of events (an editor's save, a copy of many files) into one refresh."""

    def __init__(self, settle_seconds: float, trigger: Callable[[], None]):
        self.settle_seconds = settle_seconds
        self.trigger = trigger
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
        relevant = event.is_directory or any(Path(p).suffix.lower() in SUPPORTED_SUFFIXES for p in paths if p)
        if not relevant:
            return
        with self._lock:
            if self._timer:
                self._timer.cancel()
            self._timer = threading.Timer(self.settle_seconds, self.trigger)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()


def watch(
    paths: Sequence[Path],
    refresh: Callable[[], object],
    *,
    settle_seconds: float = 2.0,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Run `refresh` after each settled burst of changes under `paths`, until `stop` is set
    (`ready` is set once changes are being watched).

    A failing refresh is logged and the watch goes on: the next change (or the next settle) retries.
    """
    stop = stop or threading.Event()
    running = threading.Lock()

    def guarded_refresh() -> None:
        with running:
            try:
                refresh()
            except Exception:  # the watcher must outlive any bad file or transient store error
                log.exception("refresh failed; watching on")

    handler = _Debouncer(settle_seconds, guarded_refresh)
    observer = Observer()
    for path in paths:
        observer.schedule(handler, str(path if path.is_dir() else path.parent), recursive=True)
    observer.start()
    if ready:
        ready.set()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        handler.cancel()
        observer.stop()
        observer.join()
