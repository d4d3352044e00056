"""Plain data passed between loaders, chunking, the store and retrieval."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

_MB = 1024 * 1024
_NAME_SEPARATORS = re.compile(r"[\s_.\-]+")  # how file names separate words: "cnil_guide-rgpd.v2"


def file_name_words(source: str) -> str:
    """The words of a file's name, without its folders and extension: "related/cnil_guide-rgpd.html" is "cnil guide
    rgpd"."""
    return _NAME_SEPARATORS.sub(" ", PurePosixPath(source).stem)


def size_limit_reason(size: int, limit: int) -> str:
    """Why a file over the size limit is refused; one wording for indexing, the API and the UI."""
    return f"too large: {size / _MB:.1f} MB, limit {limit / _MB:.0f} MB"


class LoadError(Exception):
    """A file that cannot be indexed; `reason` is shown to the user next to its path."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Block:
    """A structural unit of extracted text: `text[start:end]` of its document.

    `heading_level` is 0 for body text and 1..6 for a heading; `page` is 1-based: the PDF page, the slide of a
    presentation, the sheet of a workbook; None where the format has none.
    `table` marks a table, one row per line (chunking cuts it between rows, never mid-row); `header` is
    the span of its header row(s) in the document text, when it has one: each data row can then also be
    indexed on its own, under that header, so a question answered by one row finds that row.
    `records` marks a table whose rows are records (a sheet, a CSV file: a row is a whole fact, met by a
    question only with its header): chunking always gives each of its data rows a chunk of its own under the
    header, where other tables get one only with the `table_row_chunks` setting.
    """

    start: int
    end: int
    heading_level: int = 0
    page: int | None = None
    table: bool = False
    header: tuple[int, int] | None = None
    records: bool = False


@dataclass
class Document:
    """One source file after extraction. Offsets in blocks and chunks index into `text`."""

    source: str  # posix path relative to its corpus root
    title: str
    text: str
    blocks: list[Block]
    content_hash: str  # sha256 of the raw file bytes
    kind: str  # the loader's name: "txt", "md", "html", "pdf", "image", ...
    path: Path | None = None
    notes: list[str] = field(default_factory=list)  # what the user should know (OCR confidence, pages skipped)


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage; `document.text[start:end] == text`."""

    source: str
    title: str
    text: str
    start: int
    end: int
    index: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    content_hash: str = field(default="")
    id: str = field(default="")
    language: str = ""  # "fr" or "en", detected at indexing: dense scores are compared within a language

    @property
    def embedding_text(self) -> str:
        """What is embedded: the text under its title and heading path, so a passage that says "it" still
        carries what it is about (the offsets and the quoted text stay the chunk's own)."""
        context = " > ".join(part for part in (self.title, *self.heading_path) if part)
        return f"{context}\n{self.text}" if context else self.text

    @property
    def search_text(self) -> str:
        """What BM25 reads: the embedded text under the words of the file's name, so a question that names its
        source ("the CNIL guide", "d'après Wikipédia") or a section's topic also matches its passages by word."""
        return f"{file_name_words(self.source)}\n{self.embedding_text}"

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", text_hash(self.text))
        if not self.id:
            # Title and heading path are part of what is embedded, so they are part of the identity too.
            object.__setattr__(self, "id", chunk_id(self.source, text_hash(self.embedding_text)))

    def metadata(self) -> dict[str, str | int]:
        """Flat metadata accepted by Chroma (no None, no lists)."""
        meta: dict[str, str | int] = {
            "source": self.source,
            "title": self.title,
            "heading_path": " > ".join(self.heading_path),
            "start": self.start,
            "end": self.end,
            "chunk_index": self.index,
            "content_hash": self.content_hash,
        }
        if self.page is not None:
            meta["page"] = self.page
        if self.language:
            meta["language"] = self.language
        return meta

    @classmethod
    def from_metadata(cls, chunk_id_: str, text: str, meta: dict) -> Chunk:
        heading = str(meta.get("heading_path") or "")
        page = meta.get("page")
        return cls(
            source=str(meta["source"]),
            title=str(meta.get("title", "")),
            text=text,
            start=int(meta["start"]),
            end=int(meta["end"]),
            index=int(meta.get("chunk_index", 0)),
            heading_path=tuple(heading.split(" > ")) if heading else (),
            page=int(page) if page is not None else None,
            content_hash=str(meta.get("content_hash", "")),
            id=chunk_id_,
            language=str(meta.get("language", "")),
        )


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_id(source: str, content_hash: str) -> str:
    """Stable across runs: the same text in the same file always gets the same id."""
    return hashlib.sha256(f"{source}\x00{content_hash}".encode()).hexdigest()[:32]
