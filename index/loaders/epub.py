"""E-books (.epub, ebooklib): the chapters in reading (spine) order, each read as an HTML page is
(`html.add_html`), so that its headings come out as headings; the title from the book's metadata.

A chapter with no heading of its own opens with its entry in the book's table of contents as a level-1 heading,
when it has one, so that its text is not taken for the previous chapter's. The navigation document (the table of
contents as a page) is left out: it repeats the headings.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from typing import Any

from index.loaders.common import Bounds, Builder, Extracted
from index.loaders.html import add_html
from index.loaders.office import check_zip, opening
from index.loaders.text import decode_html, read_text
from index.types import LoadError

_WHAT = ".epub"


def load_epub(data: bytes, bounds: Bounds) -> Extracted:
    from ebooklib import epub

    check_zip(data, _WHAT)
    with opening(_WHAT), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ebooklib warns about its own option defaults
        book = epub.read_epub(io.BytesIO(data))
    labels = dict(_toc_labels(book.toc))
    builder = Builder(bounds=bounds, what=f"{_WHAT} file")
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if not isinstance(item, epub.EpubHtml) or isinstance(item, epub.EpubNav):
            continue
        try:
            markup = read_text(item.content or b"", decode_html)
        except LoadError:
            continue  # an empty or undecodable chapter: the others still make the book
        chapter = Builder()
        add_html(chapter, markup)
        label = labels.get(item.file_name, "")
        if label and not any(block.heading_level for block in chapter.blocks):
            builder.add(label, level=1)
        builder.extend(chapter.text(), chapter.blocks)
    title = next((value for value, _ in book.get_metadata("DC", "title") if value and value.strip()), "")
    if not title:
        text = builder.text()
        title = next((text[b.start : b.end] for b in builder.blocks if b.heading_level == 1), "")
    return " ".join(title.split()), builder.text(), builder.blocks


def _toc_labels(toc: Any) -> Iterator[tuple[str, str]]:
    """(file name, label) of each table-of-contents entry, nested ones included; the first entry of a file wins
    (dict() keeps the last: entries are yielded last first)."""
    entries: list[tuple[str, str]] = []

    def walk(nodes: Any) -> None:
        for node in nodes or ():
            if isinstance(node, tuple | list) and len(node) == 2:
                walk([node[0]])
                walk(node[1])
            elif getattr(node, "href", None) and getattr(node, "title", None):
                entries.append((str(node.href).split("#", 1)[0], " ".join(str(node.title).split())))

    walk(toc)
    return reversed(entries)
