"""Hybrid retrieval's fusion on fakes: rank fusion of the dense, sentence and BM25 lists, the weight of a word
match in the other language, merging of neighbouring chunks, and near-duplicates."""

from __future__ import annotations

import pytest
from fakes import HashEmbedder, MemoryStore

from index.types import Chunk
from rag.lexical import LexicalIndex
from rag.retrieval import FusionWeights, HybridRetriever, _Candidate, merge_neighbours
from rag.store import ChunkVectors


def _chunk(source: str, text: str, start: int = 0, index: int = 0, language: str = "en") -> Chunk:
    return Chunk(source=source, title=source, text=text, start=start, end=start + len(text), index=index,
                 language=language)  # fmt: skip


def test_a_chunk_found_by_every_search_outranks_one_found_by_one() -> None:
    retriever = HybridRetriever(store=None, lexical=lambda: None, embed_query=lambda _: [])  # type: ignore[arg-type]
    everywhere = _Candidate(_chunk("a.txt", "a"), dense_rank=2, sentence_rank=2, lexical_rank=2)
    dense_first = _Candidate(_chunk("b.txt", "b"), dense_rank=1)
    assert retriever._fuse(everywhere, "en") > retriever._fuse(dense_first, "en")


def test_first_in_two_lists_outranks_tenth_in_all_three() -> None:
    """The top of a list is strong evidence (RRF's k small beside the 20 candidates a list holds); with the usual
    k = 60 the lists were nearly flat and a passage every list found mediocre won."""
    retriever = HybridRetriever(store=None, lexical=lambda: None, embed_query=lambda _: [])  # type: ignore[arg-type]
    top_twice = _Candidate(_chunk("a.txt", "a"), dense_rank=1, lexical_rank=1)
    mediocre_everywhere = _Candidate(_chunk("b.txt", "b"), dense_rank=10, sentence_rank=10, lexical_rank=10)
    assert retriever._fuse(top_twice, "en") > retriever._fuse(mediocre_everywhere, "en")
    flat = HybridRetriever(
        store=None,  # type: ignore[arg-type]
        lexical=lambda: None,  # type: ignore[arg-type]
        embed_query=lambda _: [],
        weights=FusionWeights(rrf_k=60),
    )
    assert flat._fuse(top_twice, "en") < flat._fuse(mediocre_everywhere, "en")  # what the test guards against


def test_a_word_match_counts_less_when_the_passage_is_in_the_other_language() -> None:
    retriever = HybridRetriever(store=None, lexical=lambda: None, embed_query=lambda _: [])  # type: ignore[arg-type]
    french = _Candidate(_chunk("fr.txt", "x", language="fr"), lexical_rank=1)
    english = _Candidate(_chunk("en.txt", "x", language="en"), lexical_rank=1)
    weights = FusionWeights()
    ratio = retriever._fuse(french, "en") / retriever._fuse(english, "en")
    assert ratio == pytest.approx(weights.lexical_other_language)


def test_overlapping_chunks_of_one_document_become_one_passage_and_duplicates_go() -> None:
    text = "First sentence here. Second sentence there. Third one."
    a = _Candidate(_chunk("doc.txt", text[:30], 0, 0), chunk_ids=("a",))
    b = _Candidate(_chunk("doc.txt", text[20:], 20, 1), chunk_ids=("b",))
    copy = _Candidate(_chunk("copy.txt", text[:30].upper(), 0, 0), chunk_ids=("c",))
    other = _Candidate(_chunk("other.txt", "Nothing alike at all, not one word.", 0, 0), chunk_ids=("d",))
    kept = merge_neighbours([a, b, copy, other])
    assert [c.chunk.text for c in kept] == [text, "Nothing alike at all, not one word."]
    assert kept[0].chunk_ids == ("a", "b")


def test_hybrid_retrieval_finds_by_meaning_and_by_rare_word() -> None:
    embedder = HashEmbedder()
    chunks = [
        _chunk("bridge.txt", "The Harbour bridge opened in 1932 after eight years of work.", index=0),
        _chunk("zephyr.txt", "Le projet Zéphyr relie les bibliothèques de Lyon.", index=0, language="fr"),
        _chunk("tea.txt", "Green tea is grown on terraces in the hills.", index=0),
    ]
    store = MemoryStore("live", embedder.model_name, embedder.dimension)
    vectors = [ChunkVectors(embedder.embed_query(c.embedding_text), []) for c in chunks]
    store.upsert(chunks, vectors)
    lexical = LexicalIndex.build(
        [c.id for c in chunks], [c.source for c in chunks], [c.search_text for c in chunks], ["en", "fr", "en"]
    )
    retriever = HybridRetriever(store, lambda: lexical, embedder.embed_query)
    passages = retriever.retrieve("When did the Harbour bridge open?", k=2)
    assert passages[0].source == "bridge.txt" and [p.n for p in passages] == [1, 2]
    assert retriever.retrieve("Zéphyr", k=1)[0].source == "zephyr.txt"
    assert retriever.retrieve("tea terraces", k=1, sources=["bridge.txt"])[0].source == "bridge.txt"
