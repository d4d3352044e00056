"""Helpers of the documents users push: a safe file name, and a document's text for showing a quote in context."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from index.loaders import load_document
from index.types import LoadError
from rag.errors import DocumentError

# File names are stored as given; most file systems cap a name at 255 bytes, and the staged copy adds a few.
MAX_FILENAME_BYTES = 200


@lru_cache(maxsize=16)
def extracted_text(path: str, root: str, content_hash: str) -> str | None:
    """A document's extracted text, if the file still has the content that was indexed."""
    try:
        if hashlib.sha256(Path(path).read_bytes()).hexdigest() != content_hash:
            return None
        return load_document(Path(path), Path(root)).text
    except (OSError, LoadError):
        return None


_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


def safe_filename(filename: str) -> str:
    """A plain file name: no directories, no traversal, no control or shell characters, no hidden files."""
    name = unicodedata.normalize("NFC", filename.replace("\\", "/").split("/")[-1]).strip()
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name or name in {".", ".."}:
        raise DocumentError("Invalid file name.", 400)
    size = len(name.encode("utf-8"))
    if size > MAX_FILENAME_BYTES:
        raise DocumentError(f"File name too long: {size} bytes in UTF-8 (limit {MAX_FILENAME_BYTES}).", 400)
    return name
