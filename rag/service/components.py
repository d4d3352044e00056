"""The service's components, each opened on first use and then shared: the embedder, the store and the lexical
index kept in step with it, the answer chain, the generators (with the extractive one standing in for a chat
model that cannot load) and the question translator. The one place that builds them, so that tests and embedding
apps can swap any of them for their own."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import GeneratorUnavailable
from rag.lexical import LexicalIndex
from rag.refresh import build_lexical, catch_up_lexical
from rag.schema import GeneratorState
from rag.service.chat_models import make_chat_model
from rag.service.locks import ReadWriteLock
from rag.settings import Settings
from rag.store import ChromaBackend, StoreBackend, VectorStore

if TYPE_CHECKING:
    from rag.chain import AnswerChain
    from rag.generation import ChatGenerator, Generator
    from rag.translation import QueryTranslator
    from rag.verification import Verifier

log = logging.getLogger(__name__)

# How long a reader trusts its lexical index before checking the store for another process's refresh.
_LEXICAL_RECHECK_SECONDS = 2.0


class Components:
    """What answers and indexing are made of, opened once, in whichever order the first caller needs them."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Any | None,
        chat_models: dict[str, Any] | None,
        translator: Any | None,
        stores: StoreBackend | None,
    ):
        """The parts RagService's caller gave (tests, embedding apps) are used as is; one that is None is built
        from `settings`."""
        self.settings = settings
        self._embedder = embedder
        self.stores = stores or ChromaBackend(settings)
        # A translator given by the caller (tests) is used as is; otherwise `translator()` builds one on first use.
        self._translator = translator
        self._translator_checked = translator is not None
        self.translator_unavailable: str | None = None
        # Chat models given by the caller (tests, embedding apps) take precedence over the built-in ones.
        self._chat_models = dict(chat_models or {})
        self._generators: dict[str, Generator] = {}
        self._fallbacks: dict[str, str] = {}
        self._chain: AnswerChain | None = None
        self._store: VectorStore | None = None
        self._lexical: LexicalIndex | None = None
        self._lexical_checked = 0.0
        self._lexical_lock = threading.RLock()  # one catch-up at a time
        self._open_lock = threading.RLock()  # components open one another
        self.rw = ReadWriteLock()

    @property
    def embedder(self) -> Any:
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
        """The BM25 index in step with the store, checked against it at most every few seconds (another process
        may have changed the store): only documents whose record changed are read again."""
        if self._lexical is not None and time.monotonic() - self._lexical_checked < _LEXICAL_RECHECK_SECONDS:
            return self._lexical
        return self.sync_lexical(self.store)

    def sync_lexical(self, store: VectorStore, sources: Collection[str] | None = None) -> LexicalIndex:
        """Bring the lexical index in line with `store` now: every document (on a recheck), or `sources`, the
        documents this process just changed (reading only their records; the next recheck still looks at all)."""
        with self._lexical_lock:
            if self._lexical is None:
                self._lexical, sources = LexicalIndex.open(self.lexical_dir), None
            catch_up_lexical(self._lexical, store, sources)
            if sources is None:
                self._lexical_checked = time.monotonic()
            return self._lexical

    def build_lexical_aside(self, built: VectorStore) -> LexicalIndex:
        """The lexical index of a store built aside (a rebuild), persisted beside the live one until `swap_in`."""
        aside = self.lexical_dir.with_name(self.lexical_dir.name + ".building")
        shutil.rmtree(aside, ignore_errors=True)
        return build_lexical(built, aside)

    def swap_in(self, built: VectorStore, lexical: LexicalIndex) -> VectorStore:
        """Replace the live store and its lexical index by ones built aside, while no answer reads them."""
        with self.rw.write(), self._lexical_lock:
            self._store = self.stores.swap_in(built)
            lexical.move_to(self.lexical_dir)
            self._lexical = lexical
            self._lexical_checked = time.monotonic()
            self._chain = None  # the chain's retriever holds the store it was built with
        return self._store

    @property
    def chain(self) -> AnswerChain:
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

    def verifier(self) -> Verifier:
        """The second stage of citation checking the settings name (see rag.verification)."""
        from rag.verification import MeaningRules, SimilarityOnly

        return MeaningRules() if self.settings.verifier == "rules" else SimilarityOnly()

    def generator(self, name: str | None = None) -> tuple[Generator, str | None]:
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

    def _chat_model(self, name: str) -> Any:
        if name in self._chat_models:
            return self._chat_models[name]
        return make_chat_model(name, self.settings)

    def translator(self) -> QueryTranslator | None:
        """The question translator of `query_translation`, loaded once; None when off or the model is missing
        (retrieval then searches the question as asked, and `translator_unavailable` says why)."""
        with self._open_lock:
            if not self._translator_checked:
                self._translator_checked = True
                if self.settings.query_translation == "local":
                    self._translator = self._local_translator()
            return self._translator

    def _local_translator(self) -> QueryTranslator | None:
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

    def _any_chat_generator(self) -> ChatGenerator | None:
        """An LLM to rewrite follow-ups for the extractive generator, if one is loaded already."""
        from rag.generation import ChatGenerator

        return next((g for g in self._generators.values() if isinstance(g, ChatGenerator)), None)

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
