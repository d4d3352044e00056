"""The service's indexing: one indexer per data dir at a time, refreshes of the corpus, rebuilds built aside
while the live index keeps answering, and what the index holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from filelock import Timeout

from rag.errors import IndexBusyError, ReadOnlyError
from rag.refresh import Refresher, index_lock
from rag.schema import DocumentRecord, IndexState, Progress, RefreshReport
from rag.service.components import Components
from rag.settings import Settings
from rag.store import VectorStore


class Indexing:
    """Changes the store and its lexical index, always under the data dir's index lock."""

    def __init__(self, settings: Settings, components: Components):
        self.settings = settings
        self.components = components

    def check_writable(self) -> None:
        """Raise ReadOnlyError on a reader replica (`RAG_READ_ONLY`): the single-indexer rule, enforced. Every write
        asks first, before it validates anything, so a reader says why it refuses and nothing else."""
        if self.settings.read_only:
            raise ReadOnlyError(
                "This server is a read-only replica (RAG_READ_ONLY): uploads, deletions and refreshes go to the "
                "indexer of the shared collection."
            )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The data dir's index lock, held by whatever changes the corpus or the index (never on a reader)."""
        self.check_writable()
        lock = index_lock(self.settings.data_dir)
        try:
            lock.acquire()
        except Timeout:
            raise IndexBusyError(
                f"Another indexer is already running on {self.settings.data_dir} (lock {lock.lock_file}). "
                "Wait for it to finish, or stop it, then try again."
            ) from None
        try:
            yield
        finally:
            lock.release()

    def refresh(
        self,
        paths: Sequence[Path | str] | None = None,
        *,
        rebuild: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        after_write: Callable[[str], None] | None = None,
    ) -> RefreshReport:
        """Index `paths` (default: the corpus dir); raises IndexBusyError if another indexer runs, ReadOnlyError
        on a reader."""
        with self.lock():
            return self.refresh_locked(paths, rebuild=rebuild, on_progress=on_progress, after_write=after_write)

    def refresh_locked(
        self,
        paths: Sequence[Path | str] | None,
        *,
        rebuild: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        after_write: Callable[[str], None] | None = None,
    ) -> RefreshReport:
        """`refresh` for a caller that holds the lock already (an upload, a deletion)."""
        targets = [Path(p) for p in paths] if paths else [self.settings.corpus_dir]
        if rebuild:
            return self._rebuild(targets, on_progress)
        store = self.components.store
        refresher = self._refresher(store, on_progress, after_write)
        report = refresher.run(targets)
        self.components.sync_lexical(store, refresher.changed_sources)
        return report

    def _refresher(
        self,
        store: VectorStore,
        on_progress: Callable[[Progress], None] | None,
        after_write: Callable[[str], None] | None = None,
    ) -> Refresher:
        return Refresher(
            store,
            self.components.embedder,
            write_guard=self.components.rw.write,
            chunk_size=self.settings.chunk_size,
            chunk_overlap=self.settings.chunk_overlap,
            table_row_chunks=self.settings.table_row_chunks,
            on_progress=on_progress,
            after_write=after_write,
            max_file_bytes=self.settings.max_upload_bytes,
            ocr_cache=self.settings.ocr_dir,
        )

    def _rebuild(self, targets: list[Path], on_progress: Callable[[Progress], None] | None) -> RefreshReport:
        """Build a complete new index aside; the live one keeps answering and is replaced only on success."""
        components = self.components
        roots = {p.resolve() for p in targets}
        roots |= {Path(r) for r in components.stores.known_roots() if Path(r).exists()}
        # A folder's own README is indexed only when given on purpose (an upload): keep those the index holds.
        given = {Path(r.path) for r in components.store.documents().values() if Path(r.path).stem.upper() == "README"}
        roots |= {path for path in given if path.is_file()}
        embedder = components.embedder
        building = components.stores.open(embedder.model_name, embedder.dimension, building=True)
        report = self._refresher(building, on_progress).run(sorted(roots), prune=False)
        store = components.swap_in(building, components.build_lexical_aside(building))
        report.documents = len(store.documents())
        report.chunks = store.count()
        return report

    def status(self) -> IndexState:
        components = self.components
        store = components.store
        records = store.documents()
        return IndexState(
            documents=len(records),
            chunks=store.count(),
            lexical_chunks=len(components.lexical()),
            embedding_model=components.embedder.model_name,
            dimension=components.embedder.dimension,
            store=self.settings.chroma_url or str(self.settings.chroma_dir),
            collection=self.settings.collection,
            corpus_dir=str(self.settings.corpus_dir),
            last_indexed=max((r.indexed_at for r in records.values()), default=None),
        )

    def documents(self) -> list[DocumentRecord]:
        return sorted(self.components.store.documents().values(), key=lambda r: r.source)
