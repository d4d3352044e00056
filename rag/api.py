"""HTTP API for other apps: the service layer behind FastAPI, under `/v1`, described by its OpenAPI schema.

It holds no logic of its own beyond HTTP translation: every request goes through `RagService`. The index
and the generators run in worker threads, so the event loop never blocks and questions keep being answered
while an upload or a refresh indexes.

Endpoints (see docs/api.md for examples):

- `POST /v1/ask` → the `Answer` structure; `POST /v1/ask/stream` → Server-Sent Events: `token`
  (`{"text"}`), `citations` (`{"citations": [...]}`), one `final` (the whole `Answer`), or `error`.
- `POST /v1/chat/completions`: OpenAI Chat Completions, plain and streamed. `model` picks the generator
  (`local`, `extractive`, `openai`, `ollama`; `rag` or none: the configured one); the last user message
  is the question, earlier user/assistant messages the history; `extra_body={"rag": {"k", "sources"}}`
  tunes retrieval. Citations travel in extension fields that the official `openai` client keeps:
  `completion.choices[0].message.model_extra["citations"]` and `completion.model_extra["rag"]` (the whole
  `Answer`); when streaming, the last chunk before `data: [DONE]` carries
  `chunk.choices[0].delta.model_extra["citations"]` and `chunk.model_extra["rag"]`.
- `GET /v1/models`, `GET|POST /v1/documents`, `DELETE /v1/documents/{source}`, `POST /v1/index/refresh`,
  `GET /v1/index/status`, `GET /v1/metrics/answers`, `GET /healthz` (alive), `GET /readyz` (start-up done).

Security: with `RAG_API_KEY` set, write endpoints need `Authorization: Bearer <key>` (every endpoint but
`/healthz` and the schema with `RAG_API_KEY_FOR_READ=true`); the UI mounted at `/` holds its writes to the
same key (ui.app.mount_ui). Errors are always `{"error": {"message", "type", "status"}}`, never a stack
trace, on every `/v1` path, unknown ones included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from fastapi import Body, Depends, FastAPI, File, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.refresh import IndexBusyError, Progress, RefreshReport
from rag.schema import Answer, Citation, StreamEvent
from rag.service import DocumentError, RagService, RequestError, ServiceBusyError
from rag.settings import GeneratorName, Settings

log = logging.getLogger("rag.api")

API_VERSION = "1"
GENERATORS: tuple[str, ...] = ("local", "extractive", "openai", "ollama")
DEFAULT_MODEL_ALIASES = {"", "rag", "default"}
JSON_BODY_LIMIT = 1024 * 1024  # questions, conversations, options: far below this
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the uploaded files
UNKNOWN_API_ROUTE = "unknown_v1"  # the catch-all giving unknown /v1 paths our error shape
UI_UPLOAD_PATH = "/gradio_api/upload"  # where the UI's file input sends files before its handler indexes them
UI_FILES_PER_UPLOAD = 10  # files the UI's browser client may send in one request (each within the file limit)
_DRAIN_LIMIT = 8 * 1024 * 1024  # read at most this much of a refused body, so the client sees the 413


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


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
}

_ERROR_DESCRIPTIONS = {
    400: "Invalid request (e.g. a bad file name, no user message).",
    401: "Missing or wrong API key (`Authorization: Bearer <RAG_API_KEY>`).",
    403: "Not enabled on this server (e.g. a generator outside RAG_GENERATORS_ALLOWED).",
    404: "Not found.",
    409: "Conflict: another indexer is running, or a different document has that name.",
    413: "Request body, uploaded file or question too large.",
    415: "Unsupported file type.",
    422: "The request does not match the schema, or an uploaded file could not be indexed.",
    502: "The LLM server behind the generator could not be reached.",
    503: "Busy or not ready; retry after `Retry-After` seconds when the header is present.",
}


class ApiError(Exception):
    """An HTTP error with the message the client sees."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    detail = ErrorDetail(message=message, type=_ERROR_TYPES.get(status, "error"), status=status, **extra)
    return {"error": detail.model_dump(exclude_none=True)}


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(status, message, **extra), status_code=status, headers=headers)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error responses a route can give."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[status]}
        if status == 503:
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
            }
        documented[status] = entry
    return documented


def _upstream_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean an LLM server (OpenAI-compatible, Ollama) is unreachable: a 502, not a 500."""
    found: list[type[BaseException]] = [ConnectionError]
    try:
        import httpx

        found.append(httpx.TransportError)
    except ImportError:  # pragma: no cover - httpx is a dependency
        pass
    try:
        import openai

        found.append(openai.APIConnectionError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


UPSTREAM_ERRORS = _upstream_errors()


def _error_for(error: BaseException) -> tuple[int, str, dict[str, str] | None]:
    """Status, message and headers for an exception raised by the service."""
    if isinstance(error, ApiError):
        return error.status, error.message, error.headers
    if isinstance(error, ServiceBusyError):
        return 503, str(error), {"Retry-After": str(error.retry_after)}
    if isinstance(error, RequestError):
        return error.status, str(error), None
    if isinstance(error, IndexBusyError):
        return 409, str(error), None
    if isinstance(error, UPSTREAM_ERRORS):
        return 502, "The LLM server behind the generator could not be reached; try again or use another model.", None
    return 500, "Internal server error.", None


# --- request and response models ------------------------------------------------------------------------
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


class RefreshResult(BaseModel):
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: list[SkippedFile] = Field(default_factory=list)
    documents: int = Field(0, description="Documents in the index afterwards.")
    chunks: int = Field(0, description="Chunks in the index afterwards.")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    rebuild: bool = Field(False, description="Re-embed everything aside and swap it in on success.")


class UploadedFile(BaseModel):
    filename: str = Field(description="The name the client sent.")
    source: str | None = Field(None, description="The document id it was saved and indexed as.")
    outcome: Literal["added", "updated", "unchanged", "skipped"]
    reason: str | None = Field(None, description="Why it was skipped.")
    status: int | None = Field(None, description="The HTTP status this file alone would have had, if skipped.")


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


class IndexStatus(BaseModel):
    documents: int
    chunks: int
    lexical_chunks: int
    embedding_model: str
    dimension: int
    store: Literal["embedded", "server"] = Field(description="Chroma in the data folder, or a Chroma server.")
    collection: str
    corpus_dir: str = Field(description="The corpus folder's name (no server paths are shown).")
    last_indexed: str | None
    activity: IndexActivity


class AnswerCounts(BaseModel):
    """Answers since the process started; `cancelled` counts those whose client left before the end."""

    started: int
    finished: int
    cancelled: int
    failed: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    index: bool
    generator: bool
    generator_name: str
    fallback_reason: str | None = None
    starting: str | None = Field(None, description="What the startup task is doing, while it runs.")
    missing: list[str] = Field(default_factory=list)
    startup_error: str | None = Field(None, description="Why the startup task (warm-up, first index) failed.")


# --- auth --------------------------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="RAG_API_KEY", scheme_name="ApiKey")


def _auth(service: RagService) -> Callable[..., None]:
    """A dependency checking the bearer token with the service's key check (only attached when a key is set)."""

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if not (credentials and service.check_key(credentials.credentials)):
            raise ApiError(
                401,
                "Missing or invalid API key: send 'Authorization: Bearer <key>'.",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


# --- request body limits -------------------------------------------------------------------------------------
class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"Request body too large (limit {limit} bytes).")


class BodyLimitMiddleware:
    """Refuses a declared Content-Length above the path's limit at once, and counts the bytes of bodies
    sent without one, so no request can make the server buffer more than the limit."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _drain(receive)
            await error_response(413, str(_BodyTooLarge(limit).detail))(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body"):
                        await _drain(receive)
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as error:  # raised where no handler turned it into a response
            if started:
                raise
            await error_response(413, str(error.detail))(scope, receive, send)


class CatchAllMiddleware:
    """Any unexpected exception becomes a bare JSON 500, logged with its traceback. Handled here rather than
    by Starlette's outermost handler, which re-raises: uvicorn would then drop the keep-alive connection and
    the client's next request on it would fail."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=error)
            if started:
                raise
            await error_response(500, "Internal server error.")(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Receive) -> None:
    """Read (and drop) what the client is still sending, up to a bound, so it gets to read our 413."""
    drained = 0
    while drained < _DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body"):
            return


# --- streaming a sync iterator from worker threads -----------------------------------------------------------
_END = object()


class _ThreadedStream:
    """Steps a blocking iterator in worker threads, one step at a time, and always closes it, so a client
    that goes away mid-answer releases its place in the generation queue."""

    def __init__(self, iterator: Iterator[StreamEvent], cancel: threading.Event):
        self._iterator = iterator
        self._cancel = cancel
        self._lock = threading.Lock()

    def _step(self) -> Any:
        with self._lock:
            return next(self._iterator, _END)

    async def next(self) -> Any:
        try:
            # Abandoned, not awaited, when the request is cancelled (an SSE client that left): a step can run as
            # long as the whole answer while sentences fail verification, and `close_soon` ends it at its next token.
            return await anyio.to_thread.run_sync(self._step, abandon_on_cancel=True)
        except BaseException:
            self.close_soon()
            raise

    def _close(self) -> None:
        with self._lock:  # waits for a step still running in its thread
            close = getattr(self._iterator, "close", None)
            if close:
                close()

    def close_soon(self) -> None:
        """Stop the work: a step still running ends at its next token (`cancel`), then the iterator closes."""
        self._cancel.set()
        threading.Thread(target=self._close, name="rag-stream-close", daemon=True).start()


async def _start_stream(service: RagService, question: str, **options: Any) -> tuple[StreamEvent, _ThreadedStream]:
    """The first event, before any byte is sent: a full queue or a bad request still gets its status."""
    cancel = threading.Event()
    stream = _ThreadedStream(service.ask_stream(question, cancel=cancel, **options), cancel)
    first = await stream.next()
    if first is _END:  # the chain always ends with a final event; this would be a bug
        raise RuntimeError("the answer stream ended without a final event")
    return first, stream


def _json_data(*models: str) -> dict[str, Any]:
    """An SSE `data` field holding JSON of one of `models` (OpenAPI 3.1 `contentSchema`)."""
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in models]
    return {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": refs[0] if len(refs) == 1 else {"anyOf": refs},
    }


def _named_event(name: str, model: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {"event": {"const": name}, "data": _json_data(model)},
    }


# Each event of a stream, as schemathesis and OpenAPI 3.1 tools read a text/event-stream schema.
ASK_STREAM_EVENT = {
    "oneOf": [
        _named_event("token", "TokenEventData"),
        _named_event("citations", "CitationsEventData"),
        _named_event("final", "Answer"),
        _named_event("error", "ErrorResponse"),
    ]
}
CHAT_STREAM_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"anyOf": [{"const": "[DONE]"}, _json_data("ChatCompletionChunk", "ErrorResponse")]}},
}
STREAM_MODELS: tuple[type[BaseModel], ...] = (TokenEventData, CitationsEventData, ChatCompletionChunk, ErrorResponse)


def _sse(payload: BaseModel | dict[str, Any], event: str | None = None) -> ServerSentEvent:
    data = payload.model_dump_json(exclude_none=True) if isinstance(payload, BaseModel) else json.dumps(payload)
    return ServerSentEvent(data=data, event=event, sep="\n")


def _stream_failure(error: BaseException, where: str) -> dict[str, Any]:
    status, message, _ = _error_for(error)
    if status >= 500:
        log.error("%s failed mid-stream", where, exc_info=error)
    return error_body(status, message)


Done = TypeVar("Done")  # what an indexing run returns (a refresh report, an upload's outcome)


# --- the app state: startup task and indexing activity --------------------------------------------------------
class _AppState:
    """What only the HTTP process knows: the indexing runs it started (start-up belongs to the service)."""

    def __init__(self, service: RagService):
        self.service = service
        self.activity = IndexActivity()
        self._activity_lock = threading.Lock()

    def indexing(self, operation: str, run: Callable[[Callable[[Progress], None]], Done]) -> Done:
        """Run an indexing call, recording its progress for GET /v1/index/status."""

        activity = IndexActivity(running=True, operation=operation, started_at=time.time())

        def progress(step: Progress) -> None:
            activity.files_done, activity.files_total = step.files_done, step.files_total
            activity.chunks_done, activity.current = step.chunks_done, FilePath(step.current).name

        with self._activity_lock:
            if not self.activity.running:  # a run refused as busy does not hide the one in progress
                self.activity = activity
        try:
            return run(progress)
        except Exception as error:
            # Shown to readers: the kind of failure, never a server path.
            activity.last_error = "another indexer is running" if isinstance(error, IndexBusyError) else "failed"
            raise
        finally:
            activity.running = False
            activity.current = None


# --- the app --------------------------------------------------------------------------------------------------
def create_app(
    service: RagService,
    *,
    with_ui: bool = True,
    index_on_start: bool = True,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """The HTTP API over `service`; the Gradio UI (ui.app.build_ui) is mounted at `/` when it exists."""
    settings = service.settings
    state = _AppState(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading models takes a while: /healthz answers at once, /readyz turns 200 when done.
        service.startup.start(reconcile=index_on_start)
        yield

    app = FastAPI(
        title="rag-cite API",
        version=API_VERSION,
        description=(__doc__ or "").split("\n\n")[0],
        lifespan=lifespan,
    )
    app.state.rag = state

    write_deps = [Depends(_auth(service))] if settings.api_key else []
    read_deps = write_deps if settings.api_key_for_read else []

    def limit_for(path: str) -> int:
        if path.rstrip("/") == "/v1/documents":
            return settings.max_upload_bytes + MULTIPART_OVERHEAD
        if path.rstrip("/") == UI_UPLOAD_PATH:  # each file is held to the same limit by the UI (ui.app.mount_ui)
            return settings.max_upload_bytes * UI_FILES_PER_UPLOAD + MULTIPART_OVERHEAD
        return JSON_BODY_LIMIT

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"], allow_headers=["Authorization", "*"]
        )
    app.add_middleware(CatchAllMiddleware)  # added last: the outermost of ours
    _add_error_handlers(app)

    # --- health ---------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"], response_model=Health, summary="The process is alive")
    async def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        dependencies=read_deps,
        summary="The index and the generator are loaded",
        responses={503: {"model": Readiness, "description": "Not ready yet: `missing` says what is loading."}}
        | _errors(401),
    )
    async def readyz() -> JSONResponse:
        found = service.readiness()
        startup = service.startup
        missing = [name for name in ("index", "generator") if not found[name]]
        starting = startup.describe() if startup.running else None
        if starting:
            missing.append(starting)
        ready = not missing  # a failed start-up is reported, but the index that exists still answers
        body = Readiness(ready=ready, missing=missing, starting=starting, startup_error=startup.error, **found)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    # --- questions -------------------------------------------------------------------------------------
    @app.post(
        "/v1/ask",
        tags=["questions"],
        response_model=Answer,
        dependencies=read_deps,
        summary="Answer a question from the documents, with citations",
        responses=_errors(400, 401, 403, 413, 422, 502, 503),
    )
    async def ask(request: AskRequest, http: Request) -> Answer:
        first, stream = await _start_stream(service, request.question, **_ask_options(request))
        return await _drain_answer(first, stream, http)

    @app.post(
        "/v1/ask/stream",
        tags=["questions"],
        dependencies=read_deps,
        summary="Answer a question as Server-Sent Events",
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": (
                    "`text/event-stream`: `event: token` (data: TokenEventData) for text to append, "
                    "`event: citations` (data: CitationsEventData) after each cited sentence, then one "
                    "`event: final` (data: Answer, citations numbered as in the text); `event: error` "
                    "(data: ErrorResponse) if it fails midway. The token texts add up to the final answer."
                ),
                "content": {"text/event-stream": {"schema": ASK_STREAM_EVENT}},
            }
        }
        | _errors(400, 401, 403, 413, 422, 502, 503),
    )
    async def ask_stream(request: AskRequest) -> EventSourceResponse:
        first, stream = await _start_stream(service, request.question, **_ask_options(request))

        async def events() -> AsyncIterator[ServerSentEvent]:
            event = first
            try:
                while event is not _END:
                    if event.type == "token" and event.text:  # the empty one only marks the start of generation
                        yield _sse(TokenEventData(text=event.text), "token")
                    elif event.type == "citations":
                        yield _sse(CitationsEventData(citations=event.citations), "citations")
                    elif event.answer is not None:
                        yield _sse(event.answer, "final")
                    event = await stream.next()
            except Exception as error:
                yield _sse(_stream_failure(error, "/v1/ask/stream"), "error")
            finally:
                stream.close_soon()

        return EventSourceResponse(events(), ping=15, sep="\n")

    # --- OpenAI compatible --------------------------------------------------------------------------------
    @app.get("/v1/models", tags=["openai"], response_model=ModelList, dependencies=read_deps, responses=_errors(401))
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=name) for name in ("rag", *settings.allowed_generators)])

    @app.post(
        "/v1/chat/completions",
        tags=["openai"],
        response_model=ChatCompletion,
        dependencies=read_deps,
        summary="OpenAI Chat Completions (plain or `stream: true`), with citations in extension fields",
        responses={
            200: {
                "description": (
                    "A chat.completion, or with `stream: true` a `text/event-stream` of `data: "
                    "<ChatCompletionChunk>` lines ending with `data: [DONE]`; the last chunk carries "
                    "`choices[0].delta.citations` and `rag` (the whole Answer)."
                ),
                "content": {"text/event-stream": {"schema": CHAT_STREAM_EVENT}},
            }
        }
        | _errors(400, 401, 403, 404, 413, 422, 502, 503),
    )
    async def chat_completions(request: ChatCompletionRequest, http: Request) -> Any:
        generator = _resolve_model(request.model, settings.generator)
        question, history = _conversation(request.messages)
        options = request.rag or RagOptions()
        first, stream = await _start_stream(
            service, question, history=history, k=options.k, sources=options.sources or None, generator=generator
        )
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not request.stream:
            answer = await _drain_answer(first, stream, http)
            message = ChatCompletionMessage(content=answer.answer, citations=answer.citations)
            return ChatCompletion(
                id=completion_id,
                created=created,
                model=answer.generator or generator,
                choices=[ChatCompletionChoice(message=message)],
                rag=answer,
            )

        def chunk(delta: ChunkDelta, finish: bool = False, answer: Answer | None = None) -> ServerSentEvent:
            choice = ChunkChoice(delta=delta, finish_reason="stop" if finish else None)
            body = ChatCompletionChunk(id=completion_id, created=created, model=generator, choices=[choice], rag=answer)
            return _sse(body)

        async def chunks() -> AsyncIterator[ServerSentEvent]:
            event = first
            try:
                yield chunk(ChunkDelta(role="assistant", content=""))
                while event is not _END:
                    if event.type == "token" and event.text:
                        yield chunk(ChunkDelta(content=event.text))
                    elif event.type == "final" and event.answer is not None:
                        yield chunk(ChunkDelta(citations=event.answer.citations), True, event.answer)
                    event = await stream.next()
                yield ServerSentEvent(data="[DONE]", sep="\n")
            except Exception as error:
                yield _sse(_stream_failure(error, "/v1/chat/completions"))
            finally:
                stream.close_soon()

        return EventSourceResponse(chunks(), ping=15, sep="\n")

    # --- documents --------------------------------------------------------------------------------------
    @app.get(
        "/v1/documents",
        tags=["documents"],
        response_model=list[DocumentInfo],
        dependencies=read_deps,
        summary="The indexed documents",
        responses=_errors(401),
    )
    async def list_documents() -> list[DocumentInfo]:
        records = await run_in_threadpool(service.documents)
        return [DocumentInfo.model_validate(vars(r)) for r in records]

    @app.post(
        "/v1/documents",
        tags=["documents"],
        response_model=UploadResult,
        dependencies=write_deps,
        summary="Upload one or several files (multipart field `files`) and index them",
        responses=_errors(400, 401, 409, 413, 415, 422),
    )
    async def upload_documents(
        files: Annotated[list[UploadFile], File(min_length=1, description="The files (txt, md, html, pdf...).")],
        replace: Annotated[bool, Query(description="Replace a different document of the same name.")] = False,
    ) -> UploadResult:
        results: list[UploadedFile] = []
        failures: list[tuple[int, str]] = []
        for upload in files:
            filename = upload.filename or ""
            data = await upload.read()
            await upload.close()
            try:
                uploaded = await run_in_threadpool(
                    state.indexing,
                    f"upload {filename}",
                    lambda _progress, name=filename, data=data: service.add_document(name, data, replace=replace),
                )
            except (DocumentError, IndexBusyError) as error:
                status, message, _ = _error_for(error)
                failures.append((status, message))
                results.append(UploadedFile(filename=filename, outcome="skipped", reason=message, status=status))
                continue
            if uploaded.outcome == "skipped":
                reason = f"Could not be indexed: {uploaded.reason}"
                failures.append((422, reason))
                results.append(
                    UploadedFile(
                        filename=filename, source=uploaded.source, outcome="skipped", reason=reason, status=422
                    )
                )
            else:
                results.append(UploadedFile(filename=filename, source=uploaded.source, outcome=uploaded.outcome))
        if files and len(failures) == len(files):
            status = failures[0][0]
            message = (
                failures[0][1] if len(files) == 1 else "No file was accepted: " + " | ".join(m for _, m in failures)
            )
            raise ApiError(status, message)
        documents = await run_in_threadpool(service.documents)
        return UploadResult(
            added=sum(r.outcome == "added" for r in results),
            updated=sum(r.outcome == "updated" for r in results),
            unchanged=sum(r.outcome == "unchanged" for r in results),
            skipped=[r for r in results if r.outcome == "skipped"],
            files=results,
            documents=len(documents),
            chunks=sum(d.chunks for d in documents),
        )

    @app.delete(
        "/v1/documents/{source:path}",
        tags=["documents"],
        response_model=RefreshResult,
        dependencies=write_deps,
        summary="Remove a document from the index (and its file, when it lives in the corpus folder)",
        responses=_errors(401, 404, 409, 422),
    )
    async def delete_document(source: Annotated[str, Path(description="The document's `source`.")]) -> RefreshResult:
        report = await run_in_threadpool(
            state.indexing, f"delete {source}", lambda _progress: service.delete_document(source)
        )
        return _refresh_result(report, settings)

    # --- index -----------------------------------------------------------------------------------------
    @app.post(
        "/v1/index/refresh",
        tags=["index"],
        response_model=RefreshResult,
        dependencies=write_deps,
        summary="Bring the index in line with the corpus folder (waits until done)",
        responses=_errors(400, 401, 409, 413, 422),
    )
    async def refresh(request: Annotated[RefreshRequest | None, Body()] = None) -> RefreshResult:
        rebuild = bool(request and request.rebuild)
        report = await run_in_threadpool(
            state.indexing,
            "rebuild" if rebuild else "refresh",
            lambda progress: service.refresh(rebuild=rebuild, on_progress=progress),
        )
        return _refresh_result(report, settings)

    @app.get(
        "/v1/index/status",
        tags=["index"],
        response_model=IndexStatus,
        dependencies=read_deps,
        summary="What is indexed, and the indexing run in progress",
        responses=_errors(401),
    )
    async def index_status() -> IndexStatus:
        status = await run_in_threadpool(service.status)
        shown = status | {
            "store": "server" if settings.chroma_url else "embedded",
            "corpus_dir": FilePath(status["corpus_dir"]).name,
        }
        return IndexStatus(**shown, activity=state.activity)

    @app.get(
        "/v1/metrics/answers",
        tags=["health"],
        response_model=AnswerCounts,
        dependencies=read_deps,
        summary="Answers started, finished, cancelled (client gone) and failed since start",
        responses=_errors(401),
    )
    async def answer_counts() -> AnswerCounts:
        return AnswerCounts(**service.counters.snapshot())

    @app.api_route(
        "/v1/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
        name=UNKNOWN_API_ROUTE,
    )
    async def unknown_v1(path: str, request: Request) -> JSONResponse:
        """Unknown API paths get our error shape, not the UI's (mounted at `/`, it would answer them); a known
        path asked with another method gets its 405."""
        allowed = _methods_for(request)
        if allowed:
            return error_response(405, "Method Not Allowed", {"Allow": ", ".join(sorted(allowed))})
        return error_response(404, f"No API endpoint /v1/{path}; see /docs.")

    _document_stream_models(app)
    if with_ui:
        _mount_ui(app, service)
    return app


def _document_stream_models(app: FastAPI) -> None:
    """Put the SSE payload models in the schema's components: no route returns them as JSON."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in STREAM_MODELS:
                found = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
                for name, definition in found.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components.setdefault(model.__name__, found)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_error_handlers(app: FastAPI) -> None:
    """Every known error becomes `{"error": {...}}` with its status."""

    async def handle_known(request: Request, error: Exception) -> JSONResponse:
        status, message, headers = _error_for(error)
        extra: dict[str, Any] = {}
        if isinstance(error, ApiError):
            extra = {"code": error.code, "param": error.param}
        elif isinstance(error, RequestError):
            extra = {"code": error.code}
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, error)
        return error_response(status, message, headers, **extra)

    async def handle_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        message = error.detail if isinstance(error.detail, str) else "Request failed."
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 405:  # Starlette names one route's methods; a path may have several routes
            headers["Allow"] = ", ".join(sorted(_methods_for(request)))
        return error_response(error.status_code, message, headers)

    async def handle_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        details = [
            {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
            for e in error.errors()
        ]
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5]) or "Invalid request."
        param = ".".join(details[0]["loc"][1:]) if details and len(details[0]["loc"]) > 1 else None
        return error_response(422, summary, param=param or None, details=details)

    async def handle_gone(request: Request, error: Exception) -> JSONResponse:
        log.info("%s %s: the client left; its answer was stopped", request.method, request.url.path)
        return error_response(499, "Client closed the request.")

    app.add_exception_handler(ClientGone, handle_gone)
    for known in (ApiError, ServiceBusyError, RequestError, IndexBusyError, *UPSTREAM_ERRORS):
        app.add_exception_handler(known, handle_known)
    app.add_exception_handler(HTTPException, handle_http)
    app.add_exception_handler(RequestValidationError, handle_validation)  # the rest: CatchAllMiddleware


def _methods_for(request: Request) -> set[str]:
    """The methods of the routes that match this path with another method (the /v1 catch-all aside)."""
    return {
        method
        for route in request.app.router.routes
        if getattr(route, "name", None) != UNKNOWN_API_ROUTE and route.matches(request.scope)[0] == Match.PARTIAL
        for method in getattr(route, "methods", None) or ()
    }


def _ask_options(request: AskRequest) -> dict[str, Any]:
    sources = request.filters.sources if request.filters else None
    return {
        "history": [turn.model_dump() for turn in request.history],
        "k": request.k,
        "sources": sources or None,
        "generator": request.generator,
    }


def _resolve_model(model: str | None, default: str) -> str:
    name = (model or "").strip().lower()
    if name in DEFAULT_MODEL_ALIASES:
        return default
    if name in GENERATORS:
        return name
    raise ApiError(
        404,
        f"The model {model!r} does not exist; use one of: rag, {', '.join(GENERATORS)}.",
        code="model_not_found",
        param="model",
    )


def _text_of(message: ChatMessage) -> str:
    if isinstance(message.content, list):
        return "".join(part.text or "" for part in message.content if part.type == "text")
    return message.content or ""


def _conversation(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """The last user message is the question; the user and assistant turns before it are the history."""
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last is None:
        raise ApiError(400, "No user message: the last user message is the question.", param="messages")
    question = _text_of(messages[last]).strip()
    if not question:
        raise ApiError(400, "The last user message has no text.", param="messages")
    history = [{"role": m.role, "content": _text_of(m)} for m in messages[:last] if m.role in ("user", "assistant")]
    return question, history


async def _drain_answer(first: StreamEvent, stream: _ThreadedStream, request: Request) -> Answer:
    """The final answer of a stream; a client that disconnects stops the work within a poll interval. Steps can
    be long (no event comes out while the model writes sentences that fail verification), so the connection is
    watched while a step runs, not only between steps."""
    event: Any = first
    try:
        while event is not _END:
            if event.type == "final" and event.answer is not None:
                return event.answer
            if await request.is_disconnected():
                raise ClientGone()
            step = asyncio.ensure_future(stream.next())
            while not (await asyncio.wait({step}, timeout=_DISCONNECT_POLL_SECONDS))[0]:
                if await request.is_disconnected():
                    raise ClientGone()  # `close_soon` below ends the running step at its next token
            event = step.result()
    finally:
        stream.close_soon()
    raise RuntimeError("the answer stream ended without a final event")


_DISCONNECT_POLL_SECONDS = 0.5  # how late a gone client may be noticed; each check is one non-blocking receive


class ClientGone(Exception):
    """The client closed the connection; nobody reads the response."""


def _refresh_result(report: RefreshReport, settings: Settings) -> RefreshResult:
    """The service's report, with server paths shown relative to the corpus folder."""
    corpus = settings.corpus_dir.resolve()
    skipped = []
    for entry in report.skipped:
        path = FilePath(entry["path"])
        shown = path.relative_to(corpus).as_posix() if path.is_relative_to(corpus) else path.name
        skipped.append(SkippedFile(path=shown, reason=entry["reason"]))
    values = report.as_dict() | {"skipped": skipped}
    return RefreshResult(**values)


def _mount_ui(app: FastAPI, service: RagService) -> None:
    """Mount the UI at `/` through ui.app.mount_ui (its one mount path: upload limits, served paths, key) when
    the UI module exists; the API works without it."""
    try:
        from ui.app import mount_ui  # type: ignore[import-not-found]
    except ModuleNotFoundError as error:
        if error.name not in {"ui", "ui.app"}:
            log.exception("the UI could not be imported; serving the API only")
        return
    except Exception:
        log.exception("the UI could not be imported; serving the API only")
        return
    try:
        mount_ui(app, service)
    except Exception:
        log.exception("the UI could not be built; serving the API only")


def create_app_from_settings(
    settings: Settings | None = None, *, with_ui: bool = True, index_on_start: bool = True
) -> FastAPI:
    """For `rag serve` and `uvicorn --factory rag.api:create_app_from_settings` (reads RAG_* variables)."""
    return create_app(RagService(settings or Settings()), with_ui=with_ui, index_on_start=index_on_start)
