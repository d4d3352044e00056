"""What only the HTTP process knows (the indexing runs it started; start-up belongs to the service), kept on
`app.state.rag`, and the dependencies through which routes reach it and the service."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from rag.api.models import IndexActivity
from rag.errors import IndexBusyError, ReadOnlyError
from rag.schema import Progress
from rag.service import RagService

Done = TypeVar("Done")  # what an indexing run returns (a refresh report, an upload's outcome)
# Why an indexing run was refused, as `activity.last_error` says it; any other failure is "failed".
_REFUSALS: dict[type[Exception], str] = {
    IndexBusyError: "another indexer is running",
    ReadOnlyError: "read-only replica",
}


class AppState:
    def __init__(self, service: RagService):
        self.service = service
        self.activity = IndexActivity()
        self._activity_lock = threading.Lock()

    def indexing(self, operation: str, run: Callable[[Callable[[Progress], None]], Done]) -> Done:
        """Run an indexing call, recording its progress for GET /v1/index/status."""

        activity = IndexActivity(running=True, operation=operation, started_at=time.time())

        def progress(step: Progress) -> None:
            activity.files_done, activity.files_total = step.files_done, step.files_total
            activity.chunks_done, activity.current = step.chunks_done, Path(step.current).name

        with self._activity_lock:
            if not self.activity.running:  # a run refused as busy does not hide the one in progress
                self.activity = activity
        try:
            return run(progress)
        except Exception as error:
            # Shown to readers: the kind of failure, never a server path.
            activity.last_error = _REFUSALS.get(type(error), "failed")
            raise
        finally:
            activity.running = False
            activity.current = None


def app_state(request: Request) -> AppState:
    return request.app.state.rag


def service(request: Request) -> RagService:
    return app_state(request).service


State = Annotated[AppState, Depends(app_state)]
Service = Annotated[RagService, Depends(service)]
