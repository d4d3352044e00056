"""The chat web UI (Gradio): streaming answers with clickable citations, a documents panel and settings.

Every action calls `RagService` (answers, documents, the key check). What lives here is presentation:
turning answers into HTML (citation chips, refusal and fallback notices), source cards, translations; and the
UI's own doors: which inputs an event takes (never a server path from the page), and that writes wait for the
key (see `mount_ui` and ui/access.py).

Serve it with `mount_ui(app, service)` on a FastAPI app (what `rag serve` does), or alone with
`uvicorn --factory ui.app:create_standalone_app`.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from index.loaders import SUPPORTED_SUFFIXES
from index.refresh import IndexBusyError, Progress
from rag.schema import Answer, Citation
from rag.service import DocumentError, RagService, RequestError, ServiceBusyError
from rag.settings import Settings
from rag.startup import Startup
from rag.store import DocumentRecord
from ui.access import UPLOAD_COOKIE, UploadGuard, discard_upload, upload_token

log = logging.getLogger(__name__)

EXAMPLES = (
    "Pourquoi l'Italie a-t-elle interdit DeepSeek ?",
    "Where does DeepSeek store its data, according to the article?",
    "Quels défis DeepSeek pose-t-il à l'Union européenne ?",
)
# Characters of the passage shown on each side of the quote before "show more context" is opened.
CARD_EXCERPT_CHARS = 220
# Characters of the neighbouring chunks shown on each side of the passage under "show more context".
CARD_CONTEXT_CHARS = 700
# How long Stop waits for the cancelled stream's last update before marking the answer as stopped.
STOP_SETTLE_SECONDS = 0.5
# Gradio deletes uploads it stored for this UI once they are this old (checked this often): an upload is
# indexed (and its stored copy removed) within seconds, so an hour-old one was abandoned.
UPLOAD_CACHE_MAX_AGE_SECONDS = 3600
UPLOAD_CACHE_SWEEP_SECONDS = 600
# The passages slider's top: more than this would not fit the local model's context anyway.
MAX_K = 20

# All interface text, one dict per language. Keys are the same in both; `{name}` fields are str.format'ed.
STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Ask your documents",
        "subtitle": "Answers quote the passages they rest on. Click a numbered marker to read its source. "
        "Everything runs offline.",
        "language": "Language",
        "tab_chat": "Chat",
        "tab_docs": "Documents",
        "chat_label": "Conversation",
        "chat_placeholder": "Ask a question about the indexed documents, in French or in English.",
        "question_label": "Your question",
        "question_placeholder": "Type a question, then press Enter",
        "send": "Send",
        "stop": "Stop",
        "copy": "Copy answer",
        "copied": "Answer copied to the clipboard.",
        "nothing_to_copy": "There is no answer to copy yet.",
        "new_chat": "New conversation",
        "settings": "Settings",
        "generator": "Generator",
        "generator_info": "local: on-device model · extractive: quotes the best sentences · "
        "openai / ollama: a server you configured",
        "k": "Passages retrieved (k)",
        "k_info": "More passages give more context but a slower answer.",
        "card_label": "Source",
        "card_empty": "Click a numbered marker in an answer to see the passage it comes from.",
        "card_missing": "This source is no longer available; ask the question again.",
        "card_file": "File",
        "card_page": "Page",
        "card_quote": "Supporting quote",
        "card_more": "Show more context",
        "card_back": "Back to the answer",
        "source_aria": "Source {n}: {title}",
        "source_word": "Source",
        "not_in_docs": "Not in the documents",
        "fallback": "Answered by the extractive fallback",
        "unsupported_note": "Underlined sentences are not supported by any retrieved passage.",
        "withheld_note": "{count} sentence(s) withheld: not supported by the documents — show",
        "withheld_not_supported": "no passage says it",
        "withheld_contradicted": "a source says otherwise",
        "card_support": "Support",
        "support_supported": "supported: the quote states it",
        "support_partly": "partly: the quote does not state {missing}",
        "support_differs": "differs: this source says otherwise",
        "unsupported_title": "Not supported by the documents",
        "understood_as": "Understood as: “{question}”",
        "searching": "Searching the documents…",
        "checking": "Checking the answer against the sources…",
        "waiting": "Waiting for the system to be ready: {status}",
        "stopped": "Stopped.",
        "busy": "Too many questions are waiting for the model; try again in {seconds} s.",
        "error": "The question could not be answered: {error}",
        "empty_question": "Type a question first.",
        "status_label": "System status",
        "status_starting": "Starting…",
        "status_preparing": "Preparing: {step}",
        "status_ready": "Ready · {documents} · {chunks} passages · generator: {generator}",
        "documents_one": "1 document",
        "documents_many": "{n} documents",
        "status_fallback": "The {generator} generator is unavailable, the extractive one answers instead: {reason}",
        "status_no_docs": "Ready, but no document is indexed yet: add some in the Documents tab.",
        "status_failed": "Preparation failed: {error}",
        "step_embeddings": "loading the embedding model",
        "step_index": "opening the index",
        "step_generator": "loading the {generator} generator",
        "step_indexing": "indexing the corpus, {done}/{total} files ({current})",
        "step_index_busy": "another indexer is running; waiting for it",
        "docs_heading": "Indexed documents",
        "col_name": "Name",
        "col_type": "Type",
        "col_chunks": "Passages",
        "col_size": "Size",
        "col_indexed": "Indexed at",
        "upload_label": "Add documents: drop files here (txt, md, html, pdf; at most {limit} each)",
        "replace": "Replace a document of the same name",
        "delete_label": "Document to delete",
        "delete": "Delete…",
        "delete_none": "Choose a document to delete first.",
        "confirm_delete": "Delete **{name}**? Its file and its passages will be removed from the index.",
        "confirm": "Yes, delete",
        "cancel": "Cancel",
        "refresh": "Re-index the corpus",
        "refresh_done": "Index up to date: {added} added, {updated} updated, {deleted} deleted, {unchanged} unchanged.",
        "indexing_file": "Indexing {name}",
        "indexed": "✓ {name}: indexed ({chunks} passages).",
        "unchanged": "✓ {name}: already indexed, unchanged.",
        "skipped": "✗ {name}: not indexed — {reason}",
        "rejected": "✗ {name}: rejected — {reason}",
        "deleted": "✓ {name} deleted.",
        "index_busy": "Another indexer is running; try again when it has finished.",
        "docs_status_label": "Documents status",
        "too_large": "{name}: too large: {size}, limit {limit}",
        "too_long": "Question too long: {size} characters (limit {limit}).",
        "key_label": "Key to change documents",
        "key_info": "This server asks for its API key before documents are added, replaced or deleted.",
        "unlock": "Unlock",
        "unlocked": "✓ Unlocked: you can add, replace and delete documents.",
        "wrong_key": "✗ Wrong key.",
        "key_needed": "✗ Enter the key first: changing documents needs it.",
        "not_uploaded": "not a file uploaded from this page",
        "login_message": "This server asks for its API key (RAG_API_KEY): any user name, the key as password.",
    },
    "fr": {
        "title": "Interrogez vos documents",
        "subtitle": "Les réponses citent les passages sur lesquels elles s'appuient. Cliquez sur un numéro pour "
        "lire sa source. Tout fonctionne hors ligne.",
        "language": "Langue",
        "tab_chat": "Discussion",
        "tab_docs": "Documents",
        "chat_label": "Conversation",
        "chat_placeholder": "Posez une question sur les documents indexés, en français ou en anglais.",
        "question_label": "Votre question",
        "question_placeholder": "Tapez une question, puis appuyez sur Entrée",
        "send": "Envoyer",
        "stop": "Arrêter",
        "copy": "Copier la réponse",
        "copied": "Réponse copiée dans le presse-papiers.",
        "nothing_to_copy": "Il n'y a pas encore de réponse à copier.",
        "new_chat": "Nouvelle conversation",
        "settings": "Réglages",
        "generator": "Générateur",
        "generator_info": "local : modèle sur la machine · extractive : cite les meilleures phrases · "
        "openai / ollama : un serveur configuré",
        "k": "Passages recherchés (k)",
        "k_info": "Plus de passages donnent plus de contexte mais une réponse plus lente.",
        "card_label": "Source",
        "card_empty": "Cliquez sur un numéro dans une réponse pour voir le passage d'où il vient.",
        "card_missing": "Cette source n'est plus disponible ; posez à nouveau la question.",
        "card_file": "Fichier",
        "card_page": "Page",
        "card_quote": "Citation à l'appui",
        "card_more": "Afficher plus de contexte",
        "card_back": "Revenir à la réponse",
        "source_aria": "Source {n} : {title}",
        "source_word": "Source",
        "not_in_docs": "Absent des documents",
        "fallback": "Réponse produite par le générateur extractif de secours",
        "unsupported_note": "Les phrases soulignées ne s'appuient sur aucun passage retrouvé.",
        "withheld_note": "{count} phrase(s) retenue(s) : non étayée(s) par les documents — afficher",
        "withheld_not_supported": "aucun passage ne le dit",
        "withheld_contradicted": "une source dit le contraire",
        "card_support": "Appui",
        "support_supported": "étayé : la citation le dit",
        "support_partly": "en partie : la citation ne donne pas {missing}",
        "support_differs": "diverge : cette source dit autre chose",
        "unsupported_title": "Non étayé par les documents",
        "understood_as": "Compris comme : « {question} »",
        "searching": "Recherche dans les documents…",
        "checking": "Vérification de la réponse dans les sources…",
        "waiting": "En attente que le système soit prêt : {status}",
        "stopped": "Arrêté.",
        "busy": "Trop de questions attendent le modèle ; réessayez dans {seconds} s.",
        "error": "Impossible de répondre à la question : {error}",
        "empty_question": "Tapez d'abord une question.",
        "status_label": "État du système",
        "status_starting": "Démarrage…",
        "status_preparing": "Préparation : {step}",
        "status_ready": "Prêt · {documents} · {chunks} passages · générateur : {generator}",
        "documents_one": "1 document",
        "documents_many": "{n} documents",
        "status_fallback": "Le générateur {generator} est indisponible, le générateur extractif le remplace : {reason}",
        "status_no_docs": "Prêt, mais aucun document n'est indexé : ajoutez-en dans l'onglet Documents.",
        "status_failed": "La préparation a échoué : {error}",
        "step_embeddings": "chargement du modèle d'embeddings",
        "step_index": "ouverture de l'index",
        "step_generator": "chargement du générateur {generator}",
        "step_indexing": "indexation du corpus, {done}/{total} fichiers ({current})",
        "step_index_busy": "une autre indexation est en cours ; attente de sa fin",
        "docs_heading": "Documents indexés",
        "col_name": "Nom",
        "col_type": "Type",
        "col_chunks": "Passages",
        "col_size": "Taille",
        "col_indexed": "Indexé le",
        "upload_label": "Ajouter des documents : déposez des fichiers ici (txt, md, html, pdf ; "
        "{limit} au plus chacun)",
        "replace": "Remplacer un document du même nom",
        "delete_label": "Document à supprimer",
        "delete": "Supprimer…",
        "delete_none": "Choisissez d'abord un document à supprimer.",
        "confirm_delete": "Supprimer **{name}** ? Son fichier et ses passages seront retirés de l'index.",
        "confirm": "Oui, supprimer",
        "cancel": "Annuler",
        "refresh": "Réindexer le corpus",
        "refresh_done": "Index à jour : {added} ajoutés, {updated} mis à jour, {deleted} supprimés, "
        "{unchanged} inchangés.",
        "indexing_file": "Indexation de {name}",
        "indexed": "✓ {name} : indexé ({chunks} passages).",
        "unchanged": "✓ {name} : déjà indexé, inchangé.",
        "skipped": "✗ {name} : non indexé — {reason}",
        "rejected": "✗ {name} : refusé — {reason}",
        "deleted": "✓ {name} supprimé.",
        "index_busy": "Une autre indexation est en cours ; réessayez quand elle sera terminée.",
        "docs_status_label": "État des documents",
        "too_large": "{name} : trop volumineux : {size}, limite {limit}",
        "too_long": "Question trop longue : {size} caractères (limite {limit}).",
        "key_label": "Clé pour modifier les documents",
        "key_info": "Ce serveur demande sa clé d'API avant d'ajouter, remplacer ou supprimer des documents.",
        "unlock": "Déverrouiller",
        "unlocked": "✓ Déverrouillé : vous pouvez ajouter, remplacer et supprimer des documents.",
        "wrong_key": "✗ Clé incorrecte.",
        "key_needed": "✗ Saisissez d'abord la clé : elle est nécessaire pour modifier les documents.",
        "not_uploaded": "ce n'est pas un fichier envoyé depuis cette page",
        "login_message": "Ce serveur demande sa clé d'API (RAG_API_KEY) : n'importe quel nom, la clé comme mot "
        "de passe.",
    },
}

CSS = """
.gradio-container {
  --button-primary-background-fill: #1d4ed8;
  --button-primary-background-fill-hover: #1e40af;
  --button-primary-text-color: #ffffff;
  --button-primary-border-color: #1d4ed8;
  --color-accent: #1d4ed8;
  --color-accent-soft: #dbeafe;
  --checkbox-background-color-selected: #1d4ed8;
  --checkbox-border-color-selected: #1d4ed8;
  --slider-color: #1d4ed8;
  --button-cancel-background-fill: #b91c1c;
  --button-cancel-background-fill-hover: #991b1b;
  --button-cancel-border-color: #b91c1c;
  --button-cancel-text-color: #ffffff;
  --body-text-color-subdued: #4b5563;
  --block-info-text-color: #4b5563;
  --input-placeholder-color: #6b7280;
}
.dark .gradio-container {
  --color-accent-soft: #1e3a8a;
  --body-text-color-subdued: #cbd5e1;
  --block-info-text-color: #cbd5e1;
  --input-placeholder-color: #94a3b8;
}
.gradio-container :focus-visible {
  outline: 3px solid #1d4ed8 !important;
  outline-offset: 2px !important;
  box-shadow: 0 0 0 5px #ffffff !important;
}
#rag-header { align-items: center; }
#rag-header h1 { margin: 0 0 .15rem; font-size: 1.45rem; }
#rag-header p { margin: 0; color: var(--body-text-color-subdued); }
/* The status line is itself the progress display: no Gradio spinner over it (a busy CPU delays the ticks). */
#rag-status > [data-testid="status-tracker"] { display: none !important; }
#rag-status .status { margin: 0; padding: .45rem .75rem; border-radius: 6px; font-size: .92rem;
  background: #eff6ff; color: #1e3a8a; border: 1px solid #bfdbfe; }
#rag-status .status.preparing { background: #fffbeb; color: #78350f; border-color: #fcd34d; }
#rag-status .status.failed { background: #fef2f2; color: #7f1d1d; border-color: #fca5a5; }
#rag-status .status .detail { display: block; font-size: .85rem; margin-top: .15rem; }
.cite-chip { display: inline-flex; align-items: center; justify-content: center; min-width: 1.55em;
  height: 1.55em; padding: 0 .35em; margin: 0 .1em; border-radius: 999px; border: 1px solid #1d4ed8;
  background: #dbeafe; color: #1e3a8a; font: 600 .78em/1 var(--font); vertical-align: .12em;
  cursor: pointer; }
.cite-chip:hover, .cite-chip.active { background: #1d4ed8; color: #ffffff; }
.cite-chip.pending { border-style: dashed; cursor: default; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0; }
.rag-answer .notice { margin: 0 0 .5em; padding: .35em .6em; border-radius: 6px; font-size: .88em; }
.rag-answer .notice.fallback { background: #f1f5f9; color: #1e293b; border-left: 4px solid #475569; }
.rag-answer .notice.understood { background: transparent; color: var(--body-text-color-subdued); padding: 0; }
.rag-answer .notice.unsupported-note { background: #fef2f2; color: #7f1d1d; margin: .6em 0 0; }
.rag-answer .notice.withheld-note { background: #f3f4f6; color: #374151; margin: .6em 0 0; font-size: .9em; }
.rag-answer .notice.stopped { background: #f1f5f9; color: #1e293b; }
.rag-answer .notice.error { background: #fef2f2; color: #7f1d1d; border-left: 4px solid #b91c1c; }
.rag-answer .refused { padding: .5em .75em; border-radius: 6px; background: #fffbeb; color: #78350f;
  border-left: 4px solid #b45309; }
.rag-answer .refused strong { display: block; margin-bottom: .2em; color: inherit; }
.rag-answer .unsupported { text-decoration: underline wavy #b91c1c; text-underline-offset: 3px; }
.rag-answer .meta { margin: .5em 0 0; font-size: .8em; color: var(--body-text-color-subdued); }
.rag-answer .pending { color: var(--body-text-color-subdued); font-style: italic; }
#source-card .source-card { padding: .9rem 1rem; border: 1px solid var(--border-color-primary);
  border-radius: 8px; background: var(--background-fill-primary); }
#source-card .source-card:focus { outline: none; }
#source-card .source-card:focus-visible { outline: 3px solid #1d4ed8; }
#source-card .source-card h2 { font-size: 1.1rem; margin: 0 0 .4rem; display: flex; gap: .5rem;
  align-items: center; }
#source-card .source-card dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .75rem;
  margin: 0 0 .6rem; font-size: .9rem; }
#source-card .source-card dt { font-weight: 600; }
#source-card .source-card dd { margin: 0; overflow-wrap: anywhere; }
#source-card .source-card blockquote { margin: 0 0 .6rem; padding: .5rem .75rem; border-left: 4px solid #1d4ed8;
  background: var(--background-fill-secondary); white-space: pre-wrap; line-height: 1.55; }
#source-card mark { background: #fde68a; color: #111827; padding: 0 .1em; border-radius: 2px; }
#source-card details summary { cursor: pointer; color: #1d4ed8; font-weight: 600; padding: .2rem 0;
  list-style: none; display: inline-block; }
#source-card details summary::-webkit-details-marker { display: none; }
#source-card details summary::before { content: "▸"; display: inline-block; width: 1em; }
#source-card details[open] summary::before { content: "▾"; }
#source-card details .context { white-space: pre-wrap; line-height: 1.55; font-size: .92rem;
  max-height: 24rem; overflow: auto; padding: .5rem .75rem; border: 1px solid var(--border-color-primary);
  border-radius: 6px; }
#source-card .placeholder { color: var(--body-text-color-subdued); padding: 1rem; border: 1px dashed
  var(--border-color-primary); border-radius: 8px; margin: 0; }
#source-card .back { display: none; margin-top: .5rem; }
.dark .cite-chip { background: #1e3a8a; color: #ffffff; border-color: #93c5fd; }
.dark #rag-status .status { background: #1e293b; color: #e2e8f0; border-color: #475569; }
.dark .rag-answer .notice.fallback, .dark .rag-answer .refused, .dark .rag-answer .notice.unsupported-note,
.dark .rag-answer .notice.withheld-note, .dark .rag-answer .notice.stopped, .dark .rag-answer .notice.error {
  background: #1e293b; color: #f1f5f9; }
.dark .rag-answer .refused strong, .dark .rag-answer .notice strong { color: inherit; }
.dark #source-card details summary { color: #93c5fd; }
#lang-switch .wrap { flex-wrap: nowrap; }
#rag-ask { align-items: stretch; }
#rag-ask button { align-self: stretch; }
#rag-docs-actions { align-items: flex-end; }
#rag-docs-actions > button { align-self: flex-end; }
#docs-status p { margin: .1rem 0; }
#rag-upload-error { margin: 0; color: #b91c1c; font-weight: 600; }
#rag-upload-error:empty { display: none; }
@media (max-width: 640px) {
  #rag-header h1 { font-size: 1.3rem; }
  #rag-ask { flex-wrap: wrap; }
  #rag-ask > :first-child { flex: 1 1 100% !important; min-width: 100% !important; }
  #rag-ask > button { flex: 1 1 40% !important; }
  #source-card .back { display: inline-block; }
}
"""

# Runs once per page load: routes clicks on citation chips to the hidden "open card" event, refuses files over
# the upload limit before they leave the browser (with the message in the page's language), and returns the
# interface language (the user's earlier choice, else the browser's). __UPLOAD__ is filled in by build_ui.
JS_ON_LOAD = r"""
() => {
  if (!window.ragUi) {
    window.ragUi = { chip: "" };
    const upload = __UPLOAD__;
    const megabytes = (size, lang, exact) => {
      const value = size / 1048576;
      const text = exact && Number.isInteger(value) ? value.toFixed(0) : value.toFixed(1);
      return lang === "fr" ? `${text.replace(".", ",")} Mo` : `${text} MB`;
    };
    const refuseLarge = (event, files) => {
      const large = Array.from(files || []).filter((file) => file.size > upload.limit);
      if (!large.length || !event.target.closest?.("#rag-upload")) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      if (event.type === "change") event.target.value = "";
      const lang = document.documentElement.lang === "fr" ? "fr" : "en";
      const limit = megabytes(upload.limit, lang, true);
      const lines = large.map((file) =>
        upload.messages[lang].replace("{name}", file.name).replace("{size}", megabytes(file.size, lang))
          .replace("{limit}", limit));
      const shown = document.querySelector("#rag-upload-error");
      if (shown) shown.textContent = lines.join(" · ");
    };
    document.addEventListener("change", (event) => refuseLarge(event, event.target.files), true);
    document.addEventListener("drop", (event) => refuseLarge(event, event.dataTransfer?.files), true);
    document.addEventListener("click", (event) => {
      const chip = event.target.closest("button.cite-chip");
      const key = chip && /cite-key-(\d+)-(\d+)/.exec(chip.className);
      if (key) {
        event.preventDefault();
        document.querySelectorAll(".cite-chip.active").forEach((c) => c.classList.remove("active"));
        chip.classList.add("active");
        window.ragUi.chip = `${key[1]}:${key[2]}`;
        document.querySelector("#cite-open")?.click();
        return;
      }
      const back = event.target.closest("[data-back-key]");
      if (back) {
        const target = document.querySelector(`.cite-key-${back.dataset.backKey.replace(":", "-")}`);
        target?.scrollIntoView({ block: "center" });
        target?.focus();
      }
    });
  }
  const saved = window.localStorage.getItem("rag-ui-lang");
  const lang = (saved || navigator.language || "en").slice(0, 2).toLowerCase() === "fr" ? "fr" : "en";
  document.documentElement.lang = lang;
  return lang;
}
"""
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


# gr.Progress() as a parameter default is how Gradio hands a handler its progress bar.
_PROGRESS = gr.Progress()


def t(lang: str, key: str, **fields: Any) -> str:
    """The interface string `key` in `lang` (English when the language is unknown)."""
    text = STRINGS.get(lang, STRINGS["en"])[key]
    return text.format(**fields) if fields else text


def _lang(value: Any) -> str:
    return value if value in STRINGS else "en"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


# --- rendering: answers --------------------------------------------------------------------------------
_MARKER = re.compile(r"\[(\d+)\]")
_SPACE = re.compile(r"\s")


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
    body = html.escape(text, quote=False)
    underlined = 0
    withheld: list[str] = []  # list items: the sentence and why it was held back
    if answer is not None:
        for sentence in answer.unsupported:
            escaped = html.escape(sentence.text.strip(), quote=False)
            if escaped and escaped in body:  # shown as written (RAG_DROP_UNSUPPORTED=false): flagged in place
                span = f'<span class="unsupported" title="{_esc(t(lang, "unsupported_title"))}">{escaped}</span>'
                body = body.replace(escaped, span, 1)
                underlined += 1
            elif escaped:
                why = t(lang, f"withheld_{sentence.verdict}")
                withheld.append(f"<li><q>{escaped}</q> <small>({_esc(why)})</small></li>")

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

    body = _MARKER.sub(chip, body)
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


# --- rendering: source cards -----------------------------------------------------------------------------
def _quote_span(text: str, origin: int, citation: Citation) -> tuple[int, int] | None:
    """Where the quote sits in `text` (which starts at document offset `origin`), if it can be found."""
    start, end = citation.quote_start - origin, citation.quote_end - origin
    if 0 <= start <= end <= len(text) and text[start:end].strip() == citation.quote.strip():
        return start, end
    found = text.find(citation.quote.strip())
    return (found, found + len(citation.quote.strip())) if found >= 0 else None


def _highlight(text: str, span: tuple[int, int] | None, lo: int = 0, hi: int | None = None) -> str:
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


def surrounding_text(service: RagService, citation: Citation, chars: int = CARD_CONTEXT_CHARS) -> tuple[str, int]:
    """The passage with `chars` characters of its document on each side (from the service), and its offset."""
    try:
        text, start = service.surrounding_text(citation.source, citation.start, citation.end, chars)
    except Exception:
        log.exception("could not read the text around %s", citation.source)
        text, start = "", citation.start
    return (text, start) if text else (citation.text, citation.start)


def render_card(citation: Citation | None, lang: str, context: tuple[str, int] | None = None, key: str = "") -> str:
    """The source card of one citation: where it comes from, the quote in its passage, more on demand."""
    if citation is None:
        return f'<p class="placeholder">{_esc(t(lang, "card_empty"))}</p>'
    c = citation
    span = _quote_span(c.text, c.start, c)
    if span:
        excerpt = _highlight(c.text, span, max(0, span[0] - CARD_EXCERPT_CHARS), span[1] + CARD_EXCERPT_CHARS)
    else:
        excerpt = _highlight(c.text, None)
    more_text, origin = context or (c.text, c.start)
    window = (max(0, c.start - CARD_CONTEXT_CHARS - origin), c.end + CARD_CONTEXT_CHARS - origin)
    more = _highlight(more_text, _quote_span(more_text, origin, c), *window)
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
        f"<details><summary>{_esc(t(lang, 'card_more'))}</summary>"
        f'<div class="context">{more}</div></details>'
        f'<button type="button" class="back" data-back-key="{_esc(key)}">↑ {_esc(t(lang, "card_back"))}</button>'
        "</section>"
    )


# --- rendering: status and documents ---------------------------------------------------------------------
def _megabytes(size: int, lang: str, *, exact: bool = False) -> str:
    """`size` in MB (1024²) as `lang` writes it, one decimal ("25.0 MB", "25,0 Mo"); none for a whole `exact` limit.
    The page script (JS_ON_LOAD) writes sizes the same way."""
    value = size / (1024 * 1024)
    text = f"{value:.0f}" if exact and value.is_integer() else f"{value:.1f}"
    return f"{text.replace('.', ',')} Mo" if lang == "fr" else f"{text} MB"


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def documents_table(records: list[DocumentRecord], lang: str) -> dict[str, Any]:
    headers = [t(lang, key) for key in ("col_name", "col_type", "col_chunks", "col_size", "col_indexed")]
    rows = [
        [r.source, r.kind, r.chunks, _human_size(r.size), r.indexed_at.replace("T", " ").replace("+00:00", " UTC")]
        for r in records
    ]
    return {"headers": headers, "data": rows or [["", "", "", "", ""]]}


def describe_step(startup: Startup, lang: str) -> str:
    """What the service's start-up task is doing, in `lang`."""
    key, fields = startup.step
    return t(lang, "status_starting" if key in ("starting", "ready") else f"step_{key}", **fields)


def render_status(service: RagService, startup: Startup, lang: str) -> str:
    """The status line: what is being prepared, or what is ready (documents, passages, generator)."""
    label = _esc(t(lang, "status_label"))
    if not startup.done.is_set():
        text = t(lang, "status_preparing", step=describe_step(startup, lang))
        return f'<p class="status preparing" role="status" aria-label="{label}">⏳ {_esc(text)}</p>'
    if startup.error:
        text = t(lang, "status_failed", error=startup.error)
        return f'<p class="status failed" role="alert" aria-label="{label}">{_esc(text)}</p>'
    status, readiness = service.status(), service.readiness()
    if not status["documents"]:
        text = t(lang, "status_no_docs")
    else:
        text = t(
            lang,
            "status_ready",
            documents=t(lang, "documents_one")
            if status["documents"] == 1
            else t(lang, "documents_many", n=status["documents"]),
            chunks=status["chunks"],
            generator=readiness["generator_name"],
        )
    detail = ""
    if readiness.get("fallback_reason"):
        reason = t(lang, "status_fallback", generator=service.settings.generator, reason=readiness["fallback_reason"])
        detail = f'<span class="detail">{_esc(reason)}</span>'
    return f'<p class="status" role="status" aria-label="{label}">✓ {_esc(text)}{detail}</p>'


# --- the Blocks ---------------------------------------------------------------------------------------------
def build_ui(service: RagService) -> gr.Blocks:
    """The whole interface, bound to `service`. No launch() here: the caller mounts or launches it."""
    settings: Settings = service.settings
    startup = service.startup  # the service's one start-up task; started on page load unless running already
    ready = startup.done.is_set
    limit = _megabytes(settings.max_upload_bytes, "en", exact=True)
    upload_check = {"limit": settings.max_upload_bytes, "messages": {lang: t(lang, "too_large") for lang in STRINGS}}
    key_gate = settings.api_key is not None and not settings.api_key_for_read  # with for_read: Gradio's login
    en = STRINGS["en"]

    with gr.Blocks(title="rag-cite") as demo:
        # Styles travel inside the Blocks: mount_gradio_app() resets Blocks.css unless given css= itself.
        gr.HTML(f"<style>{CSS}</style>", elem_id="rag-style", padding=False)
        with gr.Row(elem_id="rag-header", equal_height=True):
            with gr.Column(scale=5, min_width=240):
                header = gr.HTML(_header_html("en"))
            with gr.Column(scale=1, min_width=250):
                language = gr.Radio(
                    [("English", "en"), ("Français", "fr")], value="en", label="Language", elem_id="lang-switch"
                )
        starting = f'<p class="status preparing" role="status">⏳ {en["status_starting"]}</p>'
        status = gr.HTML(starting, elem_id="rag-status")
        timer = gr.Timer(1.0, active=True)

        history = gr.State([])  # the conversation as plain text, for follow-ups: [{role, content}]
        citations = gr.State([])  # per answer: {n: Citation}, what the chips of that answer open
        live_chat = gr.State([])  # the chat as last streamed: what Stop marks, the page may lag behind it

        with gr.Tabs():
            with (
                gr.Tab(en["tab_chat"], id="chat", elem_id="tab-chat") as chat_tab,
                gr.Row(equal_height=False),
            ):
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
                    with gr.Accordion(en["settings"], open=False, elem_id="rag-settings") as settings_box:
                        generator = gr.Radio(
                            list(settings.allowed_generators),
                            value=settings.generator,
                            label=en["generator"],
                            info=en["generator_info"],
                            elem_id="rag-generator",
                        )
                        k = gr.Slider(
                            1,
                            MAX_K,
                            value=min(settings.k, MAX_K),
                            step=1,
                            label=en["k"],
                            info=en["k_info"],
                            elem_id="rag-k",
                        )
                with gr.Column(scale=2, min_width=280):
                    card = gr.HTML(render_card(None, "en"), label=en["card_label"], elem_id="source-card")

            with gr.Tab(en["tab_docs"], id="documents", elem_id="tab-documents") as docs_tab:
                docs_heading = gr.Markdown(f"### {en['docs_heading']}")
                table = gr.Dataframe(
                    value={"headers": [en["col_name"]], "data": [[""]]},
                    interactive=False,
                    wrap=True,
                    label=en["docs_heading"],
                    show_label=False,
                    elem_id="rag-docs",
                    buttons=[],
                )
                docs_status = gr.Markdown("", elem_id="docs-status")
                # Shown by the page script when a chosen file is over the limit (it never leaves the browser).
                gr.HTML('<p id="rag-upload-error" role="alert"></p>', padding=False)
                with gr.Row(visible=key_gate, equal_height=True, elem_id="rag-key-box") as key_box:
                    key_field = gr.Textbox(
                        type="password",
                        label=en["key_label"],
                        info=en["key_info"],
                        scale=4,
                        min_width=200,
                        elem_id="rag-key",
                    )
                    unlock = gr.Button(en["unlock"], scale=1, min_width=100, elem_id="rag-unlock")
                with gr.Column(visible=not key_gate, elem_id="rag-write-controls") as write_controls:
                    upload = gr.File(
                        label=en["upload_label"].format(limit=limit),
                        file_count="multiple",
                        file_types=list(SUPPORTED_SUFFIXES),
                        type="filepath",
                        height=140,
                        elem_id="rag-upload",
                    )
                    replace = gr.Checkbox(False, label=en["replace"], elem_id="rag-replace")
                    with gr.Row(equal_height=False, elem_id="rag-docs-actions"):
                        to_delete = gr.Dropdown(
                            [],
                            value=None,
                            label=en["delete_label"],
                            scale=3,
                            min_width=200,
                            elem_id="rag-delete-choice",
                        )
                        delete = gr.Button(en["delete"], variant="stop", scale=1, min_width=120, elem_id="rag-delete")
                        refresh = gr.Button(en["refresh"], scale=1, min_width=160, elem_id="rag-refresh")
                    with gr.Group(visible=False, elem_id="rag-confirm") as confirm_box:
                        confirm_text = gr.Markdown("")
                        with gr.Row():
                            confirm = gr.Button(en["confirm"], variant="stop", elem_id="rag-confirm-delete")
                            cancel = gr.Button(en["cancel"], elem_id="rag-cancel-delete")

        # Carriers between the page script and Python; in the DOM but never shown.
        cite_key = gr.Textbox(visible="hidden", label="citation key", elem_id="cite-key")
        cite_open = gr.Button("open source", visible="hidden", elem_id="cite-open")
        answer_text = gr.Textbox(visible="hidden", label="answer text", elem_id="answer-text")
        # The upload cookie's value, handed to the page script once the key was checked.
        ui_token = gr.Textbox(visible="hidden", label="upload token", elem_id="ui-token")
        unlocked = gr.State(False)  # per session, held on the server: the key was checked in this session

        # --- chat ---------------------------------------------------------------------------------------------
        def ask(
            question: str, chat: list[dict], language: str, generator: str, k: float, past: list, cited: list
        ) -> Iterator[tuple]:
            """Stream one answer into the chat; the plain-text turn joins the history for follow-ups.
            (The parameter names are those the `/ask` API shows, hence the components they shadow.)"""
            lang, text = _lang(language), (question or "").strip()
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
            while not ready():
                waiting = t(lang, "waiting", status=describe_step(startup, lang))
                yield show(render_answer("", turn, found, lang, pending=waiting))
                startup.done.wait(1.0)
            answer_so_far, final = "", None
            try:
                passages = max(1, min(int(k or settings.k), MAX_K))
                for event in service.ask_stream(text, history=past, k=passages, generator=generator or None):
                    if event.type == "token":
                        answer_so_far += event.text
                    elif event.type == "citations":
                        found.update({c.n: c for c in event.citations})
                    elif event.answer is not None:
                        final = event.answer
                        found.clear()
                        found.update({c.n: c for c in final.citations})
                        answer_so_far = final.answer
                    # Until the answer is final its sentences are being checked against the sources: say so.
                    checking = None if final else t(lang, "checking")
                    yield show(render_answer(answer_so_far, turn, found, lang, final, pending=checking))
            except ServiceBusyError as error:
                yield show(render_error(t(lang, "busy", seconds=error.retry_after)))
                return
            except RequestError as error:  # over the question limit, a generator the operator did not enable
                message = (
                    t(lang, "too_long", size=f"{len(text):,}", limit=f"{settings.max_question_chars:,}")
                    if error.code == "question_too_long"
                    else str(error)
                )
                yield show(render_error(message))
                return
            except Exception as error:
                log.exception("question failed")
                yield show(render_error(t(lang, "error", error=error)))
                return
            past += [{"role": "user", "content": text}, {"role": "assistant", "content": answer_so_far}]
            yield chat, "", plain_answer(answer_so_far, found), past, cited, chat

        private: dict[str, Any] = {"api_visibility": "private"}
        quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
        # The conversation comes from server-side state, never from the page: a client-sent chat could carry
        # file parts naming server paths, which Gradio would copy into its cache and serve.
        ask_inputs = [question, live_chat, language, generator, k, history, citations]
        ask_outputs = [chatbot, question, answer_text, history, citations, live_chat]
        # The one public endpoint: Client(url).predict("question", api_name="/ask") -> (chat, "", answer text).
        submitted = question.submit(ask, ask_inputs, ask_outputs, api_name="ask", concurrency_limit=None)
        clicked = send.click(ask, ask_inputs, ask_outputs, concurrency_limit=None, **private)
        example = chatbot.example_select(_example_text, None, question, **private).then(
            ask, ask_inputs, ask_outputs, concurrency_limit=None, **private
        )
        # Gradio runs the cancellation beside this handler, not before it: the handler waits for it.
        stop.click(_mark_stopped, [live_chat, language], [chatbot], cancels=[submitted, clicked, example], **private)
        copy.click(_copied, [answer_text, language], None, js=JS_COPY, **private)

        def reset(lang: str) -> tuple:
            """A new conversation: follow-ups no longer lean on the previous one."""
            return [], [], [], [], "", render_card(None, _lang(lang)), ""

        reset_outputs = [chatbot, history, citations, live_chat, answer_text, card, cite_key]
        new_chat.click(reset, [language], reset_outputs, **private)
        chatbot.clear(reset, [language], reset_outputs, **private)

        def open_card(key: str, lang: str, cited: list) -> tuple[str, str]:
            """The source card behind a chip `turn:n`; the key is kept so a language switch can redraw it."""
            lang = _lang(lang)
            citation = _find_citation(cited, key)
            if citation is None and key:
                return f'<p class="placeholder">{_esc(t(lang, "card_missing"))}</p>', key
            if citation is None:
                return render_card(None, lang), key
            return render_card(citation, lang, surrounding_text(service, citation), key), key

        cite_open.click(
            open_card,
            [cite_key, language, citations],
            [card, cite_key],
            js=JS_OPEN_CARD,
            **quiet,
        ).then(None, js=JS_FOCUS_CARD)

        # --- documents ----------------------------------------------------------------------------------------
        def listing(lang: str) -> tuple[Any, Any, str]:
            """The documents table, the delete choices and the status line, after any change to the index."""
            lang = _lang(lang)
            records = service.documents()
            return (
                documents_table(records, lang),
                gr.Dropdown(choices=[r.source for r in records], value=None),
                render_status(service, startup, lang),
            )

        def may_write(is_unlocked: bool, request: gr.Request | None) -> bool:
            """Writes need the key: checked in this session, or the whole UI is behind Gradio's login with it."""
            if settings.api_key is None or is_unlocked:
                return True
            return settings.api_key_for_read and request is not None and bool(getattr(request, "username", None))

        def do_unlock(given: str, lang: str) -> tuple:
            """Check the key with the service; the write controls appear only once it matched."""
            lang = _lang(lang)
            if not service.check_key(given or None):
                return False, gr.skip(), gr.skip(), "", "", t(lang, "wrong_key")
            token = upload_token(settings.api_key.get_secret_value()) if settings.api_key else ""
            return True, gr.Row(visible=False), gr.Column(visible=True), "", token, t(lang, "unlocked")

        def add_files(
            files: list[str] | None,
            replace_existing: bool,
            lang: str,
            is_unlocked: bool,
            request: gr.Request,
            progress: gr.Progress = _PROGRESS,
        ) -> tuple:
            lang, lines = _lang(lang), []
            files = files or []
            upload_folder = Path(get_upload_folder()).resolve()
            if not may_write(is_unlocked, request):
                for file in files:
                    discard_upload(Path(file), upload_folder)
                return (None, *listing(lang), t(lang, "key_needed"))
            for i, file in enumerate(files):
                path = Path(file).resolve()
                name = path.name
                progress((i, len(files)), desc=t(lang, "indexing_file", name=name))
                if not path.is_relative_to(upload_folder) or not path.is_file():
                    lines.append(t(lang, "rejected", name=name, reason=t(lang, "not_uploaded")))
                    continue
                try:
                    uploaded = service.add_document(name, path.read_bytes(), replace=bool(replace_existing))
                except (DocumentError, IndexBusyError) as error:
                    if getattr(error, "code", None) == "file_too_large":  # the service's limit, said in `lang`
                        size = _megabytes(path.stat().st_size, lang)
                        lines.append(t(lang, "too_large", name=name, size=size, limit=limit_in(lang)))
                    else:
                        lines.append(t(lang, "rejected", name=name, reason=error))
                    continue
                except Exception as error:  # a broken file must not break the panel
                    log.exception("upload of %s failed", name)
                    lines.append(t(lang, "rejected", name=name, reason=error))
                    continue
                finally:
                    discard_upload(path, upload_folder)
                if uploaded.outcome == "skipped":
                    lines.append(t(lang, "skipped", name=name, reason=uploaded.reason))
                elif uploaded.outcome == "unchanged":
                    lines.append(t(lang, "unchanged", name=name))
                else:
                    chunks = uploaded.record.chunks if uploaded.record else "?"
                    lines.append(t(lang, "indexed", name=name, chunks=chunks))
            return (None, *listing(lang), "\n\n".join(lines))

        def reindex(lang: str, is_unlocked: bool, request: gr.Request, progress: gr.Progress = _PROGRESS) -> tuple:
            lang = _lang(lang)
            if not may_write(is_unlocked, request):
                return (*listing(lang), t(lang, "key_needed"))

            def report_progress(p: Progress) -> None:
                progress((p.files_done, max(p.files_total, 1)), desc=Path(p.current).name or None)

            try:
                report = service.refresh(on_progress=report_progress)
            except IndexBusyError:
                return (*listing(lang), t(lang, "index_busy"))
            lines = [
                t(
                    lang,
                    "refresh_done",
                    added=report.added,
                    updated=report.updated,
                    deleted=report.deleted,
                    unchanged=report.unchanged,
                )
            ]
            lines += [t(lang, "skipped", name=Path(s["path"]).name, reason=s["reason"]) for s in report.skipped]
            return (*listing(lang), "\n\n".join(lines))

        def ask_delete(source: str | None, lang: str) -> tuple:
            lang = _lang(lang)
            if not source:
                return gr.Group(visible=False), "", t(lang, "delete_none")
            return gr.Group(visible=True), t(lang, "confirm_delete", name=source), ""

        def do_delete(source: str | None, lang: str, is_unlocked: bool, request: gr.Request) -> tuple:
            lang = _lang(lang)
            if not may_write(is_unlocked, request):
                return (gr.Group(visible=False), *listing(lang), t(lang, "key_needed"))
            try:
                if not source:
                    raise DocumentError(t(lang, "delete_none"))
                service.delete_document(source)
                message = t(lang, "deleted", name=source)
            except (DocumentError, IndexBusyError) as error:
                message = t(lang, "rejected", name=source or "?", reason=error)
            return (gr.Group(visible=False), *listing(lang), message)

        def limit_in(lang: str) -> str:
            return _megabytes(settings.max_upload_bytes, lang, exact=True)

        listing_outputs = [table, to_delete, status]
        upload.upload(
            add_files, [upload, replace, language, unlocked], [upload, *listing_outputs, docs_status], **private
        )
        refresh.click(reindex, [language, unlocked], [*listing_outputs, docs_status], **private)
        delete.click(ask_delete, [to_delete, language], [confirm_box, confirm_text, docs_status], **private)
        confirm.click(
            do_delete, [to_delete, language, unlocked], [confirm_box, *listing_outputs, docs_status], **private
        )
        unlock_outputs = [unlocked, key_box, write_controls, key_field, ui_token, docs_status]
        for unlocking in (unlock.click, key_field.submit):
            unlocking(do_unlock, [key_field, language], unlock_outputs, **private).then(
                None, [ui_token], None, js=JS_SET_UPLOAD_COOKIE
            )
        cancel.click(lambda: gr.Group(visible=False), None, confirm_box, **private)
        docs_tab.select(listing, [language], listing_outputs, **quiet)

        # --- start-up status ------------------------------------------------------------------------------------
        def on_load(lang: str) -> tuple:
            startup.start()  # a no-op when the API started it (with its own reconcile choice)
            if ready():
                return listing(lang)
            return gr.skip(), gr.skip(), render_status(service, startup, _lang(lang))

        def poll(lang: str) -> tuple:
            """The status each second until everything is ready, then the documents list once, and stop."""
            if not ready():
                return gr.skip(), gr.skip(), render_status(service, startup, _lang(lang)), gr.Timer(active=True)
            return *listing(lang), gr.Timer(active=False)

        demo.load(on_load, [language], listing_outputs, **quiet)
        timer.tick(poll, [language], [*listing_outputs, timer], **quiet)

        # --- language -------------------------------------------------------------------------------------------
        localized: list[tuple[Any, Callable[[str], Any]]] = [
            (header, lambda lang: _header_html(lang)),
            (language, lambda lang: gr.Radio(label=t(lang, "language"))),
            (status, lambda lang: render_status(service, startup, lang)),
            (chat_tab, lambda lang: gr.Tab(label=t(lang, "tab_chat"))),
            (docs_tab, lambda lang: gr.Tab(label=t(lang, "tab_docs"))),
            (chatbot, lambda lang: gr.Chatbot(label=t(lang, "chat_label"), placeholder=t(lang, "chat_placeholder"))),
            (
                question,
                lambda lang: gr.Textbox(label=t(lang, "question_label"), placeholder=t(lang, "question_placeholder")),
            ),
            (send, lambda lang: gr.Button(t(lang, "send"))),
            (stop, lambda lang: gr.Button(t(lang, "stop"))),
            (copy, lambda lang: gr.Button(t(lang, "copy"))),
            (new_chat, lambda lang: gr.Button(t(lang, "new_chat"))),
            (settings_box, lambda lang: gr.Accordion(label=t(lang, "settings"))),
            (generator, lambda lang: gr.Radio(label=t(lang, "generator"), info=t(lang, "generator_info"))),
            (k, lambda lang: gr.Slider(label=t(lang, "k"), info=t(lang, "k_info"))),
            (docs_heading, lambda lang: f"### {t(lang, 'docs_heading')}"),
            (upload, lambda lang: gr.File(label=t(lang, "upload_label", limit=limit_in(lang)))),
            (key_field, lambda lang: gr.Textbox(label=t(lang, "key_label"), info=t(lang, "key_info"))),
            (unlock, lambda lang: gr.Button(t(lang, "unlock"))),
            (replace, lambda lang: gr.Checkbox(label=t(lang, "replace"))),
            (to_delete, lambda lang: gr.Dropdown(label=t(lang, "delete_label"))),
            (delete, lambda lang: gr.Button(t(lang, "delete"))),
            (refresh, lambda lang: gr.Button(t(lang, "refresh"))),
            (confirm, lambda lang: gr.Button(t(lang, "confirm"))),
            (cancel, lambda lang: gr.Button(t(lang, "cancel"))),
        ]

        def apply_language(lang: str, key: str, cited: list) -> list:
            """Every label in `lang`, and the open source card redrawn in it."""
            lang = _lang(lang)
            updates = [make(lang) for _, make in localized]
            table_update = documents_table(service.documents(), lang) if ready() else gr.skip()
            return [*updates, table_update, open_card(key, lang, cited)[0]]

        outputs = [c for c, _ in localized] + [table, card]
        language.change(apply_language, [language, cite_key, citations], outputs, js=JS_DOCUMENT_LANGUAGE, **quiet)
        language.input(None, [language], None, js=JS_SAVE_LANGUAGE)  # only a choice made by the user sticks
        demo.load(None, None, [language], js=JS_ON_LOAD.replace("__UPLOAD__", json.dumps(upload_check)))
    return demo


def _header_html(lang: str) -> str:
    return f"<h1>{_esc(t(lang, 'title'))}</h1><p>{_esc(t(lang, 'subtitle'))}</p>"


def _example_text(selection: gr.SelectData) -> str:
    value = selection.value
    return value.get("text", "") if isinstance(value, dict) else str(value)


def _message_html(message: dict) -> str:
    """The HTML of a chat message as the Chatbot hands it back (a list of text parts in Gradio 6)."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


_PENDING = re.compile(r'<p class="pending"[^>]*>.*?</p>', re.S)


def _mark_stopped(chat: list[dict], lang: str) -> list[dict]:
    """After Stop: the unfinished answer says it was stopped instead of "searching…" forever."""
    time.sleep(STOP_SETTLE_SECONDS)  # let the cancelled stream's last update reach the page first
    chat = list(chat or [])
    if chat and chat[-1].get("role") == "assistant":
        body = _message_html(chat[-1])
        if 'class="meta"' not in body and "notice error" not in body:
            notice = f'<p class="notice stopped" role="status">{_esc(t(_lang(lang), "stopped"))}</p>'
            body = _PENDING.sub("", body).removesuffix("</div>") + notice + "</div>"
            chat[-1] = {"role": "assistant", "content": body}
    return chat


def _copied(text: str, lang: str) -> None:
    gr.Info(t(_lang(lang), "copied" if text else "nothing_to_copy"))


def _find_citation(cited: list, key: str) -> Citation | None:
    try:
        turn, n = (int(part) for part in (key or "").split(":"))
        return cited[turn].get(n)
    except (ValueError, IndexError, AttributeError):
        return None


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
