"""Indexing with the real embedding model and a real Chroma: formats, incremental refresh, crash safety."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from harness import RELATED, REPO
from office_samples import csv_bytes, docx_bytes, eml_bytes, epub_bytes, odp_bytes, ods_bytes, odt_bytes, pptx_bytes
from samples import pdf_bomb

from index import discovery
from index.discovery import LINK_OUTSIDE
from index.loaders import MAX_PAGE_CHARS, load_document
from index.types import size_limit_reason
from index.watch import watch
from rag import refresh
from rag.errors import IndexBusyError, IndexMismatchError
from rag.refresh import Refresher, index_lock
from rag.retrieval import HybridRetriever
from rag.service import RagService
from rag.store import ChromaStore

ARTICLE = REPO / "corpus" / "deepseek_article_fr.txt"


@pytest.fixture(scope="module")
def full_index(tmp_path_factory, embedder):
    """corpus/ and the related documents, indexed once for the module."""
    from rag.settings import Settings

    data = tmp_path_factory.mktemp("full")
    settings = Settings(_env_file=None, data_dir=data / "data", corpus_dir=REPO / "corpus", generator="extractive")
    service = RagService(settings, embedder=embedder)
    before = embedder.texts_embedded
    report = service.refresh([REPO / "corpus", RELATED])
    return service, report, embedder.texts_embedded - before


def test_every_format_is_indexed(full_index):
    service, report, embedded = full_index
    assert report.skipped == []
    assert report.added == 1 + len(list(RELATED.iterdir()))
    assert embedded > report.chunks  # chunk vectors and sentence vectors
    kinds = {r.kind for r in service.documents()}
    assert kinds == {"txt", "md", "html", "pdf"}
    pdf_chunks = service.store.chunks(["deepseek_r1_paper_en.pdf"])
    assert {c.page for c in pdf_chunks} >= set(range(1, 17))
    act = " ".join(c.text for c in service.store.chunks(["eu_ai_act_2024_1689_art2_chapter_v_gpai_art113_en.html"]))
    assert "10^25" in act and "1025 " not in act
    assert len(service.lexical()) == report.chunks == service.store.count()


def test_offsets_round_trip_for_every_chunk(full_index):
    service, _, _ = full_index
    for record in service.documents():
        document = load_document(Path(record.path), Path(record.root))
        for chunk in service.store.chunks([record.source]):
            assert document.text[chunk.start : chunk.end] == chunk.text, (record.source, chunk.index)


def test_second_run_is_unchanged_and_embeds_nothing(full_index, embedder):
    service, first, _ = full_index
    before = embedder.texts_embedded
    started = time.perf_counter()
    report = service.refresh([REPO / "corpus", RELATED])
    elapsed = time.perf_counter() - started
    assert (report.added, report.updated, report.deleted) == (0, 0, 0)
    assert report.unchanged == first.added
    assert embedder.texts_embedded == before
    assert elapsed < 10  # measured well under 1 s (bench/index.py); generous here for a loaded CI machine


def test_a_question_naming_its_source_is_shown_that_source(full_index):
    service, _, _ = full_index
    lexical = service.lexical()
    chips = "What does La Minute Cyber say about DeepSeek's chips?"
    assert lexical.named_sources(chips, "en") == ["laminutecyber_deepseek_espionnage_export_puces_fr.md"]
    # the article's "article" is also every law's word: a topic, not a name
    assert lexical.named_sources("Selon l'article, quand DeepSeek a-t-il été lancé ?", "fr") == []
    cost = "Que dit Wikipédia du coût d'entraînement de DeepSeek ?"
    assert lexical.named_sources(cost, "fr") == sorted(f.name for f in RELATED.glob("wikipedia_*"))
    # without its place, neither question is shown a passage of the source it names (measured on this index)
    assert any(p.source.startswith("wikipedia_") for p in service.chain.retriever.retrieve(cost, 5))
    assert any(p.source.startswith("laminutecyber_") for p in service.chain.retriever.retrieve(chips, 5))


def test_a_question_on_one_release_is_shown_that_release_first(full_index):
    service, _, _ = full_index
    retriever = service.chain.retriever
    question = "Which two architectures does DeepSeek-V3 adopt for efficient inference and cost-effective training?"
    assert retriever.retrieve(question, 5)[0].source == "deepseek_v3_readme_en.md"
    # without the order, the report on DeepSeek-V2 (the same two architectures) comes first (measured on this index)
    unordered = HybridRetriever(
        retriever.store, retriever.lexical, retriever.embed_query, replace(retriever.weights, versions_first=False)
    )
    assert unordered.retrieve(question, 5)[0].source == "deepseek_v2_tech_report_en.pdf"


def test_english_question_finds_the_french_article(full_index):
    service, _, _ = full_index
    passages = service.chain.retriever.retrieve("When did Italy ban DeepSeek, and why?", 5)
    assert any(p.source == "deepseek_article_fr.txt" and "30 janvier" in p.text for p in passages)


# --- a small corpus of our own, mutated by the tests --------------------------------------------


@pytest.fixture
def small(make_settings, embedder, tmp_path):
    settings = make_settings()
    settings.corpus_dir.mkdir(parents=True)
    shutil.copy(ARTICLE, settings.corpus_dir / ARTICLE.name)
    (settings.corpus_dir / "notes.md").write_text(
        "# Projet Zéphyr\n\nLe projet Zéphyr a été lancé à Lyon le 3 mars 2031 par l'équipe Orion.\n\n"
        "## Budget\n\nSon budget initial était de douze millions d'euros, financé par la région.\n",
        encoding="utf-8",
    )
    (settings.corpus_dir / "legacy.txt").write_bytes(
        "Le comité s'est réuni à Orléans : décision prise à l'unanimité, été 2030.\n".encode("cp1252")
    )
    service = RagService(settings, embedder=embedder)
    report = service.refresh()
    assert report.added == 3 and report.skipped == []
    return service


def sources_in_lexical(service: RagService) -> set[str]:
    return set(service.lexical().keys())


def test_cp1252_french_file_reads_right(small):
    text = " ".join(c.text for c in small.store.chunks(["legacy.txt"]))
    assert "Orléans" in text and "réuni" in text and "été 2030" in text


def test_editing_one_file_updates_that_file_only(small, embedder):
    others = {s: small.store.ids_for_source(s) for s in ("deepseek_article_fr.txt", "legacy.txt")}
    notes = small.settings.corpus_dir / "notes.md"
    notes.write_text(notes.read_text(encoding="utf-8") + "\n## Suite\n\nLe projet a été prolongé jusqu'en 2035.\n")
    before = embedder.texts_embedded
    report = small.refresh()
    assert (report.added, report.updated, report.unchanged, report.deleted) == (0, 1, 2, 0)
    assert {s: small.store.ids_for_source(s) for s in others} == others
    assert 0 < embedder.texts_embedded - before < 10  # only the new chunk (and its sentences) was embedded
    answer = small.ask("Jusqu'à quand le projet Zéphyr a-t-il été prolongé ?", generator="extractive")
    # The new text is retrieved (which of two near-tied passages of notes.md the extractive answer quotes is
    # the generator's business, tested in test_generation.py).
    assert any(p.source == "notes.md" and "2035" in p.text for p in answer.passages)


def test_deleting_a_file_removes_its_chunks_everywhere(small):
    (small.settings.corpus_dir / "notes.md").unlink()
    report = small.refresh()
    assert report.deleted == 1
    assert small.store.ids_for_source("notes.md") == set()
    assert small.store.chunks(["notes.md"]) == []
    assert "notes.md" not in sources_in_lexical(small)
    assert "notes.md" not in {r.source for r in small.documents()}


def test_crash_between_write_and_delete_keeps_the_document_answerable(small):
    notes = small.settings.corpus_dir / "notes.md"
    old_ids = small.store.ids_for_source("notes.md")
    notes.write_text(notes.read_text(encoding="utf-8").replace("douze millions", "quinze millions"), encoding="utf-8")

    def crash(source: str) -> None:
        raise RuntimeError(f"injected crash after writing {source}")

    with pytest.raises(RuntimeError, match="injected crash"):
        small.refresh(after_write=crash)
    # Old and new chunks are both there: the document still answers.
    assert old_ids <= small.store.ids_for_source("notes.md")
    answer = small.ask("Où le projet Zéphyr a-t-il été lancé ?", generator="extractive")
    assert any(c.source == "notes.md" for c in answer.citations)
    # The next run converges: the update is redone, the stale chunk goes, nothing is duplicated.
    report = small.refresh()
    assert report.updated == 1
    chunks = small.store.chunks(["notes.md"])
    record = next(r for r in small.documents() if r.source == "notes.md")
    assert len(chunks) == len({c.text for c in chunks}) == record.chunks
    assert any("quinze millions" in c.text for c in chunks)
    assert not any("douze millions" in c.text for c in chunks)


def test_bad_files_are_skipped_with_reasons_while_the_others_index(small):
    corpus = small.settings.corpus_dir
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (corpus / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage\n%%EOF")
    (corpus / "new.md").write_text("# Nouveau\n\nUn document valide ajouté en même temps.\n", encoding="utf-8")
    report = small.refresh()
    reasons = {Path(s["path"]).name: s["reason"] for s in report.skipped}
    assert set(reasons) == {"empty.txt", "binary.txt", "corrupt.pdf"}
    assert all(reasons.values())
    assert report.added == 1 and "new.md" in {r.source for r in small.documents()}
    # a file that turns bad keeps its previous chunks: nothing is lost
    (corpus / "legacy.txt").write_bytes(b"\x00\x01\x02" * 100)
    report = small.refresh()
    assert any(Path(s["path"]).name == "legacy.txt" for s in report.skipped)
    assert small.store.ids_for_source("legacy.txt")


def test_model_mismatch_is_refused(small):
    store = small.store
    with pytest.raises(IndexMismatchError, match="rag index --rebuild"):
        ChromaStore(store.client, store.name, "some-other-model", store.dimension)


def test_two_indexers_are_prevented_by_a_lock(small):
    with index_lock(small.settings.data_dir), pytest.raises(IndexBusyError, match="Another indexer"):
        small.refresh()


def test_rebuild_builds_aside_and_swaps_in(small, embedder):
    before = {r.source: r.chunks for r in small.documents()}
    report = small.refresh(rebuild=True)
    assert report.added == len(before) and report.skipped == []
    assert {r.source: r.chunks for r in small.documents()} == before
    assert small.store.count() == sum(before.values())
    assert small.ask("Où le projet Zéphyr a-t-il été lancé ?", generator="extractive").citations


def test_watch_reindexes_once_files_settle_and_outlives_bad_files(small):
    corpus = small.settings.corpus_dir
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=watch,
        args=([corpus], lambda: small.refresh()),
        kwargs={"settle_seconds": 0.5, "stop": stop, "ready": ready},
    )
    thread.start()
    assert ready.wait(10)
    try:
        (corpus / "broken.pdf").write_bytes(b"not a pdf at all")
        (corpus / "watched.md").write_text("# Veille\n\nLe fichier surveillé parle de la ville de Nantes.\n")
        deadline = time.monotonic() + 60
        while "watched.md" not in {r.source for r in small.documents()} and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "watched.md" in {r.source for r in small.documents()}
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=10)


def test_surrounding_text_places_a_quote_in_its_document(small):
    chunk = next(c for c in small.store.chunks(["notes.md"]) if "Lyon" in c.text)
    text, start = small.surrounding_text("notes.md", chunk.start, chunk.end, chars=40)
    assert text[chunk.start - start : chunk.end - start] == chunk.text
    assert len(text) > len(chunk.text)


def test_pdf_bomb_is_skipped_while_the_other_files_index(small):
    corpus = small.settings.corpus_dir.resolve()
    (corpus / "bomb.pdf").write_bytes(pdf_bomb())
    (corpus / "after.txt").write_text("Le rapport annuel a été publié à Rennes.\n", encoding="utf-8")
    started = time.perf_counter()
    report = small.refresh()
    elapsed = time.perf_counter() - started
    assert report.skipped == [
        {"path": str(corpus / "bomb.pdf"), "reason": f"PDF page 1 too long: over {MAX_PAGE_CHARS} characters"}
    ]
    assert report.added == 1 and "after.txt" in {r.source for r in small.documents()}
    assert elapsed < 30, f"refresh took {elapsed:.1f}s"
    assert small.refresh().skipped == report.skipped  # the lock was released and the bomb is still refused


def test_links_leaving_the_corpus_are_not_followed(small, tmp_path, monkeypatch):
    corpus = small.settings.corpus_dir.resolve()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("Le code du coffre est 4812.\n", encoding="utf-8")
    (corpus / "secret.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    (corpus / "alias.txt").symlink_to(corpus / "legacy.txt")
    skipped = [{"path": str(corpus / "secret.txt"), "reason": LINK_OUTSIDE}]

    report = small.refresh()
    assert report.skipped == skipped
    assert report.added == 1  # alias.txt: a link inside the corpus is followed
    assert "secret.txt" not in {r.source for r in small.documents()}

    # An index built before links were checked holds the link: the next refresh removes it, later ones
    # do not bring it back.
    for module in (discovery, refresh):  # discovery walks the folder, refresh keeps what it holds
        monkeypatch.setattr(module, "links_outside", lambda path, root: False)
    assert small.refresh().added == 1
    assert "secret.txt" in {r.source for r in small.documents()}
    monkeypatch.undo()
    report = small.refresh()
    assert (report.deleted, report.skipped) == (1, skipped)
    report = small.refresh()
    assert (report.added, report.deleted, report.skipped) == (0, 0, skipped)
    assert not any("4812" in c.text for c in small.store.chunks())


def test_an_uploaded_readme_is_kept_by_folder_refreshes(small):
    corpus = small.settings.corpus_dir
    readme = corpus / "README.md"
    readme.write_text("# Corpus\n\nCe dossier contient les documents du chatbot.\n", encoding="utf-8")
    assert small.refresh().added == 0  # the folder's own description is not one of its documents

    readme.write_text("# Guide Zéphyr\n\nLe guide du projet Zéphyr est mis à jour chaque trimestre.\n", "utf-8")
    assert small.refresh([readme]).added == 1  # as an upload does: the file given directly
    report = small.refresh()
    assert (report.unchanged, report.deleted) == (4, 0)
    assert "README.md" in {r.source for r in small.documents()}

    readme.write_text("# Guide Zéphyr\n\nLe guide du projet Zéphyr est mis à jour chaque mois.\n", "utf-8")
    assert small.refresh().updated == 1
    assert any("chaque mois" in c.text for c in small.store.chunks(["README.md"]))
    small.refresh(rebuild=True)  # a rebuild walks the folders: the README given on purpose comes along
    assert "README.md" in {r.source for r in small.documents()}

    small.delete_document("README.md")
    assert not readme.exists()
    assert "README.md" not in {r.source for r in small.documents()}


def test_files_over_the_size_limit_are_skipped(small):
    corpus = small.settings.corpus_dir.resolve()
    (corpus / "big.txt").write_text("Une ligne de texte ordinaire.\n" * 60_000, encoding="utf-8")  # 1.7 MB
    settings = small.settings
    refresher = Refresher(
        small.store,
        small.embedder,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        max_file_bytes=1024 * 1024,
    )
    report = refresher.run([corpus])
    assert report.skipped == [{"path": str(corpus / "big.txt"), "reason": "too large: 1.7 MB, limit 1 MB"}]
    assert (report.added, report.unchanged) == (0, 3)
    assert "big.txt" not in {r.source for r in small.documents()}
    assert size_limit_reason(20 * 1024 * 1024 + 1, 20 * 1024 * 1024) == "too large: 20.0 MB, limit 20 MB"


# --- office files -----------------------------------------------------------------------------------------


def _suppliers_workbook() -> bytes:
    """A workbook whose second sheet lists suppliers, one row a supplier."""
    import io

    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Sommaire"
    workbook.active.append(["Classeur des achats du projet Héliodore, mis à jour chaque mois."])
    suppliers = workbook.create_sheet("Fournisseurs")
    suppliers.append(["Fournisseur", "Ville", "Délai de livraison", "Pièce fournie"])
    suppliers.append(["Forges de l'Est", "Nancy", "30 jours", "châssis en acier"])
    suppliers.append(["Atelier Corvette", "Saint-Malo", "12 jours", "voiles en lin"])
    suppliers.append(["Verrerie Lumière", "Biot", "45 jours", "hublots"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_office_files_are_indexed_and_cited_with_their_slide_or_sheet(make_settings, embedder):
    settings = make_settings()
    corpus = settings.corpus_dir
    corpus.mkdir(parents=True)
    (corpus / "rapport.docx").write_bytes(
        docx_bytes(paragraphs=("Le projet Héliodore a été confié au cabinet Vauban Conseil, installé à Besançon.",))
    )
    slides = [("Budget", ["Le budget du projet Héliodore pour 2032 est de 4,2 millions d'euros."], "")]
    (corpus / "presentation.pptx").write_bytes(pptx_bytes(slides))
    (corpus / "achats.xlsx").write_bytes(_suppliers_workbook())
    service = RagService(settings, embedder=embedder)
    report = service.refresh()
    assert (report.added, report.skipped) == (3, [])
    assert {r.source: r.kind for r in service.documents()} == {
        "rapport.docx": "docx",
        "presentation.pptx": "pptx",
        "achats.xlsx": "xlsx",
    }
    cases = [
        ("Quel cabinet a reçu le projet Héliodore ?", "rapport.docx", None, "Vauban Conseil"),
        ("Quel est le budget du projet Héliodore pour 2032 ?", "presentation.pptx", 2, "4,2 millions"),
        ("Quel est le délai de livraison de l'Atelier Corvette ?", "achats.xlsx", 2, "12 jours"),
    ]
    for question, source, page, fact in cases:
        answer = service.ask(question, generator="extractive")
        cited = [c for c in answer.citations if c.source == source]
        assert cited, (question, answer.answer, [(c.source, c.page) for c in answer.citations])
        assert any(c.page == page and fact in c.text for c in cited), (question, [(c.page, c.text) for c in cited])


def test_every_other_format_is_cited_and_a_corrupt_file_of_each_type_is_skipped(make_settings, embedder):
    settings = make_settings()
    corpus = settings.corpus_dir
    corpus.mkdir(parents=True)
    good = {
        "guide.odt": odt_bytes(),
        "strategie.odp": odp_bytes(),
        "annuaire.ods": ods_bytes(repeated_rows=1000),
        "membres.csv": csv_bytes(),
        "miserables.epub": epub_bytes(),
        "reunion.eml": eml_bytes(),
    }
    for name, data in good.items():
        (corpus / name).write_bytes(data)
    broken = [f"casse{suffix}" for suffix in (".docx", ".pptx", ".xlsx", ".odt", ".odp", ".ods", ".epub", ".png")]
    for name in broken:
        (corpus / name).write_bytes(b"PK\x03\x04 this archive was cut short")
    (corpus / "casse.eml").write_bytes(bytes(range(256)) * 8)
    (corpus / "casse.csv").write_bytes(b"\x00\xff\xfe" * 400)
    service = RagService(settings, embedder=embedder)
    report = service.refresh()
    assert report.added == len(good)
    reasons = {Path(entry["path"]).name: entry["reason"] for entry in report.skipped}
    assert set(reasons) == {*broken, "casse.eml", "casse.csv"}, reasons
    assert all(reason and "Traceback" not in reason for reason in reasons.values())
    cases = [
        ("Combien coûte le billet adulte ?", "guide.odt", None, "15 €"),
        ("Quel est l'objectif de la stratégie 2030 ?", "strategie.odp", 1, "Réduire les coûts"),
        ("Dans quel bureau travaille Loïc Hervé ?", "annuaire.ods", 1, "B-212"),
        ("Quel âge a Martin Jr ?", "membres.csv", None, "37"),
        ("Où vit Cosette ?", "miserables.epub", None, "Montfermeil"),
        ("Dans quelle salle aura lieu la réunion du comité ?", "reunion.eml", None, "Jeanne-d'Arc"),
    ]
    for question, source, page, fact in cases:
        answer = service.ask(question, generator="extractive")
        cited = [c for c in answer.citations if c.source == source]
        assert any(c.page == page and fact in c.text for c in cited), (question, answer.answer, answer.citations)
