"""What the UI shows, as HTML or table data: answers with citation chips, source cards, the status line, the
documents table. Pure functions of their inputs (no service, no Gradio), so each can be tested on its own.

Every text that comes from a document, a question or the engine is escaped here: the chat renders HTML.
"""

from __future__ import annotations

import base64
import html
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from rag.schema import Answer, Citation, DocumentRecord, GeneratorState, IndexState, StartupStep
from ui.i18n import LANGUAGE_CHOICES, t

# Characters of the passage shown on each side of the quote before "show more context" is opened.
CARD_EXCERPT_CHARS = 220
# Characters of the neighbouring chunks shown on each side of the passage under "show more context".
CARD_CONTEXT_CHARS = 700

_MARKER = re.compile(r"\[(\d+)\]")
_SPACE = re.compile(r"\s")
_PENDING = re.compile(r'<p class="pending"[^>]*>.*?</p>', re.S)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def render_header(lang: str) -> str:
    return f"<h1>{_esc(t(lang, 'title'))}</h1><p>{_esc(t(lang, 'subtitle'))}</p>"


# --- answers --------------------------------------------------------------------------------------------------
def _flag_unsupported(body: str, answer: Answer | None, lang: str) -> tuple[str, int, list[str]]:
    """`body` with the unsupported sentences it shows underlined; how many; the withheld ones as list items."""
    underlined, withheld = 0, []  # withheld: list items, the sentence and why it was held back
    for sentence in answer.unsupported if answer is not None else []:
        escaped = html.escape(sentence.text.strip(), quote=False)
        if escaped and escaped in body:  # shown as written (RAG_DROP_UNSUPPORTED=false): flagged in place
            span = f'<span class="unsupported" title="{_esc(t(lang, "unsupported_title"))}">{escaped}</span>'
            body = body.replace(escaped, span, 1)
            underlined += 1
        elif escaped:
            why = t(lang, f"withheld_{sentence.verdict}")
            withheld.append(f"<li><q>{escaped}</q> <small>({_esc(why)})</small></li>")
    return body, underlined, withheld


def _chips(body: str, turn: int, citations: dict[int, Citation], lang: str) -> str:
    """`body` with each `[n]` marker turned into a chip that opens source `n` of answer `turn`."""

    def chip(match: re.Match[str]) -> str:
        n = int(match.group(1))
        citation = citations.get(n)
        if citation is None:
            return f'<span class="cite-chip pending" aria-hidden="true">{n}</span>'
        # The chat's HTML sanitizer drops data-* and aria-* attributes: the key rides in a class, the
        # accessible name in visually hidden text.
        label = _esc(t(lang, "source_aria", n=n, title=citation.title))
        return (
            f'<button type="button" class="cite-chip cite-key-{turn}-{n}" title="{label}">'
            f'<span class="sr-only">{_esc(t(lang, "source_word"))} </span>{n}</button>'
        )

    return _MARKER.sub(chip, body)


def render_answer(
    text: str,
    turn: int,
    citations: dict[int, Citation],
    lang: str,
    answer: Answer | None = None,
    *,
    pending: str | None = None,
) -> str:
    """The assistant message as HTML: text with `[n]` turned into chips that open a source card, plus
    the notices the final answer calls for (refusal, fallback generator, unsupported sentences)."""
    body, underlined, withheld = _flag_unsupported(html.escape(text, quote=False), answer, lang)
    body = _chips(body, turn, citations, lang)
    parts: list[str] = []
    if answer is not None and answer.fallback_reason:
        parts.append(
            f'<p class="notice fallback" role="note"><strong>{_esc(t(lang, "fallback"))}</strong> — '
            f"{_esc(answer.fallback_reason)}</p>"
        )
    if answer is not None and answer.standalone_question:
        understood = t(lang, "understood_as", question=answer.standalone_question)
        parts.append(f'<p class="notice understood">{_esc(understood)}</p>')
    if answer is not None and answer.refused:
        parts.append(f'<div class="refused" role="note"><strong>{_esc(t(lang, "not_in_docs"))}</strong>{body}</div>')
    elif body:
        parts.append(f"<p>{body}</p>")
    if pending:
        parts.append(f'<p class="pending" role="status">{_esc(pending)}</p>')
    if underlined and not answer.refused:
        parts.append(f'<p class="notice unsupported-note" role="note">{_esc(t(lang, "unsupported_note"))}</p>')
    if withheld:  # collapsed, never as answer text: only what the documents support is shown as an answer
        note = t(lang, "withheld_note", count=len(withheld))
        parts.append(
            f'<details class="notice withheld-note" role="note"><summary>{_esc(note)}</summary>'
            f"<ul>{''.join(withheld)}</ul></details>"
        )
    if answer is not None:
        seconds = answer.timings_ms.total / 1000
        parts.append(f'<p class="meta">{_esc(answer.generator)} · {seconds:.1f} s</p>')
    return f'<div class="rag-answer">{"".join(parts)}</div>'


def render_error(message: str) -> str:
    return f'<div class="rag-answer"><p class="notice error" role="alert">{_esc(message)}</p></div>'


def plain_answer(text: str, citations: dict[int, Citation]) -> str:
    """What "copy answer" puts on the clipboard: the text with its markers, then the sources they point to."""
    if not citations:
        return text
    lines = [text, ""]
    for n, c in sorted(citations.items()):
        page = f", p. {c.page}" if c.page else ""
        lines.append(f"[{n}] {c.title} ({c.source}{page}): « {c.quote.strip()} »")
    return "\n".join(lines)


def message_html(message: dict) -> str:
    """The HTML of a chat message as the Chatbot hands it back (a list of text parts in Gradio 6)."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def mark_stopped(chat: list[dict], lang: str) -> list[dict]:
    """The chat with its unfinished last answer saying it was stopped instead of "searching…" forever."""
    chat = list(chat or [])
    if chat and chat[-1].get("role") == "assistant":
        body = message_html(chat[-1])
        if 'class="meta"' not in body and "notice error" not in body:
            notice = f'<p class="notice stopped" role="status">{_esc(t(lang, "stopped"))}</p>'
            body = _PENDING.sub("", body).removesuffix("</div>") + notice + "</div>"
            chat[-1] = {"role": "assistant", "content": body}
    return chat


# --- source cards ---------------------------------------------------------------------------------------------
def _quote_span(text: str, origin: int, citation: Citation) -> tuple[int, int] | None:
    """Where the quote sits in `text` (which starts at document offset `origin`), if it can be found."""
    start, end = citation.quote_start - origin, citation.quote_end - origin
    if 0 <= start <= end <= len(text) and text[start:end].strip() == citation.quote.strip():
        return start, end
    found = text.find(citation.quote.strip())
    return (found, found + len(citation.quote.strip())) if found >= 0 else None


def highlight(text: str, span: tuple[int, int] | None, lo: int = 0, hi: int | None = None) -> str:
    """`text[lo:hi]` escaped, the quote in <mark>, with an ellipsis where it was cut (at a word boundary)."""
    lo, hi = max(0, lo), len(text) if hi is None else min(hi, len(text))
    if lo > 0:
        found = _SPACE.search(text, lo, span[0] if span else hi)
        lo = found.end() if found else lo
    if hi < len(text):
        gaps = [m.start() for m in _SPACE.finditer(text, span[1] if span else lo, hi)]
        hi = gaps[-1] if gaps else hi
    prefix, suffix = ("…" if lo > 0 else ""), ("…" if hi < len(text) else "")
    if span is None:
        return prefix + html.escape(text[lo:hi], quote=False) + suffix
    start, end = span
    return (
        prefix
        + html.escape(text[lo:start], quote=False)
        + "<mark>"
        + html.escape(text[start:end], quote=False)
        + "</mark>"
        + html.escape(text[end:hi], quote=False)
        + suffix
    )


def render_page_view(citation: Citation, png: bytes | None, lang: str) -> str:
    """The cited page of a PDF or an image with the quote outlined where it stands, and a link to the original
    at that page; nothing when the citation has no boxes or the page could not be rendered."""
    if not citation.boxes or png is None:
        return ""
    page = citation.boxes[0].page
    marks = "".join(
        f'<span class="quote-box" style="left:{b.x0 / b.page_width:.3%};top:{b.y0 / b.page_height:.3%};'
        f'width:{(b.x1 - b.x0) / b.page_width:.3%};height:{(b.y1 - b.y0) / b.page_height:.3%}"></span>'
        for b in citation.boxes
        if b.page == page
    )
    alt = _esc(t(lang, "card_page_image", page=page, title=citation.title))
    href = f"/v1/files/{urllib.parse.quote(citation.source)}#page={page}"
    return (
        f'<figure class="page-view"><div class="page-frame">'
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{alt}">{marks}</div>'
        f'<figcaption><a href="{_esc(href)}" target="_blank" rel="noopener">'
        f"{_esc(t(lang, 'card_open_page', page=page))}</a></figcaption></figure>"
    )


def render_card(
    citation: Citation | None,
    lang: str,
    context: tuple[str, int] | None = None,
    key: str = "",
    page_png: bytes | None = None,
) -> str:
    """The source card of one citation: where it comes from, the quote in its passage (on its page too, for a
    PDF or an image: `page_png`), and under "show more context" `context` (text around the passage and its
    document offset; the passage alone without it)."""
    if citation is None:
        return f'<p class="placeholder">{_esc(t(lang, "card_empty"))}</p>'
    c = citation
    span = _quote_span(c.text, c.start, c)
    if span:
        excerpt = highlight(c.text, span, max(0, span[0] - CARD_EXCERPT_CHARS), span[1] + CARD_EXCERPT_CHARS)
    else:
        excerpt = highlight(c.text, None)
    more_text, origin = context or (c.text, c.start)
    window = (max(0, c.start - CARD_CONTEXT_CHARS - origin), c.end + CARD_CONTEXT_CHARS - origin)
    more = highlight(more_text, _quote_span(more_text, origin, c), *window)
    page = f"<dt>{_esc(t(lang, 'card_page'))}</dt><dd>{c.page}</dd>" if c.page else ""
    support = t(lang, f"support_{c.support.verdict}", missing=", ".join(c.support.missing))
    support_row = (
        f'<dt>{_esc(t(lang, "card_support"))}</dt><dd class="support {c.support.verdict}">{_esc(support)}</dd>'
    )
    label = _esc(t(lang, "source_aria", n=c.n, title=c.title))
    return (
        f'<section class="source-card" tabindex="-1" aria-label="{label}">'
        f'<h2><span class="cite-chip" aria-hidden="true">{c.n}</span>{_esc(c.title)}</h2>'
        f"<dl><dt>{_esc(t(lang, 'card_file'))}</dt><dd>{_esc(c.source)}</dd>{page}{support_row}</dl>"
        f'<blockquote aria-label="{_esc(t(lang, "card_quote"))}">{excerpt}</blockquote>'
        f"{render_page_view(c, page_png, lang)}"
        f"<details><summary>{_esc(t(lang, 'card_more'))}</summary>"
        f'<div class="context">{more}</div></details>'
        f'<button type="button" class="back" data-back-key="{_esc(key)}">↑ {_esc(t(lang, "card_back"))}</button>'
        "</section>"
    )


def render_card_missing(lang: str) -> str:
    """In place of a card whose citation is gone (a new conversation, a server restart)."""
    return f'<p class="placeholder">{_esc(t(lang, "card_missing"))}</p>'


# --- status and documents -------------------------------------------------------------------------------------
def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def documents_table(records: list[DocumentRecord], lang: str) -> dict[str, Any]:
    """The documents table's value: headers in `lang`, one row a document (one empty row when there is none)."""
    headers = [t(lang, key) for key in ("col_name", "col_type", "col_chunks", "col_size", "col_indexed")]
    rows = [
        [r.source, r.kind, r.chunks, human_size(r.size), r.indexed_at.replace("T", " ").replace("+00:00", " UTC")]
        for r in records
    ]
    return {"headers": headers, "data": rows or [["", "", "", "", ""]]}


def describe_step(step: StartupStep, lang: str) -> str:
    """What the service's start-up task is doing, in `lang`."""
    key = "status_starting" if step.stage in ("starting", "ready") else f"step_{step.stage}"
    return t(lang, key, **step.model_dump(exclude={"stage"}))


def in_every_language(render: Callable[[str], str]) -> str:
    """A status line in each interface language; the page's stylesheet shows the one of the page's language
    (`html[lang]`), so a status tick answered after the user switched language still shows the right one."""
    return "".join(render(lang) for _, lang in LANGUAGE_CHOICES)


def render_starting(lang: str) -> str:
    """The status line the page is built with, before its first load event asks the service."""
    return f'<p class="status preparing" role="status" lang="{lang}">⏳ {_esc(t(lang, "status_starting"))}</p>'


def render_preparing(step: StartupStep, lang: str) -> str:
    """The status line while the service prepares: what it is doing."""
    text = t(lang, "status_preparing", step=describe_step(step, lang))
    label = _esc(t(lang, "status_label"))
    return f'<p class="status preparing" role="status" lang="{lang}" aria-label="{label}">⏳ {_esc(text)}</p>'


def render_failed(error: str, lang: str) -> str:
    """The status line when the preparation failed."""
    text = t(lang, "status_failed", error=error)
    label = _esc(t(lang, "status_label"))
    return f'<p class="status failed" role="alert" lang="{lang}" aria-label="{label}">{_esc(text)}</p>'


def render_ready(status: IndexState, readiness: GeneratorState, generator: str, lang: str) -> str:
    """The status line once prepared: documents and passages (`service.status()`), the generator answering and
    why it stands in for the configured `generator`, if it does (`service.readiness()`)."""
    documents = status.documents
    if not documents:
        text = t(lang, "status_no_docs")
    else:
        counted = t(lang, "documents_one") if documents == 1 else t(lang, "documents_many", n=documents)
        text = t(lang, "status_ready", documents=counted, chunks=status.chunks, generator=readiness.generator_name)
    detail = ""
    if readiness.fallback_reason:
        reason = t(lang, "status_fallback", generator=generator, reason=readiness.fallback_reason)
        detail = f'<span class="detail">{_esc(reason)}</span>'
    label = _esc(t(lang, "status_label"))
    return f'<p class="status" role="status" lang="{lang}" aria-label="{label}">✓ {_esc(text)}{detail}</p>'
