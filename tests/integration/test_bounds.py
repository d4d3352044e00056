"""Bounded work, in-process: a client that leaves stops its answer, clients pick only the generators the
operator enabled, a PDF bomb is refused fast while the next upload proceeds, a damaged lexical index is read again.

Kept apart from test_security.py, whose module-scoped browser keeps an event loop running in this thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import harness
import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from rag.api import create_app
from rag.errors import RequestError
from rag.service import RagService
from rag.settings import Settings

NOTE = "Le projet Zéphyr a été lancé à Lyon le 3 mars 2031 par l'équipe Orion.\n"


_WORDS = "Lyon Orion glacier planeur solaire Alpes carte vol aile moteur batterie ciel".split()


class SlowChatModel(BaseChatModel):
    """Streams a long answer a sentence at a time and counts what it produced: a client that leaves must stop it."""

    _produced: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "slow-fake"

    @property
    def produced(self) -> int:
        return self._produced

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])  # the warm-up's call

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        for i in range(400):
            time.sleep(0.05)
            self._produced += 1
            # Never the same words twice: the loop guard would hold back (then cut) a repeating answer.
            word = f"{_WORDS[i % len(_WORDS)]}{i}"
            yield ChatGenerationChunk(message=AIMessageChunk(content=f"{word}. " if i % 6 == 5 else f"{word} "))


@contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """`app` served by a real uvicorn on a loopback port, in a thread: a real socket the client can close."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=harness.free_loopback_port(), log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _wait_for(condition: Any, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("withholding", [True, False], ids=["withholding", "streaming-as-written"])
def test_a_client_that_leaves_stops_its_answer(make_settings, embedder, withholding: bool) -> None:
    # The slow model's words are in no passage: withholding, nothing is verified, so no token ever goes out and
    # the client leaves after the headers; streaming as written, it leaves after the first token.
    settings = make_settings(generator="local", drop_unsupported=withholding)
    settings.corpus_dir.mkdir(parents=True, exist_ok=True)
    (settings.corpus_dir / "zephyr.txt").write_text(NOTE, encoding="utf-8")
    model = SlowChatModel()
    service = RagService(settings, embedder=embedder, chat_models={"local": model})
    service.refresh()
    question = {"question": "Où le projet Zéphyr a-t-il été lancé ?"}
    with (
        uvicorn_thread(create_app(service, with_ui=False, index_on_start=False)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):

        def counts() -> dict[str, int]:
            return client.get("/v1/metrics/answers").json()

        with client.stream("POST", "/v1/ask/stream", json=question) as response:
            assert response.status_code == 200
            if not withholding:
                for line in response.iter_lines():
                    if line.startswith("event: token"):
                        break  # leave after the first token
        assert _wait_for(lambda: counts()["cancelled"] == 1), counts()
        stopped_at = model.produced
        time.sleep(1.0)
        assert model.produced == stopped_at < 100, "the model went on after the client left"

        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/ask", json=question, timeout=1.5)  # gives up, closing the connection
        assert _wait_for(lambda: counts()["cancelled"] == 2), counts()
        stopped_at = model.produced
        time.sleep(1.0)
        assert model.produced == stopped_at
        assert counts()["started"] == 2 and counts()["finished"] == 0


def test_generators_are_the_ones_the_operator_enabled(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_settings(generator="local").allowed_generators == ("local", "extractive")
    service = RagService(make_settings(generator="extractive"))
    monkeypatch.setenv("RAG_GENERATORS_ALLOWED", "extractive, ollama")
    assert Settings(_env_file=None).allowed_generators == ("extractive", "ollama")
    app = create_app(service, with_ui=False, index_on_start=False)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30) as client:
            for path, body in [
                ("/v1/ask", {"question": "Zéphyr ?", "generator": "local"}),
                ("/v1/ask/stream", {"question": "Zéphyr ?", "generator": "openai"}),
                ("/v1/chat/completions", {"model": "local", "messages": [{"role": "user", "content": "Zéphyr ?"}]}),
            ]:
                refused = await client.post(path, json=body)
                assert refused.status_code == 403, (path, refused.text)
                assert refused.json()["error"]["code"] == "generator_not_allowed"
            models = (await client.get("/v1/models")).json()["data"]
            assert [m["id"] for m in models] == ["rag", "extractive"]

    asyncio.run(scenario())
    with pytest.raises(RequestError):
        next(service.ask_stream("Zéphyr ?", generator="local"))  # the CLI and Python callers too


def test_a_pdf_bomb_upload_is_refused_fast_and_the_next_upload_proceeds(make_settings, embedder) -> None:
    from samples import pdf_bomb

    service = RagService(make_settings(), embedder=embedder)
    app = create_app(service, with_ui=False, index_on_start=False)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120) as client:
            started = time.monotonic()
            bomb = await client.post("/v1/documents", files={"files": ("bombe.pdf", pdf_bomb(), "application/pdf")})
            assert bomb.status_code == 422, bomb.text
            assert "too long" in bomb.json()["error"]["message"] and time.monotonic() - started < 30
            fine = await client.post("/v1/documents", files={"files": ("zephyr.txt", NOTE.encode(), "text/plain")})
            assert fine.status_code == 200 and fine.json()["added"] == 1

    asyncio.run(scenario())
    assert not (service.settings.corpus_dir / "bombe.pdf").exists()  # not kept: the folder is what the index holds


@pytest.mark.parametrize("damage", ["zero-length file", "holds a list", "one id too few"])
def test_a_damaged_lexical_index_is_rebuilt_and_answers(make_settings, embedder, damage: str) -> None:
    settings = make_settings()
    settings.corpus_dir.mkdir(parents=True, exist_ok=True)
    (settings.corpus_dir / "zephyr.txt").write_text(NOTE, encoding="utf-8")
    (settings.corpus_dir / "autre.txt").write_text("La station Borée compte sept chercheurs en hiver.\n")
    RagService(settings, embedder=embedder).refresh()
    [segment] = [
        path
        for path in (settings.data_dir / "lexical" / "segments").glob("*.json")
        if json.loads(path.read_text(encoding="utf-8"))["source"] == "zephyr.txt"
    ]
    if damage == "zero-length file":
        segment.write_bytes(b"")
    elif damage == "holds a list":
        segment.write_text("[]")
    else:
        values = json.loads(segment.read_text())
        segment.write_text(json.dumps(values | {"ids": values["ids"][:-1]}))
    restarted = RagService(settings, embedder=embedder)  # a new process over the damaged files
    answer = restarted.ask("Où le projet Zéphyr a-t-il été lancé ?")
    assert "zephyr.txt" in {c.source for c in answer.citations}
    status = restarted.status()
    assert status.lexical_chunks == status.chunks
