"""Structure-aware chunking, and the sentence splitter shared with the citation code.

A chunk is always one contiguous, trimmed span of `Document.text`, never crosses a heading, and only ends
mid-sentence when a single sentence is longer than the chunk size. That keeps every quote we show verifiable
against the source text by offset.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from index.types import Block, Chunk, Document

# Words that end with a period without ending the sentence (compared in lower case).
_ABBREVIATIONS = frozenset(
    {
        # French
        "m",
        "mm",
        "mme",
        "mmes",
        "mlle",
        "mlles",
        "mgr",
        "pr",
        "dr",
        "drs",
        "st",
        "ste",
        "av",
        "bd",
        "env",
        "ex",
        "cf",
        "éd",
        "coll",
        "trad",
        "chap",
        "p",
        "pp",
        "art",
        "arts",
        "n°",
        "j.-c",
        "apr",
        "vol",
        "fig",
        "figs",
        "tél",
        "resp",
        # English
        "mr",
        "mrs",
        "ms",
        "messrs",
        "prof",
        "sr",
        "jr",
        "vs",
        "al",
        "approx",
        "dept",
        "eq",
        "eqs",
        "ref",
        "refs",
        "sect",
        "ch",
        "vols",
        "viz",
        "ca",
        "op",
        "cit",
        "ibid",
    }
)
# Abbreviations that are also ordinary words in lower case ("no", "nos"): only their capitalised form counts.
_CASED_ABBREVIATIONS = frozenset({"No", "Nos", "Nr"})
# End punctuation, then closing quotes/brackets and citation markers ("2025.[3]", "fin. »") that belong to it.
_TERMINATOR = re.compile(r"[.!?…]+(?:[»”\"’')\]]|[ \u00a0\u202f]+»|\^?\[\d{1,3}(?:[,;–-]\s?\d{1,3})*\])*")
# A blank line always ends a sentence; so does a line break before a list marker.
_HARD_BREAK = re.compile(r"\n[ \t\u00a0]*\n\s*|\n(?=[ \t]*(?:[-*•–]|\d{1,3}[.)])\s)")
_OPENERS = "([{«\"'“‘"
_ENUMERATOR = re.compile(r"\d{1,3}|[ivxlcdm]{1,6}|[IVXLCDM]{1,6}|[^\W\d_]")
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # U.S, e.g, i.e, a.m
_MIN_DEDUP_CHARS = 40
_MIN_HEADING_CHUNK = 60  # a heading with no body is kept only if it reads like a passage on its own


# --------------------------------------------------------------------------------------------------- sentences


def split_sentences(text: str, start: int = 0) -> list[tuple[int, int]]:
    """Trimmed sentence spans of `text`, as absolute offsets (`start` is added to each).

    French and English: « guillemets », a space before ? ! (French typography), ellipses, abbreviations
    (M., Mme, Dr., p. ex., e.g., i.e., U.S., Art., No.), initials (J. R. R.), decimals (3.5) and list
    enumerators ("1. This Regulation...") do not end a sentence; closing quotes/brackets stay with it.
    """
    spans: list[tuple[int, int]] = []
    segment_start = 0
    for match in _HARD_BREAK.finditer(text):
        spans.extend(_split_segment(text, segment_start, match.start()))
        segment_start = match.end()
    spans.extend(_split_segment(text, segment_start, len(text)))
    return [(s + start, e + start) for s, e in spans]


def chunk_sentences(text: str, headings: Iterable[str] = ()) -> list[tuple[int, int]]:
    """Sentence spans of a chunk's text, each heading it opens with a span of its own.

    A chunk opens with its section's heading. Plain text marks a heading only by a line (or a label line and its
    subtitle: "Article 44⏎General principle for transfers") without a full stop, which sentence splitting alone
    glues to the body's first sentence: that sentence then neither reads as itself (its vector, its words) nor
    quotes cleanly. `headings` are the chunk's heading titles (`Chunk.heading_path`); whole lines are split off only
    when they read as one of them, so a wrapped line of a paragraph never is."""
    titles = {title for title in headings if title}
    if not titles:
        return split_sentences(text)
    longest = max(len(title) for title in titles)
    spans = []
    for start, end in split_sentences(text):
        heading_end = _heading_end(text, start, end, titles, longest)
        while heading_end is not None:
            spans.append((start, heading_end))
            start = heading_end
            while start < end and text[start].isspace():
                start += 1
            heading_end = _heading_end(text, start, end, titles, longest)
        spans.append((start, end))
    return spans


def _heading_end(text: str, start: int, end: int, titles: set[str], longest: int) -> int | None:
    """Where the heading that `text[start:end]` opens with ends: the first run of whole lines that reads as one of
    `titles` (the longest `longest` characters) and leaves text after it (None when it opens with none)."""
    newline = text.find("\n", start, end)
    while newline >= 0:
        lines = heading_title(text[start:newline])
        if lines in titles:
            return start + len(text[start:newline].rstrip())
        if len(lines) >= longest:
            return None
        newline = text.find("\n", newline + 1, end)
    return None


def _split_segment(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    sentence_start = lo
    for match in _TERMINATOR.finditer(text, lo, hi):
        end = match.end()
        if end < hi and not text[end].isspace():
            continue  # "3.5", "e.g.,", "U.S.A"
        nxt = end
        while nxt < hi and text[nxt].isspace():
            nxt += 1
        if nxt >= hi:
            break
        if _is_boundary(text, sentence_start, match, nxt):
            _append_trimmed(spans, text, sentence_start, end)
            sentence_start = nxt
    _append_trimmed(spans, text, sentence_start, hi)
    return spans


def _is_boundary(text: str, sentence_start: int, match: re.Match[str], nxt: int) -> bool:
    """Does the terminator `match`, followed by text at `nxt`, end a sentence?"""
    following = text[nxt]
    if following.islower() or following in ",;:":
        return False
    marks = re.match(r"[.!?…]+", match.group()).group()
    if marks != ".":
        return True  # ? ! … and "..." end a sentence before a capital
    word_start = match.start()
    while word_start > sentence_start and not text[word_start - 1].isspace():
        word_start -= 1
    token = text[word_start : match.start()].lstrip(_OPENERS)
    if not token:
        return True
    if token.lower() in _ABBREVIATIONS or token in _CASED_ABBREVIATIONS:
        return False
    if len(token) == 1 and token.isalpha():
        return False  # initials: "M. Dupont", "J. R. R. Tolkien"
    if _DOTTED.fullmatch(token):
        return False
    return not (word_start == sentence_start and _ENUMERATOR.fullmatch(token))


def _append_trimmed(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return
    if spans and not any(c.isalnum() for c in text[start:end]):
        spans[-1] = (spans[-1][0], end)  # a stray "|" or "»" after a full stop belongs to that sentence
    else:
        spans.append((start, end))


# ---------------------------------------------------------------------------------------------------- chunking


@dataclass(frozen=True)
class _Section:
    """A heading (None before the first one) and the body blocks up to the next heading."""

    path: tuple[str, ...]
    heading: Block | None
    body: tuple[Block, ...]


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of an over-long one); `skip` marks a repeat of earlier text."""

    start: int
    end: int
    skip: bool = False


# Sections that list sources rather than say anything: reference lists outrank real passages in retrieval.
_BACK_MATTER = re.compile(
    r"^\s*(?:\d+(?:\.\d+)*\.?\s+)?(references|bibliography|works cited|citations|notes and references|"
    r"external links|further reading|références|bibliographie|notes et références|liens externes|"
    r"pour aller plus loin)\s*:?\s*$",
    re.IGNORECASE,
)


def chunk_document(
    doc: Document, chunk_size: int = 1000, overlap: int = 150, *, table_row_chunks: bool = False
) -> list[Chunk]:
    """Cut a document into passages of about `chunk_size` characters along headings, paragraphs, sentences
    (table rows for a table).

    The first chunk of a section opens with its heading; consecutive chunks of a section share the last whole
    sentence(s) fitting in `overlap` characters. Sentences of 40+ characters already seen earlier in the
    document are not indexed again. Each data row of a table of records (`Block.records`: a sheet, a CSV file)
    is also a chunk of its own, under that header; with `table_row_chunks`, so is each data row of any table
    with a header (off by default: measured on unseen questions, the extra chunks took places from better
    passages more often than they found a row; docs/evaluation.md).
    """
    if chunk_size <= 0 or not 0 <= overlap < chunk_size:
        raise ValueError("need chunk_size > 0 and 0 <= overlap < chunk_size")
    text = doc.text
    sections = _sections(doc)
    seen: set[str] = set()
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    prefix: int | None = None  # start of headings waiting to open the next (nested) section's first chunk
    for i, section in enumerate(sections):
        if any(_BACK_MATTER.match(title) for title in section.path):
            continue
        paragraphs = _section_units(text, section, chunk_size, seen)
        if any(not unit.skip for para in paragraphs for unit in para):
            spans.extend((s, e, section.path) for s, e in _pack(section, paragraphs, prefix, chunk_size, overlap))
            spans.extend(_row_spans(text, section, chunk_size, every_table=table_row_chunks))
            prefix = None
            continue
        if section.heading is None:
            continue
        start = section.heading.start if prefix is None else prefix
        nxt = sections[i + 1] if i + 1 < len(sections) else None
        if (
            nxt is not None
            and nxt.heading is not None
            and not paragraphs
            and len(nxt.path) > len(section.path)
            and nxt.path[: len(section.path)] == section.path
            and not text[section.heading.end : nxt.heading.start].strip()
        ):
            prefix = start  # "CHAPTER V" followed by "SECTION 1": carry it into the subsection's chunk
            continue
        if section.heading.end - start >= _MIN_HEADING_CHUNK:
            spans.append((start, section.heading.end, section.path))
        prefix = None
    spans.sort(key=lambda span: span[0])  # row chunks among the others by position; stable: packed ones first
    return _make_chunks(doc, spans)


def _sections(doc: Document) -> list[_Section]:
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    heading: Block | None = None
    body: list[Block] = []
    for block in doc.blocks:
        if not block.heading_level:
            body.append(block)
            continue
        if heading is not None or body:
            sections.append(_Section(tuple(title for _, title in stack), heading, tuple(body)))
        while stack and stack[-1][0] >= block.heading_level:
            stack.pop()
        stack.append((block.heading_level, heading_title(doc.text[block.start : block.end])))
        heading, body = block, []
    if heading is not None or body:
        sections.append(_Section(tuple(title for _, title in stack), heading, tuple(body)))
    return sections


def heading_title(text: str) -> str:
    """A heading block's text as a one-line title (markup '#' dropped, label and subtitle joined by ' – ')."""
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return " – ".join(line.lstrip("#").strip() for line in lines if line.strip("# "))


def table_rows(text: str, block: Block) -> list[tuple[int, int]]:
    """The rows of a table block (one per line, header rows included), trimmed of spaces and of the outer
    " | " an empty first or last cell leaves."""
    rows: list[tuple[int, int]] = []
    pos = block.start
    for line in text[block.start : block.end].split("\n"):
        start, end = pos, pos + len(line)
        while start < end and (text[start].isspace() or text[start] == "|"):
            start += 1
        while end > start and (text[end - 1].isspace() or text[end - 1] == "|"):
            end -= 1
        if start < end:
            rows.append((start, end))
        pos += len(line) + 1
    return rows


def table_header(text: str, block: Block) -> str:
    """A table block's header row(s) as one line: the last heading-path element of its row chunks."""
    if block.header is None:
        return ""
    return " ".join(text[block.header[0] : block.header[1]].split()).strip("| ")


def _row_spans(
    text: str, section: _Section, chunk_size: int, every_table: bool
) -> list[tuple[int, int, tuple[str, ...]]]:
    """Each data row of a table of records (a sheet), or of every table with a header when `every_table`, as
    its own chunk under the header: a question answered by one row ("AIME 2024 | 79.8") matches that row far
    better than the whole table it is packed in."""
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    for block in section.body:
        if block.header is None or not (block.records or every_table):
            continue
        header_end = block.header[1]
        title = table_header(text, block)
        for start, end in table_rows(text, block):
            if start >= header_end and end - start <= chunk_size and any(c.isalnum() for c in text[start:end]):
                spans.append((start, end, (*section.path, title)))
    return spans


def _section_units(text: str, section: _Section, chunk_size: int, seen: set[str]) -> list[list[_Unit]]:
    """Sentence units of each body paragraph (rows for a table); repeats are marked, over-long ones cut."""
    paragraphs: list[list[_Unit]] = []
    for block in section.body:
        units: list[_Unit] = []
        pieces = table_rows(text, block) if block.table else split_sentences(text[block.start : block.end], block.start)
        for start, end in pieces:
            key = " ".join(text[start:end].split())
            # A table's header row is structure, repeated by design over each table: never a repeat to skip.
            in_header = block.header is not None and start < block.header[1]
            skip = len(key) >= _MIN_DEDUP_CHARS and key in seen and not in_header
            if len(key) >= _MIN_DEDUP_CHARS:
                seen.add(key)
            units.extend(_Unit(s, e, skip) for s, e in _split_long(text, start, end, chunk_size))
        if units:
            paragraphs.append(units)
    return paragraphs


def _split_long(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """A sentence over `limit` (a table, code, a run-on line) is cut at line breaks, then at spaces."""
    if end - start <= limit:
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    line_start = start
    for line in text[start:end].split("\n"):
        line_end = line_start + len(line)
        for piece in _word_pieces(text, line_start, line_end, limit):
            if current is None:
                current = piece
            elif piece[1] - current[0] <= limit:
                current = (current[0], piece[1])
            else:
                pieces.append(current)
                current = piece
        line_start = line_end + 1
    if current is not None:
        pieces.append(current)
    return pieces


def _word_pieces(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            break
        if end - pos <= limit:
            cut = end
        else:
            cut = pos + limit
            while cut > pos and not text[cut].isspace():
                cut -= 1
            if cut == pos:
                cut = pos + limit  # one "word" longer than a chunk: cut it hard
        piece_end = cut
        while piece_end > pos and text[piece_end - 1].isspace():
            piece_end -= 1
        pieces.append((pos, piece_end))
        pos = cut
    return pieces


def _pack(
    section: _Section,
    paragraphs: list[list[_Unit]],
    prefix: int | None,
    chunk_size: int,
    overlap: int,
) -> list[tuple[int, int]]:
    """Greedy packing: whole paragraphs while they fit, then whole sentences; skipped text forces a break."""
    heading = section.heading
    packer = _Packer(chunk_size, overlap)
    if heading is not None:
        packer.start = heading.start if prefix is None else prefix
        packer.end = heading.end
    for para in paragraphs:
        packer.add_paragraph(para)
    packer.close(carry_overlap=False)
    return packer.spans


@dataclass
class _Packer:
    """The chunk being filled: `body[:carried]` are sentences repeated from the previous chunk (overlap)."""

    chunk_size: int
    overlap: int
    start: int | None = None
    end: int | None = None
    body: list[_Unit] = field(default_factory=list)
    carried: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)

    def add_paragraph(self, para: list[_Unit]) -> None:
        if (
            self.start is not None
            and self.end is not None
            and len(self.body) > self.carried
            and para[-1].end - self.start > self.chunk_size
            and self.end - self.start >= self.chunk_size // 2
        ):
            self.close(carry_overlap=True)  # the paragraph would not fit whole: open a fresh chunk for it
        for unit in para:
            if unit.skip:
                self.close(carry_overlap=False)
            else:
                self.add(unit)

    def add(self, unit: _Unit) -> None:
        if self.start is None:
            self.start = unit.start
        elif self.body and unit.end - self.start > self.chunk_size:  # the first sentence always joins its heading
            if len(self.body) > self.carried:
                self.close(carry_overlap=True)
            while self.body and unit.end - self.body[0].start > self.chunk_size:
                self.body.pop(0)
                self.carried = max(self.carried - 1, 0)
            self.start = self.body[0].start if self.body else unit.start
        self.body.append(unit)
        self.end = unit.end

    def close(self, carry_overlap: bool) -> None:
        """Emit the current chunk (unless it holds nothing new) and start the next one."""
        if self.start is not None and self.end is not None and len(self.body) > self.carried:
            self.spans.append((self.start, self.end))
        self.body = _overlap_units(self.body, self.overlap) if carry_overlap else []
        self.carried = len(self.body)
        self.start = self.body[0].start if self.body else None
        self.end = self.body[-1].end if self.body else None


def _overlap_units(body: list[_Unit], overlap: int) -> list[_Unit]:
    """The last whole sentences of a chunk that fit in `overlap` characters (never the whole chunk)."""
    if not body or overlap <= 0:
        return []
    last_end = body[-1].end
    count = 0
    for unit in reversed(body):
        if last_end - unit.start > overlap:
            break
        count += 1
    count = min(count, len(body) - 1)
    return body[len(body) - count :] if count else []


def _make_chunks(doc: Document, spans: list[tuple[int, int, tuple[str, ...]]]) -> list[Chunk]:
    """Chunk objects in document order; a text already emitted (same id) is not emitted twice."""
    starts = [block.start for block in doc.blocks]
    chunks: list[Chunk] = []
    seen_texts: set[str] = set()
    for start, end, path in spans:
        text = doc.text[start:end]
        if not text.strip() or text in seen_texts:
            continue
        seen_texts.add(text)
        idx = bisect.bisect_right(starts, start) - 1
        page = doc.blocks[idx].page if idx >= 0 else None
        chunks.append(
            Chunk(
                source=doc.source,
                title=doc.title,
                text=text,
                start=start,
                end=end,
                index=len(chunks),
                heading_path=path,
                page=page,
            )
        )
    return chunks
