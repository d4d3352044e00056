"""Documents built for tests: PDFs with known text, scanned pages, and a PDF bomb (small file, enormous text)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from pypdf import PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject

if TYPE_CHECKING:
    from PIL import Image


def helvetica_resources() -> DictionaryObject:
    """Page resources naming Helvetica as /F1, for the PDFs these tests draw."""
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    return DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})


def text_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose pages draw the given lines top to bottom in Helvetica."""
    resources = helvetica_resources()
    writer = PdfWriter()
    for lines in pages:
        ops = b"".join(
            b"BT /F1 10 Tf 40 %d Td (%s) Tj ET\n" % (760 - 20 * n, line.encode("latin-1"))
            for n, line in enumerate(lines)
        )
        stream = DecodedStreamObject()
        stream.set_data(ops)
        page = writer.add_blank_page(width=600, height=800)
        page.replace_contents(ArrayObject([stream]))
        page[NameObject("/Resources")] = resources
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def pdf_bomb(pages: int = 200) -> bytes:
    """A ~45 KB PDF whose pages all draw one shared content stream of 240k characters of text (48M in all)."""
    stream = DecodedStreamObject()
    stream.set_data((b"BT /F1 12 Tf 10 10 Td (" + b"x" * 100 + b") Tj ET\n") * 2400)
    resources = helvetica_resources()
    writer = PdfWriter()
    first = writer.add_blank_page(width=200, height=200)
    first.replace_contents(ArrayObject([stream.flate_encode()]))
    shared = first[NameObject("/Contents")]  # one indirect reference to the stream, reused by every page
    for number in range(pages):
        page = first if number == 0 else writer.add_blank_page(width=200, height=200)
        page[NameObject("/Contents")] = shared
        page[NameObject("/Resources")] = resources
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian's fonts-dejavu-core


def page_image(lines: list[str], *, blur: float = 0) -> Image.Image:
    """An A4 page at 300 dpi with `lines` drawn in DejaVu Sans (it has every French accent), as a scan looks."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    image = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(DEJAVU), 42)
    for n, line in enumerate(lines):
        draw.text((250, 300 + 70 * n), line, font=font, fill=0)
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur else image


def scanned_pdf(pages: list[list[str]]) -> bytes:
    """A PDF of page images and no text layer: what a scanner makes."""
    images = [page_image(lines) for lines in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=300)
    return buffer.getvalue()
