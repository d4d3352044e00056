"""Fakes for fast unit tests, one per swappable part: a deterministic embedder, an in-memory store backend and a
scripted chat model. Each honours the contract of the real part (the `VectorStore`/`StoreBackend` protocols of
rag.store, the embedder's `embed_query`/`embed_documents`/`encode`, LangChain's chat model), so the service,
chain, retriever and refresher run on them unchanged; the real parts are tested in `tests/integration`."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from index.types import Chunk
from rag.schema import DocumentRecord
from rag.store import ChunkVectors, ScoredChunk, SentenceHit

_WORD = re.compile(r"\w+")


def _folded_words(text: str) -> list[str]:
    plain = unicodedata.normalize("NFKD", text.lower())
    return _WORD.findall("".join(c for c in plain if not unicodedata.combining(c)))


class HashEmbedder:
    """Bag of words hashed into buckets, plus one component every text shares, normalised.

    The shared component gives the fake e5's geometry: texts with no word in common sit at cosine 0.7 (as
    unrelated sentences do under multilingual-e5), the same words at 1.0; so the engine's thresholds, which are
    set on e5's scale, mean the same on the fake. Deterministic across runs and machines (sha1, not Python's
    salted hash); no model, no download."""

    model_name = "fake-hash-embedder"
    UNRELATED_COSINE = 0.7

    def __init__(self, dimension: int = 256):
        self.dimension = dimension
        self.calls: list[str] = []  # every text embedded, to check what the indexer re-embeds
        # cos(unrelated) = shared² / (shared² + 1) once the word part is normalised to 1.
        self._shared = (self.UNRELATED_COSINE / (1 - self.UNRELATED_COSINE)) ** 0.5

    def _vector(self, text: str) -> np.ndarray:
        self.calls.append(text)
        words = np.zeros(self.dimension - 1)
        for word in _folded_words(text):
            words[int(hashlib.sha1(word.encode()).hexdigest(), 16) % (self.dimension - 1)] += 1.0
        norm = np.linalg.norm(words)
        vector = np.concatenate([[self._shared], words / norm if norm else words])
        return vector / np.linalg.norm(vector)

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(text).tolist() for text in texts]

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        return np.array([self._vector(text) for text in texts]).reshape(len(texts), self.dimension)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    norm = float(np.linalg.norm(a_) * np.linalg.norm(b_))
    return float(a_ @ b_) / norm if norm else 0.0


@dataclass
class MemoryStore:
    """`rag.store.VectorStore` in dictionaries, with exact cosine search (the order Chroma's HNSW approximates)."""

    name: str
    model_name: str
    dimension: int
    _chunks: dict[str, Chunk] = field(default_factory=dict)
    _vectors: dict[str, ChunkVectors] = field(default_factory=dict)
    _documents: dict[str, DocumentRecord] = field(default_factory=dict)

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[ChunkVectors]) -> None:
        for chunk, vector in zip(chunks, vectors, strict=True):
            self._chunks[chunk.id] = chunk
            self._vectors[chunk.id] = vector

    def delete(self, ids: Iterable[str]) -> None:
        for chunk_id in list(ids):
            self._chunks.pop(chunk_id, None)
            self._vectors.pop(chunk_id, None)

    def ids_for_source(self, source: str) -> set[str]:
        return {i for i, c in self._chunks.items() if c.source == source}

    def embeddings_for(self, ids: Sequence[str], *, sentences: bool = True) -> dict[str, ChunkVectors]:
        found = {i: self._vectors[i] for i in ids if i in self._vectors}
        return {i: v if sentences else ChunkVectors(v.chunk, []) for i, v in found.items()}

    def _matching(self, sources: Sequence[str] | None, language: str | None) -> list[Chunk]:
        return [
            c
            for c in self._chunks.values()
            if (not sources or c.source in sources) and (not language or c.language == language)
        ]

    def sentence_search(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None, language: str | None = None
    ) -> list[SentenceHit]:
        hits = [
            SentenceHit(c.id, start, end, _cosine(vector, sentence))
            for c in self._matching(sources, language)
            for start, end, sentence in self._vectors[c.id].sentences
        ]
        return sorted(hits, key=lambda h: -h.score)[:k]

    def chunks(self, sources: Sequence[str] | None = None) -> list[Chunk]:
        return sorted(self._matching(sources, None), key=lambda c: (c.source, c.index))

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, Chunk]:
        return {i: self._chunks[i] for i in ids if i in self._chunks}

    def search(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None, language: str | None = None
    ) -> list[ScoredChunk]:
        scored = [ScoredChunk(c, _cosine(vector, self._vectors[c.id].chunk)) for c in self._matching(sources, language)]
        return sorted(scored, key=lambda s: -s.score)[:k]

    def count(self) -> int:
        return len(self._chunks)

    def has_language(self, language: str, sources: Sequence[str] | None = None) -> bool:
        return bool(self._matching(sources, language))

    def put_document(self, record: DocumentRecord) -> None:
        self._documents[record.source] = record

    def delete_document(self, source: str) -> None:
        self._documents.pop(source, None)

    def document_count(self) -> int:
        return len(self._documents)

    def documents(self, sources: Sequence[str] | None = None) -> dict[str, DocumentRecord]:
        if sources is not None:
            return {s: self._documents[s] for s in sources if s in self._documents}
        return dict(self._documents)


class MemoryBackend:
    """`rag.store.StoreBackend` over `MemoryStore`s: the live store, one built aside, and the swap."""

    def __init__(self) -> None:
        self.live: MemoryStore | None = None

    def open(self, model_name: str, dimension: int, *, building: bool = False) -> MemoryStore:
        if building:
            return MemoryStore("building", model_name, dimension)
        if self.live is None:
            self.live = MemoryStore("live", model_name, dimension)
        return self.live

    def swap_in(self, built: MemoryStore) -> MemoryStore:
        built.name = "live"
        self.live = built
        return built

    def known_roots(self) -> set[str]:
        return {record.root for record in self.live.documents().values()} if self.live else set()


def scripted_chat_model(*replies: str) -> GenericFakeChatModel:
    """A LangChain chat model that answers with `replies` in turn (streamed word by word, as a real one)."""
    return GenericFakeChatModel(messages=iter([AIMessage(reply) for reply in replies]))
