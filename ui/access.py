"""The UI's door: Gradio's own upload route, which stores files before any handler of ours runs.

Gradio's browser client sends a file to `/gradio_api/upload` first, then passes the stored path to the event
handler. Our handlers refuse writes without the key, but the route itself would still store any file for anyone.
`UploadGuard` puts that route behind the same key (a cookie the page sets once the key was checked, or the bearer
key itself) and bounds the room such uploads may take on disk. With `RAG_API_KEY_FOR_READ=true` the whole UI is
behind Gradio's login, which guards this route too.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

UPLOAD_COOKIE = "rag_ui_upload"


def upload_token(key: str) -> str:
    """What the page keeps in its cookie once the key was checked: derived from the key, never the key itself."""
    return hmac.new(key.encode(), b"rag-ui-upload", hashlib.sha256).hexdigest()


def folder_bytes(folder: Path) -> int:
    """Bytes held by the files under `folder` (0 if it does not exist)."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def discard_upload(path: Path, upload_folder: Path) -> None:
    """Remove a file Gradio stored for us, and its one-file folder, once it has been indexed or refused."""
    path.unlink(missing_ok=True)
    parent = path.parent
    if parent != upload_folder and parent.is_relative_to(upload_folder) and not any(parent.iterdir()):
        shutil.rmtree(parent, ignore_errors=True)


def _json_error(status: int, message: str) -> JSONResponse:
    kinds = {401: "authentication_error", 503: "service_unavailable"}
    return JSONResponse({"error": {"message": message, "type": kinds[status], "status": status}}, status_code=status)


class UploadGuard:
    """ASGI middleware for the UI's upload route: the key when writes need one, and a disk quota."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        token: str | None,
        check_key: Callable[[str], bool],
        upload_folder: Path,
        quota_bytes: int,
    ):
        self.app = app
        self.path = path
        self.token = token
        self.check_key = check_key
        self.upload_folder = upload_folder
        self.quota_bytes = quota_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        if self.token is not None and not self._authorised(scope):
            response = _json_error(401, "Uploading needs the key: unlock the Documents tab first.")
        elif folder_bytes(self.upload_folder) >= self.quota_bytes:
            response = _json_error(503, "Too many uploads are waiting to be indexed; try again later.")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and self.check_key(bearer[7:].strip()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is simply no cookie
            return False
        given = cookie.get(UPLOAD_COOKIE)
        return given is not None and hmac.compare_digest(given.value.encode(), (self.token or "").encode())
