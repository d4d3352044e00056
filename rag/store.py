"""Vector store: Chroma (embedded files or a server), behind a small interface.

Everything the index needs to know lives in the store, so several app replicas sharing one Chroma server
see the same state: the chunks with their embeddings, and one record per indexed document (content hash, size,
when indexed) in a companion collection. The lexical index is derived from the store and can be read again from
it at any time, document by document.

Chunks and sentence vectors are kept in one collection per language (French, English, and one for chunks without
a language). The retriever always searches within one language (cosine similarities are compared within a
language), and Chroma answers a metadata-filtered search by first listing every id that matches the filter: at a
million vectors a search filtered on a language that half of them carry took 4 s, the same search unfiltered
0.15 s (docs/benchmarks.md, "Scale"). A collection per language makes each such search an unfiltered one.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

from index.types import Chunk
from rag.errors import IndexMismatchError
from rag.language import LANGUAGES
from rag.schema import DocumentRecord
from rag.settings import DEFAULT_SEARCH_EF, Settings

log = logging.getLogger(__name__)

# Chroma insists on an embedding for every record; document records carry this placeholder.
_PLACEHOLDER_VECTOR = [0.0]
_DOCUMENTS_SUFFIX = "__documents"
_SENTENCES_SUFFIX = "__sentences"
# A chunk's partition is its language; "" holds chunks without one (and, in the collection named like the store,
# the store's model and dimension). Each partition has a chunk collection and a sentence collection.
_PARTITIONS: tuple[str, ...] = (*LANGUAGES, "")
_COMPANIONS = (
    *(f"__{p}" if p else "" for p in _PARTITIONS),
    *(f"{_SENTENCES_SUFFIX}__{p}" if p else _SENTENCES_SUFFIX for p in _PARTITIONS),
    _DOCUMENTS_SUFFIX,
)
_BUILDING_SUFFIX = "__building"
_RETIRED_SUFFIX = "__retired"
# How many hits past k a search asks for, so that equal distances at the k-th place are ordered by id (`_in_order`).
_TIE_MARGIN = 8


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


_Hit = TypeVar("_Hit", SentenceHit, ScoredChunk)


class VectorStore(Protocol):
    """The few operations the indexer and the retriever need; Chroma is one implementation."""

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[ChunkVectors]) -> None: ...
    def delete(self, ids: Iterable[str]) -> None:
        """Deletes in every partition (a chunk's language is not known from its id); a chunk's sentences by their
        chunk id, so sentences a crash left without their chunk go with the next delete of that chunk."""
        ids = list(ids)
        for lo in range(0, len(ids), self._batch):
            part = ids[lo : lo + self._batch]
            for partition, chunks in self._chunk_parts.items():
                chunks.delete(ids=part)
                self._sentence_parts[partition].delete(where={"chunk_id": {"$in": part}})

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
    def documents(self, sources: Sequence[str] | None = None) -> dict[str, DocumentRecord]: ...
    def document_count(self) -> int: ...


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
    """Per partition (language) `p`: chunks in `<collection>__p` and their sentences' vectors in
    `<collection>__sentences__p` (`<collection>` and `<collection>__sentences` for chunks without a language);
    document records in `<collection>__documents`; cosine space.

    Writes go straight to the chromadb collections (we supply our own embeddings, computed once and reused by
    chunk id); chunk similarity search goes through langchain-chroma.
    """

    def __init__(self, client: Any, name: str, model_name: str, dimension: int, search_ef: int = DEFAULT_SEARCH_EF):
        self._client = client
        self.name = name
        self.model_name = model_name
        self.dimension = dimension
        self.search_ef = search_ef
        self._open()

    def _open(self) -> None:
        from langchain_chroma import Chroma

        wanted = {"hnsw:space": "cosine", "embedding_model": self.model_name, "dimension": self.dimension}
        unlabelled = self._client.get_or_create_collection(self.name, embedding_function=None, metadata=wanted)
        found = unlabelled.metadata or {}
        if (found.get("embedding_model"), found.get("dimension")) != (self.model_name, self.dimension):
            raise IndexMismatchError(
                f"The index was built with embedding model {found.get('embedding_model')!r} "
                f"(dimension {found.get('dimension')}), but {self.model_name!r} (dimension "
                f"{self.dimension}) is configured. Run `rag index --rebuild` to re-embed everything "
                "with the configured model, or set RAG_EMBEDDING_MODEL back."
            )
        cosine = {"hnsw:space": "cosine"}
        self._chunk_parts = {
            p: self._client.get_or_create_collection(f"{self.name}__{p}", embedding_function=None, metadata=cosine)
            for p in _PARTITIONS
            if p
        } | {"": unlabelled}
        self._sentence_parts = {
            p: self._client.get_or_create_collection(
                f"{self.name}{_SENTENCES_SUFFIX}__{p}" if p else self.name + _SENTENCES_SUFFIX,
                embedding_function=None,
                metadata=cosine,
            )
            for p in _PARTITIONS
        }
        self._documents = self._client.get_or_create_collection(self.name + _DOCUMENTS_SUFFIX, embedding_function=None)
        for collection in (*self._chunk_parts.values(), *self._sentence_parts.values()):
            _explore(collection, self.search_ef)
        self._langchain = {
            p: Chroma(client=self._client, collection_name=collection.name, embedding_function=None)
            for p, collection in self._chunk_parts.items()
        }
        self._batch = max(1, min(self._client.get_max_batch_size(), 1000))
        self._sort_into_partitions()

    def _sort_into_partitions(self) -> None:
        """Stores written before the split by language hold every chunk in `<collection>` and every sentence in
        `<collection>__sentences`: move those of a language into its collections, a page at a time, vectors as
        they are (nothing is embedded again). Each page is copied before it is deleted, so an interrupted move
        resumes where it stopped; on a store already split this is one empty lookup."""
        unlabelled = self._chunk_parts[""]
        labelled = {"language": {"$in": list(LANGUAGES)}}
        if not unlabelled.get(where=labelled, limit=1, include=[])["ids"]:
            return
        log.warning("Moving the index's chunks into one collection per language (once, after an upgrade)...")
        while True:
            got = unlabelled.get(where=labelled, limit=self._batch, include=["embeddings", "documents", "metadatas"])
            if not got["ids"]:
                return
            for partition in LANGUAGES:
                rows = [i for i, meta in enumerate(got["metadatas"]) if meta.get("language") == partition]
                if not rows:
                    continue
                ids = [got["ids"][i] for i in rows]
                sentences = self._sentence_parts[""].get(
                    where={"chunk_id": {"$in": ids}}, include=["embeddings", "metadatas"]
                )
                if sentences["ids"]:
                    self._sentence_parts[partition].upsert(
                        ids=sentences["ids"],
                        embeddings=sentences["embeddings"],
                        metadatas=[_sentence_metadata(m["chunk_id"], m["source"]) for m in sentences["metadatas"]],
                    )
                self._chunk_parts[partition].upsert(
                    ids=ids,
                    embeddings=[got["embeddings"][i] for i in rows],
                    documents=[got["documents"][i] for i in rows],
                    metadatas=[got["metadatas"][i] for i in rows],
                )
                unlabelled.delete(ids=ids)
                if sentences["ids"]:
                    self._sentence_parts[""].delete(ids=sentences["ids"])

    # --- chunks -------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[ChunkVectors]) -> None:
        """Each language's chunks into its collections; sentences first, then chunks: a chunk is visible only
        once everything it needs is stored."""
        by_partition: dict[str, list[tuple[Chunk, ChunkVectors]]] = {}
        for chunk, vector in zip(chunks, vectors, strict=True):
            by_partition.setdefault(_partition(chunk.language), []).append((chunk, vector))
        for partition, pairs in by_partition.items():
            ids, embeddings, metadatas = [], [], []
            for chunk, vector in pairs:
                for start, end, sentence_vector in vector.sentences:
                    ids.append(_sentence_id(chunk.id, start, end))
                    embeddings.append(list(map(float, sentence_vector)))
                    metadatas.append(_sentence_metadata(chunk.id, chunk.source))
            sentences = self._sentence_parts[partition]
            for lo in range(0, len(ids), self._batch):
                hi = lo + self._batch
                sentences.upsert(ids=ids[lo:hi], embeddings=embeddings[lo:hi], metadatas=metadatas[lo:hi])
            for lo in range(0, len(pairs), self._batch):
                part = pairs[lo : lo + self._batch]
                self._chunk_parts[partition].upsert(
                    ids=[c.id for c, _ in part],
                    embeddings=[list(map(float, v.chunk)) for _, v in part],
                    documents=[c.text for c, _ in part],
                    metadatas=[c.metadata() for c, _ in part],
                )

    def delete(self, ids: Iterable[str]) -> None:
        """Deletes by id in each partition holding one of them (a chunk's language is not known from its id)."""
        ids = list(ids)
        for lo in range(0, len(ids), self._batch):
            part = ids[lo : lo + self._batch]
            for partition, chunks in self._chunk_parts.items():
                present = chunks.get(ids=part, include=[])["ids"]
                if present:
                    chunks.delete(ids=present)
                    self._sentence_parts[partition].delete(where={"chunk_id": {"$in": present}})

    def ids_for_source(self, source: str) -> set[str]:
        found: set[str] = set()
        for chunks in self._chunk_parts.values():
            found.update(chunks.get(where={"source": source}, include=[])["ids"])
        return found

    def embeddings_for(self, ids: Sequence[str], *, sentences: bool = True) -> dict[str, ChunkVectors]:
        """Stored vectors of chunks (and of their sentences unless `sentences` is False, which saves a query)."""
        found: dict[str, ChunkVectors] = {}
        for lo in range(0, len(ids), self._batch):
            part = list(ids[lo : lo + self._batch])
            for partition, chunks in self._chunk_parts.items():
                missing = [i for i in part if i not in found]
                if not missing:
                    break
                got = chunks.get(ids=missing, include=["embeddings"])
                for chunk_id_, vector in zip(got["ids"], got["embeddings"], strict=True):
                    found[chunk_id_] = ChunkVectors([float(x) for x in vector], [])
                if not sentences or not got["ids"]:
                    continue
                rows = self._sentence_parts[partition].get(
                    where={"chunk_id": {"$in": got["ids"]}}, include=["embeddings"]
                )
                for sentence_id, vector in zip(rows["ids"], rows["embeddings"], strict=True):
                    chunk_id_, start, end = _parse_sentence_id(sentence_id)
                    found[chunk_id_].sentences.append((start, end, [float(x) for x in vector]))
        for vectors in found.values():
            vectors.sentences.sort(key=lambda s: s[0])
        return found

    def sentence_search(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None, language: str | None = None
    ) -> list[SentenceHit]:
        """The k nearest sentences of `language`'s collection (of every language's when None)."""

        def nearest_in(partition: str) -> list[SentenceHit]:
            sentences = self._sentence_parts[partition]
            if sentences.count() == 0:
                return []
            got = sentences.query(
                query_embeddings=[list(map(float, vector))],
                n_results=k + _TIE_MARGIN,
                where=_source_filter(sources),
                include=["distances"],  # the id says the rest; fetching metadata took ~40% of the time
            )
            found = _in_order(zip(got["ids"][0], got["distances"][0], strict=True), k)
            return [SentenceHit(*_parse_sentence_id(sentence_id), 1.0 - distance) for sentence_id, distance in found]

        return _nearest(language, k, nearest_in)

    def chunks(self, sources: Sequence[str] | None = None) -> list[Chunk]:
        where = _source_filter(sources)
        result: list[Chunk] = []
        for chunks in self._chunk_parts.values():
            offset = 0
            while True:  # page by page until a short page: a filtered read costs what it returns
                got = chunks.get(where=where, include=["documents", "metadatas"], limit=self._batch, offset=offset)
                result += [
                    Chunk.from_metadata(i, t, m)
                    for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
                ]
                if len(got["ids"]) < self._batch:
                    break
                offset += self._batch
        return sorted(result, key=lambda c: (c.source, c.index))

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, Chunk]:
        """The chunks that still exist among `ids` (a lexical hit may name one a refresh just replaced)."""
        found: dict[str, Chunk] = {}
        for chunks in self._chunk_parts.values():
            missing = [i for i in ids if i not in found]
            if not missing:
                break
            got = chunks.get(ids=missing, include=["documents", "metadatas"])
            found |= {
                i: Chunk.from_metadata(i, t, m)
                for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            }
        return found

    def search(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None, language: str | None = None
    ) -> list[ScoredChunk]:
        """The k nearest chunks of `language`'s collection (of every language's when None)."""

        def nearest_in(partition: str) -> list[ScoredChunk]:
            if self._chunk_parts[partition].count() == 0:
                return []
            found = self._langchain[partition].similarity_search_by_vector_with_relevance_scores(
                list(map(float, vector)), k=k + _TIE_MARGIN, filter=_source_filter(sources)
            )
            documents = {doc.id: doc for doc, _ in found}
            # langchain reports cosine *distance* (1 - similarity) for a cosine collection.
            return [
                ScoredChunk(Chunk.from_metadata(i, documents[i].page_content, documents[i].metadata), 1.0 - distance)
                for i, distance in _in_order(((doc.id, d) for doc, d in found), k)
            ]

        return _nearest(language, k, nearest_in)

    def count(self) -> int:
        return sum(chunks.count() for chunks in self._chunk_parts.values())

    def has_language(self, language: str, sources: Sequence[str] | None = None) -> bool:
        """Whether any chunk (of these sources) is in `language`: one lookup in that language's collection."""
        chunks = self._chunk_parts[_partition(language)]
        return bool(chunks.get(where=_source_filter(sources), limit=1, include=[])["ids"])

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

    def documents(self, sources: Sequence[str] | None = None) -> dict[str, DocumentRecord]:
        """Every document's record, or those of `sources` (read by id: a one-document refresh does not list all)."""
        if sources is not None and not sources:
            return {}
        got = self._documents.get(ids=list(sources) if sources is not None else None, include=["metadatas"])
        return {i: DocumentRecord.from_metadata(m) for i, m in zip(got["ids"], got["metadatas"], strict=True)}

    def document_count(self) -> int:
        return self._documents.count()

    @property
    def client(self) -> Any:
        return self._client


def open_chroma_store(settings: Settings, model_name: str, dimension: int, *, building: bool = False) -> ChromaStore:
    """The live store, or (building=True) an empty one beside it for `rag index --rebuild`."""
    client = make_chroma_client(settings)
    if not building:
        return ChromaStore(client, settings.collection, model_name, dimension, settings.search_ef)
    name = settings.collection + _BUILDING_SUFFIX
    _drop_collections(client, name)
    return ChromaStore(client, name, model_name, dimension, settings.search_ef)


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
    return ChromaStore(client, target, built.model_name, built.dimension, built.search_ef)


def _source_filter(sources: Sequence[str] | None) -> dict[str, Any] | None:
    if not sources:
        return None
    return {"source": sources[0]} if len(sources) == 1 else {"source": {"$in": list(sources)}}


def _partition(language: str) -> str:
    return language if language in _PARTITIONS else ""


def _nearest(language: str | None, k: int, nearest_in: Callable[[str], list[_Hit]]) -> list[_Hit]:
    """`nearest_in` the language's partition, or in every partition (no language given) with the k best kept."""
    if language:
        return nearest_in(_partition(language))
    return heapq.nlargest(k, (hit for partition in _PARTITIONS for hit in nearest_in(partition)), key=_score)


def _explore(collection: Any, search_ef: int) -> None:
    """Sets how many candidates the collection's HNSW index explores per search, when it differs: a query-time
    setting Chroma lets change on an existing collection, read when a process first loads the collection's index
    (so before this store reads anything)."""
    hnsw = (getattr(collection, "configuration", None) or {}).get("hnsw") or {}
    if hnsw.get("ef_search") != search_ef:
        collection.modify(configuration={"hnsw": {"ef_search": search_ef}})


def _in_order(hits: Iterable[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """The k nearest of (id, distance) hits, equal distances by id. A sentence in the overlap of two chunks is
    stored twice with one vector; HNSW returns such ties in an order that can change from one process to the
    next, and with it the chunks a question gets. Asking `_TIE_MARGIN` more than k keeps a tie at the k-th
    place from being cut by that order."""
    return sorted(((i, float(d)) for i, d in hits), key=lambda hit: (hit[1], hit[0]))[:k]


def _score(hit: SentenceHit | ScoredChunk) -> float:
    return hit.score


def _sentence_metadata(chunk_id_: str, source: str) -> dict[str, Any]:
    """What a sentence vector is filtered or deleted by; its offsets are in its id, its language in its collection."""
    return {"chunk_id": chunk_id_, "source": source}


def _exists(client: Any, name: str) -> bool:
    return name in {c if isinstance(c, str) else c.name for c in client.list_collections()}


def _drop_collections(client: Any, name: str) -> None:
    for suffix in _COMPANIONS:
        if _exists(client, name + suffix):
            client.delete_collection(name + suffix)
