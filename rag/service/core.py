"""RagService: the one engine every front end calls (CLI, HTTP API, UI, LangChain), so every route gets the same
bounds, locks and start-up. It builds the collaborators that do the work and hands each call to its owner:
components.py (the parts, opened on first use), indexing.py, documents.py (uploads, deletions), pages.py
(citations on their page), answering.py."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.loaders import SUPPORTED_SUFFIXES
from rag.service.answering import Answering
from rag.service.components import Components
from rag.service.documents import Documents
from rag.service.indexing import Indexing
from rag.service.pages import Pages
from rag.service.startup import Startup
from rag.settings import Settings
from rag.store import StoreBackend, VectorStore

if TYPE_CHECKING:
    from rag.chain import AnswerChain


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
        self._components = components = Components(
            settings, embedder=embedder, chat_models=chat_models, translator=translator, stores=stores
        )
        indexing = Indexing(settings, components)
        documents = Documents(settings, components, indexing)
        pages = Pages(settings, components)
        answering = Answering(settings, components, pages)
        # The public surface: each call is its owner's method, where its signature and docstring are.
        self.stores = components.stores
        self.rw = components.rw
        self.lexical = components.lexical
        self.verifier = components.verifier
        self.generator = components.generator
        self.translator = components.translator
        self.readiness = components.readiness
        self.warm_up = components.warm_up
        self.warm_generator = components.warm_generator

        self.indexing_lock = indexing.lock  # held, it refuses any other indexer (refresh, upload, deletion)
        self.refresh = indexing.refresh
        self.status = indexing.status
        self.documents = indexing.documents

        self.add_document = documents.add
        self.delete_document = documents.delete
        self.surrounding_text = documents.surrounding_text
        self.page_image = pages.page_image
        self.document_file = pages.document_file

        self.queue = answering.queue
        self.counters = answering.counters
        self.ask_stream = answering.ask_stream
        self.check_question = answering.check_question
        self.check_generator = answering.check_generator
        self.ask = answering.ask
        self.retrieve = answering.retrieve

        self.startup = Startup(self)  # the one start-up task, started by whichever front end serves first

    def check_key(self, given: str | None) -> bool:
        """Whether `given` is the API key (compared in constant time); any value passes when no key is set.
        The one check behind every write, on every route: the HTTP API's bearer header and the UI's key field."""
        key = self.settings.api_key
        if key is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), key.get_secret_value().encode())

    # Read on each use: the components open on first use, and a rebuild replaces the store and the chain.
    @property
    def embedder(self) -> Any:
        return self._components.embedder

    @property
    def store(self) -> VectorStore:
        return self._components.store

    @property
    def lexical_dir(self) -> Path:
        return self._components.lexical_dir

    @property
    def chain(self) -> AnswerChain:
        return self._components.chain

    @property
    def translator_unavailable(self) -> str | None:
        return self._components.translator_unavailable
