"""Pages as images and where a quote stands on them: rendering (pypdfium2, Pillow) and word positions.

A citation to a PDF or an image is shown on the page itself: the page rendered, the quoted sentence boxed
where it stands. Positions come from the PDF's text layer (pdfium's character boxes) or, for a scanned page
or an image, from the OCR words cached at indexing (index.ocr). A quote is found on a page by its letters and
digits alone (case, accents' composition, spaces, hyphenation and ligatures set aside), because our extracted
text and pdfium's differ in exactly those; OCR slips are bridged by anchoring on the longest exact run.
"""

from __future__ import annotations

import functools
import hashlib
import io
import sys
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING

from index.ocr import OCR_DPI, OcrPage, OcrReader
from index.types import LoadError

if TYPE_CHECKING:
    import pypdfium2
    from PIL.Image import Image

# A page bigger than this many pixels at the wanted resolution is rendered at a lower one: an A4 page at
# 300 dpi is 8.7 Mpx, and a malicious 200-inch page must not allocate gigabytes.
MAX_PAGE_PIXELS = 40_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
PAGED_KINDS = ("pdf", "image")  # the Document kinds whose citations can be shown on their page
_MIN_TEXT_LAYER_CHARS = 20  # see has_text_layer
# A quote with OCR slips is located where a window of its length shares this share of its characters (difflib's
# ratio): one misread letter in twenty (a slip-ridden but readable scan) still matches; a different sentence that
# merely shares a phrase with the quote ("fictional coin") stays far below.
_MIN_FUZZY_RATIO = 0.8


@dataclass(frozen=True)
class PageBox:
    """A rectangle on a page in page units (PDF points for a PDF, pixels for an image), origin top left;
    the page's size in the same units, so a client can scale the box onto any rendering of the page."""

    page: int
    x0: float
    y0: float
    x1: float
    y1: float
    page_width: float
    page_height: float


# One character of a page and its box (x0, y0, x1, y1 in page units, origin top left).
Glyph = tuple[str, tuple[float, float, float, float]]


# PDFium is not thread-safe (pypdfium2's documentation: no two threads may call into it at once), and an answer
# locates quotes while an upload's OCR renders pages: every use of it holds this lock, documents are opened and
# closed under it, and what leaves it (an image, glyphs) is plain Python data. Held per page, never per document,
# so a long scan never keeps answers waiting for more than one page's rendering.
PDFIUM_LOCK = threading.RLock()


@contextmanager
def opened_pdf(data: bytes) -> Iterator[pypdfium2.PdfDocument]:
    """The PDF open under the PDFium lock, closed on leaving."""
    import pypdfium2

    with PDFIUM_LOCK:
        try:
            pdf = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            raise LoadError(f"corrupt or unreadable PDF ({exc})") from exc
        try:
            yield pdf
        finally:
            pdf.close()


def render_pdf_page(data: bytes, number: int, dpi: int = OCR_DPI) -> Image:
    """Page `number` (1-based) as a Pillow image at `dpi`, or lower if the page is huge."""
    with opened_pdf(data) as pdf:
        return _render(pdf, number, dpi)


def _render(pdf: pypdfium2.PdfDocument, number: int, dpi: int) -> Image:
    page = pdf[number - 1]
    width, height = page.get_size()
    scale = min(dpi / 72, (MAX_PAGE_PIXELS / max(1.0, width * height)) ** 0.5)
    return page.render(scale=scale).to_pil().copy()  # a copy: the bitmap's memory goes with the document


def pdf_pages_with_images(data: bytes, numbers: Sequence[int]) -> list[int]:
    """Those of `numbers` whose page holds an image (what a scanner makes)."""
    import pypdfium2.raw as pdfium_c

    with opened_pdf(data) as pdf:
        return [
            n for n in numbers if any(True for _ in pdf[n - 1].get_objects([pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3))
        ]


def image_frames(data: bytes, max_frames: int) -> list[Image]:
    """Every frame of an image file (a TIFF can hold a whole scanned document), as RGB images; a file of more
    than `max_frames` frames is a LoadError before any frame is decoded."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        count = getattr(image, "n_frames", 1)
        if count > max_frames:
            raise LoadError(f"image too long: {count} frames, limit {max_frames}")
        return [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise LoadError(f"corrupt or unreadable image ({type(exc).__name__})") from exc


def pdf_glyphs(data: bytes, number: int) -> tuple[list[Glyph], float, float] | None:
    """The characters of a PDF page's text layer with their boxes, and the page's width and height; None when
    the PDF has no page `number`."""
    import pypdfium2.raw as pdfium_c

    with opened_pdf(data) as pdf:
        if not 1 <= number <= len(pdf):
            return None
        page = pdf[number - 1]
        width, height = page.get_size()
        textpage = page.get_textpage()
        glyphs: list[Glyph] = []
        for i in range(textpage.count_chars()):
            char = chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i))
            left, bottom, right, top = textpage.get_charbox(i)
            glyphs.append((char, (left, height - top, right, height - bottom)))
        return glyphs, width, height


def ocr_glyphs(page: OcrPage, units_per_pixel: float) -> list[Glyph]:
    """The characters of an OCR'd page, each with its word's box, in page units, a space between words."""
    glyphs: list[Glyph] = []
    for word in page.words:
        box = tuple(v * units_per_pixel for v in word.box)
        glyphs.extend((char, box) for char in word.text)  # type: ignore[misc]
        glyphs.append((" ", (0.0, 0.0, 0.0, 0.0)))
    return glyphs


def locate(glyphs: Sequence[Glyph], quote: str, *, fuzzy: bool = True) -> list[tuple[float, float, float, float]]:
    """Boxes covering `quote` on a page of `glyphs`, one per line of text it spans; [] if it is not there.

    Exact on letters and digits first; with `fuzzy`, OCR slips are bridged: the quote's longest exact run on
    the page anchors a window of the quote's length, taken when most of its characters match the quote's."""
    page_keys, positions = _keys(glyph for glyph, _ in glyphs)
    quote_keys, _ = _keys(quote)
    if not quote_keys or not page_keys:
        return []
    found = page_keys.find(quote_keys)
    if found >= 0:
        start, end = found, found + len(quote_keys)
    elif fuzzy:
        match = SequenceMatcher(None, page_keys, quote_keys, autojunk=False).find_longest_match()
        start = max(0, match.a - match.b)
        end = min(len(page_keys), start + len(quote_keys))
        if SequenceMatcher(None, page_keys[start:end], quote_keys, autojunk=False).ratio() < _MIN_FUZZY_RATIO:
            return []
    else:
        return []
    return _line_boxes([glyphs[positions[i]][1] for i in range(start, end)])


def _keys(chars: str | Iterator[str]) -> tuple[str, list[int]]:
    """The letters and digits of `chars`, folded (NFKD without marks, casefolded), with where each came from."""
    keys: list[str] = []
    positions: list[int] = []
    for i, char in enumerate(chars):
        for folded in unicodedata.normalize("NFKD", char).casefold():
            if folded.isalnum():
                keys.append(folded)
                positions.append(i)
    return "".join(keys), positions


def _line_boxes(boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Character boxes merged into one rectangle per line: a new line starts where the next box does not
    overlap the current line's height, or steps back to the left."""
    lines: list[list[float]] = []
    for x0, y0, x1, y1 in boxes:
        if x1 <= x0 or y1 <= y0:
            continue
        if lines:
            current = lines[-1]
            middle = (y0 + y1) / 2
            if current[1] <= middle <= current[3] and x0 >= current[0] - 1:
                current[:] = [min(current[0], x0), min(current[1], y0), max(current[2], x1), max(current[3], y1)]
                continue
        lines.append([x0, y0, x1, y1])
    return [(a, b, c, d) for a, b, c, d in lines]


def has_text_layer(text: str | Sequence[Glyph]) -> bool:
    """Whether a page's text layer is its content: a scanned page's is empty, or holds at most a stamp or a page
    number (under 20 letters and digits; a real page of text has hundreds)."""
    chars = text if isinstance(text, str) else (char for char, _ in text)
    return sum(char.isalnum() for char in chars) >= _MIN_TEXT_LAYER_CHARS


@functools.lru_cache(maxsize=4)  # files of up to the upload limit each
def _file(path: str, content_hash: str) -> bytes | None:
    """The file's bytes if it still holds the content that was indexed (else offsets and pages mean nothing)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == content_hash else None


@functools.lru_cache(maxsize=64)
def _page_glyphs(path: str, kind: str, content_hash: str, number: int, ocr_cache: Path | None) -> _PageText | None:
    """A page's characters with boxes: the PDF's text layer, else the OCR words cached at indexing."""
    data = _file(path, content_hash)
    if data is None:
        return None
    ocr = OcrReader(ocr_cache).cached(content_hash, number)
    if kind == "image":
        return _PageText(ocr_glyphs(ocr, 1.0), ocr.width, ocr.height) if ocr else None
    found = pdf_glyphs(data, number)
    if found is None:
        return None
    glyphs, width, height = found
    if not has_text_layer(glyphs) and ocr is not None:
        glyphs = ocr_glyphs(ocr, width / ocr.width)
    return _PageText(glyphs, width, height)


@dataclass(frozen=True)
class _PageText:
    glyphs: list[Glyph]
    width: float
    height: float


def quote_boxes(
    path: str, kind: str, content_hash: str, page: int, quote: str, ocr_cache: Path | None = None
) -> list[PageBox]:
    """Where `quote` stands in a PDF or image file, looked for on `page` and the next two (a passage that starts
    on one page can quote a sentence of the next); [] when the file changed, the kind has no pages, or the
    quote is not found."""
    if kind not in PAGED_KINDS:
        return []
    pages: list[tuple[int, _PageText]] = []
    for number in range(page, page + 3):
        try:
            text = _page_glyphs(path, kind, content_hash, number, ocr_cache)
        except LoadError:
            return []
        if text is not None:
            pages.append((number, text))
    for fuzzy in (False, True):  # an exact match on a later page beats a near one on the first
        for number, text in pages:
            boxes = locate(text.glyphs, quote, fuzzy=fuzzy)
            if boxes:
                return [PageBox(number, *box, text.width, text.height) for box in boxes]
    return []


def page_png(path: str, kind: str, content_hash: str, page: int, dpi: int = 110) -> bytes | None:
    """Page `page` of a PDF or image file as PNG, at `dpi` (images keep their own resolution, scaled to at
    most the same number of pixels); None when the file changed or has no such page."""
    data = _file(path, content_hash)
    if data is None or kind not in PAGED_KINDS:
        return None
    if kind == "pdf":
        with opened_pdf(data) as pdf:
            if not 1 <= page <= len(pdf):
                return None
            image = _render(pdf, page, dpi)
    else:
        frames = image_frames(data, max_frames=sys.maxsize)  # it was indexed, so within the loader's bound
        if not 1 <= page <= len(frames):
            return None
        image = frames[page - 1]
        image.thumbnail((int(8.5 * dpi), int(11 * dpi)))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
