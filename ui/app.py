"""The chat web UI (Gradio): its layout, and the wiring of its events to `ui.handlers.Handlers`.

Every action calls `RagService` through the handlers; the HTML comes from ui/render.py, the text from
ui/i18n.py, the styles and the page script from ui/assets/. What lives here are the UI's doors: which inputs an
event takes (never a server path from the page), and that writes wait for the key (see `mount_ui` and
ui/access.py).

Serve it with `mount_ui(app, service)` on a FastAPI app (what `rag serve` does), or alone with
`uvicorn --factory ui.app:create_standalone_app`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from rag.service import RagService
from rag.settings import Settings
from ui.access import UPLOAD_COOKIE, UploadGuard, upload_token
from ui.handlers import MAX_K, Handlers, copied, example_text
from ui.i18n import LANGUAGE_CHOICES, STRINGS, t
from ui.render import in_every_language, render_card, render_header, render_starting

EXAMPLES = (
    "Pourquoi l'Italie a-t-elle interdit DeepSeek ?",
    "Where does DeepSeek store its data, according to the article?",
    "Quels défis DeepSeek pose-t-il à l'Union européenne ?",
)
# Gradio deletes uploads it stored for this UI once they are this old (checked this often): an upload is
# indexed (and its stored copy removed) within seconds, so an hour-old one was abandoned.
UPLOAD_CACHE_MAX_AGE_SECONDS = 3600
UPLOAD_CACHE_SWEEP_SECONDS = 600

# Read from the installed package (pyproject's package-data ships ui/assets), not from a path beside this file.
CSS = (files("ui") / "assets" / "style.css").read_text(encoding="utf-8")
JS_ON_LOAD = (files("ui") / "assets" / "page.js").read_text(encoding="utf-8")
# The small scripts of single events, run in the page before (or instead of) their Python handler.
JS_DOCUMENT_LANGUAGE = """
(lang, key, cited) => {
  document.documentElement.lang = lang;
  return [lang, key, cited];
}
"""
JS_SET_UPLOAD_COOKIE = (
    "(token) => { if (token) { document.cookie = `" + UPLOAD_COOKIE + "=${token}; path=/; SameSite=Strict`; } }"
)
JS_SAVE_LANGUAGE = '(lang) => { window.localStorage.setItem("rag-ui-lang", lang); }'
JS_OPEN_CARD = "(key, lang, cited) => [window.ragUi?.chip || key, lang, cited]"
JS_FOCUS_CARD = """
() => {
  setTimeout(() => {
    const card = document.querySelector("#source-card .source-card");
    if (card) { card.focus({ preventScroll: true }); card.scrollIntoView({ block: "nearest", behavior: "smooth" }); }
  }, 60);
}
"""
JS_COPY = """
(text, lang) => {
  if (text && navigator.clipboard) { navigator.clipboard.writeText(text).catch(() => {}); }
  return [text, lang];
}
"""

# Events other than `/ask` are not part of the API; status updates show no Gradio spinner.
PRIVATE: dict[str, Any] = {"api_visibility": "private"}
QUIET: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}


# --- the parts of the page ----------------------------------------------------------------------------------
@dataclass
class Header:
    header: gr.HTML
    language: gr.Radio
    status: gr.HTML
    timer: gr.Timer


@dataclass
class Chat:
    tab: gr.Tab
    chatbot: gr.Chatbot
    question: gr.Textbox
    send: gr.Button
    stop: gr.Button
    copy: gr.Button
    new_chat: gr.Button
    settings_box: gr.Accordion
    generator: gr.Radio
    k: gr.Slider
    card: gr.HTML


@dataclass
class Documents:
    tab: gr.Tab
    heading: gr.Markdown
    table: gr.Dataframe
    status: gr.Markdown
    read_only_note: gr.Markdown
    key_box: gr.Row
    key_field: gr.Textbox
    unlock: gr.Button
    write_controls: gr.Column
    upload: gr.File
    replace: gr.Checkbox
    to_delete: gr.Dropdown
    delete: gr.Button
    refresh: gr.Button
    confirm_box: gr.Group
    confirm_text: gr.Markdown
    confirm: gr.Button
    cancel: gr.Button


@dataclass
class Session:
    """Per-session values held on the server, and the hidden carriers between the page script and Python."""

    history: gr.State  # the conversation as plain text, for follow-ups: [{role, content}]
    citations: gr.State  # per answer: {n: Citation}, what the chips of that answer open
    live_chat: gr.State  # the chat as last streamed: what Stop marks, the page may lag behind it
    cite_key: gr.Textbox
    cite_open: gr.Button
    answer_text: gr.Textbox
    ui_token: gr.Textbox  # the upload cookie's value, handed to the page script once the key was checked
    unlocked: gr.State  # the key was checked in this session


# --- the Blocks ---------------------------------------------------------------------------------------------
def build_ui(service: RagService) -> gr.Blocks:
    """The whole interface, bound to `service`. No launch() here: the caller mounts or launches it."""
    settings: Settings = service.settings
    handlers = Handlers(service)
    # The key field when writes need the key (with for_read: Gradio's login asks it); none on a read-only replica.
    key_gate = settings.api_key is not None and not settings.api_key_for_read and not settings.read_only
    with gr.Blocks(title="rag-cite") as demo:
        # Styles travel inside the Blocks: mount_gradio_app() resets Blocks.css unless given css= itself.
        gr.HTML(f"<style>{CSS}</style>", elem_id="rag-style", padding=False)
        header = _header()
        states = [gr.State([]), gr.State([]), gr.State([])]  # history, citations, live chat (see Session)
        with gr.Tabs():
            chat = _chat_tab(settings)
            docs = _documents_tab(service, handlers, key_gate)
        # Carriers between the page script and Python; in the DOM but never shown.
        session = Session(
            *states,
            cite_key=gr.Textbox(visible="hidden", label="citation key", elem_id="cite-key"),
            cite_open=gr.Button("open source", visible="hidden", elem_id="cite-open"),
            answer_text=gr.Textbox(visible="hidden", label="answer text", elem_id="answer-text"),
            ui_token=gr.Textbox(visible="hidden", label="upload token", elem_id="ui-token"),
            unlocked=gr.State(False),
        )
        _wire_chat(handlers, header, chat, session)
        _wire_documents(demo, handlers, header, docs, session)
        _wire_language(demo, handlers, _labels(handlers, header, chat, docs), header, chat, docs, session)
    return demo


def _header() -> Header:
    """The title, the language switch, the status line and the timer that refreshes it during start-up."""
    with gr.Row(elem_id="rag-header", equal_height=True):
        with gr.Column(scale=5, min_width=240):
            header = gr.HTML(render_header("en"))
        with gr.Column(scale=1, min_width=250):
            language = gr.Radio(LANGUAGE_CHOICES, value="en", label="Language", elem_id="lang-switch")
    status = gr.HTML(in_every_language(render_starting), elem_id="rag-status")
    return Header(header, language, status, gr.Timer(1.0, active=True))


def _upload_types(service: RagService) -> str:
    """The file types the upload accepts, as its label lists them: the loaders' suffixes ("txt, md, ...")."""
    return ", ".join(suffix.lstrip(".") for suffix in service.supported_suffixes)


def _chat_tab(settings: Settings) -> Chat:
    """The conversation, the question row, its actions and settings; the source card beside them."""
    en = STRINGS["en"]
    with gr.Tab(en["tab_chat"], id="chat", elem_id="tab-chat") as tab, gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=320):
            chatbot = gr.Chatbot(
                label=en["chat_label"],
                placeholder=en["chat_placeholder"],
                examples=[{"text": q} for q in EXAMPLES],
                height=440,
                buttons=[],
                feedback_options=None,
                elem_id="rag-chat",
                autoscroll=True,
            )
            with gr.Row(elem_id="rag-ask", equal_height=True):
                question = gr.Textbox(
                    label=en["question_label"],
                    placeholder=en["question_placeholder"],
                    lines=1,
                    max_lines=6,
                    max_length=settings.max_question_chars,
                    autofocus=True,
                    elem_id="rag-question",
                    scale=6,
                    min_width=160,
                )
                send = gr.Button(en["send"], variant="primary", elem_id="rag-send", scale=1, min_width=72)
                stop = gr.Button(en["stop"], variant="stop", elem_id="rag-stop", scale=1, min_width=72)
            with gr.Row(elem_id="rag-actions"):
                copy = gr.Button(en["copy"], size="sm", elem_id="rag-copy")
                new_chat = gr.Button(en["new_chat"], size="sm", elem_id="rag-new")
            settings_box, generator, k = _settings_box(settings)
        with gr.Column(scale=2, min_width=280):
            card = gr.HTML(render_card(None, "en"), label=en["card_label"], elem_id="source-card")
    return Chat(tab, chatbot, question, send, stop, copy, new_chat, settings_box, generator, k, card)


def _settings_box(settings: Settings) -> tuple[gr.Accordion, gr.Radio, gr.Slider]:
    """The folded settings: which generator answers, how many passages are retrieved."""
    en = STRINGS["en"]
    with gr.Accordion(en["settings"], open=False, elem_id="rag-settings") as box:
        generator = gr.Radio(
            list(settings.allowed_generators),
            value=settings.generator,
            label=en["generator"],
            info=en["generator_info"],
            elem_id="rag-generator",
        )
        k = gr.Slider(1, MAX_K, value=min(settings.k, MAX_K), step=1, label=en["k"], info=en["k_info"], elem_id="rag-k")
    return box, generator, k


def _documents_tab(service: RagService, handlers: Handlers, key_gate: bool) -> Documents:
    """The documents table and status; the key field, when the server has a key; the write controls, shown
    once the key was given (at once without a key). A read-only replica shows neither, but a line saying where
    documents are managed: its service would refuse every write anyway."""
    en = STRINGS["en"]
    read_only = service.settings.read_only
    with gr.Tab(en["tab_docs"], id="documents", elem_id="tab-documents") as tab:
        heading = gr.Markdown(f"### {en['docs_heading']}")
        table = gr.Dataframe(
            value={"headers": [en["col_name"]], "data": [[""]]},
            interactive=False,
            wrap=True,
            label=en["docs_heading"],
            show_label=False,
            elem_id="rag-docs",
            buttons=[],
        )
        status = gr.Markdown("", elem_id="docs-status")
        # Shown by the page script when a chosen file is over the limit (it never leaves the browser).
        gr.HTML('<p id="rag-upload-error" role="alert"></p>', padding=False)
        read_only_note = gr.Markdown(en["read_only"], visible=read_only, elem_id="rag-read-only")
        with gr.Row(visible=key_gate, equal_height=True, elem_id="rag-key-box") as key_box:
            key_field = gr.Textbox(
                type="password", label=en["key_label"], info=en["key_info"], scale=4, min_width=200, elem_id="rag-key"
            )
            unlock = gr.Button(en["unlock"], scale=1, min_width=100, elem_id="rag-unlock")
        with gr.Column(visible=not key_gate and not read_only, elem_id="rag-write-controls") as write_controls:
            writes = _write_controls(service, handlers)
    return Documents(tab, heading, table, status, read_only_note, key_box, key_field, unlock, write_controls, **writes)


def _write_controls(service: RagService, handlers: Handlers) -> dict[str, Any]:
    """Upload, delete (with its confirmation) and re-index: the controls that change the index."""
    en = STRINGS["en"]
    upload = gr.File(
        label=t("en", "upload_label", limit=handlers.limit_in("en"), types=_upload_types(service)),
        file_count="multiple",
        file_types=list(service.supported_suffixes),
        type="filepath",
        height=140,
        elem_id="rag-upload",
    )
    replace = gr.Checkbox(False, label=en["replace"], elem_id="rag-replace")
    with gr.Row(equal_height=False, elem_id="rag-docs-actions"):
        to_delete = gr.Dropdown(
            [], value=None, label=en["delete_label"], scale=3, min_width=200, elem_id="rag-delete-choice"
        )
        delete = gr.Button(en["delete"], variant="stop", scale=1, min_width=120, elem_id="rag-delete")
        refresh = gr.Button(en["refresh"], scale=1, min_width=160, elem_id="rag-refresh")
    with gr.Group(visible=False, elem_id="rag-confirm") as confirm_box:
        confirm_text = gr.Markdown("")
        with gr.Row():
            confirm = gr.Button(en["confirm"], variant="stop", elem_id="rag-confirm-delete")
            cancel = gr.Button(en["cancel"], elem_id="rag-cancel-delete")
    return {
        "upload": upload,
        "replace": replace,
        "to_delete": to_delete,
        "delete": delete,
        "refresh": refresh,
        "confirm_box": confirm_box,
        "confirm_text": confirm_text,
        "confirm": confirm,
        "cancel": cancel,
    }


# --- the events ---------------------------------------------------------------------------------------------
def _wire_chat(h: Handlers, header: Header, chat: Chat, session: Session) -> None:
    """Ask (Enter, Send, an example), stop, copy, start anew, open a source card."""
    # The conversation comes from server-side state, never from the page: a client-sent chat could carry
    # file parts naming server paths, which Gradio would copy into its cache and serve.
    ask_inputs = [
        chat.question,
        session.live_chat,
        header.language,
        chat.generator,
        chat.k,
        session.history,
        session.citations,
    ]
    ask_outputs = [
        chat.chatbot,
        chat.question,
        session.answer_text,
        session.history,
        session.citations,
        session.live_chat,
    ]
    # The one public endpoint: Client(url).predict("question", api_name="/ask") -> (chat, "", answer text).
    submitted = chat.question.submit(h.ask, ask_inputs, ask_outputs, api_name="ask", concurrency_limit=None)
    clicked = chat.send.click(h.ask, ask_inputs, ask_outputs, concurrency_limit=None, **PRIVATE)
    example = chat.chatbot.example_select(example_text, None, chat.question, **PRIVATE).then(
        h.ask, ask_inputs, ask_outputs, concurrency_limit=None, **PRIVATE
    )
    # Gradio runs the cancellation beside this handler, not before it: the handler waits for it.
    stopping = [submitted, clicked, example]
    chat.stop.click(h.stop, [session.live_chat, header.language], [chat.chatbot], cancels=stopping, **PRIVATE)
    chat.copy.click(copied, [session.answer_text, header.language], None, js=JS_COPY, **PRIVATE)

    reset_outputs = [
        chat.chatbot,
        session.history,
        session.citations,
        session.live_chat,
        session.answer_text,
        chat.card,
        session.cite_key,
    ]
    chat.new_chat.click(h.reset, [header.language], reset_outputs, **PRIVATE)
    chat.chatbot.clear(h.reset, [header.language], reset_outputs, **PRIVATE)

    card_inputs = [session.cite_key, header.language, session.citations]
    session.cite_open.click(h.open_card, card_inputs, [chat.card, session.cite_key], js=JS_OPEN_CARD, **QUIET).then(
        None, js=JS_FOCUS_CARD
    )


def _wire_documents(demo: gr.Blocks, h: Handlers, header: Header, docs: Documents, session: Session) -> None:
    """Upload, re-index, delete (asked, then confirmed), unlock; the listing on opening the tab and at start-up."""
    listing_outputs = [docs.table, docs.to_delete, header.status]
    writing = [header.language, session.unlocked]
    docs.upload.upload(
        h.add_files, [docs.upload, docs.replace, *writing], [docs.upload, *listing_outputs, docs.status], **PRIVATE
    )
    docs.refresh.click(h.reindex, writing, [*listing_outputs, docs.status], **PRIVATE)
    docs.delete.click(
        h.ask_delete, [docs.to_delete, header.language], [docs.confirm_box, docs.confirm_text, docs.status], **PRIVATE
    )
    docs.confirm.click(
        h.do_delete, [docs.to_delete, *writing], [docs.confirm_box, *listing_outputs, docs.status], **PRIVATE
    )
    unlock_outputs = [
        session.unlocked,
        docs.key_box,
        docs.write_controls,
        docs.key_field,
        session.ui_token,
        docs.status,
    ]
    for unlocking in (docs.unlock.click, docs.key_field.submit):
        unlocking(h.do_unlock, [docs.key_field, header.language], unlock_outputs, **PRIVATE).then(
            None, [session.ui_token], None, js=JS_SET_UPLOAD_COOKIE
        )
    docs.cancel.click(lambda: gr.Group(visible=False), None, docs.confirm_box, **PRIVATE)
    docs.tab.select(h.listing, [header.language], listing_outputs, **QUIET)

    demo.load(h.on_load, [header.language], listing_outputs, **QUIET)
    header.timer.tick(h.poll, [header.language], [*listing_outputs, header.timer], **QUIET)


def _labels(h: Handlers, header: Header, chat: Chat, docs: Documents) -> list[tuple[Any, Callable[[str], Any]]]:
    """Each component whose text depends on the language, and its update in a given language."""
    return [
        (header.header, render_header),
        (header.language, lambda lang: gr.Radio(label=t(lang, "language"))),
        (header.status, lambda lang: h.status()),
        (chat.tab, lambda lang: gr.Tab(label=t(lang, "tab_chat"))),
        (docs.tab, lambda lang: gr.Tab(label=t(lang, "tab_docs"))),
        (chat.chatbot, lambda lang: gr.Chatbot(label=t(lang, "chat_label"), placeholder=t(lang, "chat_placeholder"))),
        (
            chat.question,
            lambda lang: gr.Textbox(label=t(lang, "question_label"), placeholder=t(lang, "question_placeholder")),
        ),
        (chat.send, lambda lang: gr.Button(t(lang, "send"))),
        (chat.stop, lambda lang: gr.Button(t(lang, "stop"))),
        (chat.copy, lambda lang: gr.Button(t(lang, "copy"))),
        (chat.new_chat, lambda lang: gr.Button(t(lang, "new_chat"))),
        (chat.settings_box, lambda lang: gr.Accordion(label=t(lang, "settings"))),
        (chat.generator, lambda lang: gr.Radio(label=t(lang, "generator"), info=t(lang, "generator_info"))),
        (chat.k, lambda lang: gr.Slider(label=t(lang, "k"), info=t(lang, "k_info"))),
        (docs.heading, lambda lang: f"### {t(lang, 'docs_heading')}"),
        (docs.read_only_note, lambda lang: t(lang, "read_only")),
        (
            docs.upload,
            lambda lang: gr.File(label=t(lang, "upload_label", limit=h.limit_in(lang), types=_upload_types(h.service))),
        ),
        (docs.key_field, lambda lang: gr.Textbox(label=t(lang, "key_label"), info=t(lang, "key_info"))),
        (docs.unlock, lambda lang: gr.Button(t(lang, "unlock"))),
        (docs.replace, lambda lang: gr.Checkbox(label=t(lang, "replace"))),
        (docs.to_delete, lambda lang: gr.Dropdown(label=t(lang, "delete_label"))),
        (docs.delete, lambda lang: gr.Button(t(lang, "delete"))),
        (docs.refresh, lambda lang: gr.Button(t(lang, "refresh"))),
        (docs.confirm, lambda lang: gr.Button(t(lang, "confirm"))),
        (docs.cancel, lambda lang: gr.Button(t(lang, "cancel"))),
    ]


def _wire_language(
    demo: gr.Blocks,
    h: Handlers,
    labels: list[tuple[Any, Callable[[str], Any]]],
    header: Header,
    chat: Chat,
    docs: Documents,
    session: Session,
) -> None:
    """The language switch relabels everything; the page script sets the first language on load."""
    makers = [make for _, make in labels]

    def apply_language(lang: str, key: str, cited: list) -> list:
        return h.apply_language(makers, lang, key, cited)

    outputs = [c for c, _ in labels] + [docs.table, chat.card]
    inputs = [header.language, session.cite_key, session.citations]
    header.language.change(apply_language, inputs, outputs, js=JS_DOCUMENT_LANGUAGE, **QUIET)
    header.language.input(None, [header.language], None, js=JS_SAVE_LANGUAGE)  # only a choice made by the user sticks
    demo.load(None, None, [header.language], js=_page_script(h.settings))


def _page_script(settings: Settings) -> str:
    """The page script, given the upload limit and the message that refuses a file over it, in each language."""
    upload_check = {"limit": settings.max_upload_bytes, "messages": {lang: t(lang, "too_large") for lang in STRINGS}}
    return JS_ON_LOAD.replace("__UPLOAD__", json.dumps(upload_check))


# --- serving ----------------------------------------------------------------------------------------------
def mount_ui(app: Any, service: RagService, path: str = "/") -> Any:
    """Mount the UI on a FastAPI app (the one way it is served; returns the app), with its doors closed:

    - uploads held to the one size limit (RAG_MAX_UPLOAD_BYTES) by Gradio, its upload route behind the key
      and a disk quota (ui.access.UploadGuard), uploads older than an hour deleted;
    - no server file served but Gradio's own uploads: the corpus and data folders are blocked, and Gradio's
      check that a file input names an uploaded file is switched on (it only runs once Gradio believes it
      launched the app, which mounting never sets);
    - with RAG_API_KEY_FOR_READ=true the whole UI behind Gradio's login, the key as password;
    - the footer links only to the API page; no run history kept.
    """
    settings = service.settings
    blocks = build_ui(service)
    blocks.delete_cache = (UPLOAD_CACHE_SWEEP_SECONDS, UPLOAD_CACHE_MAX_AGE_SECONDS)
    login = None
    if settings.api_key is not None and settings.api_key_for_read:
        login = lambda _user, password: service.check_key(password)  # noqa: E731
    gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        footer_links=["api"],
        run_history=False,
        max_file_size=settings.max_upload_bytes,
        allowed_paths=[],
        blocked_paths=[str(settings.corpus_dir.resolve()), str(settings.data_dir.resolve())],
        auth=login,
        auth_message=STRINGS["en"]["login_message"] if login else None,
    )
    blocks.has_launched = True
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    app.add_middleware(
        UploadGuard,
        path=path.rstrip("/") + "/gradio_api/upload",
        token=upload_token(key) if key is not None and not settings.api_key_for_read else None,
        check_key=service.check_key,
        upload_folder=Path(get_upload_folder()),
        quota_bytes=settings.upload_cache_bytes,
    )
    return app


def create_standalone_app() -> Any:
    """The UI alone on FastAPI, configured from RAG_* variables: `uvicorn --factory ui.app:create_standalone_app`."""
    from fastapi import FastAPI

    app = FastAPI(title="rag-cite UI")
    return mount_ui(app, RagService(Settings()))
