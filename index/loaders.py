"""Turn one corpus file into a Document: clean extracted text plus structural blocks with exact offsets.

Every format goes through the same contract: `text[block.start:block.end]` is the block's text, blocks are in
order and never overlap, and any file we cannot index raises `LoadError` with a short reason for the user.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from index.types import Block, Document, LoadError

if TYPE_CHECKING:
    from pypdf import PdfReader
    from selectolax.lexbor import LexborNode

SUPPORTED_SUFFIXES: tuple[str, ...] = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")

# Bounds of PDF extraction, the one format whose text can be far larger than its file: pages can share one
# content stream, so a 46 KB file can extract to 92 million characters. A file over a bound is a LoadError.
MAX_PDF_PAGES = 2000
MAX_PAGE_CHARS = 100_000  # a dense real page holds under ~10k characters: 10x that is not a page but a bomb
MAX_DOCUMENT_CHARS = 5_000_000
MAX_EXTRACTION_SECONDS = 120.0

_KIND_BY_SUFFIX = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}

# Blocks that we build ourselves (markdown, HTML, PDF) are separated by a blank line.
_BLOCK_SEP = "\n\n"
_SENTENCE_END = ".!?…"
# A line that is nothing but a list/point marker: "(a)", "1.", "iv)", "—", "•".
_ENUM_ONLY = re.compile(
    r"^(?:\(?\d{1,3}[.)]|\(\d{1,3}\)|\(?[a-zA-Z]{1,2}[.)]|\([a-zA-Z]{1,2}\)|\(?[ivxlcdm]{1,6}[.)]|\([ivxlcdm]{1,6}\)|[—–•-])$"
)
# Legal structure labels, alone on their line: "CHAPTER V", "Article 44", "Section 2", "Annexe I".
_LEGAL_LABEL = re.compile(
    r"^(part|partie|title|titre|chapter|chapitre|section|sous-section|article|annex|annexe)"
    r"\s+(\d+[a-z]?|[ivxlcdm]+|premier|first|[a-z])\.?$",
    re.IGNORECASE,
)
_LEGAL_LEVELS = {
    "part": 2,
    "partie": 2,
    "title": 2,
    "titre": 2,
    "annex": 2,
    "annexe": 2,
    "chapter": 3,
    "chapitre": 3,
    "section": 4,
    "sous-section": 4,
    "article": 5,
}


# --------------------------------------------------------------------------------------------------- public API


def load_document(
    path: Path,
    root: Path,
    *,
    max_pdf_pages: int = MAX_PDF_PAGES,
    max_page_chars: int = MAX_PAGE_CHARS,
    max_document_chars: int = MAX_DOCUMENT_CHARS,
    max_extraction_seconds: float = MAX_EXTRACTION_SECONDS,
) -> Document:
    """Read and extract one file; a file that cannot be indexed raises LoadError, never anything else.

    The `max_*` bounds apply to PDF extraction, checked while it runs so a bomb stops at its first page.
    """
    suffix = path.suffix.lower()
    kind = _KIND_BY_SUFFIX.get(suffix)
    if kind is None:
        raise LoadError(f"unsupported file type ({suffix or 'no extension'})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror or type(exc).__name__})") from exc
    if not data.strip():
        raise LoadError("empty file")
    try:
        if kind == "pdf":
            budget = _PdfBudget(max_pdf_pages, max_page_chars, max_document_chars, max_extraction_seconds)
            title, text, blocks = _extract_pdf(data, budget)
        else:
            raw = _decode_html(data) if kind == "html" else decode_text(data)
            if not raw.strip():
                raise LoadError("empty file")
            extract = {"txt": _extract_txt, "md": _extract_markdown, "html": _extract_html}[kind]
            title, text, blocks = extract(raw)
    except LoadError:
        raise
    except Exception as exc:  # a parser choking on odd input must not abort a whole indexing run
        raise LoadError(f"could not extract text ({type(exc).__name__})") from exc
    if not blocks:
        raise LoadError("no extractable text")
    return Document(
        source=_relative_source(path, root),
        title=title or path.stem,
        text=text,
        blocks=blocks,
        content_hash=hashlib.sha256(data).hexdigest(),
        kind=kind,
        path=path,
    )


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding; French legacy files (cp1252/latin-1) must keep their accents.

    Order: BOM, strict UTF-8, BOM-less UTF-16/32 (NUL pattern), then cp1252. Raises LoadError for binary data.
    Newlines become "\\n" and the result is NFC-normalised.
    """
    text = _decode_bom(data)
    if text is None and b"\x00" in data:
        text = _decode_wide(data)
        if text is None:
            raise LoadError("binary file (not text)")
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode_legacy(data)
    return _normalise_text(text)


def _normalise_text(text: str) -> str:
    if _looks_binary(text):
        raise LoadError("binary file (not text)")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    return unicodedata.normalize("NFC", text)


_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)


def _decode_html(data: bytes) -> str:
    """HTML that is not UTF-8 may declare its encoding (e.g. windows-1251): honour it before guessing."""
    declared = _META_CHARSET.search(data[:4096])
    if declared is None or b"\x00" in data or any(data.startswith(bom) for bom, _ in _BOMS):
        return decode_text(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        name = declared.group(1).decode("ascii").lower()
        name = "cp1252" if name in {"iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"} else name  # as browsers do
        try:
            return _normalise_text(data.decode(name))
        except (LookupError, UnicodeDecodeError):
            pass
    return decode_text(data)


# ------------------------------------------------------------------------------------------------------ decoding

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _decode_bom(data: bytes) -> str | None:
    """Decode by byte-order mark (UTF-32 first: its LE mark starts with UTF-16's)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise LoadError(f"undecodable text (invalid {encoding})") from exc
    return None


def _decode_wide(data: bytes) -> str | None:
    """BOM-less UTF-32/UTF-16: text in these has NULs in regular byte columns; random binary does not."""
    sample = data[:4096]
    candidates: list[str] = []
    if len(data) % 4 == 0:
        nul = _nul_share(sample, 4)
        if nul[2] > 0.9 and nul[3] > 0.9 and nul[0] < 0.5:
            candidates.append("utf-32-le")
        if nul[0] > 0.9 and nul[1] > 0.9 and nul[3] < 0.5:
            candidates.append("utf-32-be")
    if len(data) % 2 == 0:
        nul = _nul_share(sample, 2)
        if nul[1] > 0.6 and nul[0] < 0.2:
            candidates.append("utf-16-le")
        if nul[0] > 0.6 and nul[1] < 0.2:
            candidates.append("utf-16-be")
    for encoding in candidates:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _nul_share(sample: bytes, width: int) -> list[float]:
    """Share of NUL bytes in each byte column of a fixed-width encoding."""
    columns = [sample[i::width] for i in range(width)]
    return [col.count(0) / max(len(col), 1) for col in columns]


def _decode_legacy(data: bytes) -> str:
    """Single-byte fallback: cp1252 is right for French/English; charset-normalizer only for clearly other text."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:  # the 5 bytes cp1252 leaves undefined: latin-1 maps every byte
        text = data.decode("latin-1")
    letters = [c for c in text if c.isalpha()]
    non_ascii = sum(1 for c in letters if ord(c) > 127)
    if len(letters) >= 20 and non_ascii / len(letters) > 0.6:
        # Far more accented letters than French ever has: probably Cyrillic/Greek/... in a legacy code page.
        guess = _charset_guess(data)
        if guess is not None:
            return guess
    return text


def _charset_guess(data: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional helper
        return None
    best = from_bytes(data).best()
    if best is None or best.encoding in {"cp1252", "latin_1", "iso8859_15", "ascii", "utf_8"}:
        return None
    return str(best)


def _looks_binary(text: str) -> bool:
    """Control characters (other than tab/newline/form feed) are rare in text and common in binary data."""
    if not text:
        return False
    sample = text[:20000]
    controls = sum(1 for c in sample if (ord(c) < 32 and c not in "\t\n\r\f\v") or c == "\x7f")
    return "\x00" in sample or controls / len(sample) > 0.01


# --------------------------------------------------------------------------------------------- building helpers


@dataclass
class _Builder:
    """Accumulates block texts into one document text, recording exact offsets."""

    parts: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    length: int = 0

    def add(self, text: str, level: int = 0, page: int | None = None, header_rows: int | None = None) -> None:
        """`header_rows` makes the block a table (one row per line) whose first `header_rows` lines are its
        header; None for anything else."""
        text = text.strip()
        if not text:
            return
        if level and _too_long_for_heading(text):
            level = 0  # some pages style lead paragraphs as <h4>: a full sentence is body text
        if self.parts:
            self.parts.append(_BLOCK_SEP)
            self.length += len(_BLOCK_SEP)
        self.parts.append(text)
        start = self.length
        header = None
        if header_rows and text.count("\n") >= header_rows:  # a header with at least one row under it
            head = "\n".join(text.split("\n")[:header_rows]).rstrip()
            header = (start, start + len(head))
        self.blocks.append(Block(start, start + len(text), level, page, header_rows is not None, header))
        self.length += len(text)

    def text(self) -> str:
        return "".join(self.parts)


def _too_long_for_heading(text: str) -> bool:
    words = len(text.split())
    return words > 25 or (words > 12 and text.rstrip().endswith("."))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _ends_sentence(text: str) -> bool:
    return text.rstrip(" »”\"’')]").endswith(tuple(_SENTENCE_END))


def _legal_level(text: str) -> int | None:
    match = _LEGAL_LABEL.match(_collapse(text))
    return _LEGAL_LEVELS[match.group(1).lower()] if match else None


def _relative_source(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.resolve().relative_to(root.resolve()).as_posix()


# ---------------------------------------------------------------------------------------------------------- txt


def _extract_txt(raw: str) -> tuple[str, str, list[Block]]:
    """Plain text keeps the decoded file as `text`; blocks are located in it by offset."""
    text = raw.replace("\f", "\n")
    runs = _txt_runs(text)
    paragraphs = [span for run in runs for span in _txt_paragraphs(text, run)]
    return "", text, _txt_blocks(text, paragraphs)


def _txt_runs(text: str) -> list[list[tuple[int, int]]]:
    """Runs of non-blank lines, each line as a trimmed (start, end) span."""
    runs: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    pos = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped:
            start = pos + len(line) - len(line.lstrip())
            current.append((start, start + len(stripped)))
        elif current:
            runs.append(current)
            current = []
        pos += len(line) + 1
    if current:
        runs.append(current)
    return runs


def _txt_paragraphs(text: str, run: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A hard-wrapped run (short lines not ending sentences) is one paragraph; otherwise one per line."""
    if len(run) > 1:
        lengths = [end - start for start, end in run]
        inner_open = sum(1 for start, end in run[:-1] if not _ends_sentence(text[start:end]))
        if max(lengths) <= 100 and inner_open * 2 >= len(run) - 1:
            return [(run[0][0], run[-1][1])]
    return list(run)


def _is_heading_like(line: str) -> bool:
    """Short, unpunctuated, capitalised: the shape of a title line."""
    words = line.split()
    return (
        0 < len(line) <= 90
        and len(words) <= 12
        and not line.rstrip(" »”\"’')]").endswith((*_SENTENCE_END, ",", ";", ":"))
        and (line[0].isupper() or line[0].isdigit() or line[0] in '«"“')
        and not _ENUM_ONLY.match(line)
        and any(len(w) > 2 and w.isalpha() for w in words[:3])
    )


def _txt_blocks(text: str, paragraphs: list[tuple[int, int]]) -> list[Block]:
    """Headings: legal labels ("Article 44") with an optional subtitle, or a short line before body text.

    A marker line such as "(a)" is merged with the paragraph it introduces.
    """
    blocks: list[Block] = []
    i = 0
    while i < len(paragraphs):
        start, end = paragraphs[i]
        line = text[start:end]
        nxt = text[paragraphs[i + 1][0] : paragraphs[i + 1][1]] if i + 1 < len(paragraphs) else ""
        level = _legal_level(line) if "\n" not in line else None
        if level is not None:
            if nxt and _is_heading_like(nxt) and _legal_level(nxt) is None and "\n" not in nxt:
                end = paragraphs[i + 1][1]
                i += 1
            blocks.append(Block(start, end, level))
        elif _ENUM_ONLY.match(line) and nxt:
            blocks.append(Block(start, paragraphs[i + 1][1], 0))
            i += 1
        elif (
            "\n" not in line
            and _is_heading_like(line)
            and nxt
            and not nxt[0].islower()
            and len(nxt) > max(len(line) * 1.5, 60)
            and _ends_sentence(nxt)
        ):
            blocks.append(Block(start, end, 2))
        else:
            blocks.append(Block(start, end, 0))
        i += 1
    return blocks


# ----------------------------------------------------------------------------------------------------- markdown

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


def _extract_markdown(raw: str) -> tuple[str, str, list[Block]]:
    """Markdown rendered to plain text: markup (links' URLs, images, HTML, emphasis, '#') is dropped.

    Headings are blocks without their '#' marks; fenced code and tables stay one block each; list items are
    separate blocks.
    """
    body, front_title = _split_front_matter(raw)
    builder = _Builder()
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

    out: _Builder
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
        text = _collapse(html.unescape(_HTML_TAG.sub(" ", _HTML_COMMENT.sub(" ", "\n".join(chunk)))))
        if len(re.findall(r"[^\W\d_]{2,}", text)) >= 4:
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
    if name.lower() not in _HTML_SKIP or name.lower() in _HTML_VOID or not (name.islower() or name.isupper()):
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


# --------------------------------------------------------------------------------------------------------- HTML

_HTML_SKIP = frozenset(
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
# Elements that never have a closing tag.
_HTML_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
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
        if tag in _HTML_SKIP or (tag in {"header", "footer"} and not in_content):
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
            text = _collapse(" ".join([*(b.text for b in inner.blocks), "".join(inner.inline)]))
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
                text = _collapse(text)  # one line per row
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
        if len(cells) > 1 and _ENUM_ONLY.match(cells[0]):
            cells = [f"{cells[0]} {cells[1]}", *cells[2:]]
        return " | ".join(cells), all_th and bool(cells)

    def flush(self, level: int = 0, role: str = "") -> None:
        raw = "".join(self.inline)
        self.inline = []
        lines = [_collapse(line) for line in raw.split(_LINE_BREAK)]
        text = "\n".join(line for line in lines if line)
        if text:
            self._push(_HtmlBlock(text, level, role))

    def _push(self, block: _HtmlBlock) -> None:
        """Hold a lone point marker such as "(a)" and glue it to the paragraph it introduces."""
        if not block.text.strip():
            return
        if block.level == 0 and _ENUM_ONLY.match(block.text):
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
            block.level = block.level or _legal_level(block.text) or 3
        elif block.role == "subtitle":
            if prev is not None and prev.role == "label" and "\n" not in prev.text:
                prev.text = f"{prev.text}\n{block.text}"
                continue
            block.level = 6 if prev is None else min(6, max(prev.level, 1) + 1)
        merged.append(block)
    return merged


def _extract_html(raw: str) -> tuple[str, str, list[Block]]:
    """Visible text of an HTML page (selectolax); headings and block elements become blocks."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(raw)
    title_node = tree.css_first("title")
    title = _collapse(title_node.text(deep=True) or "") if title_node is not None else ""
    walker = _HtmlWalker()
    root = tree.body or tree.root
    if root is not None:
        walker.walk(root)
    builder = _Builder()
    for block in _merge_eurlex(walker.finish()):
        builder.add(block.text, level=block.level, header_rows=block.header_rows)
    if not title:
        text = builder.text()
        title = next((_collapse(text[b.start : b.end]) for b in builder.blocks if b.heading_level == 1), "")
    return title, builder.text(), builder.blocks


# ---------------------------------------------------------------------------------------------------------- PDF

_PDF_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")
_PDF_NUM_HEADING = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,5})\.?\s+(\S.*)$")
_PDF_LETTER_HEADING = re.compile(r"^([A-H])\.\s+([A-Z][\w’'-]+(?:\s+[\w’'&-]+){1,10})$")
_PDF_NAMED_HEADINGS = frozenset(
    {
        "abstract",
        "contents",
        "table of contents",
        "introduction",
        "conclusion",
        "conclusions",
        "references",
        "bibliography",
        "acknowledgments",
        "acknowledgements",
        "appendix",
        "appendices",
        "résumé",
        "sommaire",
        "table des matières",
        "références",
        "bibliographie",
        "remerciements",
        "annexe",
        "annexes",
    }
)
_PDF_ITEM_START = re.compile(r"^(?:[•◦▪‣∙●○■□–—-]\s|(?:Figure|Fig\.|Table|Tableau)\s+\d+\b|\(\d{1,2}\)\s)")
_TOC_LINE = re.compile(r"(?:\.\s?){3,}\s*\d+$")
_NUMERIC_LINE = re.compile(r"^[\d.,%+\-−–:/() ]{1,12}$")
_PAGE_NUMBER = re.compile(r"^(?:\d{1,4}|[ivxlcdm]{1,7}|-\s*\d{1,4}\s*-|page\s+\d+(?:\s*(?:/|of|sur)\s*\d+)?)$", re.I)
# A table cell value: 79.8, -3, 1,820, 37B, 4.23GB, 5.7T, 71.0%, (2.1), 8x, and "-" for a missing value.
_PDF_NUMBER = re.compile(r"[(\[]?[-+−–~≈<>±]?\d[\d.,]*(?:%|[KMBT]|[KMGT]i?B|[kx×])?[)\]]?\*?|[-–—]")
_PDF_MEASURE = re.compile(r"\d[.,]\d|\d%")
_PDF_LETTERS_SPAN = re.compile(r"[^\W\d_](?:.*[^\W\d_])?")
_PDF_DIGITS = re.compile(r"\d+")
_KEEP_HYPHEN_PREFIXES = frozenset(
    "self non multi pre post co cross well long large small high low fine semi sub anti inter intra meta "
    "zero few one two three real end top state open rule case".split()
)
_TITLE_CONTINUES = frozenset(
    "a an and the of for in on via with to from by at de du des la le les et en pour par sur avec dans au aux".split()
)


class _PdfBudget:
    """The extraction bounds of one PDF, checked from pypdf's per-operator callbacks: a page's text is
    counted while it is extracted, so one huge page is stopped part-way rather than after it is done."""

    def __init__(self, max_pages: int, max_page_chars: int, max_document_chars: int, max_seconds: float):
        self.max_pages = max_pages
        self.max_page_chars = max_page_chars
        self.max_document_chars = max_document_chars
        self.max_seconds = max_seconds
        self.deadline = time.monotonic() + max_seconds
        self.page_number = 0
        self.page_chars = 0  # extracted so far from the current page
        self.document_chars = 0  # extracted from the finished pages
        self.exceeded = ""

    def check_pages(self, count: int) -> None:
        if count > self.max_pages:
            raise LoadError(f"PDF too long: {count} pages, limit {self.max_pages}")

    def start_page(self, number: int) -> None:
        self.page_number = number
        self.page_chars = 0

    def end_page(self, text: str) -> None:
        self.page_chars = len(text)
        self.check()
        self.document_chars += len(text)

    def on_operator(self, *_: object) -> None:
        self.check()

    def on_text(self, text: str, *_: object) -> None:
        self.page_chars += len(text)
        self.check()

    def check(self) -> None:
        """Raise once a bound is passed, and again on every later call: pypdf swallows errors raised inside a
        form XObject, so the next operator outside it must raise again."""
        if not self.exceeded:
            if self.page_chars > self.max_page_chars:
                self.exceeded = f"PDF page {self.page_number} too long: over {self.max_page_chars} characters"
            elif self.document_chars + self.page_chars > self.max_document_chars:
                self.exceeded = f"PDF text too long: over {self.max_document_chars} characters"
            elif time.monotonic() > self.deadline:
                self.exceeded = f"PDF extraction too slow: over {self.max_seconds:.0f} s"
        if self.exceeded:
            raise LoadError(self.exceeded)


def _extract_pdf(data: bytes, budget: _PdfBudget) -> tuple[str, str, list[Block]]:
    """Text per page (pypdf); lines regrouped into paragraphs and numbered headings; pages keep their number."""
    pages, meta_title = _pdf_pages(data, budget)
    page_lines = [_pdf_clean_lines(raw) for raw in pages]
    running = _pdf_running_lines(page_lines)
    builder = _Builder()
    first_lines: list[str] = []
    for number, lines in enumerate(page_lines, start=1):
        lines = ["" if line and _pdf_line_key(line) in running else line for line in lines]
        if not first_lines:
            first_lines = [line for line in lines if line]
        for text, level, header_rows in _pdf_paragraphs(lines):
            builder.add(text, level=level, page=number, header_rows=header_rows)
    if not builder.blocks:
        raise LoadError("no text layer (scanned PDF?)")
    return meta_title or _pdf_title(first_lines), builder.text(), builder.blocks


def _pdf_pages(data: bytes, budget: _PdfBudget) -> tuple[list[str], str]:
    """Raw text of every page; corrupt, encrypted, textless and over-budget files become LoadError."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception as exc:
                raise LoadError("encrypted PDF (password required)") from exc
            if not unlocked:
                raise LoadError("encrypted PDF (password required)")
        page_objects = list(reader.pages)
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__})") from exc
    if not page_objects:
        raise LoadError("corrupt or unreadable PDF (no pages)")
    budget.check_pages(len(page_objects))
    texts: list[str] = []
    failures = 0
    for number, page in enumerate(page_objects, start=1):
        budget.start_page(number)
        try:
            text = page.extract_text(visitor_operand_before=budget.on_operator, visitor_text=budget.on_text) or ""
        except LoadError:
            raise
        except Exception:  # one broken page should not hide the others
            failures += 1
            text = ""
        budget.end_page(text)
        texts.append(text)
    if failures == len(page_objects):
        raise LoadError("corrupt or unreadable PDF (no page could be read)")
    if not any(_PDF_CONTROL.sub("", t).strip() for t in texts):
        raise LoadError("no text layer (scanned PDF?)")
    return texts, _pdf_meta_title(reader)


def _pdf_meta_title(reader: PdfReader) -> str:
    """Metadata titles are often junk ("Microsoft Word - x.docx", "untitled"): keep only plausible ones."""
    try:
        title = _collapse(str((reader.metadata or {}).get("/Title") or ""))
    except Exception:
        return ""
    low = title.lower()
    if not (3 <= len(title) <= 200) or not re.search(r"[^\W\d_]{3}", title):
        return ""
    if low.startswith(("microsoft word", "untitled", "document", "slide")) or re.search(
        r"\.(pdf|docx?|tex|dvi|pptx?|odt|rtf)$", low
    ):
        return ""
    return title


def _pdf_normalise(line: str) -> str:
    """Ligatures and math-alphabet letters to plain letters, controls dropped, spaces collapsed."""
    line = _PDF_CONTROL.sub("", line)
    line = "".join(
        unicodedata.normalize("NFKC", c) if 0xFB00 <= ord(c) <= 0xFB06 or 0x1D400 <= ord(c) <= 0x1D7FF else c
        for c in line
    )
    return _collapse(unicodedata.normalize("NFC", line))


def _pdf_clean_lines(raw: str) -> list[str]:
    """Normalised lines; "" marks a blank line. Page numbers and runs of bare chart numbers are dropped."""
    lines = [_pdf_normalise(line) for line in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    content = [i for i, line in enumerate(lines) if line]
    for i in (content[-1:] + content[:1]) if content else []:
        if _PAGE_NUMBER.match(lines[i]):
            lines[i] = ""
    keep = [True] * len(lines)
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and lines[j] and _NUMERIC_LINE.match(lines[j]):
            j += 1
        if j - i >= 3:
            keep[i:j] = [False] * (j - i)
        i = max(j, i + 1)
    return [line for line, k in zip(lines, keep, strict=True) if k]


def _pdf_line_key(line: str) -> str:
    """A line from its first to its last letter, other digits folded: a running footer reads "Title 3
    20/07/2025" on one page, "20/07/2025 Title 4" or "Title20/07/2025 7" (glued) on others."""
    core = _PDF_LETTERS_SPAN.search(line)
    return _PDF_DIGITS.sub("#", (core.group() if core else line).lower())


def _pdf_running_lines(pages: list[list[str]]) -> set[str]:
    """Keys of running headers and footers (titles, dates, labels, logo alt texts): lines found on at least
    3 pages and on at least half of them.

    Half, because a running line is on (nearly) every page, bar a title or full-figure page, while the most
    repeated real lines stay far below that (in a 52-page report, a "Prompt" label on 19 pages; in a paper,
    a citation on 3 of 22). At least 3, because on two pages a line seen twice is as likely real content.
    """
    counts: dict[str, int] = {}
    for lines in pages:
        for key in {_pdf_line_key(line) for line in lines if line}:
            counts[key] = counts.get(key, 0) + 1
    return {key for key, count in counts.items() if count >= 3 and count * 2 >= len(pages)}


def _pdf_heading_level(line: str) -> int:
    """Numbered section titles ("2.3.1 Cold Start", "1. Introduction") and named ones ("Abstract")."""
    if line.lower().rstrip(":") in _PDF_NAMED_HEADINGS:
        return 1
    if len(line) > 100 or ". . ." in line or line.endswith((".", ",", ";", ":")):
        return 0
    match = _PDF_NUM_HEADING.match(line)
    if match:
        title = match.group(2)
        words = title.split()
        if (
            title[0].isupper()
            and len(words) <= 14
            and not re.search(r"\s\d+$", line)  # a table-of-contents line ends with its page number
            and sum(any(c.isdigit() for c in w) for w in words) <= 2
            and any(len(w) >= 3 and w.isalpha() for w in words)
        ):
            return min(match.group(1).count(".") + 1, 6)
        return 0
    letter = _PDF_LETTER_HEADING.match(line)
    if letter and "," not in line and not re.search(r"\s\d+$", line):
        return 1
    return 0


def _pdf_width(lines: Iterable[str]) -> int:
    lengths = sorted(len(line) for line in lines if len(line) >= 20)
    if not lengths:
        return 80
    return lengths[int(len(lengths) * 0.8)] if len(lengths) >= 5 else lengths[-1]


def _pdf_paragraphs(lines: list[str]) -> list[tuple[str, int, int | None]]:
    """Regroup a page's lines: a short line ends a paragraph (justified text fills the others); a table keeps
    a line per row. Items are (text, heading level, header rows if a table else None)."""
    width = _pdf_width(lines)
    tables = {table[0]: table for table in _pdf_tables(lines, width)}
    out: list[tuple[str, int, int | None]] = []
    para: list[str] = []
    fragments = False  # is out[-1] a run of glued short fragments (chart labels, formula pieces, names)?

    def flush() -> None:
        nonlocal fragments
        if not para:
            return
        text = _pdf_join(para)
        is_fragment = len(para) == 1 and len(text) < 40 and not _ends_sentence(text)
        if is_fragment and fragments:
            out[-1] = (f"{out[-1][0]} {text}", 0, None)
        else:
            out.append((text, 0, None))
        fragments = is_fragment
        para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if i - 1 in tables:
            flush()
            _, rows_start, end = tables[i - 1]
            header = lines[i - 1 : rows_start]
            out.append(("\n".join(header + _pdf_table_rows(lines[rows_start:end])), 0, len(header)))
            fragments = False
            i = end
            continue
        if not line:
            flush()
            continue
        level = _pdf_heading_level(line) if not para else 0
        if level:
            out.append((line, level, None))
            fragments = False
            continue
        if para and _PDF_ITEM_START.match(line):
            flush()
        para.append(line)
        limit = 0.9 if _ends_sentence(line) else 0.75
        if len(line) < width * limit or _TOC_LINE.search(line):
            flush()
    flush()
    return out


def _pdf_row_values(line: str) -> int:
    """How many number-like tokens end the line: a table row reads "MMLU (EM) 88.3 87.2 -"."""
    count = 0
    for token in reversed(line.split()):
        if not _PDF_NUMBER.fullmatch(token):
            break
        count += 1
    return count


def _pdf_is_label(line: str) -> bool:
    """A short line without numbers between rows: a category ("English") or a wrapped first cell."""
    return 0 < len(line.split()) <= 3 and not any(c.isdigit() for c in line) and not _ends_sentence(line)


def _pdf_tables(lines: list[str], width: int) -> list[tuple[int, int, int]]:
    """Tables of measurements in a page's lines, as (header start, first row, end) line indices.

    Rows are lines ending in at least 2 number-like values, at least 3 of them, with label lines between
    them; at least half must hold a decimal or a percentage, as measurements do, which names with version
    numbers ("LLaMA 2 13B" chart labels) or code (f((1, 2)) == (3, 4)) do not. The header is the short
    lines right above (column titles wrap, so up to 4), never a sentence, a heading, a caption or a list item.
    """
    tables: list[tuple[int, int, int]] = []
    i = 0
    while i < len(lines):
        if _pdf_row_values(lines[i]) < 2:
            i += 1
            continue
        end, rows = i, []
        while end < len(lines) and lines[end]:
            if _pdf_row_values(lines[end]) >= 2:
                rows.append(lines[end])
            elif not (_pdf_is_label(lines[end]) and end + 1 < len(lines) and _pdf_row_values(lines[end + 1]) >= 2):
                break
            end += 1
        if len(rows) >= 3 and sum(bool(_PDF_MEASURE.search(row)) for row in rows) * 2 >= len(rows):
            floor = tables[-1][2] if tables else 0
            head = i
            while head > floor and i - head < 4 and _pdf_is_header_line(lines[head - 1], width):
                head -= 1
            tables.append((head, i, end))
        i = max(end, i + 1)
    return tables


def _pdf_is_header_line(line: str, width: int) -> bool:
    return (
        bool(line)
        and len(line) < width * 0.85  # column titles; a justified line of prose fills the measure
        and not _pdf_heading_level(line)
        and not _ends_sentence(line)
        and not line.endswith((":", ",", ";"))
        and not _PDF_ITEM_START.match(line)
    )


def _pdf_table_rows(lines: list[str]) -> list[str]:
    """Table lines, one per row: a label line becomes the first cell of the row under it."""
    rows: list[str] = []
    label = ""
    for line in lines:
        if _pdf_row_values(line) >= 2:
            rows.append(f"{label} {line}".strip())
            label = ""
        else:
            label = f"{label} {line}".strip()
    return rows


def _pdf_join(lines: list[str]) -> str:
    """Join wrapped lines; a word hyphenated across a line break is rejoined ("super-" + "vised")."""
    text = lines[0]
    for line in lines[1:]:
        if text.endswith("-") and not text.endswith(" -"):
            word = re.search(r"([\w’'-]*)-$", text)
            prefix = word.group(1).split("-")[-1].lower() if word else ""
            if text[-2:-1].islower() and line[:1].islower() and prefix not in _KEEP_HYPHEN_PREFIXES:
                text = text[:-1] + line
            else:
                text += line  # "DeepSeek-" + "R1", "Qwen2.5-" + "32B": a real hyphen
        else:
            text += " " + line
    return text


def _pdf_title(first_lines: list[str]) -> str:
    """First line of the first page, continued when it visibly breaks mid-phrase ("... via")."""
    if not first_lines:
        return ""
    title = first_lines[0]
    rest = first_lines[1:3]
    while rest and (title.split()[-1].lower() in _TITLE_CONTINUES or title.endswith((":", "-"))):
        title = f"{title} {rest.pop(0)}"
    return title[:200]
