"""Liveness (`/healthz`, never behind the key), readiness (`/readyz`) and the answer counters."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from rag.api.errors import documented_errors
from rag.api.models import AnswerCounts, Health, Readiness
from rag.api.state import Service

public = APIRouter(tags=["health"])
reads = APIRouter(tags=["health"])


@public.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health()


@reads.get(
    "/readyz",
    response_model=Readiness,
    summary="The index and the generator are loaded",
    responses={503: {"model": Readiness, "description": "Not ready yet: `missing` says what is loading."}}
    | documented_errors(401),
)
async def readyz(service: Service) -> JSONResponse:
    found = service.readiness()
    startup = service.startup
    missing = [name for name, loaded in (("index", found.index), ("generator", found.generator)) if not loaded]
    starting = startup.describe() if startup.running else None
    if starting:
        missing.append(starting)
    ready = not missing  # a failed start-up is reported, but the index that exists still answers
    body = Readiness(
        **found.model_dump(),
        ready=ready,
        missing=missing,
        starting=starting,
        step=startup.step,
        startup_error=startup.error,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@reads.get(
    "/v1/metrics/answers",
    response_model=AnswerCounts,
    summary="Answers started, finished, cancelled (client gone) and failed since start",
    responses=documented_errors(401),
)
async def answer_counts(service: Service) -> AnswerCounts:
    return AnswerCounts(**service.counters.snapshot())
