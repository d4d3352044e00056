"""Text files: decoding bytes of any encoding into text, and plain text (.txt) into blocks.

Decoding serves every text format (markdown and HTML read their files through `read_text` too).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Callable

from index.loaders.common import ENUM_ONLY, SENTENCE_END, Bounds, Extracted, ends_sentence, legal_level
from index.types import Block, LoadError

# ----------------------------------------------------------------------------------------------------- decoding


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


def decode_html(data: bytes) -> str:
    """HTML that is not UTF-8 may declare its encoding (e.g. windows-1251): honour it before guessing."""
    declared = _META_CHARSET.search(data[:4096])
    if declared is None or b"\x00" in data or any(data.startswith(bom) for bom, _ in _BOMS):
        return decode_text(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_declared(data, declared.group(1).decode("ascii"))
    return decode_text(data)


def decode_declared(data: bytes, charset: str | None) -> str:
    """Bytes whose charset is declared (an HTML page's <meta>, an e-mail part's header): decoded by it when it
    decodes them, else guessed as by `decode_text`; ISO-8859-1 and ASCII are read as cp1252, as browsers do."""
    if charset:
        name = charset.strip().lower()
        name = "cp1252" if name in {"iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"} else name
        try:
            return _normalise_text(data.decode(name))
        except (LookupError, UnicodeDecodeError):
            pass
    return decode_text(data)


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


def read_text(data: bytes, decode: Callable[[bytes], str] = decode_text) -> str:
    """The decoded text of a text format's file; one that decodes to nothing but white space is empty."""
    raw = decode(data)
    if not raw.strip():
        raise LoadError("empty file")
    return raw


# --------------------------------------------------------------------------------------------------- plain text


def load_txt(data: bytes, _bounds: Bounds) -> Extracted:
    """Plain text keeps the decoded file as `text`; blocks are located in it by offset."""
    text = read_text(data).replace("\f", "\n")
    return "", text, text_blocks(text)


def text_blocks(text: str) -> list[Block]:
    """The blocks of decoded plain text (paragraphs, headings), located in it by offset."""
    paragraphs = [span for run in _txt_runs(text) for span in _txt_paragraphs(text, run)]
    return _txt_blocks(text, paragraphs)


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
        inner_open = sum(1 for start, end in run[:-1] if not ends_sentence(text[start:end]))
        if max(lengths) <= 100 and inner_open * 2 >= len(run) - 1:
            return [(run[0][0], run[-1][1])]
    return list(run)


def _is_heading_like(line: str) -> bool:
    """Short, unpunctuated, capitalised: the shape of a title line."""
    words = line.split()
    return (
        0 < len(line) <= 90
        and len(words) <= 12
        and not line.rstrip(" »”\"’')]").endswith((*SENTENCE_END, ",", ";", ":"))
        and (line[0].isupper() or line[0].isdigit() or line[0] in '«"“')
        and not ENUM_ONLY.match(line)
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
        level = legal_level(line) if "\n" not in line else None
        if level is not None:
            if nxt and _is_heading_like(nxt) and legal_level(nxt) is None and "\n" not in nxt:
                end = paragraphs[i + 1][1]
                i += 1
            blocks.append(Block(start, end, level))
        elif ENUM_ONLY.match(line) and nxt:
            blocks.append(Block(start, paragraphs[i + 1][1], 0))
            i += 1
        elif (
            "\n" not in line
            and _is_heading_like(line)
            and nxt
            and not nxt[0].islower()
            and len(nxt) > max(len(line) * 1.5, 60)
            and ends_sentence(nxt)
        ):
            blocks.append(Block(start, end, 2))
        else:
            blocks.append(Block(start, end, 0))
        i += 1
    return blocks
