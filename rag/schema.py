"""The answer structure every front end receives (CLI --json, HTTP API, OpenAI extension, UI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Passage(BaseModel):
    """A retrieved passage as given to the generator, numbered from 1 in prompt order."""

    n: int
    chunk_id: str
    source: str
    title: str
    page: int | None = None
    heading_path: str = ""
    start: int
    end: int
    text: str
    score: float = Field(description="Fused retrieval score (higher is better).")
    similarity: float = Field(0.0, description="Cosine similarity of the passage to the question.")
    language: str = Field("", description="'fr' or 'en', detected when the passage was indexed.")
    chunk_ids: list[str] = Field(
        default_factory=list, description="The indexed chunks this passage was merged from (first is chunk_id)."
    )


class Support(BaseModel):
    """How well a citation's quote carries the sentence it is cited for."""

    verdict: Literal["supported", "partly", "differs"] = Field(
        "supported",
        description="'partly': the quote backs the sentence, but a figure of the sentence is not in it; "
        "'differs': another document's quote that says otherwise (the answer says the sources differ).",
    )
    score: float = Field(0.0, description="The similarity stage's score of the sentence against the quote (0-1).")
    missing: list[str] = Field(default_factory=list, description="For 'partly': what the quote does not state.")
    reason: str = Field("", description="For 'differs': what this source says differently.")


class Citation(BaseModel):
    """One `[n]` of the answer: the passage it points at and the sentence in it that supports the claim."""

    n: int = Field(description="The marker number as it appears in the answer text, 1..m by first appearance.")
    source: str
    title: str
    page: int | None = None
    chunk_id: str
    start: int = Field(description="Offset of the passage in its document's extracted text.")
    end: int
    text: str = Field(description="The passage text (document text [start:end]).")
    quote: str = Field(description="The supporting sentence of the passage.")
    quote_start: int = Field(description="Offset of the quote in the document's extracted text.")
    quote_end: int
    support: Support = Field(default_factory=Support, description="The verifier's verdict for the sentence cited.")


class UnsupportedSentence(BaseModel):
    """An answer sentence the verifier did not let through, and why."""

    text: str
    verdict: Literal["not_supported", "contradicted"] = "not_supported"
    reason: str = Field("", description="What the verifier saw, for a reader (empty: no passage says it).")


class Timings(BaseModel):
    translate: float = Field(0.0, description="Translating the question for cross-language retrieval (0: not done).")
    retrieve: float = 0.0
    generate: float = Field(0.0, description="From the start of generation to the end of the answer (verify included).")
    verify: float = Field(0.0, description="Checking the answer's sentences against the passages.")
    total: float = 0.0


class Answer(BaseModel):
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    unsupported: list[UnsupportedSentence] = Field(
        default_factory=list,
        description="Answer sentences no retrieved passage supports or that a passage contradicts, with the "
        "verdict and reason (withheld from `answer` unless RAG_DROP_UNSUPPORTED=false).",
    )
    passages: list[Passage] = Field(default_factory=list)
    refused: bool = Field(False, description="True when the documents do not hold the answer.")
    language: Literal["fr", "en"] = "en"
    generator: str = Field("", description="The generator that produced the answer.")
    fallback_reason: str | None = Field(
        None, description="Why the configured generator was replaced (e.g. the local model is missing)."
    )
    standalone_question: str | None = Field(
        None, description="The question as rewritten from the conversation, when it leaned on it."
    )
    timings_ms: Timings = Field(default_factory=Timings)


class StreamEvent(BaseModel):
    """Streaming protocol: `token` events carry text to append (an empty one marks the start of generation;
    whole sentences once verified, unless `RAG_DROP_UNSUPPORTED=false`); `citations` follow a finished sentence;
    exactly one `final` event ends the stream with the whole structure. The concatenated token texts equal
    `final.answer.answer`."""

    type: Literal["token", "citations", "final"]
    text: str = ""
    citations: list[Citation] = Field(default_factory=list)
    answer: Answer | None = None
