"""The index as a whole: bring it in line with the corpus folder (`POST /v1/index/refresh`), and what it
holds with the indexing run in progress (`GET /v1/index/status`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from rag.api.errors import documented_errors
from rag.api.models import IndexStatus, RefreshRequest, RefreshResult
from rag.api.state import State

reads = APIRouter(tags=["index"])
writes = APIRouter(tags=["index"])


@writes.post(
    "/v1/index/refresh",
    response_model=RefreshResult,
    summary="Bring the index in line with the corpus folder (waits until done)",
    responses=documented_errors(400, 401, 403, 409, 413, 422),
)
async def refresh(state: State, request: Annotated[RefreshRequest | None, Body()] = None) -> RefreshResult:
    rebuild = bool(request and request.rebuild)
    report = await run_in_threadpool(
        state.indexing,
        "rebuild" if rebuild else "refresh",
        lambda progress: state.service.refresh(rebuild=rebuild, on_progress=progress),
    )
    return RefreshResult.from_report(report, state.service.settings.corpus_dir)


@reads.get(
    "/v1/index/status",
    response_model=IndexStatus,
    summary="What is indexed, and the indexing run in progress",
    responses=documented_errors(401),
)
async def index_status(state: State) -> IndexStatus:
    status = await run_in_threadpool(state.service.status)
    shown = status.model_dump() | {
        "store": "server" if state.service.settings.chroma_url else "embedded",
        "corpus_dir": Path(status.corpus_dir).name,
    }
    return IndexStatus(**shown, activity=state.activity)
