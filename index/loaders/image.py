"""Image files (PNG, JPEG, TIFF): every frame read by OCR, a page per frame, paragraphs as Tesseract found them."""

from __future__ import annotations

import hashlib

from index.loaders.common import Bounds, Builder, Extracted
from index.ocr import NEEDS_OCR
from index.pages import image_frames
from index.types import LoadError


def load_image(data: bytes, bounds: Bounds) -> Extracted:
    frames = image_frames(data, bounds.max_pdf_pages)
    if bounds.ocr is None or not bounds.ocr.available():
        raise LoadError(NEEDS_OCR)
    key = hashlib.sha256(data).hexdigest()
    pages = bounds.ocr.read(key, [(n, frames[n - 1].copy) for n in range(1, len(frames) + 1)], len(frames))
    builder = Builder()
    for number in sorted(pages):
        for paragraph in pages[number].text.split("\n\n"):
            builder.add(paragraph, page=number)
    if not builder.blocks:
        raise LoadError("no text found in the image")
    return "", builder.text(), builder.blocks
