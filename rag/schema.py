"""The answer structure every front end receives (CLI --json, HTTP API, OpenAI extension, UI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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

    @property
    def headings(self) -> list[str]:
        """Its heading titles, outermost first (`heading_path` joins them with " > ", as the index stores them)."""
        return self.heading_path.split(" > ") if self.heading_path else []


class Support(BaseModel):
    """How well a citation's quote carries the sentence it is cited for."""

    verdict: Literal["supported", "partly", "differs"] = Field(
        "supported",
        description="'partly': the quote backs the sentence, but a figure of the sentence is not in it; "
        "'differs': another document's quote that says otherwise (the answer says the sources differ).",
    )
    score: float = Field(0.0, description="The similarity stage's score of the sentence against the quote (0-1).")
    missing: list[str] = Field(default_factory=list, description="For 'partly': what the quote does not state.")
    reason: str = Field(
        "",
        description="For 'differs': what this source says differently; for the quote an answer's 'No' rests on "
        "(the model said yes, this passage says otherwise): how it says no.",
    )


class CitationBox(BaseModel):
    """Where a quote stands on a page of a PDF or an image: a rectangle per line of text it spans."""

    page: int = Field(description="1-based page (a PDF page, an image file's frame).")
    x0: float = Field(description="Left edge, in page units (PDF points; pixels for an image), from the left.")
    y0: float = Field(description="Top edge, in page units, from the top of the page.")
    x1: float
    y1: float
    page_width: float = Field(description="The page's width in the same units, to scale boxes onto a rendering.")
    page_height: float


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
    boxes: list[CitationBox] = Field(
        default_factory=list, description="Where the quote stands on its page (PDFs and images; else empty)."
    )


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


class IndexState(BaseModel):
    """What is indexed, and where (`RagService.status`)."""

    documents: int
    chunks: int
    lexical_chunks: int = Field(description="Chunks the BM25 index holds: equal to `chunks` when in step.")
    embedding_model: str
    dimension: int
    store: str = Field(description="The Chroma folder, or the Chroma server's URL.")
    collection: str
    corpus_dir: str
    last_indexed: str | None


class GeneratorState(BaseModel):
    """Whether the index and the configured generator are loaded (`RagService.readiness`)."""

    index: bool
    generator: bool
    generator_name: str
    fallback_reason: str | None = None


class StartupStep(BaseModel):
    """What the start-up task is doing, typed: each front end words it in its own language from `stage`."""

    stage: Literal["starting", "embeddings", "indexing", "index_busy", "index", "generator", "ready"] = "starting"
    done: int = Field(0, description="indexing: files done")
    total: int = Field(0, description="indexing: files to look at")
    current: str = Field("", description="indexing: the file being read")
    generator: str = Field("", description="generator: the one being loaded")


class StreamEvent(BaseModel):
    """Streaming protocol: `token` events carry text to append (an empty one marks the start of generation;
    whole sentences once verified, unless `RAG_DROP_UNSUPPORTED=false`); `citations` follow a finished sentence;
    exactly one `final` event ends the stream with the whole structure. The concatenated token texts equal
    `final.answer.answer`."""

    type: Literal["token", "citations", "final"]
    text: str = ""
    citations: list[Citation] = Field(default_factory=list)
    answer: Answer | None = None


# --- indexing results (dataclasses: they are built in hot loops and stored as Chroma metadata) ---
@dataclass
class Progress:
    """Reported after each file; front ends turn it into a bar or a status line."""

    files_done: int
    files_total: int
    chunks_done: int
    current: str


@dataclass
class RefreshReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)  # indexed, with a caveat: {"path", "note"}
    documents: int = 0
    chunks: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DocumentRecord:
    """What the index knows of one file: enough to skip it unchanged and to list it in the UI."""

    source: str
    root: str
    path: str
    content_hash: str
    size: int
    mtime_ns: int
    kind: str
    title: str
    chunks: int
    indexed_at: str
    pipeline: str = ""  # loader/chunker version and chunk settings: a change re-chunks (vectors are reused)

    def to_metadata(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> DocumentRecord:
        return cls(**{name: meta[name] for name in cls.__dataclass_fields__ if name in meta})


@dataclass
class UploadOutcome:
    """What became of one uploaded file: the name it is indexed under, the refresh's report, and its record once
    indexed. The API and the UI both report from this, so neither re-derives the saved name."""

    source: str
    report: RefreshReport
    record: DocumentRecord | None

    @property
    def outcome(self) -> str:
        """added, updated, unchanged, or skipped (the file could not be indexed and was not kept)."""
        report = self.report
        if report.skipped:
            return "skipped"
        return "added" if report.added else "updated" if report.updated else "unchanged"

    @property
    def reason(self) -> str | None:
        """Why it was skipped: the loader's words."""
        return "; ".join(s["reason"] for s in self.report.skipped) or None
