"""Markdown (.md, .markdown): rendered to plain text, headings, fenced code, tables and list items as blocks.

Pages exported from sites keep HTML and template markup between the markdown: layout is dropped, prose kept.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from index.loaders.common import Bounds, Builder, Extracted, collapse
from index.loaders.html import HTML_SKIP
from index.loaders.text import read_text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_THEMATIC = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:([-*+•])|(\d{1,3}[.)]))[ \t]+(.*)$")
_HTML_START = re.compile(r"^ {0,3}<(?:!--|/?[A-Za-z][\w-]*(?:[\s/>]|$))")
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\]^]+\]:\s*\S+")
_FOOTNOTE_DEF = re.compile(r"^\[\^([^\]]+)\]:\s*")

_URL = r"\((?:[^()\\\s]|\\.|\([^()]*\))*(?:\s+\"[^\"]*\")?\s*\)"
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]" + _URL)
_MD_LINK = re.compile(r"\[((?:[^\[\]]|\\[\[\]]|\[[^\[\]]*\])*)\]" + _URL)
_MD_REF_LINK = re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]")
_MD_FOOTNOTE_REF = re.compile(r"[ \t]*\[\^[^\]]+\]")
_MD_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_HTML_LINK = re.compile(r"<a\b[^>]*>.*?</a\s*>", re.IGNORECASE | re.DOTALL)
_MIN_PROSE_WORDS = 4  # an HTML block with fewer words is layout (a logo's alt text, a badge's label)


def _words(text: str) -> int:
    """Words of two letters or more in plain text (tags already removed)."""
    return len(re.findall(r"[^\W\d_]{2,}", text))


def _is_link_bar(block: str) -> bool:
    """A bar of links ("🤗 Hugging Face | 🤖 ModelScope | 📑 Paper", "中文 ｜ English ｜ Français"): several links
    and hardly a word outside them. It names pages elsewhere and says nothing; prose has words of its own
    between its links, and a lone link is a title or a sentence ("Janus-Pro: Unified Multimodal …")."""
    outside = html.unescape(_HTML_TAG.sub(" ", _HTML_LINK.sub(" ", block)))
    return len(_HTML_LINK.findall(block)) >= 2 and _words(outside) < _MIN_PROSE_WORDS


_MD_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_MD_EM_STAR = re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s*\\])\*(?![\w*])")
_MD_EM_UNDER = re.compile(r"(?<![\w\\])_(?=[^\s_])(.+?)(?<=[^\s_\\])_(?!\w)")
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~$])")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# Pages exported from Svelte/MDX/Jinja sites keep their template syntax; a line holding only control tags
# ({#if x}, {:else}, {/each}, {@html x}, {% block %}, {{< shortcode >}}) is markup, never prose.
_TEMPLATE_TAG_LINE = re.compile(r"^[ \t]*(?:(?:\{[#/:@][^{}]*\}|\{%.*?%\}|\{\{[<%].*?[>%]\}\})[ \t]*)+$")
# A line that is nothing but HTML tags (<div slot="x">, </Accordion>): layout around content, not content.
_TAG_ONLY_LINE = re.compile(r"^[ \t]*(?:</?[A-Za-z][\w.:-]*(?:\s[^<>]*)?/?>[ \t]*)+$")
# Flush-left text that is not a tag: markdown, as opposed to the indented inner lines of an HTML layout.
_MD_TEXT_LINE = re.compile(r"^ {0,3}[^\s<]")
_HTML_OPEN = re.compile(r"^[ \t]*<([A-Za-z][\w-]*)(?=[\s/>]|$)")
# Elements that never have a closing tag.
_HTML_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


def load_markdown(data: bytes, _bounds: Bounds) -> Extracted:
    """Markdown rendered to plain text: markup (links' URLs, images, HTML, emphasis, '#') is dropped.

    Headings are blocks without their '#' marks; fenced code and tables stay one block each; list items are
    separate blocks.
    """
    body, front_title = _split_front_matter(read_text(data))
    builder = Builder()
    _MarkdownParser(builder).parse(body.split("\n"))
    text = builder.text()
    title = front_title or next((text[b.start : b.end] for b in builder.blocks if b.heading_level == 1), "")
    return title, text, builder.blocks


def _split_front_matter(raw: str) -> tuple[str, str]:
    """Drop a leading YAML front matter block; return (body, its title or "")."""
    match = _FRONT_MATTER.match(raw)
    if not match:
        return raw, ""
    title = ""
    for line in match.group(1).split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "title":
            title = value.strip().strip("\"'").strip()
            break
    return raw[match.end() :], title


@dataclass
class _MarkdownParser:
    """Line-based block parser: enough CommonMark for READMEs, clippings and notes."""

    out: Builder
    para: list[str] = field(default_factory=list)
    para_is_item: bool = False

    def parse(self, lines: list[str]) -> None:
        i = 0
        while i < len(lines):
            i = self._step(lines, i)
        self._flush()

    def _step(self, lines: list[str], i: int) -> int:
        line = lines[i]
        stripped = line.strip()
        fence = _FENCE.match(line)
        if fence:
            self._flush()
            return self._code(lines, i, fence.group(1))
        if not stripped or _TEMPLATE_TAG_LINE.match(line):
            self._flush()
            return i + 1
        setext = _SETEXT.match(line)
        if setext and len(self.para) == 1 and not self.para_is_item:
            title = self.para.pop()
            self.out.add(_md_inline(title), level=1 if setext.group(1)[0] == "=" else 2)
            return i + 1
        if _THEMATIC.match(line) or (setext and self.para):
            self._flush()
            return i + 1
        atx = _ATX.match(line)
        if atx:
            self._flush()
            self.out.add(_md_inline(atx.group(2) or ""), level=len(atx.group(1)))
            return i + 1
        if _HTML_START.match(line) and (not self.para or not _is_inline_html(stripped)):
            self._flush()
            return self._html(lines, i)
        if self._is_table_start(lines, i) or (stripped.startswith("|") and stripped.endswith("|")):
            self._flush()
            return self._table(lines, i)
        if _LINK_DEF.match(line):
            self._flush()
            return i + 1
        item = _LIST_ITEM.match(line)
        if item:
            self._flush()
            marker = item.group(2) or ""
            self.para = [f"{marker} {item.group(3)}".strip()]
            self.para_is_item = True
            return i + 1
        if stripped.startswith(">"):
            stripped = stripped.lstrip(">").strip()
        if _FOOTNOTE_DEF.match(stripped):
            # Footnote definitions are back matter (in practice reference lists): short, dense with names and
            # dates, they outrank real passages in dense retrieval and answer nothing. Skip them whole.
            self._flush()
            i += 1
            while i < len(lines) and lines[i].strip() and not _FOOTNOTE_DEF.match(lines[i].strip()):
                i += 1
            return i
        self.para.append(stripped)
        return i + 1

    def _flush(self) -> None:
        if self.para:
            lines = [_md_inline(line) for line in self.para]
            self.out.add("\n".join(line for line in lines if line))
        self.para = []
        self.para_is_item = False

    def _code(self, lines: list[str], i: int, fence: str) -> int:
        """A fenced code block is kept verbatim (without its fences) as one block."""
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            marks = close.group(1) if close else ""
            if marks[:1] == fence[0] and len(marks) >= len(fence) and not lines[j].strip()[len(marks) :].strip():
                break
            body.append(lines[j].rstrip())
            j += 1
        self.out.add("\n".join(body).strip("\n"))
        return j + 1

    def _html(self, lines: list[str], i: int) -> int:
        """An HTML block runs to the next blank line; it is mostly layout (badges, logos), keep real prose only.

        Two exceptions, for pages exported from component frameworks (Svelte, MDX): a non-content element
        (script, style, ...) is dropped whole up to its closing tag, even across blank lines; and a line of
        bare tags (<Accordion id="x">, <div slot="y">) followed by flush-left text ends the block there, so
        the markdown that the wrapper holds is parsed as markdown rather than flattened as HTML.
        """
        j = i
        chunk: list[str] = []
        in_comment = False
        while j < len(lines) and (lines[j].strip() or in_comment):
            if not in_comment:
                skip_end = _skipped_element_end(lines, j)
                if skip_end is not None:
                    if chunk:
                        break
                    return skip_end
                if j > i and _TAG_ONLY_LINE.match(lines[j - 1]) and _MD_TEXT_LINE.match(lines[j]):
                    break
            chunk.append(lines[j])
            joined = "\n".join(chunk)
            in_comment = joined.count("<!--") > joined.count("-->")
            j += 1
        block = _HTML_COMMENT.sub(" ", "\n".join(chunk))
        text = collapse(html.unescape(_HTML_TAG.sub(" ", block)))
        if _words(text) >= _MIN_PROSE_WORDS and not _is_link_bar(block):
            self.out.add(_md_inline(text))
        return j

    @staticmethod
    def _is_table_start(lines: list[str], i: int) -> bool:
        return "|" in lines[i] and i + 1 < len(lines) and bool(_TABLE_SEP.match(lines[i + 1]))

    def _table(self, lines: list[str], i: int) -> int:
        """A pipe table becomes one block, one row per line, cells joined with ' | '; the rows above the
        delimiter row (|---|---|) are its header."""
        rows: list[str] = []
        header_rows = 0
        j = i
        while j < len(lines) and "|" in lines[j] and lines[j].strip():
            if _TABLE_SEP.match(lines[j]):
                header_rows = header_rows or len(rows)
            else:
                cells = [_md_inline(cell.strip()) for cell in _split_row(lines[j].strip())]
                if any(cells):
                    rows.append(" | ".join(cells))
            j += 1
        self.out.add("\n".join(rows), header_rows=header_rows)
        return j


def _skipped_element_end(lines: list[str], i: int) -> int | None:
    """If line `i` opens a non-content element (<script>, <style>, <svg>, ...), the index of the line after
    the one that closes it (after the next blank line if nothing closes it, so a forgotten closing tag does
    not swallow the page); None for any other line. Void tags (<img>) have no content to drop.

    Lower- or upper-case names only: a capitalised <Button> or <Nav> is a framework component wrapping content.
    """
    match = _HTML_OPEN.match(lines[i])
    if not match:
        return None
    name = match.group(1)
    if name.lower() not in HTML_SKIP or name.lower() in _HTML_VOID or not (name.islower() or name.isupper()):
        return None
    close = re.compile(rf"</{re.escape(name)}\s*>", re.IGNORECASE)
    rest = lines[i][match.end() :]
    if re.match(r"[^>]*/>", rest):
        return i + 1  # <script src="..." />
    for j in range(i, len(lines)):
        if close.search(rest if j == i else lines[j]):
            return j + 1
    return next((j for j in range(i + 1, len(lines)) if not lines[j].strip()), len(lines))


def _split_row(row: str) -> list[str]:
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return re.split(r"(?<!\\)\|", row)


def _is_inline_html(line: str) -> bool:
    return bool(re.match(r"<(a|b|i|em|strong|code|span|sup|sub|br|img|kbd|small)\b", line, re.IGNORECASE))


def _md_inline(text: str) -> str:
    """Inline markdown to plain text; code spans keep their content untouched."""
    pieces: list[str] = []
    pos = 0
    for match in _CODE_SPAN.finditer(text):
        pieces.append(_md_inline_prose(text[pos : match.start()]))
        pieces.append(match.group(2).strip())
        pos = match.end()
    pieces.append(_md_inline_prose(text[pos:]))
    return re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()


def _md_inline_prose(text: str) -> str:
    text = _HTML_COMMENT.sub("", text)
    text = _MD_IMAGE.sub("", text)
    text = _MD_AUTOLINK.sub(r"\1", text)
    for _ in range(2):  # a link label can itself hold a link or image
        text = _MD_LINK.sub(r"\1", text)
    text = _MD_REF_LINK.sub(r"\1", text)
    text = _MD_FOOTNOTE_REF.sub("", text)
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE)
    text = _HTML_TAG.sub("", text)
    text = _MD_STRONG.sub(r"\2", text)
    text = _MD_EM_STAR.sub(r"\1", text)
    text = _MD_EM_UNDER.sub(r"\1", text)
    text = _MD_ESCAPE.sub(r"\1", text)
    return html.unescape(text)
