"""HTTP API for other apps: the service layer behind FastAPI, under `/v1`, described by its OpenAPI schema.

`create_app` assembles it: middleware, error handlers, the routers (each with the key check its routes
need) and the front ends installed beside it.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from rag.api.auth import access
from rag.api.errors import add_error_handlers, unknown_api
from rag.api.middleware import BodyLimitMiddleware, CatchAllMiddleware
from rag.api.routes import ask, documents, health, index, openai
from rag.api.state import AppState
from rag.api.streaming import document_stream_models
from rag.service import RagService
from rag.settings import Settings

log = logging.getLogger("rag.api")

API_VERSION = "1"
FrontEnd = Callable[[FastAPI, RagService], Any]
FRONT_END_GROUP = "rag.front_ends"


def create_app(
    service: RagService,
    *,
    with_ui: bool = True,
    index_on_start: bool = True,
    cors_origins: list[str] | None = None,
    front_ends: Sequence[FrontEnd] | None = None,
) -> FastAPI:
    """The HTTP API over `service`, with the front ends mounted (default: the installed ones, see
    `installed_front_ends`; none when `with_ui` is false)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading models takes a while: /healthz answers at once, /readyz turns 200 when done.
        service.startup.start(reconcile=index_on_start)
        yield

    description = (__doc__ or "").split("\n\n")[0]
    app = FastAPI(title="rag-cite API", version=API_VERSION, description=description, lifespan=lifespan)
    app.state.rag = AppState(service)  # what the routes reach through rag.api.state's dependencies

    app.add_middleware(BodyLimitMiddleware, max_upload_bytes=service.settings.max_upload_bytes)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"], allow_headers=["Authorization", "*"]
        )
    app.add_middleware(CatchAllMiddleware)  # added last: the outermost of ours
    add_error_handlers(app)

    read, write = access(service.settings)
    app.include_router(health.public)
    app.include_router(health.reads, dependencies=read)
    app.include_router(ask.reads, dependencies=read)
    app.include_router(openai.reads, dependencies=read)
    app.include_router(documents.reads, dependencies=read)
    app.include_router(documents.writes, dependencies=write)
    app.include_router(index.writes, dependencies=write)
    app.include_router(index.reads, dependencies=read)
    app.include_router(unknown_api)  # last: it answers every /v1 path no route above has
    document_stream_models(app)

    if with_ui:
        _mount_front_ends(app, service, installed_front_ends() if front_ends is None else front_ends)
    return app


def create_app_from_settings(
    settings: Settings | None = None, *, with_ui: bool = True, index_on_start: bool = True
) -> FastAPI:
    """For `rag serve` and `uvicorn --factory rag.api:create_app_from_settings` (reads RAG_* variables)."""
    return create_app(RagService(settings or Settings()), with_ui=with_ui, index_on_start=index_on_start)


def installed_front_ends() -> list[FrontEnd]:
    """The front ends installed beside the API, found by entry point (group `rag.front_ends`; the Gradio UI
    registers `ui.app:mount_ui` in pyproject.toml): the engine never imports a front end, and the API still
    serves when one is missing or broken."""
    found: list[FrontEnd] = []
    for entry in importlib.metadata.entry_points(group=FRONT_END_GROUP):
        try:
            found.append(entry.load())
        except Exception:
            log.exception("front end %s could not be imported; serving without it", entry.value)
    return found


def _mount_front_ends(app: FastAPI, service: RagService, front_ends: Sequence[FrontEnd]) -> None:
    for mount in front_ends:
        try:
            mount(app, service)
        except Exception:
            log.exception("front end %s could not be built; serving without it", getattr(mount, "__module__", mount))
