"""E-mails (.eml, the standard library's `email` with its current policy): the message's headers, its body and
its text attachments.

- The Subject is the title and a level-1 heading; under it, a block of header lines (From, To, Cc, Date,
  Subject), RFC 2047 encoded words decoded.
- The body: the text/plain part when there is one (read as a .txt file is), else the text/html part (read as a
  page is, `html.add_html`).
- Each text attachment (text/plain, text/markdown, text/csv, text/html, or a file named .txt .md .csv .html)
  under a level-2 heading of its file name, read by its format's loader, its own headings two levels deeper.
  An attachment that is empty or not text is left out; other attachments (PDF, images, office files) too.

Every part is decoded by the charset it declares, read as a text file is when it declares none or a wrong one.
"""

from __future__ import annotations

import email
from collections.abc import Callable
from email import policy
from email.message import EmailMessage, Message
from pathlib import PurePath

from index.loaders.common import Bounds, Builder, Extracted, collapse
from index.loaders.html import add_html, load_html
from index.loaders.markdown import load_markdown
from index.loaders.sheets import load_csv
from index.loaders.text import decode_declared, decode_html, load_txt, text_blocks
from index.types import LoadError

_HEADER_LINES = ("From", "To", "Cc", "Date", "Subject")
# A file is an e-mail when it opens with at least one of these (random bytes, or any other file, have none).
_MAIL_HEADERS = frozenset({"from", "to", "subject", "date", "message-id", "received", "mime-version", "return-path"})
_ATTACHMENTS: dict[str, Callable[[bytes, Bounds], Extracted]] = {
    "text/plain": load_txt,
    "text/markdown": load_markdown,
    "text/x-markdown": load_markdown,
    "text/csv": load_csv,
    "text/html": load_html,
}
_ATTACHMENT_SUFFIXES = {".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown"} | {
    ".csv": "text/csv",
    ".html": "text/html",
    ".htm": "text/html",
}


def load_eml(data: bytes, bounds: Bounds) -> Extracted:
    message: EmailMessage = email.message_from_bytes(data, policy=policy.default)  # type: ignore[assignment]
    if not {key.lower() for key in message} & _MAIL_HEADERS:
        raise LoadError("not a valid .eml file (no e-mail headers)")
    builder = Builder(bounds=bounds, what=".eml file")
    subject = _header(message, "Subject")
    builder.add(subject, level=1)
    builder.add("\n".join(f"{name}: {value}" for name in _HEADER_LINES if (value := _header(message, name))))
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None and not body.is_attachment():
        text = _decoded(body)
        if body.get_content_type() == "text/html":
            add_html(builder, text)
        else:
            builder.extend(text, text_blocks(text))
    for number, part in enumerate(message.walk(), start=1):
        if part is not body and not part.is_multipart():
            _attachment(builder, part, number, bounds)
    return subject, builder.text(), builder.blocks


def _header(message: Message, name: str) -> str:
    """A header's value, decoded and on one line; "" when absent or beyond repair."""
    try:
        values = message.get_all(name) or []
        return collapse(", ".join(str(value) for value in values))
    except Exception:  # the header parsers of `email` can raise on malformed addresses
        return ""


def _decoded(part: Message) -> str:
    """A text part's content, by its declared charset when that decodes it, else as a text file (an HTML part:
    as a page, by its <meta> charset) is decoded."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset()
    if charset is None and part.get_content_type() == "text/html":
        return decode_html(data)
    return decode_declared(data, charset)


def _attachment(builder: Builder, part: Message, number: int, bounds: Bounds) -> None:
    """A text attachment under a heading of its file name; nothing for any other part."""
    name = collapse(part.get_filename() or "")
    kind = part.get_content_type()
    if kind not in _ATTACHMENTS:
        kind = _ATTACHMENT_SUFFIXES.get(PurePath(name).suffix.lower(), "")
    if not kind or not (name or part.get_content_disposition() == "attachment"):
        return
    try:  # decoded by its declared charset, handed to its loader as UTF-8
        title, text, blocks = _ATTACHMENTS[kind](_decoded(part).encode("utf-8"), bounds)
    except LoadError:
        return  # empty, binary: the message and its other attachments still index
    if blocks:
        builder.add(name or title or f"attachment {number}", level=2)
        builder.extend(text, blocks, shift=2)
