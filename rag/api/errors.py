"""One error shape everywhere, `{"error": {"message", "type", "status"}}`, never a stack trace: the engine's
errors (rag.errors) mapped to statuses, the handlers that write them, and the catch-all route that gives
unknown `/v1` paths the same shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from rag.api.models import ErrorDetail, ErrorResponse
from rag.errors import IndexBusyError, RequestError, ServiceBusyError

try:  # FastAPI 0.137+ keeps an included router whole in `app.router.routes`; this walks the routes it serves
    from fastapi.routing import iter_route_contexts
except ImportError:  # older versions copy the included routes into that list

    def iter_route_contexts(routes: Any) -> Any:  # type: ignore[no-redef]
        return iter(routes)


log = logging.getLogger("rag.api")

UNKNOWN_API_ROUTE = "unknown_v1"  # the catch-all giving unknown /v1 paths our error shape

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
    403: "Not enabled on this server (e.g. a generator outside RAG_GENERATORS_ALLOWED; a write on a read-only "
    "replica, `code: read_only`).",
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


class ClientGone(Exception):
    """The client closed the connection; nobody reads the response."""


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    detail = ErrorDetail(message=message, type=_ERROR_TYPES.get(status, "error"), status=status, **extra)
    return {"error": detail.model_dump(exclude_none=True)}


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(status, message, **extra), status_code=status, headers=headers)


def documented_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
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


def error_for(error: BaseException) -> tuple[int, str, dict[str, str] | None]:
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


# --- the handlers ------------------------------------------------------------------------------------------
async def _handle_known(request: Request, error: Exception) -> JSONResponse:
    status, message, headers = error_for(error)
    extra: dict[str, Any] = {}
    if isinstance(error, ApiError):
        extra = {"code": error.code, "param": error.param}
    elif isinstance(error, RequestError):
        extra = {"code": error.code}
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, error)
    return error_response(status, message, headers, **extra)


async def _handle_http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    message = error.detail if isinstance(error.detail, str) else "Request failed."
    headers = dict(getattr(error, "headers", None) or {})
    if error.status_code == 405:  # Starlette names one route's methods; a path may have several routes
        headers["Allow"] = ", ".join(sorted(_methods_for(request)))
    return error_response(error.status_code, message, headers)


async def _handle_validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5]) or "Invalid request."
    param = ".".join(details[0]["loc"][1:]) if details and len(details[0]["loc"]) > 1 else None
    return error_response(422, summary, param=param or None, details=details)


async def _handle_gone(request: Request, error: Exception) -> JSONResponse:
    log.info("%s %s: the client left; its answer was stopped", request.method, request.url.path)
    return error_response(499, "Client closed the request.")


def add_error_handlers(app: FastAPI) -> None:
    """Every known error becomes `{"error": {...}}` with its status."""
    app.add_exception_handler(ClientGone, _handle_gone)
    for known in (ApiError, ServiceBusyError, RequestError, IndexBusyError, *UPSTREAM_ERRORS):
        app.add_exception_handler(known, _handle_known)
    app.add_exception_handler(HTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)  # the rest: CatchAllMiddleware


# --- unknown /v1 paths -----------------------------------------------------------------------------------------
def _methods_for(request: Request) -> set[str]:
    """The methods of the routes that match this path with another method (the /v1 catch-all aside)."""
    return {
        method
        for route in iter_route_contexts(request.app.router.routes)
        if getattr(route, "name", None) != UNKNOWN_API_ROUTE and route.matches(request.scope)[0] == Match.PARTIAL
        for method in getattr(route, "methods", None) or ()
    }


unknown_api = APIRouter()


@unknown_api.api_route(
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
