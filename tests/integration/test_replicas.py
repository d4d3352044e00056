"""Replicas, end to end (docs/deploy.md): one `chroma run` server, one indexer (`rag serve`) and two readers
(`rag serve --read-only --no-index`), each a real process on a loopback port with its own data folder, sharing
one collection. What an indexer writes, both readers answer and cite within a bound; what it deletes, they stop
citing within the bound; a reader refuses writes (403 `read_only`: the single-indexer rule, enforced); killing a
reader in the middle of a streamed answer leaves the other reader and the indexer answering.

The answers use the extractive generator (no LLM). The answer cut by the kill asks for the `openai` generator,
pointed at a slow OpenAI-compatible stub in this process, so that the reader is surely still generating when it
is killed (an extractive answer is written in milliseconds, before any kill could land in its middle).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest

from rag.service.components import _LEXICAL_RECHECK_SECONDS

REPO = Path(__file__).resolve().parents[2]
ARTICLE = REPO / "corpus" / "deepseek_article_fr.txt"
LAUNCH_QUESTION = "Quand DeepSeek a-t-il été lancé ?"

# An invented fact, in no model and no other document: only the uploaded file can answer it.
KERBRUNE = "kerbrune.txt"
KERBRUNE_TEXT = (
    "Le phare de Kerbrune, sur l'île de Trévadec, a été allumé pour la première fois le 14 juillet 1887 par la "
    "gardienne Maëlys Quéméner. Sa lanterne tournante porte à trente-deux milles nautiques par temps clair.\n"
)
KERBRUNE_QUESTION = "Qui a allumé le phare de Kerbrune pour la première fois ?"
KERBRUNE_FACT = "Quéméner"
# In each reader's own corpus folder: a reader that reconciled at start-up would put it in the shared collection.
READER_ONLY = "penhoet.txt"
READER_ONLY_TEXT = "Le moulin de Penhoët a été reconstruit en 1902 par le meunier Corentin Le Gall.\n"

# How long a change made through the indexer may take to show in a reader's answers. The dense side reads Chroma
# directly (no delay); the lexical side is rechecked against the store's fingerprint at most every
# _LEXICAL_RECHECK_SECONDS (2 s) and then rebuilt once (a few chunks here: milliseconds). So the change shows
# in the first answer started after the recheck interval; the allowance covers that answer and the one in
# flight when the change landed, each ~0.5 s on an idle machine and a few seconds on 2 cores shared with a CI run.
ANSWER_ALLOWANCE_S = 18.0
PROPAGATION_BOUND_S = _LEXICAL_RECHECK_SECONDS + ANSWER_ALLOWANCE_S
REQUEST_TIMEOUT_S = 120.0  # one request on a loaded machine; a hang fails the test instead of blocking it

# The slow stub: a word every STUB_WORD_DELAY_S, so an answer takes ~6 s to generate.
STUB_WORDS = "DeepSeek a été lancé fin janvier 2025 par une startup chinoise encore inconnue [1].".split(" ")
STUB_WORD_DELAY_S = 0.5

measured: dict[str, float] = {}  # propagation times, printed at the end of the module (pytest -s shows them)


# --- a slow OpenAI-compatible LLM ------------------------------------------------------------------------------
@dataclass
class StubCall:
    """One streamed chat completion the stub is writing (or wrote)."""

    finished: threading.Event = field(default_factory=threading.Event)
    cut: threading.Event = field(default_factory=threading.Event)  # the caller went away mid-answer


class SlowLLM(ThreadingHTTPServer):
    """POST /v1/chat/completions, streamed: STUB_WORDS one by one; each call is put on `calls` as it starts."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.calls: queue.Queue[StubCall] = queue.Queue()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowLLM

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        call = StubCall()
        self.server.calls.put(call)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for i, word in enumerate(STUB_WORDS):
                self._chunk({"content": word if i == 0 else f" {word}"}, None)
                time.sleep(STUB_WORD_DELAY_S)
            self._chunk({}, "stop")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            call.finished.set()
        except OSError:  # BrokenPipeError, ConnectionResetError: the reader died
            call.cut.set()

    def _chunk(self, delta: dict[str, str], finish_reason: str | None) -> None:
        chunk = {
            "id": "stub",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "stub",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()


# --- the replicas --------------------------------------------------------------------------------------------
@dataclass
class Node:
    name: str
    root: Path
    child: harness.ChildServer
    key: str

    @property
    def corpus_dir(self) -> Path:
        return self.root / "corpus"

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.child.url, headers=headers, timeout=REQUEST_TIMEOUT_S)

    def ask(self, question: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.post("/v1/ask", json={"question": question})
        assert response.status_code == 200, f"{self.name}: {response.text}\n{self.child.log_tail()}"
        return response.json()


@dataclass
class Cluster:
    indexer: Node
    readers: list[Node]
    llm: SlowLLM


def _start_node(name: str, base: Path, env: dict[str, str], models_dir: Path, options: tuple[str, ...]) -> Node:
    root = base / name
    (root / "data").mkdir(parents=True)
    (root / "corpus").mkdir()
    (root / "data" / "models").symlink_to(models_dir, target_is_directory=True)  # the materialised e5, shared
    node_env = env | {"RAG_DATA_DIR": str(root / "data"), "RAG_CORPUS_DIR": str(root / "corpus")}
    if "--read-only" in options:
        (root / "corpus" / READER_ONLY).write_text(READER_ONLY_TEXT, encoding="utf-8")
    else:
        (root / "corpus" / ARTICLE.name).write_bytes(ARTICLE.read_bytes())
    try:
        child = harness.start_rag_serve(root, node_env, options=options)
    except harness.ServerNotReady as exc:
        pytest.fail(f"{name}: {exc}")
    return Node(name, root, child, env["RAG_API_KEY"])


@pytest.fixture(scope="module")
def cluster(chroma_server_url: str, tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Cluster]:
    """The indexer first (it creates the collection and indexes the article), then both readers at once."""
    llm = SlowLLM()
    threading.Thread(target=llm.serve_forever, name="slow-llm", daemon=True).start()
    base = tmp_path_factory.mktemp("replicas")
    env = {
        "RAG_CHROMA_URL": chroma_server_url,
        "RAG_COLLECTION": f"replicas_{uuid.uuid4().hex[:10]}",
        "RAG_GENERATOR": "extractive",
        "RAG_QUERY_TRANSLATION": "off",
        "RAG_API_KEY": f"key-{uuid.uuid4().hex}",
        # The slow stub, for the one answer a reader is killed in; every other answer is extractive.
        "RAG_GENERATORS_ALLOWED": "extractive,openai",
        "RAG_OPENAI_BASE_URL": llm.url,
        "PYTHONPATH": str(REPO),
    }
    nodes: list[Node] = []
    try:
        nodes.append(_start_node("indexer", base, env, models_dir, ("--no-ui",)))
        reader_options = ("--no-ui", "--read-only", "--no-index")
        with ThreadPoolExecutor(2) as pool:
            started = [pool.submit(_start_node, f"reader{i}", base, env, models_dir, reader_options) for i in (1, 2)]
            for future in started:
                nodes.append(future.result())
        yield Cluster(nodes[0], nodes[1:], llm)
    finally:
        for node in nodes:
            node.child.stop()
        llm.shutdown()
        llm.server_close()
        if measured:
            print("\npropagation through the shared store (s):", json.dumps(measured, indent=1, ensure_ascii=False))


def cites(answer: dict[str, Any], source: str) -> bool:
    """Whether `answer` cites `source` or was built on a passage of it."""
    return any(c["source"] == source for c in answer["citations"] + answer["passages"])


def until_every_reader(cluster: Cluster, question: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, float]:
    """Ask each reader `question` until its answer is `done`; the seconds each took, or a failure past the bound."""
    started = time.monotonic()
    waiting = {reader.name: reader for reader in cluster.readers}
    took: dict[str, float] = {}
    last: dict[str, Any] = {}
    while waiting:
        for name, reader in list(waiting.items()):
            last[name] = reader.ask(question)
            if done(last[name]):
                took[name] = round(time.monotonic() - started, 2)
                del waiting[name]
        if waiting and time.monotonic() - started > PROPAGATION_BOUND_S:
            pytest.fail(f"after {PROPAGATION_BOUND_S:.0f} s, still not done on {sorted(waiting)}: {last}")
        if waiting:
            time.sleep(0.25)
    return took


def upload_through_the_indexer(cluster: Cluster) -> dict[str, float]:
    """Upload KERBRUNE to the indexer; the seconds until each reader cites it."""
    with cluster.indexer.client() as client:
        response = client.post("/v1/documents", files={"files": (KERBRUNE, KERBRUNE_TEXT.encode(), "text/plain")})
    assert response.status_code == 200 and response.json()["added"] == 1, response.text
    return until_every_reader(
        cluster, KERBRUNE_QUESTION, lambda a: KERBRUNE_FACT in a["answer"] and cites(a, KERBRUNE) and not a["refused"]
    )


def indexed(node: Node) -> list[str]:
    with node.client() as client:
        return [d["source"] for d in client.get("/v1/documents").json()]


# --- the tests -------------------------------------------------------------------------------------------------
def test_readers_start_without_reconciling_and_answer_from_the_shared_collection(cluster: Cluster) -> None:
    for reader in cluster.readers:
        with reader.client() as client:
            ready = client.get("/readyz").json()
        assert ready["ready"] and ready["step"]["stage"] == "ready", ready
        # Its own corpus file is not in the shared collection: a reader never reconciles its folder into it.
        assert (reader.corpus_dir / READER_ONLY).exists()
        assert indexed(reader) == [ARTICLE.name]
        answer = reader.ask(LAUNCH_QUESTION)
        assert not answer["refused"] and "janvier 2025" in answer["answer"]
        assert {c["source"] for c in answer["citations"]} == {ARTICLE.name}
    assert indexed(cluster.indexer) == [ARTICLE.name]


def test_a_document_uploaded_to_the_indexer_is_cited_by_both_readers_within_the_bound(cluster: Cluster) -> None:
    for reader in cluster.readers:  # not known before: the check below can fail
        before = reader.ask(KERBRUNE_QUESTION)
        assert KERBRUNE_FACT not in before["answer"] and not cites(before, KERBRUNE), before
    took = upload_through_the_indexer(cluster)
    measured.update({f"upload → cited by {name}": seconds for name, seconds in took.items()})
    assert max(took.values()) <= PROPAGATION_BOUND_S
    assert indexed(cluster.indexer) == sorted([ARTICLE.name, KERBRUNE])


def test_writes_to_a_reader_are_refused_with_403_read_only(cluster: Cluster) -> None:
    before = indexed(cluster.indexer)
    for reader in cluster.readers:
        with reader.client() as client:  # with the right key: the refusal is the reader's role, not the auth
            refused = [
                client.post("/v1/documents", files={"files": ("autre.txt", b"Un autre texte.\n", "text/plain")}),
                client.delete(f"/v1/documents/{before[0]}"),
                client.post("/v1/index/refresh"),
                client.post("/v1/index/refresh", json={"rebuild": True}),
            ]
        for response in refused:
            assert response.status_code == 403, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("permission_error", "read_only")
            assert "read-only replica" in error["message"]
        assert not (reader.corpus_dir / "autre.txt").exists()
    assert indexed(cluster.indexer) == before  # nothing was added, deleted or rebuilt


def test_a_document_deleted_through_the_indexer_stops_being_cited_by_both_readers(cluster: Cluster) -> None:
    if KERBRUNE not in indexed(cluster.indexer):  # run alone: upload it first, and see it cited
        upload_through_the_indexer(cluster)
    with cluster.indexer.client() as client:
        response = client.delete(f"/v1/documents/{KERBRUNE}")
    assert response.status_code == 200 and response.json()["deleted"] == 1, response.text
    took = until_every_reader(
        cluster, KERBRUNE_QUESTION, lambda a: KERBRUNE_FACT not in a["answer"] and not cites(a, KERBRUNE)
    )
    measured.update({f"delete → no longer cited by {name}": seconds for name, seconds in took.items()})
    assert max(took.values()) <= PROPAGATION_BOUND_S
    for node in (cluster.indexer, *cluster.readers):
        assert indexed(node) == [ARTICLE.name]


def stream_events(client: httpx.Client, generator: str) -> list[str]:
    """The event names of a whole `/v1/ask/stream` answer to LAUNCH_QUESTION by `generator`."""
    body = {"question": LAUNCH_QUESTION, "generator": generator}
    with client.stream("POST", "/v1/ask/stream", json=body) as response:
        assert response.status_code == 200
        return [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]


def test_killing_a_reader_mid_answer_leaves_the_other_reader_and_the_indexer_answering(cluster: Cluster) -> None:
    victim, survivor = cluster.readers
    events: list[str] = []
    with (
        victim.client() as client,
        client.stream("POST", "/v1/ask/stream", json={"question": LAUNCH_QUESTION, "generator": "openai"}) as stream,
    ):
        assert stream.status_code == 200  # the answer has started: its headers come with the first event
        call = cluster.llm.calls.get(timeout=REQUEST_TIMEOUT_S)  # and the reader is generating it
        assert not call.finished.is_set()
        os.kill(victim.child.process.pid, signal.SIGKILL)
        with contextlib.suppress(httpx.HTTPError):  # the connection dies with the reader
            for line in stream.iter_lines():  # one by one: what came before the connection died is kept
                events.append(line)
    assert victim.child.process.wait(timeout=30) == -signal.SIGKILL
    assert "event: final" not in events  # cut in the middle: no final answer came
    assert call.cut.wait(timeout=len(STUB_WORDS) * STUB_WORD_DELAY_S + 10)  # the stub lost its caller mid-answer

    # The same streamed answer runs to its end on the survivor: the cut was the kill's doing.
    with survivor.client() as client:
        assert stream_events(client, "openai")[-1] == "final"
    assert cluster.llm.calls.get(timeout=5).finished.wait(timeout=5)
    for node in (survivor, cluster.indexer):
        answer = node.ask(LAUNCH_QUESTION)
        assert not answer["refused"] and {c["source"] for c in answer["citations"]} == {ARTICLE.name}
        with node.client() as client:
            assert stream_events(client, "extractive")[-1] == "final"
            assert client.get("/readyz").status_code == 200
