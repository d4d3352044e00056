"""A read-only replica (`RAG_READ_ONLY`, `rag serve --read-only`): the service refuses every write with
ReadOnlyError and never reconciles at start-up, while it answers from the store the indexer writes; the API
translates the refusal to a 403 `code: read_only`, `rag index` to exit code 5; the UI shows no write control,
but a line saying documents are managed on the indexing server (its events still answer with the refusal).
On the fakes: one MemoryBackend shared by an indexer and a reader stands for the shared Chroma server; the
same with real processes is tests/integration/test_replicas.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import HashEmbedder, MemoryBackend
from fastapi.testclient import TestClient

import rag.service.components
from rag.api import create_app
from rag.errors import ReadOnlyError
from rag.service import RagService

ZEPHYR_FR = (
    "Le projet Zéphyr a été lancé en 2021 par la ville de Lyon. "
    "Il relie les bibliothèques municipales par un catalogue commun.\n"
)
QUESTION = "Quand le projet Zéphyr a-t-il été lancé ?"


@pytest.fixture
def replicas(unit_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RagService, RagService]:
    """An indexer and a reader on one store (their own data and corpus dirs, as two nodes would have); the
    reader rechecks the store's document records on every question instead of every 2 s."""
    monkeypatch.setattr(rag.service.components, "_LEXICAL_RECHECK_SECONDS", 0.0)
    stores, embedder = MemoryBackend(), HashEmbedder()

    def node(name: str, **overrides) -> RagService:
        settings = unit_settings(
            data_dir=tmp_path / name / "data", corpus_dir=tmp_path / name / "corpus", min_similarity=0.05, **overrides
        )
        return RagService(settings, embedder=embedder, stores=stores)

    return node("indexer"), node("reader", read_only=True)


def test_a_reader_refuses_every_write_and_changes_nothing(replicas) -> None:
    indexer, reader = replicas
    indexer.add_document("zephyr.txt", ZEPHYR_FR.encode())
    (reader.settings.corpus_dir / "local.txt").write_text("Un fichier que seul le lecteur voit.\n", encoding="utf-8")
    writes = {
        "refresh": reader.refresh,
        "rebuild": lambda: reader.refresh(rebuild=True),
        "upload": lambda: reader.add_document("other.txt", b"Un autre texte.\n"),
        "upload of a bad name": lambda: reader.add_document("../x.exe", b"?"),  # refused as a write, not as a name
        "deletion": lambda: reader.delete_document("zephyr.txt"),
        "deletion of an unknown document": lambda: reader.delete_document("nothing.txt"),
        "the index lock": lambda: reader.indexing_lock().__enter__(),
    }
    for what, write in writes.items():
        with pytest.raises(ReadOnlyError) as refused:
            write()
        assert (refused.value.status, refused.value.code) == (403, "read_only"), what
        assert "read-only" in str(refused.value), what
    assert [r.source for r in indexer.documents()] == ["zephyr.txt"]  # the store is as the indexer left it
    assert not (reader.settings.corpus_dir / "other.txt").exists()
    assert not (reader.settings.data_dir / "index.lock").exists()


def test_a_reader_answers_what_the_indexer_adds_and_stops_citing_what_it_deletes(replicas) -> None:
    indexer, reader = replicas
    before = reader.ask(QUESTION)
    assert before.refused and not before.citations  # nothing to cite yet: the next check can fail
    indexer.add_document("zephyr.txt", ZEPHYR_FR.encode())
    answer = reader.ask(QUESTION)
    assert not answer.refused and "2021" in answer.answer
    assert [c.source for c in answer.citations] == ["zephyr.txt"]
    assert reader.status().lexical_chunks == indexer.status().chunks  # the reader caught up its own BM25 index
    indexer.delete_document("zephyr.txt")
    after = reader.ask(QUESTION)
    assert all(c.source != "zephyr.txt" for c in after.citations)
    assert all(p.source != "zephyr.txt" for p in after.passages)


def test_a_reader_never_reconciles_at_start_up_even_when_asked(replicas) -> None:
    _, reader = replicas
    corpus = reader.settings.corpus_dir
    (corpus / "local.txt").write_text(ZEPHYR_FR, encoding="utf-8")
    (corpus / ".left.txt.upload").write_text("half an upload", encoding="utf-8")
    reader.startup.start(reconcile=True)  # as the UI's page load asks
    assert reader.startup.done.wait(30) and reader.startup.error is None
    assert reader.startup.step.stage == "ready" and not reader.startup.reconcile
    assert reader.documents() == []  # its corpus folder was not indexed into the shared store
    assert (corpus / ".left.txt.upload").exists()  # nor cleaned: a reader does not touch the corpus


def test_the_api_of_a_reader_answers_403_read_only_to_writes_and_serves_reads(replicas) -> None:
    indexer, reader = replicas
    indexer.add_document("zephyr.txt", ZEPHYR_FR.encode())
    client = TestClient(create_app(reader, with_ui=False))
    writes = [
        client.post("/v1/documents", files={"files": ("other.txt", b"Un autre texte.\n", "text/plain")}),
        client.delete("/v1/documents/zephyr.txt"),
        client.post("/v1/index/refresh"),
        client.post("/v1/index/refresh", json={"rebuild": True}),
    ]
    for response in writes:
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"], error["status"]) == ("permission_error", "read_only", 403)
        assert "read-only replica" in error["message"]

    assert [d["source"] for d in client.get("/v1/documents").json()] == ["zephyr.txt"]  # nothing was deleted
    assert client.get("/v1/index/status").json()["activity"]["last_error"] == "read-only replica"
    answer = client.post("/v1/ask", json={"question": QUESTION})
    assert answer.status_code == 200 and [c["source"] for c in answer.json()["citations"]] == ["zephyr.txt"]
    schema = client.get("/openapi.json").json()["paths"]
    assert "403" in schema["/v1/documents"]["post"]["responses"]
    assert "403" in schema["/v1/index/refresh"]["post"]["responses"]


def test_the_ui_says_the_reader_is_read_only(replicas, tmp_path: Path) -> None:
    from ui.handlers import Handlers
    from ui.i18n import t

    indexer, reader = replicas
    indexer.add_document("zephyr.txt", ZEPHYR_FR.encode())
    handlers = Handlers(reader)
    for lang in ("en", "fr"):
        assert handlers.reindex(lang, True, None)[-1] == t(lang, "read_only")
        assert t(lang, "read_only") in handlers.do_delete("zephyr.txt", lang, True, None)[-1]
        uploaded = tmp_path / "uploads" / "other.txt"
        uploaded.parent.mkdir(exist_ok=True)
        uploaded.write_bytes(b"Un autre texte.\n")
        assert t(lang, "read_only") in handlers._add_file(uploaded, False, lang, uploaded.parent)
        assert not uploaded.exists()  # the refused upload's stored copy is removed all the same
    assert [r.source for r in indexer.documents()] == ["zephyr.txt"]


@pytest.mark.parametrize("api_key", [None, "secret"])
def test_the_ui_of_a_reader_shows_no_write_controls_but_where_documents_are_managed(fake_service, api_key) -> None:
    from ui.app import build_ui
    from ui.i18n import t

    for read_only in (False, True):
        demo = build_ui(fake_service(api_key=api_key, read_only=read_only))
        parts = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
        writable = not read_only
        # The upload, delete and re-index controls live in one column; the key field asks for the right to use them.
        assert parts["rag-write-controls"].visible is (writable and api_key is None)
        assert parts["rag-key-box"].visible is (writable and api_key is not None)
        note = parts["rag-read-only"]
        assert note.visible is read_only and note.value == t("en", "read_only")
        relabel = next(event for event in demo.fns.values() if event.name == "apply_language")
        assert relabel.fn("fr", "", [])[relabel.outputs.index(note)] == t("fr", "read_only")


def test_rag_index_on_a_reader_exits_5_and_serve_read_only_sets_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    import rag.api
    import rag.service
    from rag.cli import main

    (tmp_path / "corpus").mkdir()
    for name, value in {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_CORPUS_DIR": str(tmp_path / "corpus"),
        "RAG_GENERATOR": "extractive",
        "RAG_QUERY_TRANSLATION": "off",
    }.items():
        monkeypatch.setenv(name, value)
    real = rag.service.RagService
    monkeypatch.setattr(
        rag.service, "RagService", lambda settings: real(settings, embedder=HashEmbedder(), stores=MemoryBackend())
    )
    monkeypatch.setenv("RAG_READ_ONLY", "true")
    assert main(["index", "--watch"]) == 5  # refused before it would watch
    assert "read-only replica" in capsys.readouterr().err
    monkeypatch.delenv("RAG_READ_ONLY")

    served: list = []
    monkeypatch.setattr(rag.api, "create_app_from_settings", lambda settings, **options: served.append(settings))
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    assert main(["serve", "--read-only", "--no-ui"]) == 0
    assert main(["serve", "--no-index", "--no-ui"]) == 0
    assert [settings.read_only for settings in served] == [True, False]  # --no-index alone still takes writes
