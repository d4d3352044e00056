"""Hybrid retrieval: dense (Chroma) and BM25, fused by weighted reciprocal rank, then merged into passages.

Two corrections make fusion work on a bilingual corpus:
- Cosine similarities are not comparable across languages: an English question scores English passages
  higher than the French passage that answers it. So dense ranks are taken within each language, and the
  final list gives the other language's best passages a place when they come close (`slots`, `margin`).
- BM25 cannot cross languages: a lexical hit in the other language is a shared name or number, so its
  rank counts only a little (`lexical_other_language`).

Every candidate gets a dense rank, by its chunk's similarity to the question, not only the dense search's own top
`candidates`: the chunks the sentence and BM25 searches find are scored anyway, and reciprocal rank fusion assumes
that each list ranks every document. Cut at the search's depth, the dense list gave no vote at all to a chunk
the sentence search put second but whose whole text came below the dense top, and chunks that both lists put
in their middle outranked it.

The two corrections are what is left when the question cannot be translated. With its translation, each language
is searched in its own words and the similarities compare across languages (`_own_language_candidates`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np

from index.chunking import split_sentences
from index.types import Chunk
from rag.language import LANGUAGES, Language, detect_language
from rag.lexical import LexicalHit, LexicalIndex
from rag.names import described, name_pieces, versioned_names
from rag.schema import Passage
from rag.store import VectorStore


@dataclass(frozen=True)
class FusionWeights:
    # Reciprocal rank fusion adds 1 / (rrf_k + rank) over the lists. The usual k = 60 was set for fusing many
    # runs of 1,000 documents each; over our three lists of `candidates` (20) it is nearly flat (the first of a
    # list weighs 1.3 times the twentieth), so a passage every list puts 10th beat one that two lists put first.
    # With k = candidates / 2 a list's vote halves by its middle: its first places count, its tail still counts.
    rrf_k: int = 10
    dense: float = 1.0
    sentence: float = 1.0
    lexical_same_language: float = 1.0
    lexical_other_language: float = 0.2
    candidates: int = 20
    slots: int = 2
    margin: float = 0.05
    part_places: bool = True  # keep a place for each part's best passage in a multi-part question
    # search again among the documents a question names ("d'après Wikipédia"), and keep a place for the best found
    named_places: bool = True
    # Within the top k, the passages that state a versioned name of a one-sentence question ("DeepSeek-V3",
    # "R1-Zero") come first, each group in fused order: a passage stating none of them is about another release
    # (`rag.names`). A question of several sentences is left alone: its parts name different things.
    versions_first: bool = True
    # A BM25 top hit scoring this many times the runner-up keeps a place (None: never); see `_decisive`.
    decisive_lexical_ratio: float | None = 2.0
    # Every candidate ranked in the dense list by its similarity (the module's docstring); False: only the dense
    # search's own hits, as before (kept for the ablation bench).
    dense_ranks_all: bool = True

    @property
    def sentence_hits(self) -> int:
        """Sentences asked of a sentence search: several of one chunk can come first and only each chunk's best
        counts, so three times `candidates` leave about `candidates` chunks."""
        return 3 * self.candidates


@dataclass
class _Candidate:
    chunk: Chunk
    chunk_ids: tuple[str, ...] = ()
    similarity: float = 0.0
    dense_rank: int | None = None
    sentence_rank: int | None = None
    lexical_rank: int | None = None
    fused: float = 0.0
    decisive: bool = False  # the top of a BM25 search, well ahead of its runner-up


@dataclass
class _OwnLanguageHits:
    """What the searches of `_own_language_candidates` found, by chunk id, before fusion."""

    chunks: dict[str, Chunk] = field(default_factory=dict)
    chunk_similarity: dict[str, float] = field(default_factory=dict)  # the best dense hit's score
    sentence_similarity: dict[str, float] = field(default_factory=dict)  # the best sentence hit's score
    lexical_lists: list[tuple[Language, list[str]]] = field(default_factory=list)  # each query's language, hits
    decisive: set[tuple[str, Language]] = field(default_factory=set)  # (chunk, the language of the query that found it)


class HybridRetriever:
    def __init__(
        self,
        store: VectorStore,
        lexical: Callable[[], LexicalIndex],
        embed_query: Callable[[str], Sequence[float]],
        weights: FusionWeights | None = None,
        guard: Callable[[], AbstractContextManager] = nullcontext,
    ):
        # Held while reading the store, so a concurrent refresh never shows a document half replaced.
        self.guard = guard
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
        translations: Mapping[Language, str] | None = None,
    ) -> list[Passage]:
        """The k best passages, numbered 1..k, best first.

        `translations` are the question in the corpus's other language(s). With them, each language's passages
        are searched with the question in that language only (see `_own_language_candidates`)."""
        w = self.weights
        language = language or detect_language(query)
        searches = bilingual_searches(query, language, translations or {})
        texts = list(dict.fromkeys(text for search in searches for text in search.values()))
        vectors = dict(zip(texts, np.asarray([self.embed_query(t) for t in texts], dtype=np.float32), strict=True))
        merged: dict[str, _Candidate] = {}
        part_bests: list[str] = []  # each part's best chunk and the named documents' best (searches[0]: the whole)
        with self.guard():
            for number, search in enumerate(searches):
                found = self._found(search, language, vectors, sources)
                if number and found and w.part_places:
                    part_bests.append(max(found.values(), key=lambda c: c.fused).chunk.id)
                for chunk_id_, candidate in found.items():  # the parts of a question add up
                    kept = merged.setdefault(chunk_id_, candidate)
                    if kept is not candidate:
                        kept.fused += candidate.fused
                        kept.similarity = max(kept.similarity, candidate.similarity)
                        kept.decisive = kept.decisive or candidate.decisive
                named = self._named_sources(search, sources) if w.named_places else []
                if named and (in_named := self._found(search, language, vectors, named)):
                    # Only a place: the named documents' best is shown, and the rest ranks as it did. Adding the
                    # named search's scores to every passage of those documents as well was measured and not
                    # taken: a question whose translation names the GDPR lost the CNIL guide passage answering it.
                    best = max(in_named.values(), key=lambda c: c.fused)
                    part_bests.append(best.chunk.id)
                    merged.setdefault(best.chunk.id, replace(best, fused=0.0))
        ranked = sorted(merged.values(), key=lambda c: c.fused, reverse=True)
        chosen = self._select(merge_neighbours(ranked), language, k, part_bests)
        if w.versions_first and len(searches) == 1:
            chosen = stating_first(chosen, versioned_names(query))
        return to_passages(chosen)

    def _named_sources(self, search: Mapping[Language, str], sources: Sequence[str] | None) -> list[str]:
        """The documents a search names in any of its languages (`LexicalIndex.named_sources`)."""
        lexical = self.lexical()
        return sorted({s for lang, text in search.items() for s in lexical.named_sources(text, lang, sources)})

    def _found(
        self,
        search: Mapping[Language, str],
        language: Language,
        vectors: Mapping[str, np.ndarray],
        sources: Sequence[str] | None,
    ) -> dict[str, _Candidate]:
        """One search's candidates with their fused scores: in each language with its own text when the search
        has both, otherwise the question as asked, over both languages."""
        if len(search) > 1:
            return self._own_language_candidates([(t, lang, vectors[t]) for lang, t in search.items()], sources)
        found = self._candidates(search[language], vectors[search[language]], sources, language)
        for candidate in found.values():
            candidate.fused = self._fuse(candidate, language)
        return found

    def _own_language_candidates(
        self, searches: list[tuple[str, Language, np.ndarray]], sources: Sequence[str] | None
    ) -> dict[str, _Candidate]:
        """Each language's passages searched with the question in that language (as asked, or translated).

        Every similarity is then between two texts of one language, so they compare across languages: dense and
        sentence ranks are taken over one list holding both languages, and a passage is ranked by how well it
        answers, not by which language it is in. BM25 ranks stay per query (their scores are not comparable),
        each query's hits restricted to its own language, where words can match."""
        found = _OwnLanguageHits()
        for text, language, vector in searches:
            self._search_in_language(found, text, language, vector, sources)
        lexical_ids = (i for _, ids in found.lexical_lists for i in ids)
        unseen = [i for i in (*found.sentence_similarity, *lexical_ids) if i not in found.chunks]
        # A chunk a refresh just replaced is not found: it goes.
        found.chunks.update(self.store.chunks_by_id(list(dict.fromkeys(unseen))))
        lexical = self._own_language_lexical(found)
        dense_hits = tuple(found.chunk_similarity)  # in the order found: equal similarities rank alike on every run
        self._similarity_without_dense_hit(found, searches)
        ranked = found.chunk_similarity if self.weights.dense_ranks_all else dense_hits
        dense_rank = _ranks({i: found.chunk_similarity[i] for i in ranked})
        return self._own_language_fused(found, dense_rank, _ranks(found.sentence_similarity), lexical)

    def _search_in_language(
        self, found: _OwnLanguageHits, text: str, language: Language, vector: np.ndarray, sources: Sequence[str] | None
    ) -> None:
        """Adds to `found` the dense, sentence and BM25 hits of one query among its own language's passages."""
        w = self.weights
        for hit in self.store.search(vector.tolist(), w.candidates, sources, language):
            found.chunks[hit.chunk.id] = hit.chunk
            found.chunk_similarity[hit.chunk.id] = max(found.chunk_similarity.get(hit.chunk.id, -1.0), hit.score)
        best_per_chunk: dict[str, float] = {}
        for hit in self.store.sentence_search(vector.tolist(), w.sentence_hits, sources, language):
            best_per_chunk.setdefault(hit.chunk_id, hit.score)  # hits come best first
        for chunk_id_, score in list(best_per_chunk.items())[: w.candidates]:
            found.sentence_similarity[chunk_id_] = max(found.sentence_similarity.get(chunk_id_, -1.0), score)
        hits = self.lexical().search(text, w.candidates, sources, language)
        found.lexical_lists.append((language, [hit.chunk_id for hit in hits]))
        found.decisive.update((chunk_id_, language) for chunk_id_ in self._decisive(hits))

    def _own_language_lexical(self, found: _OwnLanguageHits) -> dict[str, float]:
        """Each chunk's BM25 share of the fused score: reciprocal ranks summed over the queries, each ranking only
        the hits in its own language."""
        w = self.weights
        lexical: dict[str, float] = {}
        for language, ids in found.lexical_lists:
            own = [i for i in ids if i in found.chunks and found.chunks[i].language == language]
            for rank, chunk_id_ in enumerate(own, start=1):
                lexical[chunk_id_] = lexical.get(chunk_id_, 0.0) + w.lexical_same_language / (w.rrf_k + rank)
        return lexical

    def _similarity_without_dense_hit(
        self, found: _OwnLanguageHits, searches: list[tuple[str, Language, np.ndarray]]
    ) -> None:
        """The similarity of each chunk only a sentence or BM25 search found, from its stored vector and the
        question in its language (a chunk whose vector is gone is left without one, and dropped)."""
        missing = [i for i in found.chunks if i not in found.chunk_similarity]
        if not missing:
            return
        stored = self.store.embeddings_for(missing, sentences=False)
        for chunk_id_ in missing:
            if chunk_id_ in stored:
                vector = np.asarray(stored[chunk_id_].chunk, dtype=np.float32)
                own = [v for _, lang, v in searches if lang == found.chunks[chunk_id_].language]
                found.chunk_similarity[chunk_id_] = max(float(np.dot(q, vector)) for q in own)

    def _own_language_fused(
        self,
        found: _OwnLanguageHits,
        dense_rank: dict[str, int],
        sentence_rank: dict[str, int],
        lexical: dict[str, float],
    ) -> dict[str, _Candidate]:
        """The candidates with a similarity, by chunk id, each with its ranks and fused score."""
        w = self.weights
        candidates: dict[str, _Candidate] = {}
        for chunk_id_, chunk in found.chunks.items():
            if chunk_id_ not in found.chunk_similarity:
                continue
            candidate = _Candidate(
                chunk,
                (chunk_id_,),
                max(found.chunk_similarity[chunk_id_], found.sentence_similarity.get(chunk_id_, -1.0)),
                dense_rank=dense_rank.get(chunk_id_),
                sentence_rank=sentence_rank.get(chunk_id_),
                decisive=(chunk_id_, chunk.language) in found.decisive,
            )
            candidate.fused = (
                (w.dense / (w.rrf_k + candidate.dense_rank) if candidate.dense_rank else 0.0)
                + (w.sentence / (w.rrf_k + candidate.sentence_rank) if candidate.sentence_rank else 0.0)
                + lexical.get(chunk_id_, 0.0)
            )
            candidates[chunk_id_] = candidate
        return candidates

    def holds_language(self, language: Language, sources: Sequence[str] | None = None) -> bool:
        with self.guard():
            return self.store.has_language(language, sources)

    def stored_sentences(self, passages: Sequence[Passage]) -> list[list[tuple[int, int, Sequence[float]]]]:
        """The sentence vectors the index holds for each passage, with offsets inside the passage text."""
        ids = [i for p in passages for i in p.chunk_ids]
        with self.guard():
            chunks = self.store.chunks_by_id(ids)
            vectors = self.store.embeddings_for(list(chunks))
        result = []
        for passage in passages:
            spans: dict[tuple[int, int], Sequence[float]] = {}
            for chunk_id_ in passage.chunk_ids:
                if chunk_id_ not in vectors:
                    continue
                shift = chunks[chunk_id_].start - passage.start
                for start, end, vector in vectors[chunk_id_].sentences:
                    spans.setdefault((start + shift, end + shift), vector)
            result.append([(s, e, v) for (s, e), v in sorted(spans.items())])
        return result

    def _candidates(
        self, query: str, vector: np.ndarray, sources: Sequence[str] | None, language: Language
    ) -> dict[str, _Candidate]:
        w = self.weights
        candidates: dict[str, _Candidate] = {}
        sentence_ranks: dict[str, tuple[int, float]] = {}
        dense_hits: list[str] = []
        for within in LANGUAGES:
            for hit in self.store.search(vector.tolist(), w.candidates, sources, within):
                candidates[hit.chunk.id] = _Candidate(hit.chunk, (hit.chunk.id,), hit.score)
                dense_hits.append(hit.chunk.id)
            best_per_chunk: dict[str, float] = {}
            for hit in self.store.sentence_search(vector.tolist(), w.sentence_hits, sources, within):
                best_per_chunk.setdefault(hit.chunk_id, hit.score)  # hits come best first
            for rank, (chunk_id_, score) in enumerate(list(best_per_chunk.items())[: w.candidates], start=1):
                sentence_ranks[chunk_id_] = (rank, score)
        lexical_hits = self.lexical().search(query, w.candidates, sources)
        lexical_ranks = {hit.chunk_id: rank for rank, hit in enumerate(lexical_hits, start=1)}
        decisive = self._decisive(lexical_hits)
        unseen = [i for i in (*sentence_ranks, *lexical_ranks) if i not in candidates]
        found = self.store.chunks_by_id(list(dict.fromkeys(unseen)))
        vectors = self.store.embeddings_for(list(found), sentences=False)
        for chunk_id_, chunk in found.items():  # a hit on a chunk a refresh just replaced is not found: dropped
            similarity = float(np.dot(vector, np.asarray(vectors[chunk_id_].chunk, dtype=np.float32)))
            candidates[chunk_id_] = _Candidate(chunk, (chunk.id,), similarity)
        ranked = candidates if w.dense_ranks_all else dense_hits
        for within in LANGUAGES:  # dense ranks within each language (see the module's docstring)
            same = {i: candidates[i].similarity for i in ranked if candidates[i].chunk.language == within}
            for chunk_id_, rank in _ranks(same).items():
                candidates[chunk_id_].dense_rank = rank
        for chunk_id_, candidate in candidates.items():
            candidate.lexical_rank = lexical_ranks.get(chunk_id_)
            candidate.decisive = chunk_id_ in decisive and candidate.chunk.language == language
            if chunk_id_ in sentence_ranks:
                candidate.sentence_rank, sentence_score = sentence_ranks[chunk_id_]
                candidate.similarity = max(candidate.similarity, sentence_score)
        return candidates

    def _decisive(self, hits: Sequence[LexicalHit]) -> list[str]:
        """The top BM25 hit when it scores `decisive_lexical_ratio` times the runner-up (or is the only hit).

        BM25 adds up the matched words' weights, so such a passage holds clearly more of the question's rare words
        than any other (a quoted phrase, a name and a figure together); rank fusion alone would let passages that
        come second or third in both dense lists outrank it. The caller keeps it only in the query's language."""
        ratio = self.weights.decisive_lexical_ratio
        if ratio is None or not hits:
            return []
        if len(hits) == 1 or hits[0].score >= ratio * hits[1].score:
            return [hits[0].chunk_id]
        return []

    def _fuse(self, candidate: _Candidate, language: Language) -> float:
        w = self.weights
        score = 0.0
        if candidate.dense_rank is not None:
            score += w.dense / (w.rrf_k + candidate.dense_rank)
        if candidate.sentence_rank is not None:
            score += w.sentence / (w.rrf_k + candidate.sentence_rank)
        if candidate.lexical_rank is not None:
            same = candidate.chunk.language == language
            weight = w.lexical_same_language if same else w.lexical_other_language
            score += weight / (w.rrf_k + candidate.lexical_rank)
        return score

    def _select(
        self, ranked: list[_Candidate], language: Language, k: int, part_bests: Sequence[str] = ()
    ) -> list[_Candidate]:
        """The k first in fused order, except that places are kept for the best passage of each part of a
        multi-part question (summed scores favour what matches the whole question, so the document only one
        part asks about would lose out) and for the best of the documents a question names, for a decisive BM25
        hit (`_decisive`) and, up to `slots`, for the other language's best passages when their similarity comes
        within `margin` of the best passage's."""
        if not ranked:
            return []
        w = self.weights
        best = max(c.similarity for c in ranked)
        parts = [c for c in ranked if set(c.chunk_ids) & set(part_bests)]
        decisive = [c for c in ranked if c.decisive and c not in parts]
        other = [c for c in ranked if c.chunk.language != language and c.similarity >= best - w.margin][: w.slots]
        reserved = parts + decisive + [c for c in other if c not in parts and c not in decisive]
        reserved = reserved[: max(0, k - 1)]  # the best of all keeps its place
        chosen = [c for c in ranked if c not in reserved][: max(0, k - len(reserved))]
        kept = {id(c) for c in chosen + reserved}
        return [c for c in ranked if id(c) in kept]


# Real multi-part questions have two or three sentences ("The article says X. Under the GDPR, when is Y
# allowed?"): the whole question and its first three distinct sentences cover them, while each sub-query costs
# an embedding, four vector searches and a BM25 search, so a pasted page must not become hundreds of them.
MAX_SUB_QUERIES = 4
# What retrieval reads of a question: e5 embeds 512 tokens at most anyway (about 2,000 characters), and BM25
# over a pasted text only costs time. The service has its own, separate limit on questions.
MAX_QUERY_CHARS = 2000
_LAST_WORD = re.compile(r"\s+\S*\Z")


def bilingual_searches(
    query: str, language: Language, translations: Mapping[Language, str]
) -> list[dict[Language, str]]:
    """What to search: the question and its parts (`sub_queries`), each as {language: text}. A translation gives
    the whole question its other-language text, and each part too when the translation has as many parts (a
    translation keeps the sentences of what it translates); a part without one is searched as asked."""
    parts = sub_queries(query)
    searches: list[dict[Language, str]] = [{language: part} for part in parts]
    for other, translation in translations.items():
        if other == language or not translation.strip():
            continue
        translated = sub_queries(translation)
        if len(translated) == len(parts):
            for search, text in zip(searches, translated, strict=True):
                search[other] = text
        else:
            searches[0][other] = translation
    return searches


def sub_queries(query: str) -> list[str]:
    """The question (its first MAX_QUERY_CHARS characters), plus each of its distinct sentences when it has
    several, up to MAX_SUB_QUERIES in all: each part finds its own document, which the whole question may not."""
    if len(query) > MAX_QUERY_CHARS:
        head = query[:MAX_QUERY_CHARS]
        query = _LAST_WORD.sub("", head) or head  # its last word may be cut: BM25 would look up the stump
    seen = {_folded(query)}
    parts = []
    for start, end in split_sentences(query):
        part = query[start:end]
        if len(part.split()) >= 4 and _folded(part) not in seen:
            seen.add(_folded(part))
            parts.append(part)
    return [query, *parts[: MAX_SUB_QUERIES - 1]] if len(parts) > 1 else [query]


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())


def _ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """1 for the highest score, 2 for the next... (equal scores in the order given)."""
    ordered = sorted(scores, key=scores.__getitem__, reverse=True)
    return {key: rank for rank, key in enumerate(ordered, start=1)}


def merge_neighbours(ranked: list[_Candidate]) -> list[_Candidate]:
    """Overlapping or touching chunks of one document become one passage (at the better one's rank);
    a chunk whose text is already inside a kept passage goes."""
    kept: list[_Candidate] = []
    signatures: list[_Signature] = []  # of the kept candidates' original texts, computed once each
    for candidate in ranked:
        signature = _Signature.of(candidate.chunk.text)
        for i, other in enumerate(kept):
            merged = _merge(other.chunk, candidate.chunk)
            if merged is not None:
                kept[i] = replace(
                    other,
                    chunk=merged,
                    chunk_ids=(*other.chunk_ids, *candidate.chunk_ids),
                    similarity=max(other.similarity, candidate.similarity),
                    decisive=other.decisive or candidate.decisive,
                )
                break
            if signatures[i].near_duplicate(signature):
                break
        else:
            kept.append(candidate)
            signatures.append(signature)
    return kept


def _merge(a: Chunk, b: Chunk) -> Chunk | None:
    if a.source != b.source or b.start > a.end or a.start > b.end:
        return None
    first, second = (a, b) if a.start <= b.start else (b, a)
    if second.end <= first.end:
        return first
    text = first.text + second.text[first.end - second.start :]
    return replace(first, text=text, end=second.end)


@dataclass(frozen=True)
class _Signature:
    """A text folded for near-duplicate tests: same text give or take whitespace and case (e.g. a paragraph
    copied into two documents), or 90% of the same words."""

    length: int
    folded: str
    words: frozenset[str]

    @classmethod
    def of(cls, text: str) -> _Signature:
        folded = " ".join(text.lower().split())
        return cls(len(text), folded, frozenset(folded.split()))

    def near_duplicate(self, other: _Signature) -> bool:
        if abs(self.length - other.length) > 0.1 * max(self.length, other.length):
            return False
        if self.folded == other.folded:
            return True
        # Shared / all words is at most the smaller set's size over the larger's: most pairs stop here, cheaply.
        smaller, larger = sorted((len(self.words), len(other.words)))
        if smaller <= 0.9 * larger:
            return False
        return len(self.words & other.words) / max(1, len(self.words | other.words)) > 0.9


def stating_first(candidates: list[_Candidate], names: set[str]) -> list[_Candidate]:
    """The candidates whose chunk states one of `names` (read as attribution reads them, `rag.names.described`),
    then the others, each group in the order given."""
    if not names:
        return candidates

    def states_none(candidate: _Candidate) -> bool:
        chunk = candidate.chunk
        return not names & name_pieces(described(chunk.text, chunk.title, " > ".join(chunk.heading_path), chunk.source))

    return sorted(candidates, key=states_none)


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
            chunk_ids=list(c.chunk_ids) or [c.chunk.id],
            similarity=round(c.similarity, 4),
            language=c.chunk.language,
        )
        for n, c in enumerate(candidates, start=1)
    ]
