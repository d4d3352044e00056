"""The documents users push and remove: saved into the corpus dir under a safe name (never outside it) and indexed
at once, and a document's text for showing a quote in context."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from index.loaders import SUPPORTED_SUFFIXES, load_document
from index.ocr import OcrReader
from index.types import LoadError, size_limit_reason
from rag.errors import DocumentError
from rag.schema import RefreshReport, UploadOutcome
from rag.service.components import Components
from rag.service.indexing import Indexing
from rag.service.startup import STAGED_UPLOAD_SUFFIX
from rag.settings import Settings

# File names are stored as given; most file systems cap a name at 255 bytes, and the staged copy adds a few.
MAX_FILENAME_BYTES = 200


@lru_cache(maxsize=16)
def extracted_text(path: str, root: str, content_hash: str, ocr_cache: Path | None = None) -> str | None:
    """A document's extracted text, if the file still has the content that was indexed (scanned pages from the
    OCR cache indexing filled)."""
    try:
        if hashlib.sha256(Path(path).read_bytes()).hexdigest() != content_hash:
            return None
        return load_document(Path(path), Path(root), ocr=OcrReader(ocr_cache)).text
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


class Documents:
    """Uploads and deletions, each under the index lock, so the corpus folder stays what the index holds."""

    def __init__(self, settings: Settings, components: Components, indexing: Indexing):
        self.settings = settings
        self.components = components
        self.indexing = indexing

    def add(self, filename: str, data: bytes, *, replace: bool = False) -> UploadOutcome:
        """Save an upload into the corpus dir and index it; never writes outside it. A reader refuses first."""
        self.indexing.check_writable()
        name, target = self._target(filename, data, replace)
        with self.indexing.lock():
            previous = target.read_bytes() if target.exists() else None
            staging = target.with_name(f".{name}{STAGED_UPLOAD_SUFFIX}")
            staging.write_bytes(data)
            staging.replace(target)
            report = self.indexing.refresh_locked([target])
            if report.skipped:
                # A file that cannot be indexed is reported, not kept: the corpus folder stays what the index holds.
                if previous is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_bytes(previous)
            record = None if report.skipped else self.components.store.documents([name]).get(name)
            return UploadOutcome(name, report, record)

    def _target(self, filename: str, data: bytes, replace: bool) -> tuple[str, Path]:
        """The upload's safe name and its path in the corpus dir, or the DocumentError that refuses it."""
        name = safe_filename(filename)
        if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            allowed = ", ".join(sorted(SUPPORTED_SUFFIXES))
            raise DocumentError(f"Unsupported file type {Path(name).suffix or '(none)'}; allowed: {allowed}", 415)
        if len(data) > self.settings.max_upload_bytes:
            raise DocumentError(size_limit_reason(len(data), self.settings.max_upload_bytes), 413, "file_too_large")
        corpus = self.settings.corpus_dir.resolve()
        corpus.mkdir(parents=True, exist_ok=True)
        target = (corpus / name).resolve()
        if target.parent != corpus:
            raise DocumentError("Invalid file name.", 400)
        if target.exists() and not replace and target.read_bytes() != data:
            raise DocumentError(f"A different document named {name} already exists; pass replace=true.", 409)
        return name, target

    def delete(self, source: str) -> RefreshReport:
        """Remove a document from the index, and its file when it lives in the corpus dir. A reader refuses first."""
        self.indexing.check_writable()
        record = self.components.store.documents([source]).get(source)
        if record is None:
            raise DocumentError(f"No indexed document {source!r}.", 404)
        path = Path(record.path)
        corpus = self.settings.corpus_dir.resolve()
        with self.indexing.lock():
            if path.resolve().is_relative_to(corpus) and path.exists():
                path.unlink()
                return self.indexing.refresh_locked([corpus])
            store = self.components.store
            with self.components.rw.write():
                store.delete(store.ids_for_source(source))
                store.delete_document(source)
            self.components.sync_lexical(store, [source])
        return RefreshReport(deleted=1, documents=store.document_count(), chunks=store.count())

    def surrounding_text(self, source: str, start: int, end: int, chars: int = 700) -> tuple[str, int]:
        """The document's extracted text around [start, end) with `chars` more on each side, and its offset:
        what a reader opens to see a quote in context. The same extraction as indexing, so offsets agree;
        if the file changed since it was indexed, only what the index holds is returned (empty)."""
        record = self.components.store.documents([source]).get(source)
        if record is None:
            raise DocumentError(f"No indexed document {source!r}.", 404)
        text = extracted_text(record.path, record.root, record.content_hash, self.settings.ocr_dir)
        if text is None:
            return "", start
        lo = max(0, start - chars)
        return text[lo : min(len(text), end + chars)], lo
