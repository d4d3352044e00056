"""Scans read by the real Tesseract, indexed with the real e5 into a real Chroma, answered and cited on their page."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from samples import page_image, scanned_pdf, text_pdf

from index.loaders import load_document
from index.ocr import OcrReader
from rag.language import detect_language
from rag.service import RagService

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="Tesseract is not installed (./setup.sh --test installs it as root)"
)

PAGE_ONE = [
    "Rapport sur la souveraineté numérique",
    "",
    "La Commission européenne a présenté un plan d'investissement",
    "de deux cents milliards d'euros pour l'intelligence artificielle.",
]
PAGE_TWO = [
    "Deuxième partie : les infrastructures",
    "",
    "Le réseau de supercalculateurs sera déployé à Bruxelles, à Paris",
    "et à Munich d'ici à la fin de l'année prochaine.",
]


def test_a_scanned_french_pdf_is_read_with_its_accents_and_pages(tmp_path: Path) -> None:
    path = tmp_path / "rapport.pdf"
    path.write_bytes(scanned_pdf([PAGE_ONE, PAGE_TWO]))
    progress: list[tuple[int, int]] = []
    reader = OcrReader(tmp_path / "ocr", detect=detect_language, on_page=lambda n, total: progress.append((n, total)))
    document = load_document(path, tmp_path, ocr=reader)
    assert progress == [(1, 2), (2, 2)]
    assert "Le réseau de supercalculateurs sera déployé à Bruxelles, à Paris et à Munich" in document.text
    assert "deux cents milliards d'euros pour l'intelligence artificielle." in document.text
    block = next(b for b in document.blocks if "Munich" in document.text[b.start : b.end])
    assert block.page == 2 and document.notes == []


def test_a_blurred_scan_is_indexed_with_a_note_on_its_confidence(tmp_path: Path) -> None:
    path = tmp_path / "flou.png"
    page_image(["Une phrase presque illisible sur une page floue."], blur=5).save(path)
    document = load_document(path, tmp_path, ocr=OcrReader())
    assert document.kind == "image"
    assert len(document.notes) == 1 and document.notes[0].startswith("page 1: OCR confidence")


def test_a_scan_and_an_image_are_answered_and_cited_on_their_page(make_settings, embedder) -> None:
    settings = make_settings()
    settings.corpus_dir.mkdir(parents=True)
    (settings.corpus_dir / "rapport.pdf").write_bytes(scanned_pdf([PAGE_ONE, PAGE_TWO]))
    photo = io.BytesIO()
    page_image(["Horaires de la bibliothèque", "", "La bibliothèque ouvre à huit heures trente le samedi."]).save(
        photo, format="PNG"
    )
    (settings.corpus_dir / "affiche.png").write_bytes(photo.getvalue())
    (settings.corpus_dir / "notes.pdf").write_bytes(text_pdf([["Meeting notes."], ["The budget was approved."]]))
    steps: list[str] = []
    service = RagService(settings, embedder=embedder)
    report = service.refresh(on_progress=lambda step: steps.append(step.current))
    assert report.added == 3 and report.skipped == [] and report.notes == []
    assert "rapport.pdf (OCR 2/2)" in steps

    answer = service.ask("Où le réseau de supercalculateurs sera-t-il déployé ?")
    cited = [c for c in answer.citations if c.source == "rapport.pdf"]
    assert cited and cited[0].page == 2 and "Munich" in answer.answer
    assert cited[0].boxes and {box.page for box in cited[0].boxes} == {2}
    box = cited[0].boxes[0]
    assert (round(box.page_width), round(box.page_height)) == (595, 842)  # A4 in points
    assert 50 < box.x0 < 70 and 0 < box.y0 < box.y1 < box.page_height / 2  # the lines drawn at 250 px of 2480

    answer = service.ask("À quelle heure ouvre la bibliothèque le samedi ?")
    cited = [c for c in answer.citations if c.source == "affiche.png"]
    assert cited and cited[0].page == 1 and cited[0].boxes and cited[0].boxes[0].page_width == 2480

    answer = service.ask("Was the budget approved?")
    cited = [c for c in answer.citations if c.source == "notes.pdf"]
    assert cited and cited[0].page == 2 and cited[0].boxes

    png = service.page_image("rapport.pdf", 2)
    assert png.startswith(b"\x89PNG")
    path, media_type = service.document_file("rapport.pdf")
    assert media_type == "application/pdf" and path.read_bytes().startswith(b"%PDF")
