"""HTML pages (.html, .htm): visible text, headings, block elements and data tables become blocks.

EUR-Lex Official Journal pages get their legal structure from their classes and ELI ids: "Article 51" and
its subtitle form one heading, at the depth its chapter and section give it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from index.loaders.common import ENUM_ONLY, Bounds, Builder, Extracted, collapse, legal_level
from index.loaders.text import decode_html, read_text

if TYPE_CHECKING:
    from selectolax.lexbor import LexborNode

# Elements whose content is never page text (markdown drops them too, from the HTML it holds).
HTML_SKIP = frozenset(
    {
        "head",
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "svg",
        "canvas",
        "iframe",
        "object",
        "embed",
        "input",
        "select",
        "option",
        "optgroup",
        "textarea",
        "button",
        "datalist",
        "img",
        "audio",
        "video",
        "map",
    }
)
_HTML_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "html",
        "legend",
        "li",
        "main",
        "ol",
        "p",
        "section",
        "summary",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "ul",
    }
)
_HTML_CONTENT_ROOTS = frozenset({"article", "main", "section"})
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}
# EUR-Lex Official Journal classes: labels ("Article 51", "CHAPTER V") and the subtitles that follow them.
_EURLEX_LABELS = frozenset({"oj-ti-art", "oj-ti-section-1"})
_EURLEX_SUBTITLES = frozenset({"oj-sti-art", "oj-ti-section-2"})
_EURLEX_DOC_TITLE = "oj-doc-ti"
_ELI_ID = re.compile(r"^[a-z]{3}_[\w-]+(?:\.[a-z]{3}_[\w-]+)*$")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden")
_LINE_BREAK = "\u2028"  # <br> marker while inline text is collected; real U+2028 was normalised away earlier


@dataclass
class _HtmlBlock:
    text: str
    level: int = 0
    role: str = ""  # "label" | "subtitle" | "doc-title" for EUR-Lex headings
    header_rows: int | None = None  # a table block: how many of its lines are header rows


@dataclass
class _HtmlWalker:
    """Collects visible text as blocks; inline content accumulates until a block boundary flushes it."""

    blocks: list[_HtmlBlock] = field(default_factory=list)
    inline: list[str] = field(default_factory=list)
    pending_marker: str = ""

    def walk(self, node: LexborNode, in_content: bool = False) -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                self.inline.append((child.text_content or "").replace(_LINE_BREAK, " "))
            elif child.is_element_node and not self._skipped(child, tag, in_content):
                self._element(child, tag, in_content or tag in _HTML_CONTENT_ROOTS)

    @staticmethod
    def _skipped(node: LexborNode, tag: str, in_content: bool) -> bool:
        attrs = node.attributes
        if tag in HTML_SKIP or (tag in {"header", "footer"} and not in_content):
            return True
        if "hidden" in attrs or (attrs.get("aria-hidden") or "").lower() == "true":
            return True
        if (attrs.get("role") or "").lower() == "navigation":
            return True
        return bool(_HIDDEN_STYLE.search((attrs.get("style") or "").lower()))

    def _element(self, node: LexborNode, tag: str, in_content: bool) -> None:
        classes = set((node.attributes.get("class") or "").split())
        if tag == "br":
            self.inline.append(_LINE_BREAK)
        elif tag in {"sup", "sub"} or "oj-super" in classes or "oj-sub" in classes:
            inner = _HtmlWalker()
            inner.walk(node, in_content)
            text = collapse(" ".join([*(b.text for b in inner.blocks), "".join(inner.inline)]))
            if text:
                mark = "_" if tag == "sub" or "oj-sub" in classes else "^"
                self.inline.append(mark + text)
        elif tag in _HTML_HEADINGS or classes & (_EURLEX_LABELS | _EURLEX_SUBTITLES | {_EURLEX_DOC_TITLE}):
            level, role = _heading_kind(tag, classes)
            if role == "label":
                level = _eurlex_depth(node)
            self.flush()
            self.walk(node, in_content)
            self.flush(level, role)
        elif tag == "table" and self._table(node, in_content):
            pass
        elif tag == "tr":
            self.flush()
            self._row(node, in_content)
        elif tag == "pre":
            self.flush()
            text = "\n".join(line.rstrip() for line in (node.text(deep=True) or "").split("\n"))
            self._push(_HtmlBlock(text.strip("\n")))
        elif tag in _HTML_BLOCK or tag in {"td", "th"}:
            self.flush()
            self.walk(node, in_content)
            self.flush()
        else:
            self.walk(node, in_content)

    def _table(self, node: LexborNode, in_content: bool) -> bool:
        """A data table (header rows of <th> cells or in <thead>, then data rows) becomes one table block, one
        row per line. False, and nothing done, for other tables: layout grids and EUR-Lex point lists keep a
        paragraph per row, and nested tables are left to the generic walk."""
        if any(inner.mem_id != node.mem_id for inner in node.css("table")):
            return False
        captions: list[LexborNode] = []
        rows: list[str] = []
        header_rows = 0
        for child in node.iter():
            if self._skipped(child, child.tag, in_content):
                continue
            if child.tag == "caption":
                captions.append(child)
            for tr in [child] if child.tag == "tr" else [n for n in child.iter() if n.tag == "tr"]:
                if self._skipped(tr, "tr", in_content):
                    continue
                text, is_header = self._row_text(tr, in_content)
                text = collapse(text)  # one line per row
                if not text:
                    continue
                if (is_header or child.tag == "thead") and header_rows == len(rows):
                    header_rows += 1
                rows.append(text)
        if not header_rows or len(rows) <= header_rows:
            return False
        self.flush()
        for caption in captions:
            self.walk(caption, in_content)
            self.flush()
        self._push(_HtmlBlock("\n".join(rows), header_rows=header_rows))
        return True

    def _row(self, node: LexborNode, in_content: bool) -> None:
        """A table row is one paragraph: "(a) text" for EUR-Lex point layouts, cells joined by " | " otherwise."""
        text, _ = self._row_text(node, in_content)
        if text:
            self._push(_HtmlBlock(text))

    def _row_text(self, node: LexborNode, in_content: bool) -> tuple[str, bool]:
        """A row's non-empty cells joined by " | ", and whether all its cells are header cells (<th>)."""
        cells: list[str] = []
        all_th = True
        for cell in node.iter():
            if cell.tag not in {"td", "th"} or self._skipped(cell, cell.tag, in_content):
                continue
            all_th = all_th and cell.tag == "th"
            inner = _HtmlWalker()
            inner.walk(cell, in_content)
            text = " ".join(b.text for b in inner.finish() if b.text)
            if text:
                cells.append(text)
        if len(cells) > 1 and ENUM_ONLY.match(cells[0]):
            cells = [f"{cells[0]} {cells[1]}", *cells[2:]]
        return " | ".join(cells), all_th and bool(cells)

    def flush(self, level: int = 0, role: str = "") -> None:
        raw = "".join(self.inline)
        self.inline = []
        lines = [collapse(line) for line in raw.split(_LINE_BREAK)]
        text = "\n".join(line for line in lines if line)
        if text:
            self._push(_HtmlBlock(text, level, role))

    def _push(self, block: _HtmlBlock) -> None:
        """Hold a lone point marker such as "(a)" and glue it to the paragraph it introduces."""
        if not block.text.strip():
            return
        if block.level == 0 and ENUM_ONLY.match(block.text):
            self.pending_marker = f"{self.pending_marker} {block.text}".strip()
            return
        if self.pending_marker:
            if block.level == 0 and block.header_rows is None:
                block.text = f"{self.pending_marker} {block.text}"
            else:
                self.blocks.append(_HtmlBlock(self.pending_marker))
            self.pending_marker = ""
        self.blocks.append(block)

    def finish(self) -> list[_HtmlBlock]:
        self.flush()
        if self.pending_marker:
            self.blocks.append(_HtmlBlock(self.pending_marker))
            self.pending_marker = ""
        return self.blocks


# -------------------------------------------------------------------------------------------- headings, EUR-Lex


def _heading_kind(tag: str, classes: set[str]) -> tuple[int, str]:
    if tag in _HTML_HEADINGS:
        return _HTML_HEADINGS[tag], ""
    if _EURLEX_DOC_TITLE in classes:
        return 1, "doc-title"
    if classes & _EURLEX_LABELS:
        return 0, "label"
    return 0, "subtitle"


def _eurlex_depth(node: LexborNode) -> int:
    """Level of a EUR-Lex label from the nesting of ELI subdivisions (div#cpt_V > div#cpt_V.sct_1 > div#art_51).

    Text alone cannot tell that Article 113 sits outside Chapter V; the DOM can. 0 when not ELI markup.
    """
    depth = 0
    parent = node.parent
    while parent is not None:
        ident = (parent.attributes.get("id") or "") if parent.is_element_node else ""
        if parent.tag == "div" and _ELI_ID.match(ident) and not ident.rsplit(".", 1)[-1].startswith("tit_"):
            depth += 1
        parent = parent.parent
    return min(depth + 1, 6) if depth else 0


def _merge_eurlex(blocks: list[_HtmlBlock]) -> list[_HtmlBlock]:
    """EUR-Lex headings: label + following subtitle form one heading; only the first doc-title line is a heading."""
    merged: list[_HtmlBlock] = []
    for block in blocks:
        prev = merged[-1] if merged else None
        if block.role == "doc-title" and prev is not None and prev.role in {"doc-title", "doc-title-cont"}:
            merged.append(_HtmlBlock(block.text, 0, "doc-title-cont"))
            continue
        if block.role == "label":
            block.level = block.level or legal_level(block.text) or 3
        elif block.role == "subtitle":
            if prev is not None and prev.role == "label" and "\n" not in prev.text:
                prev.text = f"{prev.text}\n{block.text}"
                continue
            block.level = 6 if prev is None else min(6, max(prev.level, 1) + 1)
        merged.append(block)
    return merged


def load_html(data: bytes, _bounds: Bounds) -> Extracted:
    """Visible text of an HTML page (selectolax); headings and block elements become blocks."""
    builder = Builder()
    title = add_html(builder, read_text(data, decode_html))
    if not title:
        text = builder.text()
        title = next((collapse(text[b.start : b.end]) for b in builder.blocks if b.heading_level == 1), "")
    return title, builder.text(), builder.blocks


def add_html(builder: Builder, markup: str) -> str:
    """Add the visible text of an HTML page (decoded) to `builder` as blocks; its <title>, or "". Formats that
    hold HTML (an EPUB's chapters, an e-mail's HTML body) go through here, so they read it as a page is read."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(markup)
    title_node = tree.css_first("title")
    title = collapse(title_node.text(deep=True) or "") if title_node is not None else ""
    walker = _HtmlWalker()
    root = tree.body or tree.root
    if root is not None:
        walker.walk(root)
    for block in _merge_eurlex(walker.finish()):
        builder.add(block.text, level=block.level, header_rows=block.header_rows)
    return title
