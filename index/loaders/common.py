"""What every format shares: the extraction bounds, and the builder that lays blocks out in one text with
exact offsets, with the line tests (sentence ends, point markers, legal labels) that more than one format uses."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from index.ocr import OcrReader
from index.types import Block, LoadError

# Bounds of PDF extraction, the one format whose text can be far larger than its file: pages can share one
# content stream, so a 46 KB file can extract to 92 million characters. A file over a bound is a LoadError.
MAX_PDF_PAGES = 2000
MAX_PAGE_CHARS = 100_000  # a dense real page holds under ~10k characters: 10x that is not a page but a bomb
MAX_DOCUMENT_CHARS = 5_000_000
MAX_EXTRACTION_SECONDS = 120.0


@dataclass(frozen=True)
class Bounds:
    """The extraction bounds of one `load_document` call, handed to every loader, and the OCR reader that
    scanned pages and images go through (None: such pages are reported as needing OCR)."""

    max_pdf_pages: int = MAX_PDF_PAGES
    max_page_chars: int = MAX_PAGE_CHARS
    max_document_chars: int = MAX_DOCUMENT_CHARS
    max_extraction_seconds: float = MAX_EXTRACTION_SECONDS
    ocr: OcrReader | None = None


# What a loader returns: (title, or "" to fall back on the file name; text; blocks, in order, with offsets in text).
Extracted = tuple[str, str, list[Block]]


# Blocks that we build ourselves (markdown, HTML, PDF) are separated by a blank line.
_BLOCK_SEP = "\n\n"
SENTENCE_END = ".!?…"
# A line that is nothing but a list/point marker: "(a)", "1.", "iv)", "—", "•".
ENUM_ONLY = re.compile(
    r"^(?:\(?\d{1,3}[.)]|\(\d{1,3}\)|\(?[a-zA-Z]{1,2}[.)]|\([a-zA-Z]{1,2}\)|\(?[ivxlcdm]{1,6}[.)]|\([ivxlcdm]{1,6}\)|[—–•-])$"
)
# Legal structure labels, alone on their line: "CHAPTER V", "Article 44", "Section 2", "Annexe I".
_LEGAL_LABEL = re.compile(
    r"^(part|partie|title|titre|chapter|chapitre|section|sous-section|article|annex|annexe)"
    r"\s+(\d+[a-z]?|[ivxlcdm]+|premier|first|[a-z])\.?$",
    re.IGNORECASE,
)
_LEGAL_LEVELS = {
    "part": 2,
    "partie": 2,
    "title": 2,
    "titre": 2,
    "annex": 2,
    "annexe": 2,
    "chapter": 3,
    "chapitre": 3,
    "section": 4,
    "sous-section": 4,
    "article": 5,
}


@dataclass
class Builder:
    """Accumulates block texts into one document text, recording exact offsets.

    Given `bounds`, it holds the text to `bounds.max_document_chars` and the extraction to
    `bounds.max_extraction_seconds` (from its creation): past either, `check` (called by `add`) raises a LoadError
    naming `what` (".xlsx"). Formats whose text can be far larger than their file (sheets, archives) pass them.
    """

    parts: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    length: int = 0
    bounds: Bounds | None = None
    what: str = "document"
    started: float = field(default_factory=time.monotonic)

    def check(self, pending: int = 0) -> None:
        """Raise when the text, plus `pending` characters read but not added yet, or the time spent is over
        the bounds; a loader reading rows calls it as it reads, so a million-row sheet stops at its bound."""
        if self.bounds is None:
            return
        limit = self.bounds.max_document_chars
        if self.length + pending > limit:
            raise LoadError(f"{self.what} too large: over {limit} characters of text")
        seconds = self.bounds.max_extraction_seconds
        if time.monotonic() - self.started > seconds:
            raise LoadError(f"{self.what} extraction too slow: over {seconds:g} s")

    def add(
        self,
        text: str,
        level: int = 0,
        page: int | None = None,
        header_rows: int | None = None,
        records: bool = False,
    ) -> None:
        """`header_rows` makes the block a table (one row per line) whose first `header_rows` lines are its
        header; None for anything else. `records` marks a table whose rows are records (a sheet): each data
        row is then always also a chunk of its own under the header (see `Block.records`)."""
        text = text.strip()
        if not text:
            return
        if level and _too_long_for_heading(text):
            level = 0  # some pages style lead paragraphs as <h4>: a full sentence is body text
        if self.parts:
            self.parts.append(_BLOCK_SEP)
            self.length += len(_BLOCK_SEP)
        self.parts.append(text)
        start = self.length
        header = None
        if header_rows and text.count("\n") >= header_rows:  # a header with at least one row under it
            head = "\n".join(text.split("\n")[:header_rows]).rstrip()
            header = (start, start + len(head))
        is_table = header_rows is not None
        self.blocks.append(Block(start, start + len(text), level, page, is_table, header, records and is_table))
        self.length += len(text)
        self.check()

    def extend(self, text: str, blocks: Iterable[Block], shift: int = 0) -> None:
        """Append the blocks of another extraction (an e-mail's attachment), headings `shift` levels deeper."""
        for block in blocks:
            piece = text[block.start : block.end]
            header_rows = None
            if block.table:
                header_rows = piece[: block.header[1] - block.start].count("\n") + 1 if block.header else 0
            level = min(block.heading_level + shift, 6) if block.heading_level else 0
            self.add(piece, level, block.page, header_rows, block.records)

    def text(self) -> str:
        return "".join(self.parts)


def _too_long_for_heading(text: str) -> bool:
    words = len(text.split())
    return words > 25 or (words > 12 and text.rstrip().endswith("."))


def collapse(text: str) -> str:
    return " ".join(text.split())


def ends_sentence(text: str) -> bool:
    return text.rstrip(" »”\"’')]").endswith(tuple(SENTENCE_END))


def legal_level(text: str) -> int | None:
    match = _LEGAL_LABEL.match(collapse(text))
    return _LEGAL_LEVELS[match.group(1).lower()] if match else None
