"""The ASGI middleware of the API: request body limits, and the last resort turning any exception into a
JSON 500."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.api.errors import error_response

log = logging.getLogger("rag.api")

JSON_BODY_LIMIT = 1024 * 1024  # questions, conversations, options: far below this
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the uploaded files
UI_UPLOAD_PATH = "/gradio_api/upload"  # where the UI's file input sends files before its handler indexes them
UI_FILES_PER_UPLOAD = 10  # files the UI's browser client may send in one request (each within the file limit)
_DRAIN_LIMIT = 8 * 1024 * 1024  # read at most this much of a refused body, so the client sees the 413


class _TrackedSend:
    """`send`, noting whether the response has started: after that, an error can no longer be answered."""

    def __init__(self, send: Send):
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"Request body too large (limit {limit} bytes).")


class BodyLimitMiddleware:
    """Refuses a declared Content-Length above the path's limit at once, and counts the bytes of bodies
    sent without one, so no request can make the server buffer more than the limit."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int):
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    def limit_for(self, path: str) -> int:
        if path.rstrip("/") == "/v1/documents":
            return self.max_upload_bytes + MULTIPART_OVERHEAD
        if path.rstrip("/") == UI_UPLOAD_PATH:  # each file is held to the same limit by the UI (ui.app.mount_ui)
            return self.max_upload_bytes * UI_FILES_PER_UPLOAD + MULTIPART_OVERHEAD
        return JSON_BODY_LIMIT

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

        tracked = _TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except _BodyTooLarge as error:  # raised where no handler turned it into a response
            if tracked.started:
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
        tracked = _TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=error)
            if tracked.started:
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
