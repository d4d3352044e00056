"""Quotes located on pages, OCR results cached and reported, and scans without Tesseract: no OCR runs here
(Tesseract itself is exercised in tests/integration/test_ocr.py)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from samples import scanned_pdf, text_pdf

import index.ocr
from index.loaders import load_document
from index.ocr import NEEDS_OCR, OcrPage, OcrReader, OcrWord
from index.pages import has_text_layer, locate, quote_boxes
from index.types import LoadError


def _glyphs(lines: list[str]) -> list:
    """Characters laid out like a page: 10 units wide each, 20 units a line."""
    out = []
    for row, line in enumerate(lines):
        out += [(char, (10.0 * col, 20.0 * row, 10.0 * col + 9, 20.0 * row + 12)) for col, char in enumerate(line)]
        out.append(("\n", (0.0, 0.0, 0.0, 0.0)))
    return out


def test_a_quote_over_two_lines_gets_a_box_per_line() -> None:
    glyphs = _glyphs(["Le plan prévoit deux cents mil-", "liards d'euros pour l'IA. Autre phrase."])
    boxes = locate(glyphs, "deux cents milliards d'euros pour l'IA.")
    assert boxes == [(160.0, 0.0, 299.0, 12.0), (0.0, 20.0, 239.0, 32.0)]  # letters and digits only


def test_case_accents_spaces_and_ligatures_do_not_hide_a_quote() -> None:
    glyphs = _glyphs(["LA SOUVERAINETE NUMERIQUE est un déﬁ"])
    assert locate(glyphs, "la souveraineté numérique est un défi")


def test_an_ocr_slip_is_bridged_but_an_absent_quote_is_not_found() -> None:
    glyphs = _glyphs(["La Commussion européenne a présenté un plan d'investissement."])
    assert locate(glyphs, "La Commission européenne a présenté un plan d'investissement.")
    assert locate(glyphs, "Le réseau de supercalculateurs sera déployé à Munich.") == []


def test_ocr_page_text_keeps_lines_and_paragraphs_and_weights_confidence_by_characters() -> None:
    words = [
        OcrWord("Titre", (0, 0, 50, 10), 90.0, (1, 1, 1)),
        OcrWord("Première", (0, 20, 80, 30), 50.0, (1, 2, 1)),
        OcrWord("ligne", (90, 20, 140, 30), 100.0, (1, 2, 1)),
        OcrWord("suite", (0, 40, 50, 50), 100.0, (1, 2, 2)),
    ]
    page = OcrPage(width=200, height=300, dpi=300, language="fra", words=words)
    assert page.text == "Titre\n\nPremière ligne\nsuite"
    assert page.confidence == pytest.approx((90 * 5 + 50 * 8 + 100 * 5 + 100 * 5) / 23)


def test_pages_read_once_are_cached_and_a_doubtful_page_is_noted(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []

    def fake_recognise(image, languages="fra+eng", dpi=300) -> OcrPage:
        calls.append(languages)
        words = [OcrWord(w, (0, 0, 10, 10), 40.0, (1, 1, 1)) for w in ("texte", "douteux")]
        return OcrPage(width=100, height=100, dpi=dpi, language=languages, words=words)

    monkeypatch.setattr(index.ocr, "recognise", fake_recognise)
    progress: list[tuple[int, int]] = []
    reader = OcrReader(tmp_path, on_page=lambda n, total: progress.append((n, total)))
    first = reader.read("abc123", [(1, lambda: None), (2, lambda: None)], 2)
    assert progress == [(1, 2), (2, 2)] and len(calls) == 2
    assert reader.take_notes() == [
        "page 1: OCR confidence 40%, text may be misread",
        "page 2: OCR confidence 40%, text may be misread",
    ]
    again = OcrReader(tmp_path).read("abc123", [(1, lambda: None), (2, lambda: None)], 2)
    assert len(calls) == 2 and again[2].text == first[2].text == "texte douteux"


def test_the_language_detected_on_the_first_page_picks_the_pack_for_the_rest(tmp_path: Path, monkeypatch) -> None:
    used: list[str] = []

    def fake_recognise(image, languages="fra+eng", dpi=300) -> OcrPage:
        used.append(languages)
        words = [OcrWord("mot", (0, 0, 10, 10), 95.0, (1, 1, n)) for n in range(80)]
        return OcrPage(width=100, height=100, dpi=dpi, language=languages, words=words)

    monkeypatch.setattr(index.ocr, "recognise", fake_recognise)
    OcrReader(detect=lambda text: "fr").read("k", [(n, lambda: None) for n in (1, 2, 3)], 3)
    assert used == ["fra+eng", "fra", "fra"]


def test_without_tesseract_a_scan_is_reported_and_a_mixed_pdf_keeps_its_text_pages(tmp_path, monkeypatch) -> None:
    from pypdf import PdfReader, PdfWriter

    monkeypatch.setattr(index.ocr.shutil, "which", lambda name: None)
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(scanned_pdf([["Une page numérisée."]]))
    with pytest.raises(LoadError) as caught:
        load_document(scan, tmp_path)
    assert caught.value.reason == NEEDS_OCR
    image = tmp_path / "photo.png"
    image.write_bytes(b"")
    with pytest.raises(LoadError):
        load_document(image, tmp_path)

    writer = PdfWriter()
    for part in (text_pdf([["A page of text that says enough to be a page of its own."]]), scan.read_bytes()):
        for page in PdfReader(io.BytesIO(part)).pages:
            writer.add_page(page)
    mixed = tmp_path / "mixed.pdf"
    with mixed.open("wb") as out:
        writer.write(out)
    document = load_document(mixed, tmp_path)
    assert "A page of text" in document.text and {b.page for b in document.blocks} == {1}
    assert document.notes == [f"pages 2 {NEEDS_OCR}"]


def test_a_quote_of_a_text_pdf_is_boxed_where_it_is_drawn(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(text_pdf([["First page."], ["Second page, first line.", "The quoted sentence is here."]]))
    document = load_document(path, tmp_path)
    boxes = quote_boxes(str(path), "pdf", document.content_hash, 1, "The quoted sentence is here.")
    assert len(boxes) == 1 and boxes[0].page == 2
    box = boxes[0]
    assert (box.page_width, box.page_height) == (600, 800)
    # drawn at x = 40, baseline 760 - 20 = 740 from the bottom: 60 points from the top, 10-point type
    assert 39 <= box.x0 <= 41 and 48 <= box.y0 <= 60 <= box.y1 <= 64 and box.x1 > 150
    assert quote_boxes(str(path), "pdf", "another hash", 1, "The quoted sentence is here.") == []
    assert quote_boxes(str(path), "md", document.content_hash, 1, "The quoted sentence is here.") == []


def test_a_stamp_is_not_a_text_layer() -> None:
    assert not has_text_layer("  12  ") and not has_text_layer("CONFIDENTIEL p. 3")
    assert has_text_layer("Le plan prévoit deux cents milliards d'euros.")


def test_a_sentence_sharing_a_phrase_with_the_quote_is_not_taken_for_it() -> None:
    glyphs = _glyphs(["Fictional coins: an introduction. This document lists coins that do not exist."])
    assert locate(glyphs, "The vortiban is a fictional coin struck in Quimperle since 1852.") == []


def test_pages_can_be_read_from_many_threads_at_once() -> None:
    """PDFium is not thread-safe: answers locate quotes while an upload renders pages. Without the lock in
    index.pages this crashes or corrupts results; with it every thread reads the same page."""
    from concurrent.futures import ThreadPoolExecutor

    from index.pages import pdf_glyphs, render_pdf_page

    data = text_pdf([["First page."], ["Second page, first line.", "The quoted sentence is here."]])

    def work(i: int) -> tuple[str, tuple[int, int]]:
        glyphs, _, _ = pdf_glyphs(data, 2)
        image = render_pdf_page(data, 1 + i % 2, dpi=36)
        return "".join(char for char, _ in glyphs), image.size

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(64)))
    texts = {text for text, _ in results}
    assert len(texts) == 1 and "The quoted sentence is here." in texts.pop().replace("\r\n", " ")
    assert {size for _, size in results} == {(300, 400)}


def test_a_multi_frame_image_is_bounded_before_decoding_and_each_frame_is_a_page(tmp_path: Path) -> None:
    from PIL import Image

    from index.pages import page_png

    frames = [Image.new("L", (60, 80), shade) for shade in (0, 128, 255)]
    path = tmp_path / "scan.tiff"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(LoadError, match=r"image too long: 3 frames, limit 2"):
        load_document(path, tmp_path, max_pdf_pages=2)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    second = page_png(str(path), "image", digest, 2)
    assert second is not None and Image.open(io.BytesIO(second)).getpixel((5, 5)) == (128, 128, 128)
    assert page_png(str(path), "image", digest, 4) is None
