"""The indexed documents: list (`GET /v1/documents`), upload and index (`POST`), remove (`DELETE
/v1/documents/{source}`), the original file and a page as an image (`GET /v1/files/{source}`, `GET
/v1/pages/{source}?page=n`: what a citation's `boxes` are drawn on; outside /v1/documents/, whose DELETE takes
any path). Indexing runs in a worker thread, recorded for `GET /v1/index/status`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Path, Query, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from rag.api.errors import ApiError, documented_errors, error_for
from rag.api.models import DocumentInfo, RefreshResult, UploadedFile, UploadResult
from rag.api.state import AppState, State
from rag.errors import DocumentError, IndexBusyError

reads = APIRouter(tags=["documents"])
writes = APIRouter(tags=["documents"])


@reads.get(
    "/v1/documents",
    response_model=list[DocumentInfo],
    summary="The indexed documents",
    responses=documented_errors(401),
)
async def list_documents(state: State) -> list[DocumentInfo]:
    records = await run_in_threadpool(state.service.documents)
    return [DocumentInfo.model_validate(vars(r)) for r in records]


@reads.get(
    "/v1/pages/{source:path}",
    response_class=Response,
    summary="A page of a PDF or image document as PNG, to draw a citation's `boxes` on",
    responses={200: {"content": {"image/png": {}}}, **documented_errors(401, 404, 422)},
)
async def page_image(
    state: State,
    source: Annotated[str, Path(description="The document's `source`.")],
    page: Annotated[int, Query(ge=1, description="1-based page (an image's frame).")] = 1,
    dpi: Annotated[int, Query(ge=36, le=300, description="Resolution of the rendering.")] = 110,
) -> Response:
    png = await run_in_threadpool(state.service.page_image, source, page, dpi)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@reads.get(
    "/v1/files/{source:path}",
    response_class=FileResponse,
    summary="The original file, shown inline (a PDF opens at `#page=N`)",
    responses=documented_errors(401, 404),
)
async def document_file(
    state: State, source: Annotated[str, Path(description="The document's `source`.")]
) -> FileResponse:
    path, media_type = await run_in_threadpool(state.service.document_file, source)
    return FileResponse(path, media_type=media_type, filename=path.name, content_disposition_type="inline")


@writes.post(
    "/v1/documents",
    response_model=UploadResult,
    summary="Upload one or several files (multipart field `files`) and index them",
    responses=documented_errors(400, 401, 403, 409, 413, 415, 422),
)
async def upload_documents(
    state: State,
    files: Annotated[list[UploadFile], File(min_length=1, description="The files (txt, md, html, pdf...).")],
    replace: Annotated[bool, Query(description="Replace a different document of the same name.")] = False,
) -> UploadResult:
    results = [await _index_upload(state, upload, replace) for upload in files]
    refused = [(r.status, str(r.reason)) for r in results if r.status is not None]
    if files and len(refused) == len(files):  # nothing was accepted: the request fails as its files did
        status, message = refused[0]
        if len(files) > 1:
            message = "No file was accepted: " + " | ".join(reason for _, reason in refused)
        raise ApiError(status, message)
    documents = await run_in_threadpool(state.service.documents)
    return UploadResult(
        added=sum(r.outcome == "added" for r in results),
        updated=sum(r.outcome == "updated" for r in results),
        unchanged=sum(r.outcome == "unchanged" for r in results),
        skipped=[r for r in results if r.outcome == "skipped"],
        files=results,
        documents=len(documents),
        chunks=sum(d.chunks for d in documents),
    )


@writes.delete(
    "/v1/documents/{source:path}",
    response_model=RefreshResult,
    summary="Remove a document from the index (and its file, when it lives in the corpus folder)",
    responses=documented_errors(401, 403, 404, 409, 422),
)
async def delete_document(
    state: State, source: Annotated[str, Path(description="The document's `source`.")]
) -> RefreshResult:
    report = await run_in_threadpool(
        state.indexing, f"delete {source}", lambda _progress: state.service.delete_document(source)
    )
    return RefreshResult.from_report(report, state.service.settings.corpus_dir)


async def _index_upload(state: AppState, upload: UploadFile, replace: bool) -> UploadedFile:
    """Save and index one uploaded file; a file refused or not indexable is `skipped`, with its status."""
    filename = upload.filename or ""
    data = await upload.read()
    await upload.close()
    try:
        uploaded = await run_in_threadpool(
            state.indexing,
            f"upload {filename}",
            lambda _progress: state.service.add_document(filename, data, replace=replace),
        )
    except (DocumentError, IndexBusyError) as error:
        status, message, _ = error_for(error)
        return UploadedFile(filename=filename, outcome="skipped", reason=message, status=status)
    if uploaded.outcome == "skipped":
        reason = f"Could not be indexed: {uploaded.reason}"
        return UploadedFile(filename=filename, source=uploaded.source, outcome="skipped", reason=reason, status=422)
    notes = [entry["note"] for entry in uploaded.report.notes]
    return UploadedFile(filename=filename, source=uploaded.source, outcome=uploaded.outcome, notes=notes)
