"""OpenDocument files (odfpy): text (.odt) as a Word document is read, presentations (.odp) as PowerPoint's,
spreadsheets (.ods) as Excel's; the three share one reading of ODF paragraphs, lists and tables.

- .odt: headings (text:h, at their outline level; a paragraph in the Title style is a level-1 heading),
  paragraphs, list items, tables (header: the table's header rows, else a first row that names columns).
  Generated indexes (a table of contents repeats the headings) and tracked deletions are left out.
- .odp: one group of blocks per draw:page, `page` = its number; the title frame as a level-1 heading ("Slide N"
  without one), the other frames' text and tables, then the speaker notes under "Notes" (as for .pptx).
- .ods: one sheet per table:table, `page` = its number; as .xlsx (`sheets.add_sheet`). Repeated cells and rows
  (table:number-columns-repeated / number-rows-repeated) are expanded, empty ones never materialised, within
  the size of a sheet (16,384 columns) and the document bounds.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from index.loaders.common import Bounds, Builder, Extracted
from index.loaders.office import check_zip, lines, looks_like_header, opening, read_rows
from index.loaders.sheets import add_sheet
from index.loaders.slides import NOTES_HEADING, UNTITLED_SLIDE
from index.types import LoadError

# The widest sheet LibreOffice and Excel open: repeat counts past it are a crafted file, not columns.
MAX_SHEET_COLUMNS = 16_384
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_DRAW = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_PRESENTATION = "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"
_STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
_SVG = "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
_DC = "http://purl.org/dc/elements/1.1/"
# Containers whose paragraphs are the document's own text, walked into.
_FLOW = {
    (_TEXT, "list"),
    (_TEXT, "list-item"),
    (_TEXT, "list-header"),
    (_TEXT, "section"),
    (_TEXT, "numbered-paragraph"),
    (_OFFICE, "text"),
}
# Frames and shapes that carry text on a slide (a group's members in its place).
_SHAPES = {"frame", "text-box", "g", "custom-shape", "rect", "ellipse", "polygon", "polyline", "circle", "caption"}
_SKIPPED_FRAMES = {"title", "page-number", "footer", "date-time", "header", "notes"}
# Inline elements that hold no text of the paragraph itself (notes, comments, changes, an image's description).
_SKIPPED_INLINE = {
    (_TEXT, "note"),
    (_OFFICE, "annotation"),
    (_TEXT, "tracked-changes"),
    (_TEXT, "change"),
    (_SVG, "title"),
    (_SVG, "desc"),
}
# A cell's value when it holds no paragraph: the attribute for each value type.
_VALUE_ATTRIBUTES = {
    "float": "value",
    "percentage": "value",
    "currency": "value",
    "date": "date-value",
    "time": "time-value",
    "boolean": "boolean-value",
    "string": "string-value",
}


def load_odt(data: bytes, bounds: Bounds) -> Extracted:
    body, meta, builder, parents = _open(data, bounds, ".odt", "text")
    _flow(builder, body, parents)
    title = _meta_title(meta)
    if not title:
        text = builder.text()
        title = next((text[b.start : b.end] for b in builder.blocks if b.heading_level == 1), "")
    return " ".join(title.split()), builder.text(), builder.blocks


def load_odp(data: bytes, bounds: Bounds) -> Extracted:
    body, meta, builder, parents = _open(data, bounds, ".odp", "presentation")
    title = _meta_title(meta)
    for number, page in enumerate(_children(body, _DRAW, "page"), start=1):
        frames = list(_elements(page))
        heading = next((f for f in frames if _attr(f, _PRESENTATION, "class") == "title"), None)
        slide_title = lines(_text(heading)) if heading is not None else ""
        title = title or slide_title
        builder.add(slide_title or UNTITLED_SLIDE.format(n=number), level=1, page=number)
        for frame in frames:
            if frame.qname[0] == _DRAW and _attr(frame, _PRESENTATION, "class") not in _SKIPPED_FRAMES:
                _flow(builder, frame, parents, page=number)
        notes = [frame for note in _children(page, _PRESENTATION, "notes") for frame in _elements(note)]
        notes = [f for f in notes if _attr(f, _PRESENTATION, "class") == "notes" and _text(f).strip()]
        if notes:
            builder.add(NOTES_HEADING, level=2, page=number)
            for frame in notes:
                _flow(builder, frame, parents, page=number)
    return " ".join(title.split()), builder.text(), builder.blocks


def load_ods(data: bytes, bounds: Bounds) -> Extracted:
    body, meta, builder, _ = _open(data, bounds, ".ods", "spreadsheet")
    for number, table in enumerate(_children(body, _TABLE, "table"), start=1):
        add_sheet(builder, _attr(table, _TABLE, "name"), read_rows(builder, _rows(table)), number)
    return _meta_title(meta), builder.text(), builder.blocks


# -------------------------------------------------------------------------------------------------- the package


def _open(data: bytes, bounds: Bounds, what: str, body_name: str) -> tuple[Any, Any, Builder, dict[str, str]]:
    """The document's body element (office:text, office:presentation or office:spreadsheet), its metadata, a
    builder held to the bounds, and each automatic style's parent style (to find the Title style behind "P1")."""
    from odf.opendocument import load

    check_zip(data, what)
    with opening(what):
        document = load(io.BytesIO(data))
        body = next((c for c in _children(document.body, _OFFICE, body_name)), None)
    if body is None:
        raise LoadError(f"not a valid {what} file (no {body_name} body)")
    parents = {
        _attr(style, _STYLE, "name"): _attr(style, _STYLE, "parent-style-name")
        for style in _children(document.automaticstyles, _STYLE, "style")
    }
    return body, document.meta, Builder(bounds=bounds, what=f"{what} file"), parents


def _meta_title(meta: Any) -> str:
    return " ".join(_text(next(_children(meta, _DC, "title"), None)).split())


# ----------------------------------------------------------------------------------------------- text and tables


def _flow(builder: Builder, node: Any, parents: dict[str, str], page: int | None = None) -> None:
    """Headings, paragraphs, lists and tables under `node`, in order, as blocks."""
    for child in _elements(node):
        ns, name = child.qname
        if (ns, name) == (_TEXT, "h"):
            level = _attr(child, _TEXT, "outline-level")
            builder.add(lines(_text(child)), level=min(max(int(level) if level.isdigit() else 1, 1), 6), page=page)
        elif (ns, name) == (_TEXT, "p"):
            style = _attr(child, _TEXT, "style-name")
            title = "Title" in (style, parents.get(style))
            builder.add(lines(_text(child)), level=int(title), page=page)
        elif (ns, name) == (_TABLE, "table"):
            rows = read_rows(builder, _rows(child))
            marked = sum(1 for head in _children(child, _TABLE, "table-header-rows") for _ in _rows(head))
            header_rows = marked if 0 < marked < len(rows) else int(looks_like_header(rows))
            builder.add("\n".join(rows), page=page, header_rows=header_rows)
        elif (ns, name) in _FLOW or (ns == _DRAW and name in _SHAPES):
            _flow(builder, child, parents, page)


def _rows(table: Any) -> Iterator[list[str]]:
    """A table's rows as cell texts, repeated rows and cells expanded; header rows, row groups included."""
    for child in _elements(table):
        ns, name = child.qname
        if ns != _TABLE:
            continue
        if name == "table-row":
            cells = _cells(child)
            repeat = _count(child, "number-rows-repeated")
            if cells:  # a run of empty rows (often a million, to the sheet's end) is never expanded
                for _ in range(repeat):
                    yield cells
        elif name in {"table-header-rows", "table-rows", "table-row-group"}:
            yield from _rows(child)


def _cells(row: Any) -> list[str]:
    """A row's cells, empty ones kept only between filled ones (a trailing run of 16,384 is never built)."""
    cells: list[str] = []
    gap = 0
    for cell in _elements(row):
        if cell.qname not in {(_TABLE, "table-cell"), (_TABLE, "covered-table-cell")}:
            continue
        repeat = min(_count(cell, "number-columns-repeated"), MAX_SHEET_COLUMNS)
        text = _cell_text(cell)
        if not text:
            gap += repeat
        else:
            cells.extend([""] * gap + [text] * repeat)
            gap = 0
        if len(cells) + gap >= MAX_SHEET_COLUMNS:
            break
    return cells[:MAX_SHEET_COLUMNS]


def _cell_text(cell: Any) -> str:
    paragraphs = [lines(_text(child)) for child in _elements(cell) if child.qname[0] == _TEXT]
    text = " ".join(p for p in paragraphs if p)
    if not text:
        attribute = _VALUE_ATTRIBUTES.get(_attr(cell, _OFFICE, "value-type"))
        text = _attr(cell, _OFFICE, attribute) if attribute else ""
    return text


def _text(node: Any) -> str:
    """The text of a paragraph (or any element): spans and links walked into, text:s as spaces, text:tab as a
    space, text:line-break as a line break; notes, comments and tracked changes left out."""
    if node is None:
        return ""
    out: list[str] = []
    for child in node.childNodes:
        if child.nodeType == child.TEXT_NODE:
            out.append(child.data)
        elif child.nodeType != child.ELEMENT_NODE or child.qname in _SKIPPED_INLINE:
            continue
        elif child.qname == (_TEXT, "line-break"):
            out.append("\n")
        elif child.qname in {(_TEXT, "s"), (_TEXT, "tab")}:
            out.append(" ")
        else:
            out.append(_text(child))
            if child.qname in {(_TEXT, "p"), (_TEXT, "h")}:
                out.append("\n")
    return "".join(out)


# ------------------------------------------------------------------------------------------------------ odfpy


def _elements(node: Any) -> Iterator[Any]:
    return (child for child in node.childNodes if child.nodeType == child.ELEMENT_NODE)


def _children(node: Any, ns: str, name: str) -> Iterator[Any]:
    return (child for child in _elements(node) if child.qname == (ns, name)) if node is not None else iter(())


def _attr(node: Any, ns: str, name: str) -> str:
    return node.getAttrNS(ns, name) or ""


def _count(node: Any, name: str) -> int:
    value = _attr(node, _TABLE, name)
    return max(int(value), 1) if value.isdigit() else 1
