"""Vector store: Chroma (embedded files or a server), behind a small interface.

Everything the index needs to know lives in the store, so several app replicas sharing one Chroma server
see the same state: the chunks with their embeddings in one collection, and one record per indexed
document (content hash, size, when indexed) in a companion collection. The lexical index is derived
from the store and can be read again from it at any time, document by document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

from index.types import Chunk
from rag.errors import IndexMismatchError
from rag.schema import DocumentRecord
from rag.settings import Settings

# Chroma insists on an embedding for every record; document records carry this placeholder.
_PLACEHOLDER_VECTOR = [0.0]
_DOCUMENTS_SUFFIX = "__documents"
_SENTENCES_SUFFIX = "__sentences"
_COMPANIONS = ("", _SENTENCES_SUFFIX, _DOCUMENTS_SUFFIX)
_BUILDING_SUFFIX = "__building"
_RETIRED_SUFFIX = "__retired"


@dataclass
class ChunkVectors:
    """A chunk's own vector and one per sentence: a short factual question matches one sentence of a
    1,000-character passage much better than the whole passage, so retrieval looks at both."""

    chunk: list[float]
    sentences: list[tuple[int, int, list[float]]]  # (start, end) inside the chunk text, vector


@dataclass(frozen=True)
class SentenceHit:
    chunk_id: str
    start: int  # inside the chunk text
    end: int
    score: float  # cosine similarity


@dataclass(frozen=True)
class ScoredChunk:
    chunk: Chunk
    score: float  # cosine similarity in [-1, 1]


class VectorStore(Protocol):
    """The few operations the indexer and the retriever need; Chroma is one implementation."""

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[ChunkVectors]) -> None: ...
    def delete(self, ids: Iterable[str]) -> None: ...
    def ids_for_source(self, source: str) -> set[str]: ...
    def embeddings_for(self, ids: Sequence[str], *, sentences: bool = True) -> dict[str, ChunkVectors]: ...
    def sentence_search(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None, language: str | None = None
    ) -> list[SentenceHit]: ...
    def chunks(self, sources: Sequence[str] | None = None) -> list[Chunk]: ...
    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, Chunk]: ...
    def search(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None, language: str | None = None
    ) -> list[ScoredChunk]: ...
    def count(self) -> int: ...
    def has_language(self, language: str, sources: Sequence[str] | None = None) -> bool: ...
    def put_document(self, record: DocumentRecord) -> None: ...
    def delete_document(self, source: str) -> None: ...
    def documents(self) -> dict[str, DocumentRecord]: ...


class StoreBackend(Protocol):
    """Where stores live: the live one, one built aside for a rebuild, and the swap that replaces the first by
    the second. The service holds one (`ChromaBackend` in the product, an in-memory one in unit tests)."""

    def open(self, model_name: str, dimension: int, *, building: bool = False) -> VectorStore: ...
    def swap_in(self, built: VectorStore) -> VectorStore: ...
    def known_roots(self) -> set[str]: ...


class ChromaBackend:
    """Chroma under the data dir, or a Chroma server when `RAG_CHROMA_URL` is set."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def open(self, model_name: str, dimension: int, *, building: bool = False) -> ChromaStore:
        return open_chroma_store(self.settings, model_name, dimension, building=building)

    def swap_in(self, built: VectorStore) -> ChromaStore:
        assert isinstance(built, ChromaStore)
        return swap_in(built, self.settings.collection)

    def known_roots(self) -> set[str]:
        return known_roots(self.settings)


def _sentence_id(chunk_id_: str, start: int, end: int) -> str:
    """A sentence vector's id: its chunk and offsets, so a search reads them without fetching metadata."""
    return f"{chunk_id_}:{start}:{end}"


def _parse_sentence_id(sentence_id: str) -> tuple[str, int, int]:
    chunk_id_, start, end = sentence_id.rsplit(":", 2)
    return chunk_id_, int(start), int(end)


def make_chroma_client(settings: Settings):
    """A persistent client under the data dir, or an HTTP client when `RAG_CHROMA_URL` is set."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)


class ChromaStore:
    """Chunks in `<collection>`, their sentences' vectors in `<collection>__sentences`, document records in
    `<collection>__documents`; cosine space.

    Writes go straight to the chromadb collection (we supply our own embeddings, computed once and
    reused by chunk id); similarity search goes through langchain-chroma.
    """

    def __init__(self, client: Any, name: str, model_name: str, dimension: int):
        self._client = client
        self.name = name
        self.model_name = model_name
        self.dimension = dimension
        self._open()

    def _open(self) -> None:
        from langchain_chroma import Chroma

        wanted = {"hnsw:space": "cosine", "embedding_model": self.model_name, "dimension": self.dimension}
        self._chunks = self._client.get_or_create_collection(self.name, embedding_function=None, metadata=wanted)
        found = self._chunks.metadata or {}
        if (found.get("embedding_model"), found.get("dimension")) != (self.model_name, self.dimension):
            raise IndexMismatchError(
                f"The index was built with embedding model {found.get('embedding_model')!r} "
                f"(dimension {found.get('dimension')}), but {self.model_name!r} (dimension "
                f"{self.dimension}) is configured. Run `rag index --rebuild` to re-embed everything "
                "with the configured model, or set RAG_EMBEDDING_MODEL back."
            )
        self._sentences = self._client.get_or_create_collection(
            self.name + _SENTENCES_SUFFIX, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
        self._documents = self._client.get_or_create_collection(self.name + _DOCUMENTS_SUFFIX, embedding_function=None)
        self._langchain = Chroma(client=self._client, collection_name=self.name, embedding_function=None)
        self._batch = max(1, min(self._client.get_max_batch_size(), 1000))

    # --- chunks -------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[ChunkVectors]) -> None:
        """Sentences first, then chunks: a chunk is visible only once everything it needs is stored."""
        ids, embeddings, metadatas = [], [], []
        for chunk, vector in zip(chunks, vectors, strict=True):
            for start, end, sentence_vector in vector.sentences:
                ids.append(_sentence_id(chunk.id, start, end))
                embeddings.append(list(map(float, sentence_vector)))
                meta = {"chunk_id": chunk.id, "source": chunk.source, "start": start, "end": end}
                metadatas.append(meta | ({"language": chunk.language} if chunk.language else {}))
        for lo in range(0, len(ids), self._batch):
            hi = lo + self._batch
            self._sentences.upsert(ids=ids[lo:hi], embeddings=embeddings[lo:hi], metadatas=metadatas[lo:hi])
        for lo in range(0, len(chunks), self._batch):
            part = chunks[lo : lo + self._batch]
            self._chunks.upsert(
                ids=[c.id for c in part],
                embeddings=[list(map(float, v.chunk)) for v in vectors[lo : lo + self._batch]],
                documents=[c.text for c in part],
                metadatas=[c.metadata() for c in part],
            )

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for lo in range(0, len(ids), self._batch):
            part = ids[lo : lo + self._batch]
            self._chunks.delete(ids=part)
            self._sentences.delete(where={"chunk_id": {"$in": part}})

    def ids_for_source(self, source: str) -> set[str]:
        return set(self._chunks.get(where={"source": source}, include=[])["ids"])

    def embeddings_for(self, ids: Sequence[str], *, sentences: bool = True) -> dict[str, ChunkVectors]:
        """Stored vectors of chunks (and of their sentences unless `sentences` is False, which saves a query)."""
        found: dict[str, ChunkVectors] = {}
        for lo in range(0, len(ids), self._batch):
            part = list(ids[lo : lo + self._batch])
            got = self._chunks.get(ids=part, include=["embeddings"])
            for chunk_id_, vector in zip(got["ids"], got["embeddings"], strict=True):
                found[chunk_id_] = ChunkVectors([float(x) for x in vector], [])
            if not sentences:
                continue
            rows = self._sentences.get(where={"chunk_id": {"$in": part}}, include=["embeddings", "metadatas"])
            for meta, vector in zip(rows["metadatas"], rows["embeddings"], strict=True):
                if meta["chunk_id"] in found:
                    found[meta["chunk_id"]].sentences.append((meta["start"], meta["end"], [float(x) for x in vector]))
        for vectors in found.values():
            vectors.sentences.sort(key=lambda s: s[0])
        return found

    def sentence_search(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None, language: str | None = None
    ) -> list[SentenceHit]:
        if self._sentences.count() == 0:
            return []
        got = self._sentences.query(
            query_embeddings=[list(map(float, vector))],
            n_results=k,
            where=_filter(sources, language),
            include=["distances"],  # the id says the rest; fetching metadata took ~40% of the time
        )
        return [
            SentenceHit(*_parse_sentence_id(sentence_id), 1.0 - float(distance))
            for sentence_id, distance in zip(got["ids"][0], got["distances"][0], strict=True)
        ]

    def chunks(self, sources: Sequence[str] | None = None) -> list[Chunk]:
        where = _source_filter(sources)
        result: list[Chunk] = []
        offset = 0
        while True:  # page by page until a short page: a filtered read costs what it returns, not the collection
            got = self._chunks.get(where=where, include=["documents", "metadatas"], limit=self._batch, offset=offset)
            result += [
                Chunk.from_metadata(i, t, m)
                for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            ]
            if len(got["ids"]) < self._batch:
                return sorted(result, key=lambda c: (c.source, c.index))
            offset += self._batch

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, Chunk]:
        """The chunks that still exist among `ids` (a lexical hit may name one a refresh just replaced)."""
        if not ids:
            return {}
        got = self._chunks.get(ids=list(ids), include=["documents", "metadatas"])
        return {
            i: Chunk.from_metadata(i, t, m)
            for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        }

    def search(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None, language: str | None = None
    ) -> list[ScoredChunk]:
        if self._chunks.count() == 0:
            return []
        hits = self._langchain.similarity_search_by_vector_with_relevance_scores(
            list(map(float, vector)), k=k, filter=_filter(sources, language)
        )
        # langchain reports cosine *distance* (1 - similarity) for a cosine collection.
        return [
            ScoredChunk(Chunk.from_metadata(doc.id, doc.page_content, doc.metadata), 1.0 - float(distance))
            for doc, distance in hits
        ]

    def count(self) -> int:
        return self._chunks.count()

    def has_language(self, language: str, sources: Sequence[str] | None = None) -> bool:
        """Whether any chunk (of these sources) is in `language`: one indexed metadata lookup."""
        return bool(self._chunks.get(where=_filter(sources, language), limit=1, include=[])["ids"])

    # --- document records -----------------------------------------------------------------------
    def put_document(self, record: DocumentRecord) -> None:
        self._documents.upsert(
            ids=[record.source],
            embeddings=[_PLACEHOLDER_VECTOR],
            metadatas=[record.to_metadata()],
            documents=[json.dumps(record.to_metadata())],
        )

    def delete_document(self, source: str) -> None:
        self._documents.delete(ids=[source])

    def documents(self) -> dict[str, DocumentRecord]:
        got = self._documents.get(include=["metadatas"])
        return {i: DocumentRecord.from_metadata(m) for i, m in zip(got["ids"], got["metadatas"], strict=True)}

    @property
    def client(self) -> Any:
        return self._client


def open_chroma_store(settings: Settings, model_name: str, dimension: int, *, building: bool = False) -> ChromaStore:
    """The live store, or (building=True) an empty one beside it for `rag index --rebuild`."""
    client = make_chroma_client(settings)
    if not building:
        return ChromaStore(client, settings.collection, model_name, dimension)
    name = settings.collection + _BUILDING_SUFFIX
    _drop_collections(client, name)
    return ChromaStore(client, name, model_name, dimension)


def known_roots(settings: Settings) -> set[str]:
    """Folders the indexed documents came from, readable even when the embedding model no longer matches."""
    client = make_chroma_client(settings)
    name = settings.collection + _DOCUMENTS_SUFFIX
    if not _exists(client, name):
        return set()
    metadatas = client.get_collection(name, embedding_function=None).get(include=["metadatas"])["metadatas"]
    return {str(m["root"]) for m in metadatas}


def swap_in(built: ChromaStore, target: str) -> ChromaStore:
    """Rename `built`'s collections to `target`; the previous ones are dropped only once replaced."""
    client = built.client
    retired = target + _RETIRED_SUFFIX
    _drop_collections(client, retired)
    for suffix in _COMPANIONS:
        if _exists(client, target + suffix):
            client.get_collection(target + suffix).modify(name=retired + suffix)
        client.get_collection(built.name + suffix).modify(name=target + suffix)
    _drop_collections(client, retired)
    return ChromaStore(client, target, built.model_name, built.dimension)


def _source_filter(sources: Sequence[str] | None) -> dict[str, Any] | None:
    if not sources:
        return None
    return {"source": sources[0]} if len(sources) == 1 else {"source": {"$in": list(sources)}}


def _filter(sources: Sequence[str] | None, language: str | None) -> dict[str, Any] | None:
    clauses = [c for c in (_source_filter(sources), {"language": language} if language else None) if c]
    if len(clauses) < 2:
        return clauses[0] if clauses else None
    return {"$and": clauses}


def _exists(client: Any, name: str) -> bool:
    return name in {c if isinstance(c, str) else c.name for c in client.list_collections()}


def _drop_collections(client: Any, name: str) -> None:
    for suffix in _COMPANIONS:
        if _exists(client, name + suffix):
            client.delete_collection(name + suffix)
