"""The HTTP API, end to end: a real uvicorn server (`rag serve`) in a subprocess on a loopback port, driven
with httpx and the official `openai` client. One server per module (starting one loads the e5 model and
indexes the article); the core tests (ask, upload/ask/delete) run again against a Chroma server.

The queue-full case (503) and the UI mount hook are tested in-process, where a blocking fake model and a
fake UI module are easy to plug in.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest
from filelock import FileLock
from harness import ChildServer
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from rag.api import create_app, installed_front_ends
from rag.schema import Answer
from rag.service import RagService

REPO = Path(__file__).resolve().parents[2]
ARTICLE = REPO / "corpus" / "deepseek_article_fr.txt"
MAX_UPLOAD = 200_000
LAUNCH_QUESTION = "Quand DeepSeek a-t-il été lancé ?"
ZEPHYR_TEXT = (
    "Le projet Zéphyr a été lancé à Lyon le 3 mars 2031 par l'équipe Orion. "
    "Zéphyr est un planeur solaire expérimental conçu pour cartographier les glaciers des Alpes.\n"
)
ZEPHYR_QUESTION = "Où et quand le projet Zéphyr a-t-il été lancé ?"
MARKER = re.compile(r"\[(\d+)\]")


# --- a live server ----------------------------------------------------------------------------------------
@dataclass
class LiveServer:
    mode: str
    key: str
    root: Path
    data_dir: Path
    corpus_dir: Path
    child: ChildServer

    @property
    def url(self) -> str:
        return self.child.url

    def client(self, *, key: str | None = "default", timeout: float = 180) -> httpx.Client:
        token = self.key if key == "default" else key
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log_tail(self) -> str:
        return self.child.log_tail()

    def stop(self) -> None:
        self.child.stop()


def start_server(root: Path, models_dir: Path, mode: str, chroma_url: str | None) -> LiveServer:
    """`rag serve` on a free loopback port, with its own data and corpus dirs; returns once /readyz is 200."""
    data_dir, corpus_dir = root / "data", root / "corpus"
    data_dir.mkdir(parents=True)
    corpus_dir.mkdir()
    (data_dir / "models").symlink_to(models_dir, target_is_directory=True)
    (corpus_dir / ARTICLE.name).write_bytes(ARTICLE.read_bytes())
    key = f"key-{uuid.uuid4().hex}"
    env = {
        "RAG_DATA_DIR": str(data_dir),
        "RAG_CORPUS_DIR": str(corpus_dir),
        "RAG_GENERATOR": "extractive",
        "RAG_API_KEY": key,
        "RAG_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "RAG_COLLECTION": f"api_{uuid.uuid4().hex[:10]}",
        "PYTHONPATH": str(REPO),
    }
    if chroma_url:
        env["RAG_CHROMA_URL"] = chroma_url
    try:
        child = harness.start_rag_serve(root, env)
    except harness.ServerNotReady as exc:
        pytest.fail(str(exc))
    return LiveServer(mode, key, root, data_dir, corpus_dir, child)


@pytest.fixture(scope="module")
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    """Servers by mode, started on first use and stopped at the end of the module."""
    started: dict[str, LiveServer] = {}

    def get(mode: str) -> LiveServer:
        if mode not in started:
            chroma_url = request.getfixturevalue("chroma_server_url") if mode == "chroma-server" else None
            started[mode] = start_server(tmp_path_factory.mktemp(f"api-{mode}"), models_dir, mode, chroma_url)
        return started[mode]

    yield get
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def server(servers: Callable[[str], LiveServer]) -> LiveServer:
    return servers("embedded")


@pytest.fixture(params=["embedded", "chroma-server"])
def any_server(request: pytest.FixtureRequest, servers: Callable[[str], LiveServer]) -> LiveServer:
    """For the core tests that must also pass with the store in a Chroma server (RAG_TEST_CHROMA_URL or
    a `chroma run` started for the session)."""
    return servers(request.param)


# --- helpers -----------------------------------------------------------------------------------------------
def read_sse(lines: Iterator[str]) -> list[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream, comments (pings) skipped."""
    events: list[tuple[str, str]] = []
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        events.append((name, "\n".join(data)))
    return events


def assert_markers_match_citations(text: str, citations: list[Any]) -> None:
    numbers = {int(n) for n in MARKER.findall(text)}
    cited = {c["n"] if isinstance(c, dict) else c.n for c in citations}
    assert numbers, f"no [n] marker in {text!r}"
    assert numbers == cited, (text, cited)
    assert sorted(cited) == list(range(1, len(cited) + 1))


def upload(client: httpx.Client, name: str, data: bytes, **params: Any) -> httpx.Response:
    return client.post("/v1/documents", files={"files": (name, data, "text/plain")}, params=params)


# --- health, schema, errors ------------------------------------------------------------------------------
def test_health_and_readiness(server: LiveServer) -> None:
    with server.client(key=None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True and ready.json()["generator_name"] == "extractive"
        status = client.get("/v1/index/status").json()
        assert status["documents"] == 1 and status["chunks"] > 0
        assert status["last_indexed"]  # the empty index was filled by the start-up reconciliation
        assert status["store"] == "embedded" and status["corpus_dir"] == "corpus"  # no server paths
        assert [d["source"] for d in client.get("/v1/documents").json()] == [ARTICLE.name]


def test_openapi_documents_every_endpoint_and_the_error_shape(server: LiveServer) -> None:
    with server.client(key=None) as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, method in [
        ("/v1/ask", "post"),
        ("/v1/ask/stream", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/models", "get"),
        ("/v1/documents", "get"),
        ("/v1/documents", "post"),
        ("/v1/documents/{source}", "delete"),
        ("/v1/index/refresh", "post"),
        ("/v1/index/status", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ]:
        assert method in paths[path], (path, method)
    ask = paths["/v1/ask"]["post"]["responses"]
    assert ask["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "Retry-After" in ask["503"]["headers"]
    assert ask["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "text/event-stream" in paths["/v1/ask/stream"]["post"]["responses"]["200"]["content"]
    assert {"Answer", "Citation", "ErrorResponse", "ChatCompletion"} <= set(schema["components"]["schemas"])
    # Write endpoints declare the bearer key (it is set on this server); reads do not need it.
    assert paths["/v1/documents"]["post"].get("security")
    assert not paths["/v1/documents"]["get"].get("security")


def test_errors_are_json_without_internals(server: LiveServer) -> None:
    with server.client() as client:
        cases = [
            (client.get("/nowhere"), 404),
            (client.put("/v1/ask"), 405),
            (client.post("/v1/ask", json={"question": "   "}), 422),
            (client.post("/v1/ask", json={"question": "x", "k": 0}), 422),
            (client.post("/v1/ask", content=b"{not json", headers={"content-type": "application/json"}), 422),
            (client.post("/v1/ask", json={"question": "x", "generator": "gpt-9"}), 422),
            (client.delete("/v1/documents/nothing/here.txt"), 404),
        ]
    for response, status in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["status"] == status and error["message"] and error["type"]
        assert "Traceback" not in response.text and 'File "' not in response.text


# --- questions ---------------------------------------------------------------------------------------------
def test_ask_over_rest_cites_the_article(any_server: LiveServer) -> None:
    with any_server.client(key=None) as client:
        response = client.post("/v1/ask", json={"question": LAUNCH_QUESTION, "k": 4})
    assert response.status_code == 200, response.text
    answer = Answer.model_validate(response.json())
    assert not answer.refused and answer.generator == "extractive" and answer.language == "fr"
    assert "janvier 2025" in answer.answer
    assert_markers_match_citations(answer.answer, answer.citations)
    for citation in answer.citations:
        assert citation.source == ARTICLE.name
        assert citation.quote and citation.quote in citation.text


def test_ask_over_sse_streams_tokens_citations_then_the_final_answer(server: LiveServer) -> None:
    with (
        server.client(key=None) as client,
        client.stream("POST", "/v1/ask/stream", json={"question": LAUNCH_QUESTION}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_sse(response.iter_lines())
    names = [name for name, _ in events]
    assert names[-1] == "final" and names.count("final") == 1
    assert "token" in names and "citations" in names and "error" not in names
    streamed = "".join(json.loads(data)["text"] for name, data in events if name == "token")
    final = Answer.model_validate_json(events[-1][1])
    assert streamed == final.answer
    assert_markers_match_citations(streamed, final.citations)
    streamed_citations = [c for name, data in events if name == "citations" for c in json.loads(data)["citations"]]
    assert {c["n"] for c in streamed_citations} == {c.n for c in final.citations}


def test_out_of_scope_question_is_refused_without_citations(server: LiveServer) -> None:
    with server.client(key=None) as client:
        answer = client.post("/v1/ask", json={"question": "Quelle est la capitale de la Mongolie ?"}).json()
        filtered = client.post(
            "/v1/ask", json={"question": LAUNCH_QUESTION, "filters": {"sources": ["not-indexed.txt"]}}
        ).json()
    assert answer["refused"] is True and answer["citations"] == []
    assert filtered["refused"] is True and filtered["citations"] == []


# --- the OpenAI client ---------------------------------------------------------------------------------------
def openai_client(server: LiveServer):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=server.key, timeout=180, max_retries=0)


def test_openai_client_chat_completion_carries_citations(server: LiveServer) -> None:
    client = openai_client(server)
    completion = client.chat.completions.create(
        model="rag",
        messages=[
            {"role": "system", "content": "Réponds brièvement."},
            {"role": "user", "content": LAUNCH_QUESTION},
        ],
    )
    message = completion.choices[0].message
    assert completion.object == "chat.completion" and completion.choices[0].finish_reason == "stop"
    assert "janvier 2025" in message.content
    citations = message.model_extra["citations"]
    assert_markers_match_citations(message.content, citations)
    rag = completion.model_extra["rag"]
    assert rag["answer"] == message.content and rag["citations"] == citations
    assert {c["source"] for c in citations} == {ARTICLE.name}
    # Only what the operator enabled: by default the configured generator (here extractive) and extractive.
    assert {m.id for m in client.models.list()} == {"rag", "extractive"}


def test_openai_client_streaming_ends_with_citations_and_the_answer(server: LiveServer) -> None:
    client = openai_client(server)
    stream = client.chat.completions.create(
        model="extractive", messages=[{"role": "user", "content": LAUNCH_QUESTION}], stream=True
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    citations = last.choices[0].delta.model_extra["citations"]
    assert_markers_match_citations(text, citations)
    assert last.model_extra["rag"]["answer"] == text
    assert all("rag" not in (c.model_extra or {}) for c in chunks[:-1])


def test_openai_client_errors_are_openai_shaped(server: LiveServer) -> None:
    import openai

    client = openai_client(server)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "Bonjour"}])
    assert "gpt-17" in unknown.value.message and unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="rag", messages=[{"role": "assistant", "content": "Bonjour"}])


# --- documents ---------------------------------------------------------------------------------------------
def test_upload_ask_then_delete_a_document(any_server: LiveServer) -> None:
    name = f"projet_zephyr_{uuid.uuid4().hex[:6]}.txt"
    with any_server.client() as client:
        response = client.post(
            "/v1/documents",
            files=[("files", (name, ZEPHYR_TEXT.encode(), "text/plain")), ("files", ("notes.exe", b"MZ", "x/y"))],
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["added"] == 1 and [f["outcome"] for f in result["files"]] == ["added", "skipped"]
        assert result["files"][0]["source"] == name
        assert result["skipped"][0]["filename"] == "notes.exe" and result["skipped"][0]["status"] == 415
        assert name in {d["source"] for d in client.get("/v1/documents").json()}
        assert (any_server.corpus_dir / name).read_text() == ZEPHYR_TEXT

        again = upload(client, name, ZEPHYR_TEXT.encode())
        assert again.status_code == 200 and again.json()["unchanged"] == 1
        conflict = upload(client, name, b"Un autre texte, qui n'a rien a voir avec le premier document.")
        assert conflict.status_code == 409 and "replace" in conflict.json()["error"]["message"]

        answer = client.post("/v1/ask", json={"question": ZEPHYR_QUESTION}).json()
        assert not answer["refused"] and "Lyon" in answer["answer"]
        assert name in {c["source"] for c in answer["citations"]}
        assert_markers_match_citations(answer["answer"], answer["citations"])

        deleted = client.delete(f"/v1/documents/{name}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] == 1, deleted.text
        assert name not in {d["source"] for d in client.get("/v1/documents").json()}
        assert not (any_server.corpus_dir / name).exists()
        after = client.post("/v1/ask", json={"question": ZEPHYR_QUESTION}).json()
        assert name not in {c["source"] for c in after["citations"]}
        assert "Lyon" not in after["answer"]
        assert client.delete(f"/v1/documents/{name}").status_code == 404


def test_a_pdf_citation_has_boxes_to_draw_on_its_page_image(server: LiveServer) -> None:
    from samples import text_pdf

    name = f"coins_{uuid.uuid4().hex[:6]}.pdf"
    pdf = text_pdf([["Fictional coins."], ["Part two.", "The vortiban is a fictional coin struck in Quimperle."]])
    with server.client() as client:
        try:
            assert upload(client, name, pdf).status_code == 200
            answer = client.post("/v1/ask", json={"question": "Where is the vortiban struck?"}).json()
            cited = [c for c in answer["citations"] if c["source"] == name]
            assert cited and cited[0]["page"] == 2 and cited[0]["boxes"], answer
            box = cited[0]["boxes"][0]
            assert box["page"] == 2 and (box["page_width"], box["page_height"]) == (600, 800)
            assert 0 <= box["x0"] < box["x1"] <= 600 and 0 <= box["y0"] < box["y1"] <= 800
            image = client.get(f"/v1/pages/{name}", params={"page": 2, "dpi": 72})
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            assert image.content.startswith(b"\x89PNG")
            original = client.get(f"/v1/files/{name}")
            assert original.status_code == 200 and original.content == pdf
            assert original.headers["content-type"] == "application/pdf"
            assert client.get(f"/v1/pages/{name}", params={"page": 3}).status_code == 404
            assert client.get(f"/v1/pages/{ARTICLE.name}").status_code == 404  # no pages
            assert client.get("/v1/files/nothing.pdf").status_code == 404
            article = client.post("/v1/ask", json={"question": "Pourquoi l'Italie a-t-elle interdit DeepSeek ?"})
            assert all(c["boxes"] == [] for c in article.json()["citations"])
        finally:
            client.delete(f"/v1/documents/{name}")


def test_upload_keeps_the_other_documents_indexed(server: LiveServer) -> None:
    name = f"note_{uuid.uuid4().hex[:6]}.txt"
    with server.client() as client:
        try:
            assert upload(client, name, ZEPHYR_TEXT.encode()).status_code == 200
            assert {d["source"] for d in client.get("/v1/documents").json()} == {ARTICLE.name, name}
        finally:
            (server.corpus_dir / name).unlink(missing_ok=True)
            assert client.post("/v1/index/refresh").status_code == 200


def test_write_endpoints_need_the_api_key(server: LiveServer) -> None:
    with server.client(key=None) as anonymous, server.client(key="wrong-key") as wrong:
        for client in (anonymous, wrong):
            for response in (
                upload(client, "sneaky.txt", b"Ce document ne devrait jamais etre enregistre par le serveur."),
                client.delete(f"/v1/documents/{ARTICLE.name}"),
                client.post("/v1/index/refresh"),
            ):
                assert response.status_code == 401, response.text
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["error"]["type"] == "authentication_error"
        # Reads stay open unless RAG_API_KEY_FOR_READ is set.
        assert anonymous.get("/v1/documents").status_code == 200
    assert not (server.corpus_dir / "sneaky.txt").exists()
    assert (server.corpus_dir / ARTICLE.name).exists()


def test_traversal_file_names_never_write_outside_the_corpus(server: LiveServer) -> None:
    tag = uuid.uuid4().hex[:8]
    passwd = Path("/etc/passwd")
    passwd_before = hashlib.sha256(passwd.read_bytes()).hexdigest() if passwd.exists() else None
    names = [
        f"../../etc/passwd-{tag}.txt",
        f"..\\..\\windows-{tag}.txt",
        f"/tmp/absolute-{tag}.txt",
        f"....//....//dots-{tag}.txt",
        "../../etc/passwd.txt",
        "..",
    ]
    saved: list[str] = []
    with server.client() as client:
        for name in names:
            body = f"Document de test {tag} envoye sous le nom {name!r}, pour verifier le nettoyage des noms.".encode()
            response = upload(client, name, body)
            assert response.status_code in (200, 400), response.text
            if name != "..":  # where a naive join would have written it
                for naive in (server.corpus_dir / name.replace("\\", "/"), Path(name)):
                    if not naive.resolve().is_relative_to(server.corpus_dir.resolve()):
                        assert not naive.resolve().exists(), naive
            if response.status_code == 200:
                source = response.json()["files"][0]["source"]
                assert "/" not in source and "\\" not in source and not source.startswith(".")
                assert (server.corpus_dir / source).read_bytes() == body
                saved.append(source)
        assert "passwd.txt" in saved  # neutralised rather than refused
        for source in saved:
            (server.corpus_dir / source).unlink()
        assert client.post("/v1/index/refresh").status_code == 200
        assert {d["source"] for d in client.get("/v1/documents").json()} == {ARTICLE.name}
    outside = [p for p in server.root.rglob(f"*{tag}*") if not p.is_relative_to(server.corpus_dir)]
    assert outside == []
    assert not Path("/etc/passwd.txt").exists()
    if passwd_before:
        assert hashlib.sha256(passwd.read_bytes()).hexdigest() == passwd_before


def test_oversize_uploads_get_413(server: LiveServer) -> None:
    with server.client() as client:
        # Declared too large: refused from the Content-Length alone.
        big = upload(client, "big.txt", b"a" * (MAX_UPLOAD * 2))
        assert big.status_code == 413 and big.json()["error"]["type"] == "request_too_large"

        # No Content-Length (chunked): the bytes are counted as they arrive.
        boundary = "rag-test-boundary"

        def chunked() -> Iterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="chunked.txt"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            for _ in range(10):
                yield b"b" * 64 * 1024
            yield f"\r\n--{boundary}--\r\n".encode()

        streamed = client.post(
            "/v1/documents", content=chunked(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
        assert streamed.status_code == 413, streamed.text
        assert streamed.json()["error"]["status"] == 413

        # Within the request limit, but one file over RAG_MAX_UPLOAD_BYTES: the service refuses it.
        one = upload(client, "just-over.txt", b"c" * (MAX_UPLOAD + 10))
        assert one.status_code == 413 and "too large" in one.json()["error"]["message"]

        json_body = client.post(
            "/v1/ask", content=b" " * (2 * 1024 * 1024), headers={"content-type": "application/json"}
        )
        assert json_body.status_code == 413
    for name in ("big.txt", "chunked.txt", "just-over.txt"):
        assert not (server.corpus_dir / name).exists()


def test_unsupported_type_gets_415(server: LiveServer) -> None:
    with server.client() as client:
        response = upload(client, "payload.exe", b"MZ\x90\x00 not a document")
        no_suffix = upload(client, "README", b"Un fichier sans extension.")
    assert response.status_code == 415 and ".exe" in response.json()["error"]["message"]
    assert no_suffix.status_code == 415
    assert not (server.corpus_dir / "payload.exe").exists()


def test_refresh_while_another_indexer_runs_gets_409(server: LiveServer) -> None:
    with server.client() as client:
        lock = FileLock(server.data_dir / "index.lock", timeout=5)
        with lock:  # another indexer (here: this test) holds the data dir's index lock
            busy = client.post("/v1/index/refresh")
            assert busy.status_code == 409
            assert "Another indexer is already running" in busy.json()["error"]["message"]
            # Questions are still answered meanwhile.
            assert client.post("/v1/ask", json={"question": LAUNCH_QUESTION}).status_code == 200
        done = client.post("/v1/index/refresh", json={"rebuild": False})
        assert done.status_code == 200, done.text
        assert done.json()["unchanged"] >= 1 and done.json()["documents"] >= 1
        status = client.get("/v1/index/status").json()
    assert status["activity"]["operation"] == "refresh" and status["activity"]["running"] is False


# --- in-process: the generation queue, auth for reads, the UI hook, the CLI ------------------------------------------
class BlockingChatModel(BaseChatModel):
    """A chat model that waits until released: holds the local-model slot so the queue fills up."""

    answer: str = "Le projet Zéphyr a été lancé à Lyon le 3 mars 2031 par l'équipe Orion [1]."
    _started: threading.Event = PrivateAttr(default_factory=threading.Event)
    _release: threading.Event = PrivateAttr(default_factory=threading.Event)

    @property
    def _llm_type(self) -> str:
        return "blocking-fake"

    def _wait(self) -> None:
        self._started.set()
        assert self._release.wait(60), "never released"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        self._wait()
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answer))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        self._wait()
        for word in self.answer.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))


def test_full_generation_queue_gives_503_with_retry_after(make_settings, embedder, tmp_path: Path) -> None:
    settings = make_settings(generator="local", generation_queue_size=1)
    settings.corpus_dir.mkdir(parents=True, exist_ok=True)
    (settings.corpus_dir / "zephyr.txt").write_text(ZEPHYR_TEXT)
    model = BlockingChatModel()
    service = RagService(settings, embedder=embedder, chat_models={"local": model})
    service.refresh()
    app = create_app(service, with_ui=False, index_on_start=False)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120) as client:
            first = asyncio.create_task(client.post("/v1/ask", json={"question": ZEPHYR_QUESTION}))
            assert await asyncio.to_thread(model._started.wait, 60), "the first question never reached the model"
            try:
                for path, body in [
                    ("/v1/ask", {"question": ZEPHYR_QUESTION}),
                    ("/v1/ask/stream", {"question": ZEPHYR_QUESTION}),
                    ("/v1/chat/completions", {"model": "local", "messages": [{"role": "user", "content": "Zéphyr ?"}]}),
                ]:
                    busy = await client.post(path, json=body)
                    assert busy.status_code == 503, (path, busy.text)
                    assert busy.headers["retry-after"] == str(service.queue.retry_after)
                    assert busy.json()["error"]["type"] == "service_unavailable"
                # The extractive generator does not queue behind the local model.
                other = await client.post("/v1/ask", json={"question": ZEPHYR_QUESTION, "generator": "extractive"})
                assert other.status_code == 200
            finally:
                model._release.set()
            answered = await first
            assert answered.status_code == 200 and answered.json()["generator"] == "local"
            again = await client.post("/v1/ask", json={"question": ZEPHYR_QUESTION})
            assert again.status_code == 200  # the slot was released

    asyncio.run(scenario())


class FailingChatModel(BaseChatModel):
    """Streams two sentences, then loses its connection (an LLM server going away mid-answer)."""

    @property
    def _llm_type(self) -> str:
        return "failing-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        raise ConnectionError("connection reset by the LLM server")

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        for word in "Le projet Zéphyr a été lancé à Lyon [1]. Il est porté par l'équipe Orion [1]. ".split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
        raise ConnectionError("connection reset by the LLM server")


def ask_three_ways(chat_model: BaseChatModel, settings: Any, embedder: Any) -> tuple[list, list, httpx.Response]:
    """ZEPHYR_QUESTION answered by `chat_model` (as "openai") over SSE, the OpenAI stream and plain JSON: the SSE
    events, the OpenAI stream's events, and the JSON response."""
    settings.corpus_dir.mkdir(parents=True, exist_ok=True)
    (settings.corpus_dir / "zephyr.txt").write_text(ZEPHYR_TEXT)
    service = RagService(settings, embedder=embedder, chat_models={"openai": chat_model})
    service.refresh()
    app = create_app(service, with_ui=False, index_on_start=False)

    async def scenario() -> tuple[list[tuple[str, str]], list[tuple[str, str]], httpx.Response]:
        async with _client_for(app) as client:
            stream = await client.post("/v1/ask/stream", json={"question": ZEPHYR_QUESTION, "generator": "openai"})
            assert stream.status_code == 200
            chat = await client.post(
                "/v1/chat/completions",
                json={"model": "openai", "stream": True, "messages": [{"role": "user", "content": ZEPHYR_QUESTION}]},
            )
            plain = await client.post("/v1/ask", json={"question": ZEPHYR_QUESTION, "generator": "openai"})
            return read_sse(iter(stream.text.splitlines())), read_sse(iter(chat.text.splitlines())), plain

    return asyncio.run(scenario())


def test_failure_mid_stream_becomes_an_error_event(make_settings, embedder) -> None:
    settings = make_settings(generators_allowed=["extractive", "openai"])
    events, chunks, plain = ask_three_ways(FailingChatModel(), settings, embedder)
    assert events[0][0] == "token" and events[-1][0] == "error" and "final" not in [n for n, _ in events]
    error = json.loads(events[-1][1])["error"]
    assert error["status"] == 502 and error["type"] == "upstream_error" and "Traceback" not in events[-1][1]
    assert json.loads(chunks[-1][1])["error"]["status"] == 502 and "[DONE]" not in [d for _, d in chunks]
    assert plain.status_code == 502 and plain.json()["error"]["type"] == "upstream_error"


class InventingChatModel(BaseChatModel):
    """Answers with one sentence the document supports and one it never says (a fine and its amount)."""

    answer: str = "Le projet Zéphyr a été lancé à Lyon le 3 mars 2031 [1]. La CNIL lui a infligé 15 millions d'euros."

    @property
    def _llm_type(self) -> str:
        return "inventing-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answer))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        for word in self.answer.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))


@pytest.mark.parametrize(
    ("bad", "verdict"),
    [
        ("La CNIL lui a infligé 15 millions d'euros.", "not_supported"),  # invented
        ("Zéphyr n'est pas un planeur solaire.", "contradicted"),  # the document says the opposite
    ],
    ids=["invented", "contradicted"],
)
def test_no_unverified_sentence_is_ever_sent_by_any_endpoint(make_settings, embedder, bad: str, verdict: str) -> None:
    """Issue 11: SSE, the OpenAI stream and the JSON answer carry only verified sentences (withholding is the
    default); the bad one is listed in `unsupported` with its verdict, never in the text."""
    settings = make_settings(generators_allowed=["extractive", "openai"])
    model = InventingChatModel(answer=f"Le projet Zéphyr a été lancé à Lyon le 3 mars 2031 [1]. {bad}")
    events, chunks, plain = ask_three_ways(model, settings, embedder)
    tell = bad.split()[-2]  # a word only the bad sentence has
    assert tell not in "".join(data for name, data in events if name == "token")
    final = Answer.model_validate_json(next(data for name, data in events if name == "final"))
    assert "Lyon" in final.answer and tell not in final.answer and not final.refused
    assert [(s.text, s.verdict) for s in final.unsupported] == [(bad, verdict)]
    assert 0 < final.timings_ms.verify < final.timings_ms.generate  # the verifier's own cost, apart
    deltas = [json.loads(data) for _, data in chunks if data != "[DONE]"]
    streamed = "".join(d["choices"][0]["delta"].get("content") or "" for d in deltas if d.get("choices"))
    assert "Lyon" in streamed and tell not in streamed
    answer = plain.json()
    assert tell not in answer["answer"] and answer["unsupported"] == [s.model_dump() for s in final.unsupported]


def test_questions_are_still_answered_after_a_rebuild(make_settings, embedder) -> None:
    settings = make_settings()
    settings.corpus_dir.mkdir(parents=True, exist_ok=True)
    (settings.corpus_dir / "zephyr.txt").write_text(ZEPHYR_TEXT)
    service = RagService(settings, embedder=embedder)
    service.refresh()
    app = create_app(service, with_ui=False, index_on_start=False)

    async def scenario() -> None:
        async with _client_for(app) as client:
            assert (await client.post("/v1/ask", json={"question": ZEPHYR_QUESTION})).status_code == 200
            rebuilt = await client.post("/v1/index/refresh", json={"rebuild": True})
            assert rebuilt.status_code == 200 and rebuilt.json()["documents"] == 1
            after = await client.post("/v1/ask", json={"question": ZEPHYR_QUESTION})
            assert after.status_code == 200, after.text
            assert "zephyr.txt" in {c["source"] for c in after.json()["citations"]}

    asyncio.run(scenario())


def test_unexpected_errors_are_a_bare_500(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    service = RagService(make_settings())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail: /srv/data/chroma.sqlite3")

    monkeypatch.setattr(service, "ask_stream", broken)
    monkeypatch.setattr(service, "documents", broken)
    app = create_app(service, with_ui=False, index_on_start=False)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)  # raise_app_exceptions: none may escape the app
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            for response in (
                await client.post("/v1/ask", json={"question": "Zéphyr ?"}),
                await client.post("/v1/ask/stream", json={"question": "Zéphyr ?"}),
                await client.get("/v1/documents"),
            ):
                assert response.status_code == 500
                assert response.json() == {
                    "error": {"message": "Internal server error.", "type": "server_error", "status": 500}
                }
            assert (await client.get("/healthz")).status_code == 200

    asyncio.run(scenario())


def _client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://api", timeout=60
    )


def test_api_key_for_read_protects_every_endpoint_but_healthz(make_settings) -> None:
    settings = make_settings(api_key="s3cret", api_key_for_read=True)
    app = create_app(RagService(settings), with_ui=False, index_on_start=False)

    async def scenario() -> None:
        async with _client_for(app) as client:
            assert (await client.get("/healthz")).status_code == 200
            for method, path in [
                ("GET", "/readyz"),
                ("GET", "/v1/documents"),
                ("GET", "/v1/index/status"),
                ("GET", "/v1/models"),
                ("POST", "/v1/ask"),
                ("POST", "/v1/ask/stream"),
                ("POST", "/v1/chat/completions"),
            ]:
                response = await client.request(method, path, json={"question": "x"})
                assert response.status_code == 401, (path, response.text)
            authorized = {"Authorization": "Bearer s3cret"}
            assert (await client.get("/v1/models", headers=authorized)).status_code == 200
            assert (await client.get("/v1/models", headers={"Authorization": "Bearer s3cre"})).status_code == 401

    asyncio.run(scenario())


def test_front_ends_are_mounted_and_the_api_serves_without_them(make_settings) -> None:
    import gradio as gr

    built: list[RagService] = []

    def build_ui(service: RagService) -> gr.Blocks:
        built.append(service)
        with gr.Blocks() as blocks:
            gr.Markdown("Fake UI")
        return blocks

    def mount(app, service: RagService) -> None:
        gr.mount_gradio_app(app, build_ui(service), "/")

    def broken(app, service: RagService) -> None:
        raise RuntimeError("this front end cannot be built")

    service = RagService(make_settings())
    app = create_app(service, index_on_start=False, front_ends=[broken, mount])
    assert built == [service]
    bare = create_app(service, index_on_start=False, front_ends=[])  # no front end installed: the API alone
    assert [f"{f.__module__}.{f.__name__}" for f in installed_front_ends()] == ["ui.app.mount_ui"]  # pyproject's

    async def scenario() -> None:
        async with _client_for(app) as client:
            page = await client.get("/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/v1/models")).json()["object"] == "list"
        async with _client_for(bare) as client:
            assert (await client.get("/")).status_code == 404

    asyncio.run(scenario())


def test_serve_command_defaults_to_loopback() -> None:
    from rag.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.no_ui, args.no_index) == ("127.0.0.1", 7860, False, False)
