"""What the UI's events do: `Handlers` holds the service and has one method an event (ask, stop, open a source
card, add/delete documents, re-index, unlock, start-up status, language), so each can be called without Blocks.

Every action goes through `RagService`. The inputs are what the page sends (anything: a language, a key, file
paths): methods take nothing from it on trust. Writes wait for the key (`may_write`); files are indexed only
from Gradio's upload folder, and that copy is removed afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from rag.errors import DocumentError, IndexBusyError, ReadOnlyError, RequestError, ServiceBusyError
from rag.schema import Answer, Citation, Progress
from rag.service import RagService
from ui.access import discard_upload, upload_token
from ui.i18n import known_lang, megabytes, t
from ui.render import (
    CARD_CONTEXT_CHARS,
    describe_step,
    documents_table,
    in_every_language,
    mark_stopped,
    plain_answer,
    render_answer,
    render_card,
    render_card_missing,
    render_error,
    render_failed,
    render_preparing,
    render_ready,
)

log = logging.getLogger(__name__)

# The passages slider's top: more than this would not fit the local model's context anyway.
MAX_K = 20
# How long Stop waits for the cancelled stream's last update before marking the answer as stopped.
STOP_SETTLE_SECONDS = 0.5
# gr.Progress() as a parameter default is how Gradio hands a handler its progress bar.
_PROGRESS = gr.Progress()


def example_text(selection: gr.SelectData) -> str:
    """The question of the example the user clicked."""
    value = selection.value
    return value.get("text", "") if isinstance(value, dict) else str(value)


def copied(text: str, lang: str) -> None:
    """Say whether "copy answer" had something to copy (the page script wrote it to the clipboard)."""
    gr.Info(t(known_lang(lang), "copied" if text else "nothing_to_copy"))


def find_citation(cited: list, key: str) -> Citation | None:
    """Citation `n` of answer `turn` for a chip key "turn:n", if the conversation still holds it."""
    try:
        turn, n = (int(part) for part in (key or "").split(":"))
        return cited[turn].get(n)
    except (ValueError, IndexError, AttributeError):
        return None


class Handlers:
    """The event handlers of one UI, bound to `service` (and its one start-up task)."""

    def __init__(self, service: RagService):
        self.service = service
        self.settings = service.settings
        self.startup = service.startup  # started on page load unless the API started it already

    def ready(self) -> bool:
        return self.startup.done.is_set()

    def limit_in(self, lang: str) -> str:
        """The upload size limit as `lang` writes it."""
        return megabytes(self.settings.max_upload_bytes, lang, exact=True)

    def status(self) -> str:
        """The status line, in every language (the page shows its own): what is being prepared, or what is ready
        (documents, passages, generator)."""
        if not self.ready():
            step = self.startup.step
            return in_every_language(lambda lang: render_preparing(step, lang))
        if self.startup.error:
            error = self.startup.error
            return in_every_language(lambda lang: render_failed(error, lang))
        state, readiness = self.service.status(), self.service.readiness()  # asked once for both languages
        return in_every_language(lambda lang: render_ready(state, readiness, self.settings.generator, lang))

    # --- chat ---------------------------------------------------------------------------------------------
    def ask(
        self, question: str, chat: list[dict], language: str, generator: str, k: float, past: list, cited: list
    ) -> Iterator[tuple]:
        """Stream one answer into the chat; the plain-text turn joins the history for follow-ups.
        Yields (chat, question box, answer text, history, citations, live chat). The parameter names are
        those the `/ask` API shows."""
        lang, text = known_lang(language), (question or "").strip()
        if not text:
            gr.Warning(t(lang, "empty_question"))
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        chat, past, cited = list(chat or []), list(past or []), list(cited or [])
        turn, found = len(cited), {}
        cited.append(found)
        chat += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]

        def show(body: str) -> tuple:
            chat[-1] = {"role": "assistant", "content": body}
            return chat, "", gr.skip(), past, cited, chat

        yield show(render_answer("", turn, found, lang, pending=t(lang, "searching")))
        while not self.ready():
            waiting = t(lang, "waiting", status=describe_step(self.startup.step, lang))
            yield show(render_answer("", turn, found, lang, pending=waiting))
            self.startup.done.wait(1.0)
        answer_so_far = ""
        try:
            for answer_so_far, final in self._stream(text, past, k, generator, found):
                # Until the answer is final its sentences are being checked against the sources: say so.
                checking = None if final else t(lang, "checking")
                yield show(render_answer(answer_so_far, turn, found, lang, final, pending=checking))
        except Exception as error:
            yield show(render_error(self._failure(error, text, lang)))
            return
        past += [{"role": "user", "content": text}, {"role": "assistant", "content": answer_so_far}]
        yield chat, "", plain_answer(answer_so_far, found), past, cited, chat

    def _stream(
        self, text: str, past: list, k: float, generator: str, found: dict[int, Citation]
    ) -> Iterator[tuple[str, Answer | None]]:
        """The answer after each event of the service's stream: its text so far and, at the end, the final
        Answer; `found` is kept to the citations known so far."""
        so_far, final = "", None
        passages = max(1, min(int(k or self.settings.k), MAX_K))
        for event in self.service.ask_stream(text, history=past, k=passages, generator=generator or None):
            if event.type == "token":
                so_far += event.text
            elif event.type == "citations":
                found.update({c.n: c for c in event.citations})
            elif event.answer is not None:
                final = event.answer
                found.clear()
                found.update({c.n: c for c in final.citations})
                so_far = final.answer
            yield so_far, final

    def _failure(self, error: Exception, text: str, lang: str) -> str:
        """What the chat says when `error` stopped the answer to `text`."""
        if isinstance(error, ServiceBusyError):
            return t(lang, "busy", seconds=error.retry_after)
        if isinstance(error, RequestError):  # over the question limit, a generator the operator did not enable
            if error.code == "question_too_long":
                return t(lang, "too_long", size=f"{len(text):,}", limit=f"{self.settings.max_question_chars:,}")
            return str(error)
        log.exception("question failed")
        return t(lang, "error", error=error)

    def stop(self, chat: list[dict], lang: str) -> list[dict]:
        """After Stop: the unfinished answer says it was stopped."""
        time.sleep(STOP_SETTLE_SECONDS)  # let the cancelled stream's last update reach the page first
        return mark_stopped(chat, known_lang(lang))

    def reset(self, lang: str) -> tuple:
        """A new conversation: follow-ups no longer lean on the previous one."""
        return [], [], [], [], "", render_card(None, known_lang(lang)), ""

    def open_card(self, key: str, lang: str, cited: list) -> tuple[str, str]:
        """The source card behind a chip `turn:n`; the key is kept so a language switch can redraw it."""
        lang = known_lang(lang)
        citation = find_citation(cited, key)
        if citation is None and key:
            return render_card_missing(lang), key
        if citation is None:
            return render_card(None, lang), key
        return render_card(citation, lang, self._surrounding_text(citation), key, self._page_png(citation)), key

    def _page_png(self, citation: Citation) -> bytes | None:
        """The cited page as an image, when the quote was located on it (a PDF or an image); else None."""
        if not citation.boxes:
            return None
        try:
            return self.service.page_image(citation.source, citation.boxes[0].page)
        except Exception:
            log.exception("could not render page %s of %s", citation.boxes[0].page, citation.source)
            return None

    def _surrounding_text(self, citation: Citation) -> tuple[str, int]:
        """The passage with its document's text on each side (from the service), and its offset; the passage
        alone when the document cannot be read."""
        try:
            text, start = self.service.surrounding_text(
                citation.source, citation.start, citation.end, CARD_CONTEXT_CHARS
            )
        except Exception:
            log.exception("could not read the text around %s", citation.source)
            text, start = "", citation.start
        return (text, start) if text else (citation.text, citation.start)

    # --- documents ----------------------------------------------------------------------------------------
    def listing(self, lang: str) -> tuple[Any, Any, str]:
        """The documents table, the delete choices and the status line, after any change to the index."""
        lang = known_lang(lang)
        records = self.service.documents()
        return (
            documents_table(records, lang),
            gr.Dropdown(choices=[r.source for r in records], value=None),
            self.status(),
        )

    def may_write(self, is_unlocked: bool, request: gr.Request | None) -> bool:
        """Writes need the key: checked in this session, or the whole UI is behind Gradio's login with it."""
        if self.settings.api_key is None or is_unlocked:
            return True
        return self.settings.api_key_for_read and request is not None and bool(getattr(request, "username", None))

    def do_unlock(self, given: str, lang: str) -> tuple:
        """Check the key with the service; the write controls appear only once it matched. Returns (unlocked,
        key box, write controls, key field, upload token, documents status)."""
        lang = known_lang(lang)
        if not self.service.check_key(given or None):
            return False, gr.skip(), gr.skip(), "", "", t(lang, "wrong_key")
        token = upload_token(self.settings.api_key.get_secret_value()) if self.settings.api_key else ""
        return True, gr.Row(visible=False), gr.Column(visible=True), "", token, t(lang, "unlocked")

    def add_files(
        self,
        files: list[str] | None,
        replace_existing: bool,
        lang: str,
        is_unlocked: bool,
        request: gr.Request,
        progress: gr.Progress = _PROGRESS,
    ) -> tuple:
        """Index the files uploaded from this page, a line of outcome each; their uploaded copies are removed."""
        lang, files = known_lang(lang), files or []
        upload_folder = Path(get_upload_folder()).resolve()
        if not self.may_write(is_unlocked, request):
            for file in files:
                discard_upload(Path(file), upload_folder)
            return (None, *self.listing(lang), t(lang, "key_needed"))
        lines = []
        for i, file in enumerate(files):
            path = Path(file).resolve()
            progress((i, len(files)), desc=t(lang, "indexing_file", name=path.name))
            lines.append(self._add_file(path, bool(replace_existing), lang, upload_folder))
        return (None, *self.listing(lang), "\n\n".join(lines))

    def _add_file(self, path: Path, replace: bool, lang: str, upload_folder: Path) -> str:
        """Index one uploaded file (only from `upload_folder`) and say how it went, in `lang`."""
        name = path.name
        if not path.is_relative_to(upload_folder) or not path.is_file():
            return t(lang, "rejected", name=name, reason=t(lang, "not_uploaded"))
        try:
            uploaded = self.service.add_document(name, path.read_bytes(), replace=replace)
        except ReadOnlyError:  # a reader replica: the service refuses every write
            return t(lang, "rejected", name=name, reason=t(lang, "read_only"))
        except (DocumentError, IndexBusyError) as error:
            if getattr(error, "code", None) == "file_too_large":  # the service's limit, said in `lang`
                size = megabytes(path.stat().st_size, lang)
                return t(lang, "too_large", name=name, size=size, limit=self.limit_in(lang))
            return t(lang, "rejected", name=name, reason=error)
        except Exception as error:  # a broken file must not break the panel
            log.exception("upload of %s failed", name)
            return t(lang, "rejected", name=name, reason=error)
        finally:
            discard_upload(path, upload_folder)
        if uploaded.outcome == "skipped":
            return t(lang, "skipped", name=name, reason=uploaded.reason)
        if uploaded.outcome == "unchanged":
            return t(lang, "unchanged", name=name)
        done = t(lang, "indexed", name=name, chunks=uploaded.record.chunks if uploaded.record else "?")
        return "\n".join([done, *(t(lang, "noted", name=name, note=n["note"]) for n in uploaded.report.notes)])

    def reindex(self, lang: str, is_unlocked: bool, request: gr.Request, progress: gr.Progress = _PROGRESS) -> tuple:
        """Bring the index up to date with the corpus folder; say what changed and what could not be indexed."""
        lang = known_lang(lang)
        if not self.may_write(is_unlocked, request):
            return (*self.listing(lang), t(lang, "key_needed"))

        def report_progress(p: Progress) -> None:
            progress((p.files_done, max(p.files_total, 1)), desc=Path(p.current).name or None)

        try:
            report = self.service.refresh(on_progress=report_progress)
        except IndexBusyError:
            return (*self.listing(lang), t(lang, "index_busy"))
        except ReadOnlyError:
            return (*self.listing(lang), t(lang, "read_only"))
        counts = {name: getattr(report, name) for name in ("added", "updated", "deleted", "unchanged")}
        lines = [t(lang, "refresh_done", **counts)]
        lines += [t(lang, "skipped", name=Path(s["path"]).name, reason=s["reason"]) for s in report.skipped]
        lines += [t(lang, "noted", name=Path(n["path"]).name, note=n["note"]) for n in report.notes]
        return (*self.listing(lang), "\n\n".join(lines))

    def ask_delete(self, source: str | None, lang: str) -> tuple:
        """Show the confirmation for deleting `source` (or say to choose one first)."""
        lang = known_lang(lang)
        if not source:
            return gr.Group(visible=False), "", t(lang, "delete_none")
        return gr.Group(visible=True), t(lang, "confirm_delete", name=source), ""

    def do_delete(self, source: str | None, lang: str, is_unlocked: bool, request: gr.Request) -> tuple:
        """Delete `source` once confirmed: its file and its passages."""
        lang = known_lang(lang)
        if not self.may_write(is_unlocked, request):
            return (gr.Group(visible=False), *self.listing(lang), t(lang, "key_needed"))
        try:
            if not source:
                raise DocumentError(t(lang, "delete_none"))
            self.service.delete_document(source)
            message = t(lang, "deleted", name=source)
        except ReadOnlyError:
            message = t(lang, "rejected", name=source or "?", reason=t(lang, "read_only"))
        except (DocumentError, IndexBusyError) as error:
            message = t(lang, "rejected", name=source or "?", reason=error)
        return (gr.Group(visible=False), *self.listing(lang), message)

    # --- start-up status ----------------------------------------------------------------------------------
    def on_load(self, lang: str) -> tuple:
        """On page load: start the service's preparation, show the documents once it is done."""
        self.startup.start()  # a no-op when the API started it (with its own reconcile choice)
        if self.ready():
            return self.listing(lang)
        return gr.skip(), gr.skip(), self.status()

    def poll(self, lang: str) -> tuple:
        """The status each second until everything is ready, then the documents list once, and stop."""
        if not self.ready():
            return gr.skip(), gr.skip(), self.status(), gr.Timer(active=True)
        return *self.listing(lang), gr.Timer(active=False)

    # --- language -----------------------------------------------------------------------------------------
    def apply_language(self, labels: list[Callable[[str], Any]], lang: str, key: str, cited: list) -> list:
        """Every label in `lang` (from each of `labels`), the documents table and the open source card in it."""
        lang = known_lang(lang)
        table = documents_table(self.service.documents(), lang) if self.ready() else gr.skip()
        return [*(make(lang) for make in labels), table, self.open_card(key, lang, cited)[0]]
