"""The service on fakes: indexing, uploads, deletions, rebuilds and answers, in well under a second each.
The same paths on the real model and Chroma are in tests/integration (test_index, test_api, test_answers)."""

from __future__ import annotations

import pytest
from fakes import HashEmbedder, scripted_chat_model

from index.chunking import chunk_document
from index.loaders import load_document
from rag.errors import DocumentError, IndexBusyError
from rag.refresh import embed_chunks
from rag.schema import StartupStep

ZEPHYR_FR = (
    "Le projet Zéphyr a été lancé en 2021 par la ville de Lyon. "
    "Il relie les bibliothèques municipales par un catalogue commun.\n"
)
HARBOUR_EN = "The Harbour bridge opened in 1932 after eight years of work. It carries eight lanes of traffic.\n"


def _write(service, name: str, text: str) -> None:
    (service.settings.corpus_dir / name).write_text(text, encoding="utf-8")


def test_refresh_indexes_the_corpus_and_an_answer_cites_the_exact_passage(fake_service) -> None:
    service = fake_service(min_similarity=0.05)
    _write(service, "zephyr.txt", ZEPHYR_FR)
    _write(service, "harbour.txt", HARBOUR_EN)
    report = service.refresh()
    assert (report.added, report.documents) == (2, 2)
    status = service.status()
    assert (status.documents, status.lexical_chunks) == (2, status.chunks)  # BM25 in step with the store

    answer = service.ask("When did the Harbour bridge open?")
    assert not answer.refused and answer.citations
    cited = answer.citations[0]
    assert cited.source == "harbour.txt"
    assert HARBOUR_EN[cited.quote_start : cited.quote_end] == cited.quote  # offsets into the document text
    assert "1932" in cited.quote


def test_an_unchanged_corpus_is_not_embedded_again(fake_service) -> None:
    service = fake_service()
    _write(service, "zephyr.txt", ZEPHYR_FR)
    service.refresh()
    embedded = len(service.embedder.calls)
    report = service.refresh()
    assert (report.unchanged, report.added, report.updated) == (1, 0, 0)
    assert len(service.embedder.calls) == embedded


def test_uploads_report_added_unchanged_updated_and_skipped(fake_service) -> None:
    service = fake_service()
    assert service.add_document("zephyr.txt", ZEPHYR_FR.encode()).outcome == "added"
    assert service.add_document("zephyr.txt", ZEPHYR_FR.encode()).outcome == "unchanged"
    with pytest.raises(DocumentError) as different:
        service.add_document("zephyr.txt", HARBOUR_EN.encode())
    assert different.value.status == 409
    updated = service.add_document("zephyr.txt", HARBOUR_EN.encode(), replace=True)
    assert (updated.outcome, updated.record.source) == ("updated", "zephyr.txt")

    broken = service.add_document("broken.pdf", b"%PDF-1.7 this is not a PDF")
    assert broken.outcome == "skipped" and broken.reason
    assert not (service.settings.corpus_dir / "broken.pdf").exists()  # not kept: the folder is what is indexed
    assert [r.source for r in service.documents()] == ["zephyr.txt"]  # the rest stays answerable


def test_uploads_are_bounded_and_named_safely(fake_service) -> None:
    service = fake_service(max_upload_bytes=1000)
    with pytest.raises(DocumentError) as too_big:
        service.add_document("big.txt", b"x" * 1001)
    assert (too_big.value.status, too_big.value.code) == (413, "file_too_large")
    with pytest.raises(DocumentError) as unsupported:
        service.add_document("tool.exe", b"MZ")
    assert unsupported.value.status == 415
    saved = service.add_document("../../etc/passwd.txt", b"root: not really\n")
    assert saved.source == "passwd.txt" and (service.settings.corpus_dir / "passwd.txt").is_file()


def test_a_deleted_document_no_longer_answers(fake_service) -> None:
    service = fake_service(min_similarity=0.05)
    service.add_document("zephyr.txt", ZEPHYR_FR.encode())
    service.add_document("harbour.txt", HARBOUR_EN.encode())
    report = service.delete_document("harbour.txt")
    assert (report.deleted, report.documents) == (1, 1)
    assert not (service.settings.corpus_dir / "harbour.txt").exists()
    answer = service.ask("When did the Harbour bridge open?")
    assert all(c.source != "harbour.txt" for c in answer.citations)
    assert all(p.source != "harbour.txt" for p in answer.passages)
    with pytest.raises(DocumentError):
        service.delete_document("harbour.txt")


def test_a_rebuild_replaces_the_live_store_only_when_done(fake_service) -> None:
    service = fake_service()
    _write(service, "zephyr.txt", ZEPHYR_FR)
    service.refresh()
    before = service.store
    report = service.refresh(rebuild=True)
    assert report.documents == 1 and service.store is not before
    assert [r.source for r in service.documents()] == ["zephyr.txt"]


def test_one_indexer_at_a_time(fake_service) -> None:
    service = fake_service()
    with service.indexing_lock(), pytest.raises(IndexBusyError):
        service.refresh()


def test_a_chat_answer_keeps_verified_sentences_and_withholds_the_invented_one(fake_service) -> None:
    reply = (
        "Le projet Zéphyr a été lancé en 2021 par la ville de Lyon [1]. "
        "Le projet a coûté quarante millions d'euros aux contribuables [1]."
    )
    service = fake_service(generator="local", min_similarity=0.05, chat_models={"local": scripted_chat_model(reply)})
    service.add_document("zephyr.txt", ZEPHYR_FR.encode())
    answer = service.ask("Quand le projet Zéphyr a-t-il été lancé ?")
    assert answer.language == "fr" and answer.generator == "local"
    assert "2021" in answer.answer and "quarante" not in answer.answer
    assert [u.text for u in answer.unsupported] == ["Le projet a coûté quarante millions d'euros aux contribuables."]
    assert answer.citations[0].source == "zephyr.txt"


def _record_steps(service) -> list[StartupStep]:
    """Every step the start-up task reports, as the front ends would read them."""
    seen: list[StartupStep] = []
    report = service.startup._set

    def record(stage: str, **fields) -> None:
        report(stage, **fields)
        seen.append(service.startup.step)

    service.startup._set = record  # type: ignore[method-assign]
    return seen


def test_start_up_reconciles_the_corpus_and_reports_typed_steps(fake_service) -> None:
    service = fake_service()
    _write(service, "zephyr.txt", ZEPHYR_FR)
    (service.settings.corpus_dir / ".left.txt.upload").write_text("half an upload", encoding="utf-8")
    seen = _record_steps(service)
    service.startup.start()
    assert service.startup.done.wait(30) and service.startup.error is None
    stages = [step.stage for step in seen]
    assert stages[:2] == ["embeddings", "indexing"] and stages[-2:] == ["generator", "ready"]
    assert StartupStep(stage="indexing", done=1, total=1, current="zephyr.txt") in seen
    assert [r.source for r in service.documents()] == ["zephyr.txt"]
    assert not (service.settings.corpus_dir / ".left.txt.upload").exists()  # a crashed upload's leftovers go


def test_start_up_leaves_the_index_to_another_indexer(fake_service) -> None:
    service = fake_service()
    seen = _record_steps(service)
    with service.indexing_lock():
        service.startup.start()
        assert service.startup.done.wait(30)
    assert "index_busy" in [step.stage for step in seen]
    assert service.startup.step.stage == "ready" and service.startup.error is None
    assert service.startup.describe() == "ready"


def test_an_upload_reads_only_its_own_document_record(fake_service, monkeypatch) -> None:
    """At a team's scale, listing every document record per upload was a cost that grew with the corpus: an upload
    (and the lexical catch-up after it) reads its own record by id; a folder refresh still lists them all."""
    service = fake_service(min_similarity=0.05)
    _write(service, "zephyr.txt", ZEPHYR_FR)
    _write(service, "harbour.txt", HARBOUR_EN)
    service.refresh()
    store, asked = service.store, []
    listing = store.documents

    def documents(sources=None):
        asked.append(None if sources is None else sorted(sources))
        return listing(sources)

    monkeypatch.setattr(store, "documents", documents)
    updated = service.add_document("harbour.txt", HARBOUR_EN.replace("1932", "1933").encode(), replace=True)
    assert updated.outcome == "updated" and updated.record.source == "harbour.txt"
    assert asked and all(sources == ["harbour.txt"] for sources in asked), asked
    assert [h.chunk_id for h in service.lexical().search("1933", 3)] == list(store.ids_for_source("harbour.txt"))
    assert service.status().lexical_chunks == store.count()
    asked.clear()
    service.refresh()
    assert None in asked


def test_a_sentence_in_two_overlapping_chunks_is_embedded_once(tmp_path) -> None:
    sentences = [f"Sentence number {n} of the report tells the reader about topic {n}." for n in range(40)]
    path = tmp_path / "report.txt"
    path.write_text(" ".join(sentences), encoding="utf-8")
    chunks = chunk_document(load_document(path, tmp_path), chunk_size=400, overlap=150)
    assert len(chunks) > 2
    embedder = HashEmbedder()
    vectors = embed_chunks(embedder, chunks)

    assert len(embedder.calls) == len(set(embedder.calls))  # each text sent once
    shared = [s for s in sentences if sum(s in c.text for c in chunks) > 1]
    assert shared  # the overlap put sentences in two chunks, yet each got its vector
    for chunk in chunks:
        kept = vectors[chunk.id]
        assert kept.chunk == embedder.embed_documents([chunk.embedding_text])[0]
        for start, end, vector in kept.sentences:
            assert vector == embedder.embed_documents([chunk.text[start:end]])[0]
