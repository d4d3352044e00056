"""Turn one corpus file into a Document: clean extracted text plus structural blocks with exact offsets.

Every format goes through the same contract: `text[block.start:block.end]` is the block's text, blocks are in
order and never overlap, and any file we cannot index raises `LoadError` with a short reason for the user.

One module a format (text, markdown, html, pdf; word, slides, sheets, opendocument, epub, mail, which share
`office`), each with a loader that turns a file's bytes into (title, text, blocks); `_FORMATS` maps a suffix to
its loader, so a new format is a module and a line there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from index.loaders.common import (
    MAX_DOCUMENT_CHARS,
    MAX_EXTRACTION_SECONDS,
    MAX_PAGE_CHARS,
    MAX_PDF_PAGES,
    Bounds,
    Extracted,
)
from index.loaders.epub import load_epub
from index.loaders.html import load_html
from index.loaders.image import load_image
from index.loaders.mail import load_eml
from index.loaders.markdown import load_markdown
from index.loaders.opendocument import load_odp, load_ods, load_odt
from index.loaders.pdf import load_pdf
from index.loaders.sheets import load_csv, load_xlsx
from index.loaders.slides import load_pptx
from index.loaders.text import decode_text, load_txt
from index.loaders.word import load_docx
from index.ocr import OcrReader
from index.pages import IMAGE_SUFFIXES
from index.types import Document, LoadError

__all__ = [
    "MAX_DOCUMENT_CHARS",
    "MAX_EXTRACTION_SECONDS",
    "MAX_PAGE_CHARS",
    "MAX_PDF_PAGES",
    "SUPPORTED_SUFFIXES",
    "decode_text",
    "load_document",
]

Loader = Callable[[bytes, Bounds], Extracted]

# Suffix -> (the Document's kind, its loader). Every loader gets the bounds; PDF, and the formats whose text can
# outgrow their file (sheets, archives), hold to them.
_FORMATS: dict[str, tuple[str, Loader]] = {
    ".txt": ("txt", load_txt),
    ".md": ("md", load_markdown),
    ".markdown": ("md", load_markdown),
    ".html": ("html", load_html),
    ".htm": ("html", load_html),
    ".pdf": ("pdf", load_pdf),
    ".docx": ("docx", load_docx),
    ".pptx": ("pptx", load_pptx),
    ".xlsx": ("xlsx", load_xlsx),
    ".csv": ("csv", load_csv),
    ".odt": ("odt", load_odt),
    ".odp": ("odp", load_odp),
    ".ods": ("ods", load_ods),
    ".epub": ("epub", load_epub),
    ".eml": ("eml", load_eml),
} | {suffix: ("image", load_image) for suffix in IMAGE_SUFFIXES}

SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_FORMATS)


def load_document(
    path: Path,
    root: Path,
    *,
    max_pdf_pages: int = MAX_PDF_PAGES,
    max_page_chars: int = MAX_PAGE_CHARS,
    max_document_chars: int = MAX_DOCUMENT_CHARS,
    max_extraction_seconds: float = MAX_EXTRACTION_SECONDS,
    ocr: OcrReader | None = None,
) -> Document:
    """Read and extract one file; a file that cannot be indexed raises LoadError, never anything else.

    The `max_*` bounds apply to PDF extraction, checked while it runs so a bomb stops at its first page, and
    `max_document_chars` and `max_extraction_seconds` to the office formats (a million-row sheet stops there).
    Scanned pages and images go through `ocr` (by default a reader without cache or language detection);
    what it noticed (pages likely misread, pages waiting for Tesseract) lands in `Document.notes`.
    """
    ocr = ocr or OcrReader()
    ocr.take_notes()  # a note belongs to the file it was made for
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise LoadError(f"unsupported file type ({suffix or 'no extension'})")
    kind, load = _FORMATS[suffix]
    data = _read(path)
    bounds = Bounds(max_pdf_pages, max_page_chars, max_document_chars, max_extraction_seconds, ocr)
    try:
        title, text, blocks = load(data, bounds)
    except LoadError:
        raise
    except Exception as exc:  # a parser choking on odd input must not abort a whole indexing run
        raise LoadError(f"could not extract text ({type(exc).__name__})") from exc
    if not blocks:
        raise LoadError("no extractable text")
    return Document(
        source=_relative_source(path, root),
        title=title or path.stem,
        text=text,
        blocks=blocks,
        content_hash=hashlib.sha256(data).hexdigest(),
        kind=kind,
        path=path,
        notes=ocr.take_notes(),
    )


def _read(path: Path) -> bytes:
    """The file's bytes; one that cannot be read, or holds nothing but white space, is a LoadError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror or type(exc).__name__})") from exc
    if not data.strip():
        raise LoadError("empty file")
    return data


def _relative_source(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.resolve().relative_to(root.resolve()).as_posix()
