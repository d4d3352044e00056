"""Questions: `POST /v1/ask` answers with the `Answer` structure; `POST /v1/ask/stream` with Server-Sent
Events: `token` (`{"text"}`), `citations` (`{"citations": [...]}`), one `final` (the whole `Answer`), or
`error`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from rag.api.errors import documented_errors
from rag.api.models import AskRequest, CitationsEventData, TokenEventData
from rag.api.state import Service
from rag.api.streaming import ASK_STREAM_EVENT, END, ThreadedStream, drain_answer, sse, start_stream, stream_failure
from rag.schema import Answer, StreamEvent

reads = APIRouter(tags=["questions"])

_STREAM_DESCRIPTION = (
    "`text/event-stream`: `event: token` (data: TokenEventData) for text to append, "
    "`event: citations` (data: CitationsEventData) after each cited sentence, then one "
    "`event: final` (data: Answer, citations numbered as in the text); `event: error` "
    "(data: ErrorResponse) if it fails midway. The token texts add up to the final answer."
)


@reads.post(
    "/v1/ask",
    response_model=Answer,
    summary="Answer a question from the documents, with citations",
    responses=documented_errors(400, 401, 403, 413, 422, 502, 503),
)
async def ask(request: AskRequest, http: Request, service: Service) -> Answer:
    first, stream = await start_stream(service, request.question, **_options(request))
    return await drain_answer(first, stream, http)


@reads.post(
    "/v1/ask/stream",
    summary="Answer a question as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {"description": _STREAM_DESCRIPTION, "content": {"text/event-stream": {"schema": ASK_STREAM_EVENT}}}
    }
    | documented_errors(400, 401, 403, 413, 422, 502, 503),
)
async def ask_stream(request: AskRequest, service: Service) -> EventSourceResponse:
    first, stream = await start_stream(service, request.question, **_options(request))
    return EventSourceResponse(_events(first, stream), ping=15, sep="\n")


def _options(request: AskRequest) -> dict[str, Any]:
    sources = request.filters.sources if request.filters else None
    return {
        "history": [turn.model_dump() for turn in request.history],
        "k": request.k,
        "sources": sources or None,
        "generator": request.generator,
    }


async def _events(first: StreamEvent, stream: ThreadedStream) -> AsyncIterator[ServerSentEvent]:
    event: Any = first
    try:
        while event is not END:
            if event.type == "token" and event.text:  # the empty one only marks the start of generation
                yield sse(TokenEventData(text=event.text), "token")
            elif event.type == "citations":
                yield sse(CitationsEventData(citations=event.citations), "citations")
            elif event.answer is not None:
                yield sse(event.answer, "final")
            event = await stream.next()
    except Exception as error:
        yield sse(stream_failure(error, "/v1/ask/stream"), "error")
    finally:
        stream.close_soon()
