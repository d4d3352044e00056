"""PDF files (pypdf): text per page, regrouped into paragraphs, numbered headings and tables of measurements.

The one format whose text can be far larger than its file: extraction runs under the `Bounds` it is given.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import time
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

from index.loaders.common import Bounds, Builder, Extracted, collapse, ends_sentence
from index.ocr import NEEDS_OCR
from index.types import LoadError

if TYPE_CHECKING:
    from pypdf import PdfReader

_PDF_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")
_PDF_NUM_HEADING = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,5})\.?\s+(\S.*)$")
_PDF_LETTER_HEADING = re.compile(r"^([A-H])\.\s+([A-Z][\w’'-]+(?:\s+[\w’'&-]+){1,10})$")
_PDF_NAMED_HEADINGS = frozenset(
    {
        "abstract",
        "contents",
        "table of contents",
        "introduction",
        "conclusion",
        "conclusions",
        "references",
        "bibliography",
        "acknowledgments",
        "acknowledgements",
        "appendix",
        "appendices",
        "résumé",
        "sommaire",
        "table des matières",
        "références",
        "bibliographie",
        "remerciements",
        "annexe",
        "annexes",
    }
)
_PDF_ITEM_START = re.compile(r"^(?:[•◦▪‣∙●○■□–—-]\s|(?:Figure|Fig\.|Table|Tableau)\s+\d+\b|\(\d{1,2}\)\s)")
_TOC_LINE = re.compile(r"(?:\.\s?){3,}\s*\d+$")
_NUMERIC_LINE = re.compile(r"^[\d.,%+\-−–:/() ]{1,12}$")
_PAGE_NUMBER = re.compile(r"^(?:\d{1,4}|[ivxlcdm]{1,7}|-\s*\d{1,4}\s*-|page\s+\d+(?:\s*(?:/|of|sur)\s*\d+)?)$", re.I)
# A table cell value: 79.8, -3, 1,820, 37B, 4.23GB, 5.7T, 71.0%, (2.1), 8x, and "-" for a missing value.
_PDF_NUMBER = re.compile(r"[(\[]?[-+−–~≈<>±]?\d[\d.,]*(?:%|[KMBT]|[KMGT]i?B|[kx×])?[)\]]?\*?|[-–—]")
_PDF_MEASURE = re.compile(r"\d[.,]\d|\d%")
_PDF_LETTERS_SPAN = re.compile(r"[^\W\d_](?:.*[^\W\d_])?")
_PDF_DIGITS = re.compile(r"\d+")
_KEEP_HYPHEN_PREFIXES = frozenset(
    "self non multi pre post co cross well long large small high low fine semi sub anti inter intra meta "
    "zero few one two three real end top state open rule case".split()
)
_TITLE_CONTINUES = frozenset(
    "a an and the of for in on via with to from by at de du des la le les et en pour par sur avec dans au aux".split()
)


class _PdfBudget:
    """The extraction bounds of one PDF, checked from pypdf's per-operator callbacks: a page's text is
    counted while it is extracted, so one huge page is stopped part-way rather than after it is done."""

    def __init__(self, bounds: Bounds):
        self.max_pages = bounds.max_pdf_pages
        self.max_page_chars = bounds.max_page_chars
        self.max_document_chars = bounds.max_document_chars
        self.max_seconds = bounds.max_extraction_seconds
        self.deadline = time.monotonic() + self.max_seconds
        self.page_number = 0
        self.page_chars = 0  # extracted so far from the current page
        self.document_chars = 0  # extracted from the finished pages
        self.exceeded = ""

    def check_pages(self, count: int) -> None:
        if count > self.max_pages:
            raise LoadError(f"PDF too long: {count} pages, limit {self.max_pages}")

    def start_page(self, number: int) -> None:
        self.page_number = number
        self.page_chars = 0

    def end_page(self, text: str) -> None:
        self.page_chars = len(text)
        self.check()
        self.document_chars += len(text)

    def on_operator(self, *_: object) -> None:
        self.check()

    def on_text(self, text: str, *_: object) -> None:
        self.page_chars += len(text)
        self.check()

    def check(self) -> None:
        """Raise once a bound is passed, and again on every later call: pypdf swallows errors raised inside a
        form XObject, so the next operator outside it must raise again."""
        if not self.exceeded:
            if self.page_chars > self.max_page_chars:
                self.exceeded = f"PDF page {self.page_number} too long: over {self.max_page_chars} characters"
            elif self.document_chars + self.page_chars > self.max_document_chars:
                self.exceeded = f"PDF text too long: over {self.max_document_chars} characters"
            elif time.monotonic() > self.deadline:
                self.exceeded = f"PDF extraction too slow: over {self.max_seconds:.0f} s"
        if self.exceeded:
            raise LoadError(self.exceeded)


def load_pdf(data: bytes, bounds: Bounds) -> Extracted:
    """Text per page (pypdf; scanned pages by OCR); lines regrouped into paragraphs and numbered headings;
    pages keep their number."""
    pages, meta_title = _pdf_pages(data, _PdfBudget(bounds))
    pages = _read_scanned_pages(data, pages, bounds)
    page_lines = [_pdf_clean_lines(raw) for raw in pages]
    running = _pdf_running_lines(page_lines)
    builder = Builder()
    first_lines: list[str] = []
    for number, lines in enumerate(page_lines, start=1):
        lines = ["" if line and _pdf_line_key(line) in running else line for line in lines]
        if not first_lines:
            first_lines = [line for line in lines if line]
        for text, level, header_rows in _pdf_paragraphs(lines):
            builder.add(text, level=level, page=number, header_rows=header_rows)
    if not builder.blocks:
        raise LoadError("no extractable text")
    return meta_title or _pdf_title(first_lines), builder.text(), builder.blocks


def _pdf_pages(data: bytes, budget: _PdfBudget) -> tuple[list[str], str]:
    """Raw text of every page; corrupt, encrypted, textless and over-budget files become LoadError."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception as exc:
                raise LoadError("encrypted PDF (password required)") from exc
            if not unlocked:
                raise LoadError("encrypted PDF (password required)")
        page_objects = list(reader.pages)
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__})") from exc
    if not page_objects:
        raise LoadError("corrupt or unreadable PDF (no pages)")
    budget.check_pages(len(page_objects))
    texts: list[str] = []
    failures = 0
    for number, page in enumerate(page_objects, start=1):
        budget.start_page(number)
        try:
            text = page.extract_text(visitor_operand_before=budget.on_operator, visitor_text=budget.on_text) or ""
        except LoadError:
            raise
        except Exception:  # one broken page should not hide the others
            failures += 1
            text = ""
        budget.end_page(text)
        texts.append(text)
    if failures == len(page_objects):
        raise LoadError("corrupt or unreadable PDF (no page could be read)")
    return texts, _pdf_meta_title(reader)


def _read_scanned_pages(data: bytes, texts: list[str], bounds: Bounds) -> list[str]:
    """Pages without a text layer but with an image on them, read by OCR; all pages' text in order."""
    from index.pages import has_text_layer, pdf_pages_with_images, render_pdf_page

    missing = [number for number, text in enumerate(texts, start=1) if not has_text_layer(text)]
    if not missing:
        return texts
    scanned = pdf_pages_with_images(data, missing)
    if not scanned:
        if len(missing) == len(texts):
            raise LoadError("no extractable text")
        return texts
    if bounds.ocr is None or not bounds.ocr.available():
        if not any(has_text_layer(t) for t in texts):
            raise LoadError(NEEDS_OCR)
        if bounds.ocr is not None:  # the pages with text are indexed; the scanned ones wait for tesseract
            bounds.ocr.note(f"pages {', '.join(map(str, scanned))} {NEEDS_OCR}")
        return texts
    key = hashlib.sha256(data).hexdigest()
    pages = [(number, functools.partial(render_pdf_page, data, number)) for number in scanned]
    read = bounds.ocr.read(key, pages, len(texts))
    return [read[number].text if number in read else text for number, text in enumerate(texts, start=1)]


def _pdf_meta_title(reader: PdfReader) -> str:
    """Metadata titles are often junk ("Microsoft Word - x.docx", "untitled"): keep only plausible ones."""
    try:
        title = collapse(str((reader.metadata or {}).get("/Title") or ""))
    except Exception:
        return ""
    low = title.lower()
    if not (3 <= len(title) <= 200) or not re.search(r"[^\W\d_]{3}", title):
        return ""
    if low.startswith(("microsoft word", "untitled", "document", "slide")) or re.search(
        r"\.(pdf|docx?|tex|dvi|pptx?|odt|rtf)$", low
    ):
        return ""
    return title


def _pdf_normalise(line: str) -> str:
    """Ligatures and math-alphabet letters to plain letters, controls dropped, spaces collapsed."""
    line = _PDF_CONTROL.sub("", line)
    line = "".join(
        unicodedata.normalize("NFKC", c) if 0xFB00 <= ord(c) <= 0xFB06 or 0x1D400 <= ord(c) <= 0x1D7FF else c
        for c in line
    )
    return collapse(unicodedata.normalize("NFC", line))


def _pdf_clean_lines(raw: str) -> list[str]:
    """Normalised lines; "" marks a blank line. Page numbers and runs of bare chart numbers are dropped."""
    lines = [_pdf_normalise(line) for line in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    content = [i for i, line in enumerate(lines) if line]
    for i in (content[-1:] + content[:1]) if content else []:
        if _PAGE_NUMBER.match(lines[i]):
            lines[i] = ""
    keep = [True] * len(lines)
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and lines[j] and _NUMERIC_LINE.match(lines[j]):
            j += 1
        if j - i >= 3:
            keep[i:j] = [False] * (j - i)
        i = max(j, i + 1)
    return [line for line, k in zip(lines, keep, strict=True) if k]


def _pdf_line_key(line: str) -> str:
    """A line from its first to its last letter, other digits folded: a running footer reads "Title 3
    20/07/2025" on one page, "20/07/2025 Title 4" or "Title20/07/2025 7" (glued) on others."""
    core = _PDF_LETTERS_SPAN.search(line)
    return _PDF_DIGITS.sub("#", (core.group() if core else line).lower())


def _pdf_running_lines(pages: list[list[str]]) -> set[str]:
    """Keys of running headers and footers (titles, dates, labels, logo alt texts): lines found on at least
    3 pages and on at least half of them.

    Half, because a running line is on (nearly) every page, bar a title or full-figure page, while the most
    repeated real lines stay far below that (in a 52-page report, a "Prompt" label on 19 pages; in a paper,
    a citation on 3 of 22). At least 3, because on two pages a line seen twice is as likely real content.
    """
    counts: dict[str, int] = {}
    for lines in pages:
        for key in {_pdf_line_key(line) for line in lines if line}:
            counts[key] = counts.get(key, 0) + 1
    return {key for key, count in counts.items() if count >= 3 and count * 2 >= len(pages)}


def _pdf_heading_level(line: str) -> int:
    """Numbered section titles ("2.3.1 Cold Start", "1. Introduction") and named ones ("Abstract")."""
    if line.lower().rstrip(":") in _PDF_NAMED_HEADINGS:
        return 1
    if len(line) > 100 or ". . ." in line or line.endswith((".", ",", ";", ":")):
        return 0
    match = _PDF_NUM_HEADING.match(line)
    if match:
        title = match.group(2)
        words = title.split()
        if (
            title[0].isupper()
            and len(words) <= 14
            and not re.search(r"\s\d+$", line)  # a table-of-contents line ends with its page number
            and sum(any(c.isdigit() for c in w) for w in words) <= 2
            and any(len(w) >= 3 and w.isalpha() for w in words)
        ):
            return min(match.group(1).count(".") + 1, 6)
        return 0
    letter = _PDF_LETTER_HEADING.match(line)
    if letter and "," not in line and not re.search(r"\s\d+$", line):
        return 1
    return 0


def _pdf_width(lines: Iterable[str]) -> int:
    lengths = sorted(len(line) for line in lines if len(line) >= 20)
    if not lengths:
        return 80
    return lengths[int(len(lengths) * 0.8)] if len(lengths) >= 5 else lengths[-1]


def _pdf_paragraphs(lines: list[str]) -> list[tuple[str, int, int | None]]:
    """Regroup a page's lines: a short line ends a paragraph (justified text fills the others); a table keeps
    a line per row. Items are (text, heading level, header rows if a table else None)."""
    width = _pdf_width(lines)
    tables = {table[0]: table for table in _pdf_tables(lines, width)}
    out: list[tuple[str, int, int | None]] = []
    para: list[str] = []
    fragments = False  # is out[-1] a run of glued short fragments (chart labels, formula pieces, names)?

    def flush() -> None:
        nonlocal fragments
        if not para:
            return
        text = _pdf_join(para)
        is_fragment = len(para) == 1 and len(text) < 40 and not ends_sentence(text)
        if is_fragment and fragments:
            out[-1] = (f"{out[-1][0]} {text}", 0, None)
        else:
            out.append((text, 0, None))
        fragments = is_fragment
        para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if i - 1 in tables:
            flush()
            _, rows_start, end = tables[i - 1]
            header = lines[i - 1 : rows_start]
            out.append(("\n".join(header + _pdf_table_rows(lines[rows_start:end])), 0, len(header)))
            fragments = False
            i = end
            continue
        if not line:
            flush()
            continue
        level = _pdf_heading_level(line) if not para else 0
        if level:
            out.append((line, level, None))
            fragments = False
            continue
        if para and _PDF_ITEM_START.match(line):
            flush()
        para.append(line)
        limit = 0.9 if ends_sentence(line) else 0.75
        if len(line) < width * limit or _TOC_LINE.search(line):
            flush()
    flush()
    return out


def _pdf_row_values(line: str) -> int:
    """How many number-like tokens end the line: a table row reads "MMLU (EM) 88.3 87.2 -"."""
    count = 0
    for token in reversed(line.split()):
        if not _PDF_NUMBER.fullmatch(token):
            break
        count += 1
    return count


def _pdf_is_label(line: str) -> bool:
    """A short line without numbers between rows: a category ("English") or a wrapped first cell."""
    return 0 < len(line.split()) <= 3 and not any(c.isdigit() for c in line) and not ends_sentence(line)


def _pdf_tables(lines: list[str], width: int) -> list[tuple[int, int, int]]:
    """Tables of measurements in a page's lines, as (header start, first row, end) line indices.

    Rows are lines ending in at least 2 number-like values, at least 3 of them, with label lines between
    them; at least half must hold a decimal or a percentage, as measurements do, which names with version
    numbers ("LLaMA 2 13B" chart labels) or code (f((1, 2)) == (3, 4)) do not. The header is the short
    lines right above (column titles wrap, so up to 4), never a sentence, a heading, a caption or a list item.
    """
    tables: list[tuple[int, int, int]] = []
    i = 0
    while i < len(lines):
        if _pdf_row_values(lines[i]) < 2:
            i += 1
            continue
        end, rows = i, []
        while end < len(lines) and lines[end]:
            if _pdf_row_values(lines[end]) >= 2:
                rows.append(lines[end])
            elif not (_pdf_is_label(lines[end]) and end + 1 < len(lines) and _pdf_row_values(lines[end + 1]) >= 2):
                break
            end += 1
        if len(rows) >= 3 and sum(bool(_PDF_MEASURE.search(row)) for row in rows) * 2 >= len(rows):
            floor = tables[-1][2] if tables else 0
            head = i
            while head > floor and i - head < 4 and _pdf_is_header_line(lines[head - 1], width):
                head -= 1
            tables.append((head, i, end))
        i = max(end, i + 1)
    return tables


def _pdf_is_header_line(line: str, width: int) -> bool:
    return (
        bool(line)
        and len(line) < width * 0.85  # column titles; a justified line of prose fills the measure
        and not _pdf_heading_level(line)
        and not ends_sentence(line)
        and not line.endswith((":", ",", ";"))
        and not _PDF_ITEM_START.match(line)
    )


def _pdf_table_rows(lines: list[str]) -> list[str]:
    """Table lines, one per row: a label line becomes the first cell of the row under it."""
    rows: list[str] = []
    label = ""
    for line in lines:
        if _pdf_row_values(line) >= 2:
            rows.append(f"{label} {line}".strip())
            label = ""
        else:
            label = f"{label} {line}".strip()
    return rows


def _pdf_join(lines: list[str]) -> str:
    """Join wrapped lines; a word hyphenated across a line break is rejoined ("super-" + "vised")."""
    text = lines[0]
    for line in lines[1:]:
        if text.endswith("-") and not text.endswith(" -"):
            word = re.search(r"([\w’'-]*)-$", text)
            prefix = word.group(1).split("-")[-1].lower() if word else ""
            if text[-2:-1].islower() and line[:1].islower() and prefix not in _KEEP_HYPHEN_PREFIXES:
                text = text[:-1] + line
            else:
                text += line  # "DeepSeek-" + "R1", "Qwen2.5-" + "32B": a real hyphen
        else:
            text += " " + line
    return text


def _pdf_title(first_lines: list[str]) -> str:
    """First line of the first page, continued when it visibly breaks mid-phrase ("... via")."""
    if not first_lines:
        return ""
    title = first_lines[0]
    rest = first_lines[1:3]
    while rest and (title.split()[-1].lower() in _TITLE_CONTINUES or title.endswith((":", "-"))):
        title = f"{title} {rest.pop(0)}"
    return title[:200]
