"""What retrieval makes of a question: sub-queries, de-duplicated, few, and bounded in length; where fusion keeps
places (no model: vectors are given, BM25 is the real one)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.types import Chunk
from rag.lexical import LexicalIndex
from rag.names import versioned_names
from rag.retrieval import MAX_QUERY_CHARS, MAX_SUB_QUERIES, FusionWeights, HybridRetriever, sub_queries
from rag.store import ChunkVectors, ScoredChunk, SentenceHit


def test_a_one_sentence_question_is_its_only_query():
    assert sub_queries("When did Italy ban DeepSeek?") == ["When did Italy ban DeepSeek?"]


def test_each_sentence_of_a_multi_part_question_is_queried_too():
    question = "The article says DeepSeek was banned in Italy. Under the GDPR, when is a transfer allowed?"
    assert sub_queries(question) == [
        question,
        "The article says DeepSeek was banned in Italy.",
        "Under the GDPR, when is a transfer allowed?",
    ]


def test_a_repeated_sentence_is_queried_once_whatever_its_case_and_spacing():
    question = "When did Italy ban DeepSeek? WHEN did  italy ban\nDeepSeek? Which authority asked for the ban in Italy?"
    assert sub_queries(question) == [
        question,
        "When did Italy ban DeepSeek?",
        "Which authority asked for the ban in Italy?",
    ]


def test_the_same_sentence_twice_is_one_question():
    assert sub_queries("When did Italy ban DeepSeek? When did Italy ban DeepSeek?") == [
        "When did Italy ban DeepSeek? When did Italy ban DeepSeek?"
    ]


def test_a_pasted_text_makes_few_bounded_queries_quickly():
    question = " ".join(f"Sentence number {i} talks about export controls on chips." for i in range(2000))
    assert len(question) > 100_000
    started = time.perf_counter()
    queries = sub_queries(question)
    assert time.perf_counter() - started < 1.0
    assert len(queries) == MAX_SUB_QUERIES
    assert question.startswith(queries[0]) and len(queries[0]) <= MAX_QUERY_CHARS
    assert queries[1:] == [f"Sentence number {i} talks about export controls on chips." for i in range(3)]


def test_a_long_question_is_cut_between_words():
    question = "transferts " * 500
    query = sub_queries(question)[0]
    assert len(query) <= MAX_QUERY_CHARS and query.split() == ["transferts"] * len(query.split())
    assert sub_queries("x" * 5000) == ["x" * MAX_QUERY_CHARS]  # no space to cut at: cut anyway
    assert sub_queries(" " * 3000 + "word") == [" " * MAX_QUERY_CHARS]  # nothing to search for, no error


class EmptyStore:
    """A store with nothing in it: only what the retriever asks of it matters here."""

    def search(self, vector, k, sources=None, language=None):
        return []

    def sentence_search(self, vector, k, sources=None, language=None):
        return []

    def chunks_by_id(self, ids):
        return {}

    def embeddings_for(self, ids, *, sentences=True):
        return {}


class RecordingLexical(LexicalIndex):
    def __init__(self):
        super().__init__()
        self.queries: list[str] = []

    def search(self, query, k, sources=None, language=None):
        self.queries.append(query)
        return []


def test_the_retriever_embeds_and_searches_only_the_bounded_sub_queries():
    embedded: list[str] = []
    lexical = RecordingLexical()

    def embed(text: str) -> list[float]:
        embedded.append(text)
        return [1.0, 0.0]

    question = " ".join(f"Question part {i} asks about the Zéphyr project launch." for i in range(5000))
    assert HybridRetriever(EmptyStore(), lambda: lexical, embed).retrieve(question, 5, language="en") == []
    assert embedded == lexical.queries == sub_queries(question)
    assert len(embedded) == MAX_SUB_QUERIES and all(len(q) <= MAX_QUERY_CHARS for q in embedded)


class VectorListStore(EmptyStore):
    """Chunks with given vectors, searched by cosine; each chunk is its own one sentence."""

    def __init__(self, chunks_and_vectors: list[tuple[Chunk, list[float]]]):
        self.items = [(chunk, np.asarray(v, dtype=np.float32) / np.linalg.norm(v)) for chunk, v in chunks_and_vectors]

    def _ranked(self, vector, k, language, sources):
        query = np.asarray(vector, dtype=np.float32)
        scored = [
            (float(np.dot(query, v)), c)
            for c, v in self.items
            if language in (None, c.language) and (sources is None or c.source in sources)
        ]
        return sorted(scored, key=lambda pair: pair[0], reverse=True)[:k]

    def search(self, vector, k, sources=None, language=None):
        return [ScoredChunk(chunk, score) for score, chunk in self._ranked(vector, k, language, sources)]

    def sentence_search(self, vector, k, sources=None, language=None):
        return [SentenceHit(c.id, 0, len(c.text), score) for score, c in self._ranked(vector, k, language, sources)]

    def chunks_by_id(self, ids):
        return {c.id: c for c, _ in self.items if c.id in ids}

    def embeddings_for(self, ids, *, sentences=True):
        return {c.id: ChunkVectors(v.tolist(), []) for c, v in self.items if c.id in ids}


def chunk(n: int, text: str) -> Chunk:
    return Chunk(source=f"doc{n}.txt", title="", text=text, start=0, end=len(text), index=0, language="fr")


# Seven passages close to the question in meaning (dense and sentence ranks 1-7, one sharing a word with it), and
# one that holds the question's rare words but is far from it in the vector space, as a quoted phrase often is.
NEAR = [chunk(n, f"Passage {n} sur la politique américaine et ses alliés européens.") for n in range(6)]
NEAR.append(chunk(6, "Le président américain et la coopération scientifique."))
QUOTED = chunk(9, "Après que le patron de la Maison Blanche a coupé les financements, la recherche a souffert.")
QUESTION = "Qui est « le patron de la Maison Blanche » ?"


def retriever_for(weights: FusionWeights, far: Chunk = QUOTED) -> HybridRetriever:
    vectors = [(c, [1.0, 0.02 * n]) for n, c in enumerate(NEAR)] + [(far, [0.0, 1.0])]
    store = VectorListStore(vectors)
    chunks = [c for c, _ in vectors]
    lexical = LexicalIndex.build([c.id for c in chunks], [c.source for c in chunks], [c.text for c in chunks])
    return HybridRetriever(store, lambda: lexical, lambda text: [1.0, 0.0], weights)


def test_a_decisive_word_match_keeps_a_place_that_rank_fusion_alone_gives_away():
    # The two best passages of the near ones come first and second in two lists each; the quoted one is first in
    # BM25's and last in the dense list.
    fusion_only = retriever_for(FusionWeights(candidates=5, decisive_lexical_ratio=None)).retrieve(QUESTION, 2)
    assert QUOTED.id not in [p.chunk_id for p in fusion_only]  # the case the place is for
    kept = retriever_for(FusionWeights(candidates=5)).retrieve(QUESTION, 2)
    assert QUOTED.id in [p.chunk_id for p in kept] and len(kept) == 2


def test_a_word_match_only_a_little_ahead_of_the_next_gets_no_place():
    near_tie = chunk(9, "Le président américain a parlé de coopération.")  # as NEAR[6] does
    question = "Le président américain et la coopération ?"
    passages = retriever_for(FusionWeights(candidates=5), far=near_tie).retrieve(question, 5)
    assert near_tie.id not in [p.chunk_id for p in passages]


# Seven passages of a paper close to the question in meaning, and the encyclopedia page the question names, far from
# it in the vector space and found only by a word of its file name, which BM25 reads as every other word.
PAPER = [chunk(n, f"Section {n} : la distillation transmet le raisonnement du grand modèle.") for n in range(7)]
PAGE = Chunk(
    source="wikipedia_distillation_des_connaissances.md", title="", text="Hinton et al. l'ont formulée en 2015.",
    start=0, end=37, index=0, language="fr",
)  # fmt: skip


def named_retriever(weights: FusionWeights) -> HybridRetriever:
    items = [(c, [1.0, 0.02 * n]) for n, c in enumerate(PAPER)] + [(PAGE, [0.0, 1.0])]
    chunks = [c for c, _ in items]
    lexical = LexicalIndex.build([c.id for c in chunks], [c.source for c in chunks], [c.search_text for c in chunks])
    return HybridRetriever(VectorListStore(items), lambda: lexical, lambda text: [1.0, 0.0], weights)


def test_the_document_a_question_names_keeps_a_place_for_its_best_passage():
    question = "D'après Wikipédia, qui a formulé la distillation ?"
    without = FusionWeights(candidates=5, decisive_lexical_ratio=None, named_places=False)
    assert PAGE.id not in [p.chunk_id for p in named_retriever(without).retrieve(question, 2)]  # the case it is for
    passages = named_retriever(replace(without, named_places=True)).retrieve(question, 2)
    assert PAGE.id in [p.chunk_id for p in passages] and len(passages) == 2
    # a question naming no document is ranked as before
    plain = "Qui a formulé la distillation ?"
    assert named_retriever(replace(without, named_places=True)).retrieve(plain, 5) == named_retriever(without).retrieve(
        plain, 5
    )


# Two reports adopting the same architectures: the older release's reads closer to the question, and the one the
# question names says so only in its file name, as a README's passages do.
OLDER_RELEASE = Chunk(
    source="deepseek_v2_report.pdf", title="", text="The model adopts MLA and DeepSeekMoE for efficient inference.",
    start=0, end=61, index=0, language="en",
)  # fmt: skip
NAMED_RELEASE = Chunk(
    source="deepseek_v3_readme.md", title="", text="It adopts Multi-head Latent Attention and DeepSeekMoE.",
    start=0, end=54, index=0, language="en",
)  # fmt: skip


def releases_retriever(weights: FusionWeights) -> HybridRetriever:
    items = [(OLDER_RELEASE, [1.0, 0.0]), (NAMED_RELEASE, [0.9, 0.1])]
    chunks = [c for c, _ in items]
    lexical = LexicalIndex.build([c.id for c in chunks], [c.source for c in chunks], [c.text for c in chunks],
                                 [c.language for c in chunks])  # fmt: skip
    return HybridRetriever(VectorListStore(items), lambda: lexical, lambda text: [1.0, 0.0], weights)


def test_the_passages_that_state_the_question_s_versioned_name_come_first():
    def order(question: str, weights: FusionWeights) -> list[str]:
        return [p.chunk_id for p in releases_retriever(weights).retrieve(question, 2, language="en")]

    question = "Which two architectures does DeepSeek-V3 adopt?"
    assert versioned_names(question) == {"v3"}
    assert order(question, FusionWeights(versions_first=False)) == [OLDER_RELEASE.id, NAMED_RELEASE.id]  # the case
    assert order(question, FusionWeights()) == [NAMED_RELEASE.id, OLDER_RELEASE.id]
    # a question naming no release, or of two sentences (its parts may name different things), ranks as before
    for unchanged in ("Which two architectures does DeepSeek adopt?", "V2 was first. Which does DeepSeek-V3 adopt?"):
        assert order(unchanged, FusionWeights()) == order(unchanged, FusionWeights(versions_first=False))


def test_a_versioned_name_is_read_in_its_most_specific_form():
    assert versioned_names("In the DeepSeek-R1 paper, what does DeepSeek-R1-Zero reach?") == {"r1-zero"}
    assert versioned_names("Compare V2 and V3 on the H800.") == {"v2", "v3", "h800"}
    assert versioned_names("Does OpenAI beat DeepSeek under Article 49?") == set()


# A question asked in English and its French translation, each with its own vector; the answer is in French.
ASKED, TRANSLATED = "Who cut the Zéphyr budget?", "Qui a coupé le budget de Zéphyr ?"


def _chunk(source: str, text: str, language: str) -> Chunk:
    return Chunk(source=source, title="", text=text, start=0, end=len(text), index=0, language=language)


ENGLISH = _chunk("en.txt", "The Zéphyr project links the libraries of Lyon.", "en")
FRENCH = _chunk("fr.txt", "Le budget du projet Zéphyr a été coupé en mars.", "fr")
WORDY = _chunk("fr2.txt", "Zéphyr : budget coupé, budget coupé.", "fr")  # the question's words, not its meaning


def translated_retriever(weights: FusionWeights) -> HybridRetriever:
    items = [(ENGLISH, [0.6, 0.0, 0.8]), (FRENCH, [0.1, 1.0, 0.0]), (WORDY, [0.0, 0.3, 1.0])]
    chunks = [c for c, _ in items]
    lexical = LexicalIndex.build([c.id for c in chunks], [c.source for c in chunks], [c.text for c in chunks],
                                 [c.language for c in chunks])  # fmt: skip
    query_vectors = {ASKED: [1.0, 0.0, 0.0], TRANSLATED: [0.0, 1.0, 0.0]}
    return HybridRetriever(VectorListStore(items), lambda: lexical, query_vectors.__getitem__, weights)


def test_with_a_translation_the_answer_in_the_other_language_is_ranked_by_its_own_language_similarity():
    retriever = translated_retriever(FusionWeights())
    as_asked = retriever.retrieve(ASKED, 1, language="en")
    translated = retriever.retrieve(ASKED, 1, language="en", translations={"fr": TRANSLATED})
    assert as_asked[0].chunk_id == ENGLISH.id  # the answer is far from the English question's vector
    assert translated[0].chunk_id == FRENCH.id and translated[0].similarity > 0.99


def test_with_a_translation_a_word_match_counts_only_in_the_query_s_own_language():
    retriever = translated_retriever(FusionWeights(candidates=1))
    k = retriever.weights.rrf_k
    searches = [(ASKED, "en", np.asarray([1.0, 0.0, 0.0])), (TRANSLATED, "fr", np.asarray([0.0, 1.0, 0.0]))]
    for text, language, _ in searches:  # each query's one BM25 hit: the French chunk that repeats its words
        assert [h.chunk_id for h in retriever.lexical().search(text, 1, None, language)] == [WORDY.id]
    found = retriever._own_language_candidates(searches, None)  # type: ignore[arg-type]
    # One dense and one sentence list over both languages; the English query's word match, in French, counts
    # nothing, the French query's counts.
    assert (found[FRENCH.id].dense_rank, found[ENGLISH.id].dense_rank) == (1, 2)
    assert (found[FRENCH.id].fused, found[ENGLISH.id].fused) == (2 / (k + 1), 2 / (k + 2))
    # Found by words only: its similarity to the question in its language comes from its stored vector, and the
    # dense list ranks it by that similarity too, after the two chunks the dense searches found.
    wordy = found[WORDY.id]
    assert wordy.similarity == pytest.approx(0.3 / 1.09**0.5, abs=1e-6)
    assert wordy.dense_rank == 3 and wordy.sentence_rank is None and wordy.fused == 1 / (k + 3) + 1 / (k + 1)


class SentenceVectorStore(VectorListStore):
    """Chunks with a vector for their whole text and another for their one sentence."""

    def __init__(self, chunks_and_vectors: list[tuple[Chunk, list[float], list[float]]]):
        super().__init__([(c, whole) for c, whole, _ in chunks_and_vectors])
        self.sentences = VectorListStore([(c, sentence) for c, _, sentence in chunks_and_vectors])

    def sentence_search(self, vector, k, sources=None, language=None):
        return self.sentences.sentence_search(vector, k, sources, language)


def test_a_chunk_below_the_dense_search_s_depth_keeps_its_dense_vote():
    """The dense search returns its first `candidates`; a chunk that the sentence search puts first but whose whole
    text ranks just below that depth got no dense vote at all, and lost to one that both lists put second and
    third. Every candidate's similarity is known, so each gets the rank it has (`rag.retrieval` docstring)."""
    a, b, d, target = (chunk(n, f"Texte {name} sans rapport.") for n, name in enumerate("ABDT"))
    store = SentenceVectorStore(
        [
            (a, [1.0, 0.05], [1.0, 0.05]),  # dense 1st, sentence 2nd
            (b, [1.0, 0.10], [1.0, 0.10]),  # dense 2nd, sentence 3rd
            (d, [1.0, 0.15], [1.0, 0.90]),  # dense 3rd, no sentence rank
            (target, [1.0, 0.30], [1.0, 0.0]),  # dense 4th (below the depth of 3), sentence 1st
        ]
    )
    chunks = [a, b, d, target]
    lexical = LexicalIndex.build([c.id for c in chunks], [c.source for c in chunks], [c.text for c in chunks])
    weights = FusionWeights(candidates=3, decisive_lexical_ratio=None)
    for translations in ({}, {"en": "Question?"}):  # as asked, and searched in each language's own words
        for ranks_all, expected in ((False, [a.id, b.id]), (True, [a.id, target.id])):  # the case, then the fix
            retriever = HybridRetriever(
                store, lambda: lexical, lambda text: [1.0, 0.0], replace(weights, dense_ranks_all=ranks_all)
            )
            found = retriever.retrieve("Question ?", 2, language="fr", translations=translations)
            assert [p.chunk_id for p in found] == expected, (translations, ranks_all)


_TIES = """
import sys
sys.path.insert(0, "tests/unit")
from test_retrieval import VectorListStore, chunk
from rag.lexical import LexicalIndex
from rag.retrieval import FusionWeights, HybridRetriever

chunks = [chunk(n, f"Texte numéro {n} sans rapport.") for n in range(12)]
store = VectorListStore([(c, [1.0, 0.0]) for c in chunks])  # every passage exactly as similar as the next
lexical = LexicalIndex.build([c.id for c in chunks], [c.source for c in chunks], [c.text for c in chunks])
retriever = HybridRetriever(store, lambda: lexical, lambda text: [1.0, 0.0], FusionWeights(candidates=12))
found = retriever.retrieve("Question ?", 5, language="en", translations={"fr": "Question ?"})
print(",".join(p.chunk_id for p in found))
"""


def test_equal_similarities_rank_the_same_on_every_run() -> None:
    """Ties (the same text in two files) once ranked in the order of a set of ids, which Python's per-process
    string hashing reshuffles: two runs of one question could cite different passages."""
    import os
    import subprocess
    import sys

    runs = [
        subprocess.run(
            [sys.executable, "-c", _TIES],
            env=dict(os.environ, PYTHONHASHSEED=str(seed)),
            cwd=Path(__file__).resolve().parents[2],  # the script imports from tests/unit
            capture_output=True,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    orders = {run.stdout for run in runs}
    assert len(orders) == 1 and orders.pop().count(",") == 4
