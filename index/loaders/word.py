"""Word documents (.docx, python-docx): headings with their level, paragraphs and list items, tables as table
blocks, in the order of the document's body.

Page headers and footers, footnotes, comments and text boxes are left out: the body is what the document says.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from index.loaders.common import Bounds, Builder, Extracted
from index.loaders.office import check_zip, lines, looks_like_header, opening, read_rows

if TYPE_CHECKING:
    from docx.document import Document as WordDocument
    from docx.styles.style import BaseStyle

_WHAT = ".docx"
_HEADING_STYLE = re.compile(r"Heading ([1-9])")  # built-in names, stored in English whatever the UI language


def load_docx(data: bytes, bounds: Bounds) -> Extracted:
    """The body's paragraphs and tables, in order (the XML children of <w:body>, so that tables fall between
    the paragraphs around them); the title from the core properties, else the first Title or level-1 heading."""
    import docx

    check_zip(data, _WHAT)
    with opening(_WHAT):
        document = docx.Document(io.BytesIO(data))
        title = (document.core_properties.title or "").strip()
    builder = Builder(bounds=bounds, what=f"{_WHAT} file")
    for kind, element in _body_items(document.element.body):
        if kind == "p":
            _paragraph(builder, document, element)
        else:
            _table(builder, document, element)
    if not title:
        text = builder.text()
        title = next((text[b.start : b.end] for b in builder.blocks if b.heading_level == 1), "")
    return " ".join(title.split()), builder.text(), builder.blocks


def _body_items(parent: Any) -> Iterator[tuple[str, Any]]:
    """Paragraphs ("p") and tables ("tbl") in document order, those in content controls (<w:sdt>) included."""
    from docx.oxml.ns import qn

    for child in parent.iterchildren():
        if child.tag == qn("w:p"):
            yield "p", child
        elif child.tag == qn("w:tbl"):
            yield "tbl", child
        elif child.tag == qn("w:sdt"):
            for content in child.iterchildren(qn("w:sdtContent")):
                yield from _body_items(content)


def _paragraph(builder: Builder, document: WordDocument, element: Any) -> None:
    from docx.text.paragraph import Paragraph

    paragraph = Paragraph(element, document)
    text = lines(paragraph.text)
    if text:
        builder.add(text, level=_heading_level(paragraph, element))


def _heading_level(paragraph: Any, element: Any) -> int:
    """1..6 for a Title or "Heading N" paragraph (or a style based on one), or one with an outline level; else 0."""
    own = _outline_level(element)
    if own is not None:
        return own
    style: BaseStyle | None = paragraph.style
    seen = 0
    while style is not None and seen < 10:  # a style chain is short; a loop in a crafted file must end
        name = style.name or ""
        if name == "Title":
            return 1
        match = _HEADING_STYLE.fullmatch(name)
        if match:
            return min(int(match.group(1)), 6)
        level = _outline_level(style.element)
        if level is not None:
            return level
        style, seen = style.base_style, seen + 1
    return 0


def _outline_level(element: Any) -> int | None:
    """The outline level set on a paragraph or style (<w:outlineLvl w:val="0"> is a level-1 heading; 9, and
    anything past 5, is body text), or None when not set."""
    values = element.xpath("./w:pPr/w:outlineLvl/@w:val")
    if not values or not str(values[0]).isdigit():
        return None
    level = int(values[0]) + 1
    return level if level <= 6 else 0


def _table(builder: Builder, document: WordDocument, element: Any) -> None:
    """One line per row, cells joined by " | "; the leading rows marked to repeat on each page are the header,
    else a first row that names columns (see `looks_like_header`)."""
    from docx.table import Table

    table = Table(element, document._body)
    marked = 0
    for tr in element.tr_lst:
        if not tr.xpath("./w:trPr/w:tblHeader[not(@w:val) or (@w:val!='0' and @w:val!='false')]"):
            break
        marked += 1
    rows = read_rows(builder, (_cells(row) for row in table.rows))
    header_rows = marked if 0 < marked < len(rows) else int(looks_like_header(rows))
    builder.add("\n".join(rows), header_rows=header_rows)


def _cells(row: Any) -> list[str]:
    """A row's cells, one a grid column: a merged cell's text in the first column it spans (the others empty),
    a vertically merged one's in each row it spans (a row read alone keeps its value); nested tables' text too."""
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    cells: list[str] = [""] * row.grid_cols_before
    previous = None
    for cell in row.cells:
        same, previous = cell._tc is previous, cell._tc
        cells.append("" if same else " ".join(Paragraph(p, cell).text for p in cell._tc.iter(qn("w:p"))))
    return cells
