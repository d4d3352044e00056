"""What the office formats share (.docx, .pptx, .xlsx, .csv, OpenDocument, .epub, .eml): the zip-bomb guard
run before any parser, the conversion of a parser's failure into a short LoadError, text taken out of markup
cleaned as the text loaders clean theirs, and table rows as lines."""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from index.loaders.common import Builder, collapse
from index.types import LoadError


def clean(text: str) -> str:
    """Text taken out of a document's markup as the text loaders leave theirs: one kind of line break ("\\n" for
    CR LF, CR, vertical tab, line/paragraph separators), no other control character (tabs become spaces),
    NFC (a decomposed "é" is one character, so it is found by what a user types)."""
    text = text.replace("\r\n", "\n").translate(_CONTROL_CHARS)
    return unicodedata.normalize("NFC", text)


# \r \v \f U+2028 U+2029 end a line (python-pptx gives a line break as \v); \t is white space; other C0 goes.
_CONTROL_CHARS = {
    **{c: None for c in range(32) if c not in (9, 10)},
    **dict.fromkeys((0x0B, 0x0C, 0x0D, 0x2028, 0x2029), "\n"),
    0x09: " ",
    0x7F: None,
}


def lines(text: str) -> str:
    """Cleaned text with its white space collapsed inside each line and its blank lines dropped."""
    return "\n".join(line for line in (collapse(line) for line in clean(text).split("\n")) if line)


# ------------------------------------------------------------------------------------------------------ tables


def row_cells(cells: Iterable[str]) -> list[str]:
    """A table row's cells, cleaned and white space collapsed, trailing empty cells dropped."""
    texts = [collapse(clean(cell)) for cell in cells]
    while texts and not texts[-1]:
        texts.pop()
    return texts


def looks_like_header(rows: list[str]) -> bool:
    """A first row that names columns: one with rows under it, and not all numbers (a header names; data rows
    of figures do not)."""
    if len(rows) < 2:
        return False
    cells = [cell.strip() for cell in rows[0].split(" | ") if cell.strip()]
    return bool(cells) and not all(_NUMBER.fullmatch(cell) for cell in cells)


_NUMBER = re.compile(r"[-+]?[\d\s.,\u00a0\u202f]*\d[\s\u00a0\u202f]*[%€$£]?")


def read_rows(builder: Builder, rows: Iterable[Iterable[str]]) -> list[str]:
    """The non-empty rows of a table, one line each, cells joined by " | ": inner empty cells are kept so that
    columns stay under their header's, the empty columns left of the table dropped (a sheet's used range
    starting at column C). Checked against the builder's bounds as they are read: a sheet of a million rows
    stops at the document bound instead of filling the memory first."""
    kept: list[list[str]] = []
    pending = 0
    for cells in rows:
        texts = row_cells(cells)
        if texts:
            kept.append(texts)
            pending += sum(len(text) + 3 for text in texts)
        builder.check(pending)  # empty rows too: a sheet of a million of them stops at the time bound
    left = min((next(i for i, text in enumerate(texts) if text) for texts in kept), default=0)
    return [" | ".join(texts[left:]) for texts in kept]


# ----------------------------------------------------------------------------------------------- zip packages


# A zip-based document (.docx, .pptx, .xlsx, .odt, .epub, ...) declares the size of each member unpacked; a few
# hundred kilobytes can declare gigabytes of XML (a zip bomb) that the parsers would inflate and build trees of
# in memory. 200 MB of XML holds far more than MAX_DOCUMENT_CHARS of text (markup is most of an office file), so
# no document we could index is refused; and Python's zipfile never inflates a member past its declared size, so
# the declared total bounds the work.
MAX_UNPACKED_BYTES = 200 * 1024 * 1024


def check_zip(data: bytes, what: str) -> None:
    """Refuse, before any parser runs, what is not a readable zip or declares over MAX_UNPACKED_BYTES unpacked."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise LoadError(f"not a valid {what} file (corrupt zip)") from exc
    if total > MAX_UNPACKED_BYTES:
        mb = 1024 * 1024
        raise LoadError(f"{what} archive too large: unpacks to {total // mb} MB, limit {MAX_UNPACKED_BYTES // mb} MB")


@contextmanager
def opening(what: str) -> Iterator[None]:
    """Turn a parser's failure to open a file into LoadError("not a valid .docx file (missing part)")."""
    try:
        yield
    except LoadError:
        raise
    except Exception as exc:  # each library raises its own kinds: a short reason is all the user needs
        raise LoadError(f"not a valid {what} file ({_failure(exc)})") from exc


def _failure(exc: Exception) -> str:
    name = type(exc).__name__
    if isinstance(exc, zipfile.BadZipFile):
        return "corrupt zip"
    if isinstance(exc, KeyError):
        return "missing part"
    if "XML" in name or "SAX" in name or "Expat" in name or "Parse" in name:
        return "malformed XML"
    if isinstance(exc, ValueError):
        return "unexpected content"
    return name
