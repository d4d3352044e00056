"""The API key: with `RAG_API_KEY` set, write routes need `Authorization: Bearer <key>`, and read routes too
with `RAG_API_KEY_FOR_READ=true` (`/healthz` and the schema never do)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.api.errors import ApiError
from rag.api.state import Service
from rag.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="RAG_API_KEY", scheme_name="ApiKey")


def require_key(
    service: Service, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Checks the bearer token with the service's key check."""
    if not (credentials and service.check_key(credentials.credentials)):
        raise ApiError(
            401,
            "Missing or invalid API key: send 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


def access(settings: Settings) -> tuple[list[Any], list[Any]]:
    """The dependencies of the read routes and of the write routes: the key check only where it applies, so
    the OpenAPI schema declares the key exactly where it is needed."""
    write = [Depends(require_key)] if settings.api_key else []
    read = write if settings.api_key_for_read else []
    return read, write
