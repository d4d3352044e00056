"""PowerPoint presentations (.pptx, python-pptx): one group of blocks per slide, `page` = the slide's number.

A slide opens with its title as a level-1 heading ("Slide N" when it has none, so that its text is never taken
for the previous slide's), then the paragraphs of its text frames and its tables in the order of the slide's
shapes (groups walked into), then its speaker notes under a level-2 "Notes" heading. Empty placeholders, and the
date, footer and slide-number placeholders repeated on every slide, give nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from index.loaders.common import Bounds, Builder, Extracted
from index.loaders.office import check_zip, lines, opening, read_rows

_WHAT = ".pptx"
UNTITLED_SLIDE = "Slide {n}"
NOTES_HEADING = "Notes"


def load_pptx(data: bytes, bounds: Bounds) -> Extracted:
    """Every slide's title, text, tables and notes; the title from the core properties, else the first slide's."""
    from pptx import Presentation

    check_zip(data, _WHAT)
    with opening(_WHAT):
        presentation = Presentation(io.BytesIO(data))
        title = (presentation.core_properties.title or "").strip()
        slides = list(presentation.slides)
    builder = Builder(bounds=bounds, what=f"{_WHAT} file")
    for number, slide in enumerate(slides, start=1):
        heading = slide.shapes.title
        slide_title = lines(heading.text_frame.text) if heading is not None and heading.has_text_frame else ""
        title = title or slide_title
        builder.add(slide_title or UNTITLED_SLIDE.format(n=number), level=1, page=number)
        for shape in _shapes(slide.shapes):
            if heading is None or shape.shape_id != heading.shape_id:
                _add_shape(builder, shape, number)
        notes = slide.notes_slide.notes_text_frame if slide.has_notes_slide else None
        if notes is not None and notes.text.strip():
            builder.add(NOTES_HEADING, level=2, page=number)
            for paragraph in notes.paragraphs:
                builder.add(lines(paragraph.text), page=number)
    return " ".join(title.split()), builder.text(), builder.blocks


def _shapes(shapes: Any) -> Iterator[Any]:
    """The shapes of a slide in its order, a group's members in its place; placeholders that repeat on every
    slide (date, footer, slide number) left out."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE, PP_PLACEHOLDER

    repeated = {PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.SLIDE_NUMBER, PP_PLACEHOLDER.HEADER}
    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)
        elif not (shape.is_placeholder and shape.placeholder_format.type in repeated):
            yield shape


def _add_shape(builder: Builder, shape: Any, page: int) -> None:
    """A text frame's paragraphs, one block each (an empty placeholder adds nothing); a table as a table block
    whose first row is its header when the table says so (PowerPoint's "Header Row", on by default)."""
    if shape.has_text_frame:
        for paragraph in shape.text_frame.paragraphs:
            builder.add(lines(paragraph.text), page=page)
    elif getattr(shape, "has_table", False):
        table = shape.table
        rows = read_rows(builder, ([cell.text for cell in row.cells] for row in table.rows))
        builder.add("\n".join(rows), page=page, header_rows=int(table.first_row and len(rows) > 1))
