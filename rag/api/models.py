"""The request and response bodies of the API, as the OpenAPI schema shows them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from rag.schema import Answer, Citation, GeneratorState, IndexState, RefreshReport, StartupStep
from rag.settings import GeneratorName


# --- errors ------------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, for a person.")
    type: str = Field(description="A stable category, e.g. invalid_request_error, authentication_error.")
    status: int = Field(description="The HTTP status, repeated.")
    param: str | None = Field(None, description="The request field at fault, when one is (OpenAI style).")
    code: str | None = Field(None, description="A machine-readable code, e.g. model_not_found.")
    details: list[dict[str, Any]] | None = Field(None, description="Validation errors: location and message.")


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint; it is also OpenAI's, so OpenAI clients read the message."""

    error: ErrorDetail


# --- questions ---------------------------------------------------------------------------------------
def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Request models are strict ("k": "3" or "rebuild": 0 is a client bug), but 3.0 is an integer in JSON.
PassageCount = Annotated[
    int,
    BeforeValidator(_integral),
    Field(ge=1, le=50),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 50}),  # pydantic would write "ge"/"le" here
]


class ChatTurn(BaseModel):
    model_config = ConfigDict(strict=True)
    role: Literal["user", "assistant"]
    content: str = Field(max_length=20_000)


class AskFilters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    sources: list[str] | None = Field(
        None, max_length=200, description="Only search these documents (their `source` as listed)."
    )


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "k": "3" is a client bug, not a 3
    question: str = Field(
        min_length=1,
        pattern=r"\S",
        description="At most RAG_MAX_QUESTION_CHARS characters (default 4,000): longer ones get a 413.",
        examples=["Qui a fondé DeepSeek ?"],
    )
    history: list[ChatTurn] = Field(default_factory=list, max_length=50, description="Earlier turns, oldest first.")
    k: PassageCount | None = Field(None, description="Passages to retrieve (default RAG_K).")
    filters: AskFilters | None = None
    generator: GeneratorName | None = Field(None, description="Default: the configured generator.")


class TokenEventData(BaseModel):
    """`event: token` of /v1/ask/stream: text to append to the answer."""

    text: str


class CitationsEventData(BaseModel):
    """`event: citations` of /v1/ask/stream: the citations of the sentence just finished."""

    citations: list[Citation]


# --- OpenAI compatible -----------------------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class RagOptions(BaseModel):
    """Extension of the chat completions request (`extra_body={"rag": {...}}` with the openai client)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    k: PassageCount | None = None
    sources: list[str] | None = Field(None, max_length=200)


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; sampling options (temperature, max_tokens...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str | None = Field(None, description="local, extractive, openai, ollama, or rag (the configured one).")
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    rag: RagOptions | None = None


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    citations: list[Citation] = Field(description="Extension: the `[n]` markers of `content`.")


class ChatCompletionChoice(BaseModel):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    rag: Answer = Field(description="Extension: the whole answer structure (passages, timings...).")


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    citations: list[Citation] | None = Field(None, description="Extension, on the last chunk only.")


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop"] | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` line of a streamed chat completion; the stream ends with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    rag: Answer | None = Field(None, description="Extension, on the last chunk only: the whole answer.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- documents and index -----------------------------------------------------------------------------------
class DocumentInfo(BaseModel):
    source: str = Field(description="Path relative to the folder it was indexed from; the id of the document.")
    title: str
    kind: str
    chunks: int
    size: int = Field(description="Bytes.")
    indexed_at: str


class SkippedFile(BaseModel):
    path: str
    reason: str


class FileNote(BaseModel):
    path: str
    note: str = Field(description="A caveat on a file that was indexed (an OCR page read with low confidence).")


class RefreshResult(BaseModel):
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: list[SkippedFile] = Field(default_factory=list)
    notes: list[FileNote] = Field(default_factory=list)
    documents: int = Field(0, description="Documents in the index afterwards.")
    chunks: int = Field(0, description="Chunks in the index afterwards.")

    @classmethod
    def from_report(cls, report: RefreshReport, corpus_dir: Path) -> RefreshResult:
        """The service's report, with server paths shown relative to the corpus folder."""
        corpus = corpus_dir.resolve()

        def shown(entry: dict[str, str]) -> dict[str, str]:
            path = Path(entry["path"])
            return entry | {"path": path.relative_to(corpus).as_posix() if path.is_relative_to(corpus) else path.name}

        skipped = [SkippedFile(**shown(entry)) for entry in report.skipped]
        notes = [FileNote(**shown(entry)) for entry in report.notes]
        return cls(**report.as_dict() | {"skipped": skipped, "notes": notes})


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    rebuild: bool = Field(False, description="Re-embed everything aside and swap it in on success.")


class UploadedFile(BaseModel):
    filename: str = Field(description="The name the client sent.")
    source: str | None = Field(None, description="The document id it was saved and indexed as.")
    outcome: Literal["added", "updated", "unchanged", "skipped"]
    reason: str | None = Field(None, description="Why it was skipped.")
    status: int | None = Field(None, description="The HTTP status this file alone would have had, if skipped.")
    notes: list[str] = Field(default_factory=list, description="Caveats on an indexed file (OCR confidence).")


class UploadResult(BaseModel):
    added: int
    updated: int
    unchanged: int
    skipped: list[UploadedFile] = Field(description="Files rejected or not indexable, with the reason.")
    files: list[UploadedFile] = Field(description="Every file, in the order sent.")
    documents: int
    chunks: int


class IndexActivity(BaseModel):
    """An indexing run started through this API process (startup, upload, delete or refresh)."""

    running: bool = False
    operation: str | None = None
    files_done: int = 0
    files_total: int = 0
    chunks_done: int = 0
    current: str | None = None
    started_at: float | None = None
    last_error: str | None = None


class IndexStatus(IndexState):
    """The service's `IndexState` as shown to clients: no server paths, and the indexing run in progress."""

    store: Literal["embedded", "server"] = Field(description="Chroma in the data folder, or a Chroma server.")
    corpus_dir: str = Field(description="The corpus folder's name (no server paths are shown).")
    activity: IndexActivity


# --- health ------------------------------------------------------------------------------------------------
class AnswerCounts(BaseModel):
    """Answers since the process started; `cancelled` counts those whose client left before the end."""

    started: int
    finished: int
    cancelled: int
    failed: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(GeneratorState):
    ready: bool
    starting: str | None = Field(None, description="What the startup task is doing, while it runs.")
    step: StartupStep = Field(default_factory=StartupStep, description="The same, typed (for a client's own words).")
    missing: list[str] = Field(default_factory=list)
    startup_error: str | None = Field(None, description="Why the startup task (warm-up, first index) failed.")
