"""Answers stream from the service's blocking iterator, stepped in worker threads so the event loop never
waits on the model; the SSE helpers, and how the streams are described in the OpenAPI schema."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sse_starlette import ServerSentEvent

from rag.api.errors import ClientGone, error_body, error_for
from rag.api.models import ChatCompletionChunk, CitationsEventData, ErrorResponse, TokenEventData
from rag.schema import Answer, StreamEvent
from rag.service import RagService

log = logging.getLogger("rag.api")

END = object()  # what `ThreadedStream.next` returns once the iterator is exhausted
_DISCONNECT_POLL_SECONDS = 0.5  # how late a gone client may be noticed; each check is one non-blocking receive


class ThreadedStream:
    """Steps a blocking iterator in worker threads, one step at a time, and always closes it, so a client
    that goes away mid-answer releases its place in the generation queue."""

    def __init__(self, iterator: Iterator[StreamEvent], cancel: threading.Event):
        self._iterator = iterator
        self._cancel = cancel
        self._lock = threading.Lock()

    def _step(self) -> Any:
        with self._lock:
            return next(self._iterator, END)

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


async def start_stream(service: RagService, question: str, **options: Any) -> tuple[StreamEvent, ThreadedStream]:
    """The first event, before any byte is sent: a full queue or a bad request still gets its status."""
    cancel = threading.Event()
    stream = ThreadedStream(service.ask_stream(question, cancel=cancel, **options), cancel)
    first = await stream.next()
    if first is END:  # the chain always ends with a final event; this would be a bug
        raise RuntimeError("the answer stream ended without a final event")
    return first, stream


async def drain_answer(first: StreamEvent, stream: ThreadedStream, request: Request) -> Answer:
    """The final answer of a stream; a client that disconnects stops the work within a poll interval. Steps can
    be long (no event comes out while the model writes sentences that fail verification), so the connection is
    watched while a step runs, not only between steps."""
    event: Any = first
    try:
        while event is not END:
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


def sse(payload: BaseModel | dict[str, Any], event: str | None = None) -> ServerSentEvent:
    data = payload.model_dump_json(exclude_none=True) if isinstance(payload, BaseModel) else json.dumps(payload)
    return ServerSentEvent(data=data, event=event, sep="\n")


def stream_failure(error: BaseException, where: str) -> dict[str, Any]:
    """The error body sent as the last event when a stream fails after its 200 went out."""
    status, message, _ = error_for(error)
    if status >= 500:
        log.error("%s failed mid-stream", where, exc_info=error)
    return error_body(status, message)


# --- the streams in the OpenAPI schema --------------------------------------------------------------------------
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


def document_stream_models(app: FastAPI) -> None:
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
