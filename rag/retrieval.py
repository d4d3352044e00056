"""Hybrid retrieval: dense (Chroma) and BM25, fused by weighted reciprocal rank, then merged into passages.

BM25 cannot cross languages: for an English question about a French text its hits are English chunks
that share a name or a number, and plain RRF lets them push the right French chunk down. So the lexical
rank of a chunk counts fully only when the chunk is in the question's language, and a little otherwise
(names and figures still match across languages).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from index.types import Chunk
from rag.language import Language, detect_language
from rag.lexical import LexicalIndex
from rag.schema import Passage
from rag.store import VectorStore


@dataclass(frozen=True)
class FusionWeights:
    rrf_k: int = 60
    dense: float = 1.0
    lexical_same_language: float = 1.0
    lexical_other_language: float = 0.2
    candidates: int = 20


@dataclass
class _Candidate:
    chunk: Chunk
    similarity: float = 0.0
    dense_rank: int | None = None
    lexical_rank: int | None = None
    fused: float = 0.0


class HybridRetriever:
    def __init__(
        self,
        store: VectorStore,
        lexical: Callable[[], LexicalIndex],
        embed_query: Callable[[str], Sequence[float]],
        weights: FusionWeights | None = None,
    ):
        self.store = store
        self.lexical = lexical
        self.embed_query = embed_query
        self.weights = weights or FusionWeights()

    def retrieve(
        self,
        query: str,
        k: int,
        *,
        sources: Sequence[str] | None = None,
        language: Language | None = None,
    ) -> list[Passage]:
        """The k best passages, numbered 1..k, best first."""
        language = language or detect_language(query)
        vector = np.asarray(self.embed_query(query), dtype=np.float32)
        w = self.weights
        candidates: dict[str, _Candidate] = {}
        for rank, hit in enumerate(self.store.search(vector.tolist(), w.candidates, sources), start=1):
            candidates[hit.chunk.id] = _Candidate(hit.chunk, hit.score, dense_rank=rank)
        lexical_hits = self.lexical().search(query, w.candidates, sources)
        new_ids = [h.chunk_id for h in lexical_hits if h.chunk_id not in candidates]
        found = self.store.chunks_by_id(new_ids)
        vectors = self.store.embeddings_for(list(found))
        for rank, hit in enumerate(lexical_hits, start=1):
            if hit.chunk_id in candidates:
                candidates[hit.chunk_id].lexical_rank = rank
            elif hit.chunk_id in found:  # a hit on a chunk a refresh just replaced is dropped
                similarity = float(np.dot(vector, np.asarray(vectors[hit.chunk_id], dtype=np.float32)))
                candidates[hit.chunk_id] = _Candidate(found[hit.chunk_id], similarity, lexical_rank=rank)
        for candidate in candidates.values():
            candidate.fused = self._fuse(candidate, language)
        ranked = sorted(candidates.values(), key=lambda c: c.fused, reverse=True)
        return to_passages(merge_neighbours(ranked[: 2 * k])[:k])

    def _fuse(self, candidate: _Candidate, language: Language) -> float:
        w = self.weights
        score = 0.0
        if candidate.dense_rank is not None:
            score += w.dense / (w.rrf_k + candidate.dense_rank)
        if candidate.lexical_rank is not None:
            same = detect_language(candidate.chunk.text) == language
            weight = w.lexical_same_language if same else w.lexical_other_language
            score += weight / (w.rrf_k + candidate.lexical_rank)
        return score


def merge_neighbours(ranked: list[_Candidate]) -> list[_Candidate]:
    """Overlapping or touching chunks of one document become one passage (at the better one's rank);
    a chunk whose text is already inside a kept passage goes."""
    kept: list[_Candidate] = []
    for candidate in ranked:
        for i, other in enumerate(kept):
            merged = _merge(other.chunk, candidate.chunk)
            if merged is not None:
                kept[i] = _Candidate(
                    merged,
                    max(other.similarity, candidate.similarity),
                    other.dense_rank,
                    other.lexical_rank,
                    other.fused,
                )
                break
            if _near_duplicate(other.chunk.text, candidate.chunk.text):
                break
        else:
            kept.append(candidate)
    return kept


def _merge(a: Chunk, b: Chunk) -> Chunk | None:
    if a.source != b.source or b.start > a.end or a.start > b.end:
        return None
    first, second = (a, b) if a.start <= b.start else (b, a)
    if second.end <= first.end:
        return first
    text = first.text + second.text[first.end - second.start :]
    return Chunk(
        source=first.source,
        title=first.title,
        text=text,
        start=first.start,
        end=second.end,
        index=first.index,
        heading_path=first.heading_path,
        page=first.page,
        id=first.id,
    )


def _near_duplicate(a: str, b: str) -> bool:
    """Same text give or take whitespace and case (e.g. a paragraph copied into two documents)."""
    if abs(len(a) - len(b)) > 0.1 * max(len(a), len(b)):
        return False
    norm_a, norm_b = " ".join(a.lower().split()), " ".join(b.lower().split())
    if norm_a == norm_b:
        return True
    words_a, words_b = set(norm_a.split()), set(norm_b.split())
    return len(words_a & words_b) / max(1, len(words_a | words_b)) > 0.9


def to_passages(candidates: list[_Candidate]) -> list[Passage]:
    return [
        Passage(
            n=n,
            chunk_id=c.chunk.id,
            source=c.chunk.source,
            title=c.chunk.title,
            page=c.chunk.page,
            heading_path=" > ".join(c.chunk.heading_path),
            start=c.chunk.start,
            end=c.chunk.end,
            text=c.chunk.text,
            score=round(c.fused, 6),
            similarity=round(c.similarity, 4),
        )
        for n, c in enumerate(candidates, start=1)
    ]
