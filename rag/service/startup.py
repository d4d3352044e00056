"""The one start-up task of a serving process: load the models and bring the index in line with the corpus folder.

The HTTP API and the UI both read this task's `step`; neither starts work of its own. The corpus is reconciled
with the index on every start (new, changed and missing files), not only when the index is empty: a process
killed in the middle of an upload, or files changed while it was down, leave a corpus and an index that
disagree, and only a refresh brings them back in line. An unchanged corpus costs a few milliseconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import IndexBusyError
from rag.schema import Progress, StartupStep

if TYPE_CHECKING:
    from rag.service.core import RagService

log = logging.getLogger(__name__)

# Staged uploads are named `.<name>.upload` next to their target (see Documents.add in rag.service.documents).
STAGED_UPLOAD_SUFFIX = ".upload"


class Startup:
    """Runs once, in a background thread, so a page or /healthz answers while the models load.

    `step` is a typed `StartupStep` the front ends translate: "starting", "embeddings",
    "indexing" ({done, total, current}), "index_busy", "index", "generator" ({generator}), then "ready".
    """

    def __init__(self, service: RagService):
        self.service = service
        self.reconcile = True
        self.step = StartupStep()
        self.error: str | None = None
        self.done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, *, reconcile: bool = True) -> None:
        """Start the task unless it runs or ran already (the first caller's `reconcile` holds). A read-only
        service never reconciles, whoever asks: its corpus folder is not the shared collection's to change."""
        with self._lock:
            if self._thread is None:
                self.reconcile = reconcile and not self.service.settings.read_only
                self._thread = threading.Thread(target=self._run, name="rag-startup", daemon=True)
                self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.done.is_set()

    def describe(self) -> str:
        """The step in plain English, for logs and /readyz."""
        step = self.step
        texts: dict[str, Callable[[], str]] = {
            "starting": lambda: "starting",
            "embeddings": lambda: "loading the embedding model",
            "indexing": lambda: f"indexing the corpus, {step.done}/{step.total} files",
            "index_busy": lambda: "another indexer holds the index lock",
            "index": lambda: "opening the index",
            "generator": lambda: f"loading the {step.generator} generator",
            "ready": lambda: "ready",
        }
        return texts[step.stage]()

    def _set(self, stage: str, **fields: Any) -> None:
        self.step = StartupStep(stage=stage, **fields)
        log.info("startup: %s", self.describe())

    def _run(self) -> None:
        service = self.service
        try:
            self._set("embeddings")
            service.embedder.embed_query("warm up")
            if self.reconcile:
                self._reconcile()
            self._set("index")
            service.lexical()
            self._set("generator", generator=service.settings.generator)
            service.warm_generator()
            self._set("ready")
        except Exception as error:
            log.exception("start-up failed")
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.done.set()

    def _reconcile(self) -> None:
        """Index what is new or changed in the corpus folder and drop what is gone; staged uploads a crash
        left behind are removed first (the upload they belonged to never completed)."""
        corpus = Path(self.service.settings.corpus_dir)
        if not corpus.is_dir():
            return
        for staged in corpus.glob(f".*{STAGED_UPLOAD_SUFFIX}"):
            log.warning("removing %s, left by an upload that did not complete", staged.name)
            staged.unlink(missing_ok=True)

        def progress(step: Progress) -> None:
            self._set("indexing", done=step.files_done, total=step.files_total, current=Path(step.current).name)

        self._set("indexing", done=0, total=0, current="")
        try:
            report = self.service.refresh(on_progress=progress)
        except IndexBusyError as error:  # another process indexes this data dir: it reconciles, not us
            self._set("index_busy")
            log.warning("start-up reconciliation skipped: %s", error)
            return
        log.info("start-up reconciliation: %s", report.as_dict())
