"""The doors of a running server, tried as an outsider would: a real `rag serve` (UI mounted, as documented)
on a loopback port, its Gradio events called over plain HTTP, and a real chromium for what a person does.

- No server file is readable through the UI: FileData payloads naming server paths, in every input of every
  event, copy nothing and serve nothing; Gradio's file route refuses paths outside its upload cache.
- One key for every write: the UI's upload route, upload, re-index and delete refuse without it; the key
  field unlocks them; with RAG_API_KEY_FOR_READ=true the whole UI needs it.
- One limit per input: the question limit on every route; the upload limit the same in the API and the UI.
- Faults heal: a server killed mid-upload, restarted, serves a corpus and an index that agree.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness
import httpx
import pytest
from gradio_wire import GradioWire, file_data
from harness import REPO, ask_in_page

from rag.settings import Settings

SECRET = "TOPSECRET-7f3a9c-never-served"
NOTE = "Le projet Zéphyr a été lancé à Lyon le 3 mars 2031 par l'équipe Orion.\n"
LONG_QUESTION = "Pourquoi ? " * 10_000  # 110,000 characters


@dataclass
class Served:
    url: str
    key: str
    root: Path
    corpus: Path
    data: Path
    uploads: Path  # Gradio's upload folder (GRADIO_TEMP_DIR)
    secret: Path  # a file outside the corpus and data folders
    child: harness.ChildServer

    def api(self, *, key: bool = True, timeout: float = 120) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def documents(self) -> set[str]:
        with self.api() as client:
            return {d["source"] for d in client.get("/v1/documents").json()}


def serve(root: Path, models_dir: Path, *, ui: bool = True, **settings: str) -> Served:
    """`rag serve` in `root` with its own corpus, data and upload folders and an API key; once /readyz is 200."""
    corpus, data, uploads = root / "corpus", root / "data", root / "gradio-uploads"
    if not corpus.exists():
        corpus.mkdir(parents=True)
        data.mkdir()
        (data / "models").symlink_to(models_dir, target_is_directory=True)
        (corpus / "zephyr.txt").write_text(NOTE, encoding="utf-8")
    secret = root / "outside" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(SECRET + "\n", encoding="utf-8")
    key = settings.pop("key", f"key-{uuid.uuid4().hex}")
    env = {
        "RAG_DATA_DIR": str(data),
        "RAG_CORPUS_DIR": str(corpus),
        "RAG_GENERATOR": "extractive",
        "RAG_API_KEY": key,
        "GRADIO_TEMP_DIR": str(uploads),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONPATH": str(REPO),
    } | {f"RAG_{name.upper()}": value for name, value in settings.items()}
    try:
        child = harness.start_rag_serve(root, env, options=() if ui else ("--no-ui",), timeout=300)
    except harness.ServerNotReady as exc:
        pytest.fail(str(exc))
    return Served(child.url, key, root, corpus, data, uploads, secret, child)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Served]:
    server = serve(tmp_path_factory.mktemp("doors"), models_dir)
    yield server
    server.child.stop()


def _files_holding(folder: Path, needle: str) -> list[Path]:
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


# --- no server file readable ---------------------------------------------------------------------------------
def test_file_paths_sent_to_any_ui_event_copy_and_serve_nothing(served: Served) -> None:
    wire = GradioWire(served.url)
    config = wire.config()
    article = served.corpus / "zephyr.txt"
    payloads = [file_data(str(served.secret)), file_data("/etc/passwd"), file_data(str(article))]
    for index, dependency in enumerate(config["dependencies"]):
        fn_index = dependency.get("id", index)
        for payload in payloads:
            # Every input slot gets the payload, bare, in a list, and as a chat message's file part.
            for shape in (payload, [payload], [{"role": "user", "content": [{"type": "file", "file": payload}]}]):
                result = wire.call(fn_index, [shape] * len(dependency.get("inputs", [])), timeout=60)
                assert SECRET not in result.raw and "root:x:0:0" not in result.raw, (dependency, result.raw[-500:])
    assert _files_holding(served.uploads, SECRET) == []
    assert _files_holding(served.corpus, SECRET) == []
    assert "secret.txt" not in served.documents()
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for path in (served.secret, Path("/etc/passwd"), article, served.data / "chroma" / "chroma.sqlite3"):
            response = client.get(f"/gradio_api/file={path}")
            assert response.status_code in (403, 404), (path, response.status_code)
            assert SECRET not in response.text and "root:x:0:0" not in response.text


def test_the_chat_history_comes_from_the_server_not_the_page(served: Served) -> None:
    """The public /ask event takes no conversation from the client: a forged history is not even an input."""
    from gradio_client import Client

    client = Client(served.url + "/", verbose=False)
    chat, question_box, answer = client.predict("Où le projet Zéphyr a-t-il été lancé ?", api_name="/ask")
    assert "Lyon" in answer and question_box == ""
    assert all(isinstance(message["content"], str | list) for message in chat)
    ask = GradioWire(served.url).dependency("rag-question", "submit")
    chatbot = GradioWire(served.url).component_id("rag-chat")
    assert chatbot not in ask["inputs"]


# --- one key for every write --------------------------------------------------------------------------------------
def _upload_through_gradio(served: Served, path: Path, *, bearer: bool) -> httpx.Response:
    headers = {"Authorization": f"Bearer {served.key}"} if bearer else {}
    with httpx.Client(base_url=served.url, headers=headers, timeout=60) as client:
        return client.post("/gradio_api/upload", files={"files": (path.name, path.read_bytes(), "text/plain")})


def test_ui_writes_need_the_key(served: Served, tmp_path: Path) -> None:
    note = tmp_path / "sans_cle.txt"
    note.write_text("Le lac de Vassivière est le sujet de cette note sans clé.\n", encoding="utf-8")
    refused = _upload_through_gradio(served, note, bearer=False)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"

    stored = _upload_through_gradio(served, note, bearer=True)  # an API client holding the key may store it
    assert stored.status_code == 200, stored.text
    uploaded_path = stored.json()[0]
    before = served.documents()
    (served.corpus / "dropped_on_disk.txt").write_text("Une note posée à la main dans le dossier.\n")

    wire = GradioWire(served.url)
    add = wire.dependency("rag-upload", "upload")["fn_index"]
    reindex = wire.dependency("rag-refresh", "click")["fn_index"]
    delete = wire.dependency("rag-confirm-delete", "click")["fn_index"]
    unlock = wire.dependency("rag-unlock", "click")["fn_index"]
    for fn_index, data in [
        (add, [[file_data(uploaded_path)], True, "en", None]),
        (reindex, ["en", None]),
        (delete, ["zephyr.txt", "en", None]),
    ]:
        result = wire.call(fn_index, data)
        assert "Enter the key first" in result.raw, result.raw[-800:]
    assert wire.call(unlock, ["not-the-key", "en"]).raw.count("Wrong key") >= 1
    assert "Enter the key first" in wire.call(delete, ["zephyr.txt", "en", None]).raw
    assert served.documents() == before and (served.corpus / "zephyr.txt").exists()
    assert not (served.corpus / "sans_cle.txt").exists()
    (served.corpus / "dropped_on_disk.txt").unlink()

    # The key, checked once in this session, unlocks the same events.
    unlocked = wire.call(unlock, [served.key, "en"])
    assert "Unlocked" in unlocked.raw and served.key not in unlocked.raw
    stored = _upload_through_gradio(served, note, bearer=True)
    assert "indexed" in wire.call(add, [[file_data(stored.json()[0])], False, "en", None]).raw
    assert "sans_cle.txt" in served.documents()
    assert not Path(stored.json()[0]).exists(), "the stored upload is removed once indexed"
    assert "deleted" in wire.call(delete, ["sans_cle.txt", "en", None]).raw
    assert served.documents() == before


def test_questions_over_the_limit_are_refused_fast_on_every_route(served: Served) -> None:
    with served.api(key=False, timeout=30) as client:
        for path, body in [
            ("/v1/ask", {"question": LONG_QUESTION}),
            ("/v1/ask/stream", {"question": LONG_QUESTION}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG_QUESTION}]}),
            ("/v1/chat/completions", {"stream": True, "messages": [{"role": "user", "content": LONG_QUESTION}]}),
        ]:
            started = time.monotonic()
            response = client.post(path, json=body)
            assert response.status_code == 413, (path, response.text[:300])
            assert "Question too long" in response.json()["error"]["message"]
            assert time.monotonic() - started < 5
    wire = GradioWire(served.url)
    ask = wire.dependency("rag-question", "submit")["fn_index"]
    started = time.monotonic()
    result = wire.call(ask, [LONG_QUESTION, None, "en", "extractive", 5, None, None])
    assert "Question too long" in result.raw and time.monotonic() - started < 10


def test_unknown_api_paths_and_status_show_no_internals(served: Served) -> None:
    with served.api(key=False) as client:
        missing = client.get("/v1/no-such-thing")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
        status = client.get("/v1/index/status").text
        for private in (str(served.root), str(served.corpus), str(served.data)):
            assert private not in status


def test_uploads_get_one_limit_and_one_message(served: Served, tmp_path: Path) -> None:
    # The server runs with the default 20 MiB limit: 25 MB is refused by the API with JSON, by the UI's route too.
    big = tmp_path / "gros.txt"
    big.write_bytes(b"a" * (25 * 1024 * 1024))
    with served.api() as client:
        response = client.post("/v1/documents", files={"files": (big.name, big.read_bytes(), "text/plain")})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert _upload_through_gradio(served, big, bearer=True).status_code == 413


# --- in a browser -------------------------------------------------------------------------------------------------
@pytest.mark.browser
def test_browser_unlocks_uploads_5mb_and_is_told_the_limit(served: Served, browser, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    page = context.new_page()
    page.goto(served.url + "/")
    page.locator("#rag-status .status:visible").filter(has_text="✓").wait_for(timeout=240_000)
    page.get_by_role("tab", name="Documents").click()
    assert not page.locator("#rag-upload").is_visible()  # hidden until the key was given
    page.locator("#rag-key input").fill("pas-la-cle")
    page.locator("#rag-unlock").click()
    page.locator("#docs-status").get_by_text("Clé incorrecte").wait_for(timeout=30_000)
    page.locator("#rag-key input").fill(served.key)
    page.locator("#rag-unlock").click()
    page.locator("#rag-upload").wait_for(state="visible", timeout=30_000)

    # 5 MB: one fact, then filler the chunker stores once (repeated sentences are not re-embedded).
    fact = "Le phare de Kermorvan a été automatisé en 1978 par les Phares et Balises.\n\n"
    filler = "Cette ligne de remplissage ne dit rien d'utile sur le sujet.\n"
    five = tmp_path / "phare_kermorvan.txt"
    five.write_text(fact + filler * (5 * 1024 * 1024 // len(filler)), encoding="utf-8")
    assert five.stat().st_size > 5_000_000
    page.locator("#rag-upload input[type=file]").set_input_files([str(five)])
    page.locator("#docs-status").get_by_text("phare_kermorvan.txt : indexé").wait_for(timeout=300_000)

    big = tmp_path / "trop_gros.txt"
    big.write_bytes(b"b" * (25 * 1024 * 1024))
    page.locator("#rag-upload input[type=file]").set_input_files([str(big)])
    page.locator("#rag-upload-error").get_by_text("trop_gros.txt : trop volumineux : 25,0 Mo, limite 20 Mo").wait_for(
        timeout=30_000
    )
    assert not list(served.uploads.rglob("trop_gros.txt")), "an oversized file never leaves the browser"

    page.get_by_role("tab", name="Discussion").click()
    answer = ask_in_page(page, "Quand le phare de Kermorvan a-t-il été automatisé ?")
    assert "1978" in answer.inner_text() and answer.locator("button.cite-chip").count() >= 1
    with served.api() as client:
        assert client.delete("/v1/documents/phare_kermorvan.txt").status_code == 200
    context.close()


XSS_HTML = """<!doctype html><html><head>
<title>&lt;img src=x onerror="window.__xss='title'"&gt; Rapport
&lt;script&gt;window.__xss='title2'&lt;/script&gt;</title>
</head><body><h1>Rapport Brisevent</h1>
<p>Le projet Brisevent &lt;script&gt;window.__xss='text'&lt;/script&gt; a été lancé à Grenoble en 2029
&lt;img src=x onerror="window.__xss='img'"&gt; par la société Altivent.</p>
</body></html>
"""


@pytest.mark.browser
def test_markup_in_documents_is_shown_as_text(served: Served, browser) -> None:
    name = "brisevent <img src=x onerror=alert(1)>.html"
    with served.api() as client:
        response = client.post("/v1/documents", files={"files": (name, XSS_HTML.encode(), "text/html")})
        assert response.status_code == 200, response.text
        source = response.json()["files"][0]["source"]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    page = context.new_page()
    page.goto(served.url + "/")
    page.locator("#rag-status .status:visible").filter(has_text="✓").wait_for(timeout=240_000)
    answer = ask_in_page(page, "Où le projet Brisevent a-t-il été lancé ?")
    assert "Grenoble" in answer.inner_text()
    answer.locator("button.cite-chip").first.click()
    card = page.locator("#source-card .source-card")
    card.wait_for(timeout=30_000)
    card.get_by_text("Afficher plus de contexte").click()
    page.get_by_role("tab", name="Documents").click()
    page.locator("#rag-docs [data-testid^='cell-']").filter(has_text="brisevent").first.wait_for(timeout=30_000)
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("#source-card img, #rag-chat img[src='x']").count() == 0
    with served.api() as client:
        assert client.delete(f"/v1/documents/{source}").status_code == 200
    context.close()


# --- the whole UI behind the key ---------------------------------------------------------------------------------
def test_key_for_read_puts_the_whole_ui_behind_a_login(tmp_path: Path, models_dir: Path) -> None:
    server = serve(tmp_path, models_dir, api_key_for_read="true")
    try:
        wire = GradioWire(server.url)
        with wire.client() as client:
            assert client.get("/config").status_code == 401
            joined = client.post("/gradio_api/queue/join", json={"data": ["Zéphyr ?"], "fn_index": 0})
            assert joined.status_code == 401
            assert client.post("/login", data={"username": "x", "password": "wrong"}).status_code == 400
            logged = client.post("/login", data={"username": "anyone", "password": server.key})
            assert logged.status_code == 200, logged.text
            wire.cookies = dict(client.cookies)
        ask = wire.dependency("rag-question", "submit")["fn_index"]
        result = wire.call(ask, ["Où le projet Zéphyr a-t-il été lancé ?", None, "en", "extractive", 5, None, None])
        assert "Lyon" in result.raw
    finally:
        server.child.stop()


# --- faults that heal -------------------------------------------------------------------------------------------
def _indexed_hash(server: Served, source: str, embedder) -> str | None:
    """The content hash the index holds for `source` (read with the server stopped)."""
    from rag.store import open_chroma_store

    settings = Settings(_env_file=None, data_dir=server.data, corpus_dir=server.corpus)
    record = open_chroma_store(settings, embedder.model_name, embedder.dimension).documents().get(source)
    return record.content_hash if record else None


def test_a_server_killed_mid_upload_heals_on_restart(tmp_path: Path, models_dir: Path, embedder) -> None:
    first = serve(tmp_path, models_dir, ui=False)
    old = "Le code du coffre de la station Borée est ALPHA-17.\n"
    new = "Le code du coffre de la station Borée a été changé : il est désormais OMEGA-42, depuis juin.\n"
    with first.api() as client:
        assert client.post("/v1/documents", files={"files": ("coffre.txt", old.encode(), "text/plain")}).is_success

    def replace() -> None:
        try:
            with first.api(timeout=30) as client:
                client.post("/v1/documents", params={"replace": "true"}, files={"files": ("coffre.txt", new.encode())})
        except httpx.HTTPError:
            pass  # the server is killed under it

    sender = threading.Thread(target=replace)
    sender.start()
    time.sleep(0.15)
    first.child.process.kill()  # SIGKILL: no clean-up of any kind
    first.child.process.wait()
    sender.join()
    # While it was down: a file arrived, and a crashed upload left its staged copy.
    (first.corpus / "nouveau.txt").write_text("La station Borée compte sept chercheurs en hiver.\n")
    (first.corpus / ".fantome.txt.upload").write_text("jamais fini")

    second = serve(tmp_path, models_dir, ui=False)
    try:
        on_disk = (second.corpus / "coffre.txt").read_text(encoding="utf-8")
        assert on_disk in (old, new)
        assert {"coffre.txt", "nouveau.txt", "zephyr.txt"} <= second.documents()
        assert not (second.corpus / ".fantome.txt.upload").exists()
        with second.api() as client:
            answer = client.post("/v1/ask", json={"question": "Quel est le code du coffre de la station Borée ?"})
        cited = " ".join(c["text"] for c in answer.json()["citations"])
        current, stale = ("OMEGA-42", "ALPHA-17") if on_disk == new else ("ALPHA-17", "OMEGA-42")
        assert current in cited and stale not in answer.text, answer.text
    finally:
        second.child.stop()
    assert _indexed_hash(second, "coffre.txt", embedder) == hashlib.sha256(on_disk.encode()).hexdigest()
