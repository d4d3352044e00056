"""RagService: the one engine every front end calls (CLI, HTTP API, UI, LangChain); it owns the components it
builds, the locks that keep answers consistent while documents change, and the start-up task."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from filelock import Timeout

from index.loaders import SUPPORTED_SUFFIXES
from index.types import size_limit_reason
from rag.errors import DocumentError, GeneratorUnavailable, IndexBusyError, RequestError
from rag.lexical import LexicalIndex
from rag.refresh import Refresher, build_lexical, documents_fingerprint, index_lock
from rag.schema import (
    Answer,
    DocumentRecord,
    GeneratorState,
    IndexState,
    Passage,
    Progress,
    RefreshReport,
    StreamEvent,
    UploadOutcome,
)
from rag.service.answering import AnswerCancelled, AnswerCounters, StoppableGenerator
from rag.service.chat_models import make_chat_model
from rag.service.documents import extracted_text, safe_filename
from rag.service.locks import GenerationQueue, ReadWriteLock
from rag.service.startup import STAGED_UPLOAD_SUFFIX, Startup
from rag.settings import Settings
from rag.store import ChromaBackend, StoreBackend, VectorStore

log = logging.getLogger(__name__)

# How long a reader trusts its lexical index before checking the store for another process's refresh.
_LEXICAL_RECHECK_SECONDS = 2.0
# Earlier turns kept for a follow-up, each cut to the question limit: the rewrite needs the recent context only.
_HISTORY_TURNS = 10


class RagService:
    supported_suffixes = SUPPORTED_SUFFIXES  # what uploads and refreshes accept (the loaders' list)

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Any | None = None,
        chat_models: dict[str, Any] | None = None,
        translator: Any | None = None,
        stores: StoreBackend | None = None,
    ):
        self.settings = settings
        self._embedder = embedder
        self.stores = stores or ChromaBackend(settings)
        # A translator given by the caller (tests) is used as is; otherwise `translator()` builds one on first use.
        self._translator = translator
        self._translator_checked = translator is not None
        self.translator_unavailable: str | None = None
        # Chat models given by the caller (tests, embedding apps) take precedence over the built-in ones.
        self._chat_models = dict(chat_models or {})
        self._generators: dict[str, Any] = {}
        self._fallbacks: dict[str, str] = {}
        self._chain = None
        self.queue = GenerationQueue(settings.generation_queue_size)
        self._store: VectorStore | None = None
        self._lexical: LexicalIndex | None = None
        self._lexical_checked = 0.0
        self._open_lock = threading.RLock()  # components open one another
        self.rw = ReadWriteLock()
        self.startup = Startup(self)  # the one start-up task, started by whichever front end serves first
        self.counters = AnswerCounters()

    def check_key(self, given: str | None) -> bool:
        """Whether `given` is the API key (compared in constant time); any value passes when no key is set.
        The one check behind every write, on every route: the HTTP API's bearer header and the UI's key field."""
        key = self.settings.api_key
        if key is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), key.get_secret_value().encode())

    # --- components, opened on first use ------------------------------------------------------
    @property
    def embedder(self):
        with self._open_lock:
            if self._embedder is None:
                from rag.embeddings import SentenceTransformerEmbeddings

                self._embedder = SentenceTransformerEmbeddings(self.settings)
            return self._embedder

    @property
    def store(self) -> VectorStore:
        embedder = self.embedder
        with self._open_lock:
            if self._store is None:
                self._store = self.stores.open(embedder.model_name, embedder.dimension)
            return self._store

    @property
    def lexical_dir(self) -> Path:
        return self.settings.data_dir / "lexical"

    def lexical(self) -> LexicalIndex:
        """The BM25 index in step with the store; reloaded or rebuilt only when the store has changed."""
        now = time.monotonic()
        if self._lexical is not None and now - self._lexical_checked < _LEXICAL_RECHECK_SECONDS:
            return self._lexical
        store = self.store
        wanted = documents_fingerprint(store.documents())
        self._lexical_checked = now
        if self._lexical is None or self._lexical.fingerprint != wanted:
            found = LexicalIndex.load(self.lexical_dir)
            if found is None or found.fingerprint != wanted:
                # Another process (or replica with its own data dir) refreshed the store: catch up once.
                found = build_lexical(store, store.documents())
                found.save(self.lexical_dir)
            self._lexical = found
        return self._lexical

    # --- indexing --------------------------------------------------------------------------------
    def refresh(
        self,
        paths: Sequence[Path | str] | None = None,
        *,
        rebuild: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        after_write: Callable[[str], None] | None = None,
    ) -> RefreshReport:
        """Index `paths` (default: the corpus dir); raises IndexBusyError if another indexer runs."""
        with self._indexing():
            return self._refresh_locked(paths, rebuild=rebuild, on_progress=on_progress, after_write=after_write)

    @contextmanager
    def _indexing(self):
        """The data dir's index lock, held by whatever changes the corpus or the index."""
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

    def _refresh_locked(self, paths, *, rebuild=False, on_progress=None, after_write=None) -> RefreshReport:
        targets = [Path(p) for p in paths] if paths else [self.settings.corpus_dir]
        if rebuild:
            return self._rebuild(targets, on_progress)
        report = self._refresher(self.store, on_progress, after_write).run(targets)
        self._sync_lexical(self.store)
        return report

    def _refresher(self, store: VectorStore, on_progress, after_write=None) -> Refresher:
        return Refresher(
            store,
            self.embedder,
            write_guard=self.rw.write,
            chunk_size=self.settings.chunk_size,
            chunk_overlap=self.settings.chunk_overlap,
            table_row_chunks=self.settings.table_row_chunks,
            on_progress=on_progress,
            after_write=after_write,
            max_file_bytes=self.settings.max_upload_bytes,
        )

    def _rebuild(self, targets: list[Path], on_progress) -> RefreshReport:
        """Build a complete new index aside; the live one keeps answering and is replaced only on success."""
        roots = {p.resolve() for p in targets} | {Path(r) for r in self.stores.known_roots() if Path(r).exists()}
        # A folder's own README is indexed only when given on purpose (an upload): keep those the index holds.
        given = {Path(r.path) for r in self.store.documents().values() if Path(r.path).stem.upper() == "README"}
        roots |= {path for path in given if path.is_file()}
        embedder = self.embedder
        building = self.stores.open(embedder.model_name, embedder.dimension, building=True)
        report = self._refresher(building, on_progress).run(sorted(roots), prune=False)
        lexical = build_lexical(building, building.documents())
        with self.rw.write():
            self._store = self.stores.swap_in(building)
            lexical.save(self.lexical_dir)
            self._lexical = lexical
            self._chain = None  # the chain's retriever holds the store it was built with
        report.documents = len(self._store.documents())
        report.chunks = self._store.count()
        return report

    def _sync_lexical(self, store: VectorStore) -> None:
        records = store.documents()
        current = self._lexical or LexicalIndex.load(self.lexical_dir)
        if current is None or current.fingerprint != documents_fingerprint(records):
            current = build_lexical(store, records)
            current.save(self.lexical_dir)
        self._lexical = current
        self._lexical_checked = time.monotonic()

    def status(self) -> IndexState:
        store = self.store
        records = store.documents()
        return IndexState(
            documents=len(records),
            chunks=store.count(),
            lexical_chunks=len(self.lexical()),
            embedding_model=self.embedder.model_name,
            dimension=self.embedder.dimension,
            store=self.settings.chroma_url or str(self.settings.chroma_dir),
            collection=self.settings.collection,
            corpus_dir=str(self.settings.corpus_dir),
            last_indexed=max((r.indexed_at for r in records.values()), default=None),
        )

    def documents(self) -> list[DocumentRecord]:
        return sorted(self.store.documents().values(), key=lambda r: r.source)

    # --- documents pushed by users ------------------------------------------------------------
    def add_document(self, filename: str, data: bytes, *, replace: bool = False) -> UploadOutcome:
        """Save an upload into the corpus dir and index it; never writes outside it."""
        name = safe_filename(filename)
        if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            allowed = ", ".join(sorted(SUPPORTED_SUFFIXES))
            raise DocumentError(f"Unsupported file type {Path(name).suffix or '(none)'}; allowed: {allowed}", 415)
        if len(data) > self.settings.max_upload_bytes:
            raise DocumentError(size_limit_reason(len(data), self.settings.max_upload_bytes), 413, "file_too_large")
        corpus = self.settings.corpus_dir.resolve()
        corpus.mkdir(parents=True, exist_ok=True)
        target = (corpus / name).resolve()
        if target.parent != corpus:
            raise DocumentError("Invalid file name.", 400)
        if target.exists() and not replace and target.read_bytes() != data:
            raise DocumentError(f"A different document named {name} already exists; pass replace=true.", 409)
        with self._indexing():
            previous = target.read_bytes() if target.exists() else None
            staging = target.with_name(f".{name}{STAGED_UPLOAD_SUFFIX}")
            staging.write_bytes(data)
            staging.replace(target)
            report = self._refresh_locked([target])
            if report.skipped:
                # A file that cannot be indexed is reported, not kept: the corpus folder stays what the index holds.
                if previous is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_bytes(previous)
            return UploadOutcome(name, report, None if report.skipped else self.store.documents().get(name))

    def delete_document(self, source: str) -> RefreshReport:
        """Remove a document from the index, and its file when it lives in the corpus dir."""
        records = self.store.documents()
        record = records.get(source)
        if record is None:
            raise DocumentError(f"No indexed document {source!r}.", 404)
        path = Path(record.path)
        corpus = self.settings.corpus_dir.resolve()
        with self._indexing():
            if path.resolve().is_relative_to(corpus) and path.exists():
                path.unlink()
                return self._refresh_locked([corpus])
            with self.rw.write():
                self.store.delete(self.store.ids_for_source(source))
                self.store.delete_document(source)
            self._sync_lexical(self.store)
        return RefreshReport(deleted=1, documents=len(records) - 1, chunks=self.store.count())

    def surrounding_text(self, source: str, start: int, end: int, chars: int = 700) -> tuple[str, int]:
        """The document's extracted text around [start, end) with `chars` more on each side, and its offset:
        what a reader opens to see a quote in context. The same extraction as indexing, so offsets agree;
        if the file changed since it was indexed, only what the index holds is returned (empty)."""
        record = self.store.documents().get(source)
        if record is None:
            raise DocumentError(f"No indexed document {source!r}.", 404)
        text = extracted_text(record.path, record.root, record.content_hash)
        if text is None:
            return "", start
        lo = max(0, start - chars)
        return text[lo : min(len(text), end + chars)], lo

    # --- answering ---------------------------------------------------------------------------------
    @property
    def chain(self):
        from rag.chain import AnswerChain
        from rag.retrieval import HybridRetriever

        with self._open_lock:
            if self._chain is None:
                retriever = HybridRetriever(self.store, self.lexical, self.embedder.embed_query, guard=self.rw.read)
                self._chain = AnswerChain(
                    retriever,
                    self.embedder,
                    min_similarity=self.settings.min_similarity,
                    drop_unsupported=self.settings.drop_unsupported,
                    verifier=self.verifier(),
                    rewriter=self._any_chat_generator,
                    translator=self.translator,
                )
            return self._chain

    def verifier(self):
        """The second stage of citation checking the settings name (see rag.verification)."""
        from rag.verification import MeaningRules, SimilarityOnly

        return MeaningRules() if self.settings.verifier == "rules" else SimilarityOnly()

    def generator(self, name: str | None = None):
        """The generator called `name` (default: settings), and why it was replaced, if it was."""
        from rag.generation import ChatGenerator, ExtractiveGenerator

        name = name or self.settings.generator
        with self._open_lock:
            if name not in self._generators:
                try:
                    if name == "extractive":
                        self._generators[name] = ExtractiveGenerator()
                    else:
                        self._generators[name] = ChatGenerator(name, self._chat_model(name))
                except GeneratorUnavailable as error:
                    self._fallbacks[name] = str(error)
                    self._generators[name] = ExtractiveGenerator()
            return self._generators[name], self._fallbacks.get(name)

    def _chat_model(self, name: str):
        if name in self._chat_models:
            return self._chat_models[name]
        return make_chat_model(name, self.settings)

    def translator(self):
        """The question translator of `query_translation`, loaded once; None when off or the model is missing
        (retrieval then searches the question as asked, and `translator_unavailable` says why)."""
        with self._open_lock:
            if not self._translator_checked:
                self._translator_checked = True
                if self.settings.query_translation == "local":
                    self._translator = self._local_translator()
            return self._translator

    def _local_translator(self):
        from rag.llm_local import ModelUnavailable, load_local_chat_model
        from rag.translation import ChatTranslator

        if "local" in self._chat_models:  # the caller's own local model serves every local job
            return ChatTranslator(self._chat_models["local"])
        try:
            # Its own small context: the generator's KV cache of its system prompt stays in place. Greedy; 1,024
            # tokens hold the prompt and the first MAX_TRANSLATED_CHARS of a question, 96 its translation.
            model = load_local_chat_model(self.settings, context=1024, max_tokens=96, temperature=0.0)
        except ModelUnavailable as error:
            self.translator_unavailable = str(error)
            log.warning("question translation off: %s", error)
            return None
        return ChatTranslator(model)

    def _any_chat_generator(self):
        """An LLM to rewrite follow-ups for the extractive generator, if one is loaded already."""
        from rag.generation import ChatGenerator

        return next((g for g in self._generators.values() if isinstance(g, ChatGenerator)), None)

    def ask_stream(
        self,
        question: str,
        *,
        history: Sequence[dict] = (),
        k: int | None = None,
        sources: Sequence[str] | None = None,
        generator: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream events (tokens, citations, then one final answer); see `rag.schema.StreamEvent`.

        Every front end comes through here, so the bounds hold on every route: the question length, the
        history kept, the generators the operator allows. A client that leaves sets `cancel` (checked between
        generated tokens, so a step that holds text back for verification stops too) or closes the iterator;
        either way the work stops and is counted as cancelled."""
        question = self.check_question(question)
        name = self.check_generator(generator)
        limit = self.settings.max_question_chars
        kept = [
            {"role": str(turn.get("role", "")), "content": str(turn.get("content", ""))[:limit]}
            for turn in list(history)[-_HISTORY_TURNS:]
        ]
        chosen, fallback = self.generator(name)
        if cancel is not None:
            chosen = StoppableGenerator(chosen, cancel)
        self.counters.add("started")
        finished = False
        try:
            turn = self.queue.turn() if chosen.name == "local" else nullcontext()
            with turn:
                yield from self.chain.stream(
                    question,
                    history=kept,
                    k=k or self.settings.k,
                    sources=sources,
                    generator=chosen,
                    fallback_reason=fallback,
                )
            finished = True
        except AnswerCancelled:
            self.counters.add("cancelled")
        except GeneratorExit:
            self.counters.add("cancelled")
            raise
        except Exception:
            self.counters.add("failed")
            raise
        finally:
            if finished:
                self.counters.add("finished")

    def check_question(self, question: str) -> str:
        """The question stripped, or a RequestError: empty, or over the one length limit of every route."""
        question = (question or "").strip()
        if not question:
            raise RequestError("The question is empty.", 400, "empty_question")
        limit = self.settings.max_question_chars
        if len(question) > limit:
            raise RequestError(
                f"Question too long: {len(question):,} characters (limit {limit:,}).", 413, "question_too_long"
            )
        return question

    def check_generator(self, name: str | None) -> str:
        """`name` (default: the configured one) if the operator allows clients to choose it."""
        chosen = name or self.settings.generator
        allowed = self.settings.allowed_generators
        if chosen not in allowed:
            raise RequestError(
                f"The generator {chosen!r} is not enabled on this server; enabled: {', '.join(allowed)} "
                "(RAG_GENERATORS_ALLOWED).",
                403,
                "generator_not_allowed",
            )
        return chosen

    def ask(self, question: str, **options: Any) -> Answer:
        final = None
        for event in self.ask_stream(question, **options):
            if event.type == "final":
                final = event.answer
        assert final is not None  # the chain always ends with a final event
        return final

    def retrieve(self, question: str, k: int = 5, sources: Sequence[str] | None = None) -> list[Passage]:
        """The passages an answer to `question` would rest on, without generating one (rag.langchain's retriever):
        the same bounds, translation for the bilingual search and hybrid retrieval as `ask_stream`, no history."""
        question = self.check_question(question)
        return self.chain.retrieve(question, k, sources)

    def readiness(self) -> GeneratorState:
        """Whether the index and the configured generator are loaded (for /readyz and the UI)."""
        generator = self._generators.get(self.settings.generator)
        return GeneratorState(
            index=self._store is not None and self._lexical is not None,
            generator=generator is not None,
            generator_name=generator.name if generator else self.settings.generator,
            fallback_reason=self._fallbacks.get(self.settings.generator),
        )

    def warm_up(self) -> None:
        """Load what a first question needs, in this thread (benches, tests); servers use `startup` instead."""
        self.embedder.embed_query("warm up")
        self.lexical()
        self.warm_generator()

    def warm_generator(self) -> None:
        """Load the configured generator (and the local model's prompt cache) and the question translator, so no
        first question waits."""
        from rag.generation import ChatGenerator

        self.translator()
        generator, _ = self.generator()
        if self.settings.generator == "local" and isinstance(generator, ChatGenerator):
            generator.warm_prefix()
