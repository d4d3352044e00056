"""OpenAI compatibility: `GET /v1/models` and `POST /v1/chat/completions`, plain and streamed.

`model` picks the generator (`local`, `extractive`, `openai`, `ollama`; `rag` or none: the configured one); the
last user message is the question, earlier user/assistant messages the history; `extra_body={"rag": {"k",
"sources"}}` tunes retrieval. Citations travel in extension fields that the official `openai` client keeps:
`completion.choices[0].message.model_extra["citations"]` and `completion.model_extra["rag"]` (the whole
`Answer`); when streaming, the last chunk before `data: [DONE]` carries
`chunk.choices[0].delta.model_extra["citations"]` and `chunk.model_extra["rag"]`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, get_args

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from rag.api.errors import ApiError, documented_errors
from rag.api.models import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatMessage,
    ChunkChoice,
    ChunkDelta,
    ModelCard,
    ModelList,
    RagOptions,
)
from rag.api.state import Service
from rag.api.streaming import CHAT_STREAM_EVENT, END, ThreadedStream, drain_answer, sse, start_stream, stream_failure
from rag.schema import Answer, StreamEvent
from rag.settings import GeneratorName

reads = APIRouter(tags=["openai"])

GENERATORS: tuple[str, ...] = get_args(GeneratorName)
DEFAULT_MODEL_ALIASES = {"", "rag", "default"}
_STREAM_DESCRIPTION = (
    "A chat.completion, or with `stream: true` a `text/event-stream` of `data: "
    "<ChatCompletionChunk>` lines ending with `data: [DONE]`; the last chunk carries "
    "`choices[0].delta.citations` and `rag` (the whole Answer)."
)


@reads.get("/v1/models", response_model=ModelList, responses=documented_errors(401))
async def models(service: Service) -> ModelList:
    return ModelList(data=[ModelCard(id=name) for name in ("rag", *service.settings.allowed_generators)])


@reads.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    summary="OpenAI Chat Completions (plain or `stream: true`), with citations in extension fields",
    responses={
        200: {"description": _STREAM_DESCRIPTION, "content": {"text/event-stream": {"schema": CHAT_STREAM_EVENT}}}
    }
    | documented_errors(400, 401, 403, 404, 413, 422, 502, 503),
)
async def chat_completions(request: ChatCompletionRequest, http: Request, service: Service) -> Any:
    generator = _resolve_model(request.model, service.settings.generator)
    question, history = _conversation(request.messages)
    options = request.rag or RagOptions()
    first, stream = await start_stream(
        service, question, history=history, k=options.k, sources=options.sources or None, generator=generator
    )
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if request.stream:
        chunks = _chunks(first, stream, completion_id, created, generator)
        return EventSourceResponse(chunks, ping=15, sep="\n")
    answer = await drain_answer(first, stream, http)
    message = ChatCompletionMessage(content=answer.answer, citations=answer.citations)
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=answer.generator or generator,
        choices=[ChatCompletionChoice(message=message)],
        rag=answer,
    )


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


async def _chunks(
    first: StreamEvent, stream: ThreadedStream, completion_id: str, created: int, model: str
) -> AsyncIterator[ServerSentEvent]:
    def chunk(delta: ChunkDelta, finish: bool = False, answer: Answer | None = None) -> ServerSentEvent:
        choice = ChunkChoice(delta=delta, finish_reason="stop" if finish else None)
        return sse(ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[choice], rag=answer))

    event: Any = first
    try:
        yield chunk(ChunkDelta(role="assistant", content=""))
        while event is not END:
            if event.type == "token" and event.text:
                yield chunk(ChunkDelta(content=event.text))
            elif event.type == "final" and event.answer is not None:
                yield chunk(ChunkDelta(citations=event.answer.citations), True, event.answer)
            event = await stream.next()
        yield ServerSentEvent(data="[DONE]", sep="\n")
    except Exception as error:
        yield sse(stream_failure(error, "/v1/chat/completions"))
    finally:
        stream.close_soon()
