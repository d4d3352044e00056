"""What retrieval makes of a question: sub-queries, de-duplicated, few, and bounded in length (no model)."""

from __future__ import annotations

import time

from rag.lexical import LexicalIndex
from rag.retrieval import MAX_QUERY_CHARS, MAX_SUB_QUERIES, HybridRetriever, sub_queries


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
        super().__init__([], [], None, fingerprint="")
        self.queries: list[str] = []

    def search(self, query, k, sources=None):
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
