"""Text from page images by Tesseract, for scanned PDF pages and image files.

Tesseract is Debian's `tesseract-ocr` program (with `tesseract-ocr-fra` and `-eng`), run as a process on one
page at a time: a page that hangs or crashes costs that page, not the indexing run, and `OMP_THREAD_LIMIT=1`
keeps it to one core so answering keeps the other. Results are cached by the file's content hash and page, so
showing a quote in context or locating it on the page never runs OCR twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from index.types import LoadError

if TYPE_CHECKING:
    from PIL.Image import Image

# 300 dpi is the resolution Tesseract's models were trained at; below ~200 dpi accuracy on 10-pt text falls fast.
OCR_DPI = 300
# A page's confidence (Tesseract's per-word confidence, averaged over characters) under this is reported to the
# user as possibly misread. Measured on a rendered page of French text (tests' DejaVu page): sharp, 96; blurred
# until a few letters go wrong ("Commussion"), 78; blurred one step more, 25 and unreadable. 60 sits in the gap
# and is the cut-off Tesseract's users commonly apply to single words.
LOW_CONFIDENCE = 60.0
# One page of a scan takes 2-6 s on one core at 300 dpi; a page still running after this is given up.
PAGE_TIMEOUT_SECONDS = 120.0
# Tesseract's language packs for our two languages; both are used until the document's language is known.
TESSERACT_LANGUAGES = {"fr": "fra", "en": "eng"}
_BOTH = "fra+eng"
NEEDS_OCR = "needs OCR: install tesseract-ocr (with tesseract-ocr-fra and tesseract-ocr-eng)"
_CACHE_VERSION = 1

# Words recognised on a page, with their box in the image's pixels and Tesseract's confidence (0-100).
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class OcrWord:
    text: str
    box: Box  # x0, y0, x1, y1 in pixels of the page image, origin top left
    confidence: float
    line: tuple[int, int, int]  # Tesseract's (block, paragraph, line): which words share a line


@dataclass
class OcrPage:
    """One page read by Tesseract; `width`/`height` are the image's pixels at `dpi`."""

    width: int
    height: int
    dpi: int
    language: str
    words: list[OcrWord] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The words in reading order: a line per Tesseract line, a blank line between its paragraphs."""
        out: list[str] = []
        previous: tuple[int, int, int] | None = None
        for word in self.words:
            if previous is None:
                out.append(word.text)
            elif word.line == previous:
                out.append(" " + word.text)
            else:
                out.append("\n\n" if word.line[:2] != previous[:2] else "\n")
                out.append(word.text)
            previous = word.line
        return "".join(out)

    @property
    def confidence(self) -> float:
        """Tesseract's word confidences averaged over characters (100 for a page without words)."""
        chars = sum(len(w.text) for w in self.words)
        return sum(w.confidence * len(w.text) for w in self.words) / chars if chars else 100.0


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def recognise(image: Image, languages: str = _BOTH, dpi: int = OCR_DPI) -> OcrPage:
    """Run Tesseract on one page image; its words with boxes and confidences."""
    if not tesseract_available():
        raise LoadError(NEEDS_OCR)
    png = io.BytesIO()
    image.convert("L").save(png, format="PNG")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", languages, "--dpi", str(dpi), "tsv"],
            input=png.getvalue(),
            capture_output=True,
            timeout=PAGE_TIMEOUT_SECONDS,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"OCR too slow: a page took over {PAGE_TIMEOUT_SECONDS:.0f} s") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise LoadError(f"OCR failed ({detail[0][:120]})")
    page = OcrPage(width=image.width, height=image.height, dpi=dpi, language=languages)
    page.words = _words(done.stdout.decode("utf-8", "replace"))
    return page


def _words(tsv: str) -> list[OcrWord]:
    words = []
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text:
            continue
        left, top, width, height = (float(row[k]) for k in ("left", "top", "width", "height"))
        line = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        words.append(OcrWord(text, (left, top, left + width, top + height), float(row["conf"]), line))
    return words


# (page number, pages in all): called before each page is read, so a long scan shows where it is.
PageProgress = Callable[[int, int], None]


class OcrReader:
    """Reads the pages of one indexing run: the language chosen by detection, results cached, progress per page.

    `detect` names a text's language ("fr"/"en"); the first page is read with both language packs, and the
    rest of the document with the pack of the language detected there (the right pack is what gets accents
    right). Without `detect`, every page is read with both.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        detect: Callable[[str], str] | None = None,
        on_page: PageProgress | None = None,
    ):
        self.cache_dir = cache_dir
        self.detect = detect
        self.on_page = on_page
        self._notes: list[str] = []

    def note(self, text: str) -> None:
        self._notes.append(text)

    def take_notes(self) -> list[str]:
        """What the user should know of the pages read since the last call (pages likely misread)."""
        notes, self._notes = self._notes, []
        return notes

    @staticmethod
    def available() -> bool:
        return tesseract_available()

    def read(self, key: str, pages: list[tuple[int, Callable[[], Image]]], total: int) -> dict[int, OcrPage]:
        """OCR each (page number, image maker) of the file whose content hash is `key`."""
        results: dict[int, OcrPage] = {}
        languages = _BOTH
        for number, render in pages:
            if self.on_page:
                self.on_page(number, total)
            page = self.cached(key, number)
            if page is None:
                page = recognise(render(), languages)
                self._save(key, number, page)
            results[number] = page
            if page.words and page.confidence < LOW_CONFIDENCE:
                self.note(f"page {number}: OCR confidence {page.confidence:.0f}%, text may be misread")
            # A page of under 200 characters (a cover, a stamp) is too little to tell French from English by:
            # the next page with more text decides.
            if languages == _BOTH and self.detect and len(page.text) >= 200:
                languages = TESSERACT_LANGUAGES.get(self.detect(page.text), _BOTH)
        return results

    def cached(self, key: str, number: int) -> OcrPage | None:
        """A page read before (same file content), if the cache holds it."""
        path = self._path(key, number)
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.pop("version", None) != _CACHE_VERSION:
                return None
            words = [OcrWord(w["text"], tuple(w["box"]), w["confidence"], tuple(w["line"])) for w in data.pop("words")]
            return OcrPage(words=words, **data)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save(self, key: str, number: int, page: OcrPage) -> None:
        path = self._path(key, number)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_suffix(".tmp")
        staged.write_text(json.dumps({"version": _CACHE_VERSION, **asdict(page)}), encoding="utf-8")
        staged.replace(path)

    def _path(self, key: str, number: int) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}-{number}.json" if self.cache_dir else None
