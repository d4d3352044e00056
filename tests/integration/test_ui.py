"""The chat web UI: its rendering helpers (fast), then a real chromium (`browser` marker): ask, open a
citation, follow up, upload, delete; the mobile layout; the `/ask` endpoint through gradio_client; a 5 MB
upload, and the upload limit the same as the API's.

The server runs in a subprocess on a fresh data dir (sharing the materialised models): its first page load
indexes the corpus, which also exercises the first-start progress status. Screenshots land in docs/.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from harness import ANSWER_TIMEOUT_MS, CHROMIUM, REPO, ask_in_page

from rag.schema import Answer, Citation, Support, UnsupportedSentence
from ui.i18n import STRINGS
from ui.render import mark_stopped, render_answer, render_card

DOCS = REPO / "docs"
QUESTION_FR = "Pourquoi l'Italie a-t-elle interdit DeepSeek ?"
NOTE_NAME = "note_zorblax.txt"
NOTE_TEXT = (
    "Le zorblax est un fruit fictif à la peau violette.\n"
    "Le zorblax est cultivé exclusivement sur l'île de Quenntar, dans des vergers en terrasses.\n"
    "La récolte du zorblax a lieu chaque année au mois de brumaire.\n"
)
NOTE_QUESTION = "Où le zorblax est-il cultivé ?"


# --- rendering, without a browser --------------------------------------------------------------------------
DOCUMENT = (
    "Premier paragraphe sur le contexte.\n"
    "Deuxième paragraphe : l'Italie a interdit DeepSeek le 30 janvier. Suite.\n"
    "Troisième."
)


def _citation(n: int = 1) -> Citation:
    start, end = 36, DOCUMENT.index("\nTroisième")
    quote = "l'Italie a interdit DeepSeek le 30 janvier."
    quote_start = DOCUMENT.index(quote)
    return Citation(
        n=n,
        source="article.txt",
        title="Article <b>",
        chunk_id="c1",
        start=start,
        end=end,
        text=DOCUMENT[start:end],
        quote=quote,
        quote_start=quote_start,
        quote_end=quote_start + len(quote),
    )


def test_strings_have_the_same_keys_and_fields_in_both_languages() -> None:
    import string

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    assert STRINGS["en"].keys() == STRINGS["fr"].keys()
    for key, text in STRINGS["en"].items():
        assert fields(text) == fields(STRINGS["fr"][key]), key


def test_answer_markers_become_chips_and_notices_show() -> None:
    answer = Answer(
        answer="Interdit le 30 janvier. [1] Une phrase inventée <script>. [2]",
        citations=[_citation()],
        unsupported=[UnsupportedSentence(text="Une phrase inventée <script>.")],
        fallback_reason="local model unavailable",
        generator="extractive",
    )
    html = render_answer(answer.answer, 3, {1: _citation()}, "fr", answer)
    assert 'class="cite-chip cite-key-3-1"' in html  # clickable: its citation is known
    assert '<span class="cite-chip pending" aria-hidden="true">2</span>' in html  # not (yet) known
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<span class="unsupported"' in html and "unsupported-note" in html
    assert "Réponse produite par le générateur extractif de secours" in html
    refused = Answer(answer="Les documents ne contiennent pas la réponse.", refused=True)
    assert 'class="refused"' in render_answer(refused.answer, 0, {}, "fr", refused)


def test_withheld_sentences_are_collapsed_never_shown_as_answer_text() -> None:
    invented = UnsupportedSentence(text="L'autorité a infligé une amende de 15 millions d'euros.")
    refused = Answer(answer="Les documents ne contiennent pas la réponse.", refused=True, unsupported=[invented])
    html = render_answer(refused.answer, 0, {}, "fr", refused)
    shown, _, collapsed = html.partition("<details")
    assert "15 millions" not in shown and 'class="refused"' in shown
    assert "1 phrase(s) retenue(s)" in collapsed and "15 millions" in collapsed
    assert "aucun passage ne le dit" in collapsed  # why it was withheld
    contradicted = UnsupportedSentence(
        text="Autre.", verdict="contradicted", reason="the source says the opposite (negation)"
    )
    answer = Answer(answer="Interdit le 30 janvier. [1]", citations=[_citation()], unsupported=[invented, contradicted])
    html = render_answer(answer.answer, 1, {1: _citation()}, "en", answer)
    shown, _, collapsed = html.partition("<details")
    assert "15 millions" not in shown and "unsupported-note" not in html
    assert "2 sentence(s) withheld" in collapsed and "a source says otherwise" in collapsed


def test_source_card_shows_how_the_quote_supports_the_sentence() -> None:
    assert "supported: the quote states it" in render_card(_citation(), "en")
    partly = _citation().model_copy(update={"support": Support(verdict="partly", missing=["2025"])})
    assert "en partie : la citation ne donne pas 2025" in render_card(partly, "fr")
    differs = _citation().model_copy(update={"support": Support(verdict="differs", reason="gives 12")})
    assert "differs: this source says otherwise" in render_card(differs, "en")


def test_source_card_marks_the_quote_and_offers_more_context() -> None:
    html = render_card(_citation(), "en", (DOCUMENT, 0), "3:1")
    assert "<mark>l'Italie a interdit DeepSeek le 30 janvier.</mark>" in html
    assert "Article &lt;b&gt;" in html and "article.txt" in html
    assert "<details><summary>Show more context</summary>" in html
    assert "Premier paragraphe" in html.split("<details>")[1]  # the neighbouring text, under the control


def test_stop_marks_an_unfinished_answer_only() -> None:
    streaming = '<div class="rag-answer"><p>Le début</p><p class="pending" role="status">Recherche…</p></div>'
    # As the Chatbot hands messages back in Gradio 6: content as a list of parts.
    unfinished = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "text", "text": streaming}]},
    ]
    marked = mark_stopped(unfinished, "fr")[-1]["content"]
    assert "Le début" in marked and "Arrêté." in marked and "Recherche" not in marked
    finished = [{"role": "assistant", "content": '<div class="rag-answer"><p>Fin</p><p class="meta">x</p></div>'}]
    assert mark_stopped(finished, "fr") == finished


# --- in a browser --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("ui")
    data, corpus = root / "data", root / "corpus"
    data.mkdir()
    corpus.mkdir()
    shutil.copy(REPO / "corpus" / "deepseek_article_fr.txt", corpus)
    (data / "models").symlink_to(models_dir, target_is_directory=True)
    env = harness.child_env(
        {
            "RAG_DATA_DIR": str(data),
            "RAG_CORPUS_DIR": str(corpus),
            "RAG_GENERATOR": "extractive",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        },
        drop_prefixes=("RAG_", "GRADIO_"),
    )
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "rag.api:create_app_from_settings",
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
    ]
    try:
        child = harness.start_server(
            lambda port: [*command, "--port", str(port)],
            ready_path="/",
            log_path=root / "server.log",
            cwd=REPO,
            env=env,
            timeout=120,
        )
    except harness.ServerNotReady as exc:
        raise RuntimeError(f"the UI server did not start: {exc}") from exc
    try:
        yield child.url + "/"
    finally:
        child.stop()


def _cell(table, text: str):
    """A visible cell of the documents table (the Dataframe also keeps hidden copies for measuring)."""
    return table.locator("[data-testid^='cell-']").filter(has_text=text).first


def _wait_ready(page) -> None:
    page.locator("#rag-status .status:visible").filter(has_text="✓").wait_for(timeout=240_000)


@pytest.mark.browser
def test_chat_citations_follow_up_upload_delete(server: str, browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    page = context.new_page()
    page.goto(server)
    # The interface follows the browser language, and the page shows progress rather than a blank wait.
    page.get_by_role("heading", name="Interrogez vos documents").wait_for(timeout=60_000)
    # The status line comes in both languages and the page shows its own, so a status tick answered after the
    # switch to French (one painted English in CI before) cannot show English.
    expect(page.locator("#rag-status .status:visible")).to_have_text(
        re.compile(r"^(⏳ Préparation|⏳ Démarrage|✓)"), timeout=2_000
    )
    expect(page.locator('#rag-status .status[lang="en"]')).to_be_hidden()
    _wait_ready(page)
    assert "1 document" in page.locator("#rag-status").inner_text()

    # A French question: streamed answer with citation chips; a chip opens its source card.
    answer = ask_in_page(page, QUESTION_FR)
    assert "Italie" in answer.inner_text()
    chips = answer.locator("button.cite-chip")
    assert chips.count() >= 1
    chips.first.click()
    card = page.locator("#source-card .source-card")
    card.wait_for(timeout=30_000)
    quote = card.locator("blockquote mark").inner_text()
    assert "Italie" in quote
    assert quote.split()[0] in answer.inner_text()
    assert "deepseek_article_fr.txt" in card.inner_text()
    card.get_by_text("Afficher plus de contexte").click()
    assert card.locator("details .context mark").is_visible()
    assert len(card.locator("details .context").inner_text()) > len(card.locator("blockquote").inner_text())
    page.screenshot(path=str(DOCS / "screenshot-chat.png"))

    # A follow-up leans on the previous turn.
    follow_up = ask_in_page(page, "Et quand ?")
    assert "30 janvier" in follow_up.inner_text()
    assert follow_up.locator("button.cite-chip").count() >= 1

    # A question the documents cannot answer is refused, visibly.
    refusal = ask_in_page(page, "Quelle est la recette de la tarte tatin ?")
    assert refusal.locator(".refused").is_visible()
    assert "Absent des documents" in refusal.inner_text()

    # Documents panel: upload a new document (and a corrupt one, which breaks nothing).
    page.get_by_role("tab", name="Documents").click()
    table = page.locator("#rag-docs")
    _cell(table, "deepseek_article_fr.txt").wait_for(timeout=30_000)
    note, broken = tmp_path / NOTE_NAME, tmp_path / "broken.pdf"
    note.write_text(NOTE_TEXT, encoding="utf-8")
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    page.locator("#rag-upload input[type=file]").set_input_files([str(note), str(broken)])
    status = page.locator("#docs-status")
    status.get_by_text(f"{NOTE_NAME} : indexé").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert "broken.pdf : non indexé" in status.inner_text() or "broken.pdf : refusé" in status.inner_text()
    _cell(table, NOTE_NAME).wait_for(timeout=10_000)
    page.screenshot(path=str(DOCS / "screenshot-documents.png"))

    # The new document answers questions and is cited.
    page.get_by_role("tab", name="Discussion").click()
    page.locator("#rag-new").click()
    expect(page.locator("#rag-chat .rag-answer")).to_have_count(0)
    answer = ask_in_page(page, NOTE_QUESTION)
    assert "Quenntar" in answer.inner_text()
    answer.locator("button.cite-chip").first.click()
    page.locator("#source-card .source-card").get_by_text(NOTE_NAME).wait_for(timeout=30_000)

    # Delete it (with a confirmation) and see it gone.
    page.get_by_role("tab", name="Documents").click()
    page.locator("#rag-delete-choice input").click()
    page.get_by_role("option", name=NOTE_NAME).click()
    page.locator("#rag-delete").click()
    page.locator("#rag-confirm").get_by_text(NOTE_NAME).wait_for(timeout=10_000)
    page.locator("#rag-confirm-delete").click()
    status.get_by_text(f"{NOTE_NAME} supprimé").wait_for(timeout=ANSWER_TIMEOUT_MS)
    _cell(table, NOTE_NAME).wait_for(state="detached", timeout=10_000)
    assert _cell(table, "deepseek_article_fr.txt").is_visible()

    # The visible switch changes the interface language.
    page.locator("#lang-switch").get_by_text("English").click()
    page.get_by_role("tab", name="Chat").wait_for(timeout=10_000)
    assert page.locator("#rag-send").inner_text().strip() == "Send"
    context.close()


PDF_NAME = "monnaies_fictives.pdf"
PDF_PAGES = [  # Helvetica without an encoding table: ASCII only
    ["Fictional coins: an introduction.", "This document lists coins that do not exist."],
    ["Part two.", "The vortiban is a fictional coin struck in Quimperle since 1852."],
]


SETTLED_PAGE_VIEW = """async () => {
    const find = () => ['img', '.quote-box'].map((s) => document.querySelector('#source-card .page-view ' + s));
    await find()[0].decode();
    const rects = () => find().map((e) => {
        const r = e.getBoundingClientRect();
        return {x: r.x, y: r.y, width: r.width, height: r.height};
    });
    let last = '';
    for (let tries = 0; tries < 100; tries++) {
        await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
        const now = JSON.stringify(rects());
        if (now === last) break;
        last = now;
    }
    return rects();
}"""


@pytest.mark.browser
def test_a_pdf_citation_shows_its_page_with_the_quote_boxed(server: str, browser, tmp_path: Path) -> None:
    import httpx
    from samples import text_pdf

    context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="fr-FR")
    page = context.new_page()
    page.goto(server)
    _wait_ready(page)
    page.get_by_role("tab", name="Documents").click()
    pdf = tmp_path / PDF_NAME
    pdf.write_bytes(text_pdf(PDF_PAGES))
    page.locator("#rag-upload input[type=file]").set_input_files([str(pdf)])
    page.locator("#docs-status").get_by_text(f"{PDF_NAME} : indexé").wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.get_by_role("tab", name="Discussion").click()
    answer = ask_in_page(page, "Où le vortiban est-il frappé ?")
    assert "Quimperle" in answer.inner_text()
    answer.locator("button.cite-chip").first.click()
    card = page.locator("#source-card .source-card")
    card.get_by_text(PDF_NAME).wait_for(timeout=30_000)
    card.locator(".page-view .quote-box").first.wait_for(timeout=30_000)
    # Both rectangles read in one script, found afresh each frame, once the image is decoded and the layout has
    # held still for two frames (read one after the other, a settling card gave them from different layouts).
    shown, box = page.evaluate(SETTLED_PAGE_VIEW)
    assert box["width"] > 50
    # The box lies on the page image, in its upper part, where the second page draws its lines.
    assert shown["x"] <= box["x"] and box["x"] + box["width"] <= shown["x"] + shown["width"]
    assert shown["y"] <= box["y"] <= shown["y"] + shown["height"] / 3
    assert abs((box["x"] - shown["x"]) / shown["width"] - 40 / 600) < 0.02  # the line starts at x=40 of 600 pt
    link = card.locator(".page-view figcaption a")
    assert link.get_attribute("href").endswith(f"/v1/files/{PDF_NAME}#page=2")
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(DOCS / "screenshot-pdf-citation.png"))
    original = httpx.get(server.rstrip("/") + f"/v1/files/{PDF_NAME}", timeout=30)
    assert original.status_code == 200 and original.content == pdf.read_bytes()
    assert httpx.delete(server.rstrip("/") + f"/v1/documents/{PDF_NAME}", timeout=60).status_code == 200
    context.close()


@pytest.mark.browser
def test_mobile_layout_and_accessibility(server: str, browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    page = context.new_page()
    page.goto(server)
    page.get_by_role("heading", name="Ask your documents").wait_for(timeout=60_000)
    _wait_ready(page)
    # Every control has a name a screen reader can announce.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, input, textarea, select, [role=tab]')]
            .filter((e) => e.offsetParent !== null && e.type !== 'file')
            .filter((e) => !(e.getAttribute('aria-label') || e.labels?.length || e.closest('label')
                             || e.getAttribute('title') || e.textContent.trim()))
            .map((e) => e.outerHTML.slice(0, 120))"""
    )
    assert unnamed == []
    question = page.get_by_label("Your question")
    question.focus()
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") != "none"

    answer = ask_in_page(page, QUESTION_FR)
    assert answer.locator("button.cite-chip").count() >= 1, answer.inner_text()
    answer.locator("button.cite-chip").first.focus()
    page.keyboard.press("Enter")  # chips are buttons: the keyboard opens them too
    page.locator("#source-card blockquote mark").wait_for(timeout=30_000)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(DOCS / "screenshot-mobile.png"), full_page=True)
    page.locator("#source-card .back").click()  # on a phone the card sits below the chat: a way back
    assert page.evaluate("() => document.activeElement.classList.contains('cite-chip')")
    context.close()


@pytest.mark.browser
def test_gradio_client_ask(server: str) -> None:
    from gradio_client import Client

    client = Client(server, verbose=False)
    chat, question_box, answer = client.predict(QUESTION_FR, api_name="/ask")
    assert question_box == ""
    assert "[1]" in answer and "deepseek_article_fr.txt" in answer
    assert chat[-1]["role"] == "assistant"


@pytest.mark.browser
def test_upload_of_5mb_works_and_one_byte_over_the_limit_is_refused_as_by_the_api(
    server: str, browser, tmp_path: Path
) -> None:
    import httpx

    from rag.settings import Settings

    limit = Settings.model_fields["max_upload_bytes"].default  # the server runs with the default limit
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.goto(server)
    _wait_ready(page)
    page.get_by_role("tab", name="Documents").click()
    table, status = page.locator("#rag-docs"), page.locator("#docs-status")

    # 5 MB: one fact, then one line many times over (the chunker does not embed a repeated passage again).
    manual = tmp_path / "valve_manual.txt"
    padding = "This padding line says nothing about valves at all.\n" * (5 * 1024 * 1024 // 52 + 1)
    manual.write_text("The Velmora valve must be greased every 400 hours.\n\n" + padding, encoding="utf-8")
    assert manual.stat().st_size > 5 * 1024 * 1024
    page.locator("#rag-upload input[type=file]").set_input_files([str(manual)])
    status.get_by_text(f"{manual.name}: indexed").wait_for(timeout=300_000)
    _cell(table, manual.name).wait_for(timeout=10_000)

    # One byte over: the API refuses it (413), the page refuses it before sending, in the API's words.
    over = tmp_path / "one_byte_over.txt"
    over.write_bytes(b"x" * (limit + 1))
    with httpx.Client(base_url=server, timeout=120) as api:
        refused = api.post("/v1/documents", files={"files": (over.name, over.read_bytes(), "text/plain")})
        assert refused.status_code == 413, refused.text
        said = refused.json()["error"]["message"]
        assert said == f"too large: {(limit + 1) / 2**20:.1f} MB, limit {limit // 2**20} MB"
        page.locator("#rag-upload input[type=file]").set_input_files([str(over)])
        page.locator("#rag-upload-error").get_by_text(f"{over.name}: {said}", exact=True).wait_for(timeout=30_000)
        assert over.name not in status.inner_text() and over.name not in table.inner_text()
        assert over.name not in {d["source"] for d in api.get("/v1/documents").json()}
        assert api.delete(f"/v1/documents/{manual.name}").status_code == 200
    context.close()
