"""The BM25 side: how each language's text is analysed, what of a chunk it reads, scores equal to a bm25s index
built whole however the index got there (documents put, replaced, removed, merged), updates that cost what
changed, and the persisted index (a damaged document file is reported and read again, never an error at question
time)."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import bm25s
import numpy as np
import pytest
from fakes import MemoryStore

import rag.lexical
from index.types import Chunk
from rag.lexical import LexicalEntry, LexicalIndex, analyze_in, analyze_query
from rag.refresh import catch_up_lexical, lexical_key
from rag.schema import DocumentRecord
from rag.store import ChunkVectors

TEXTS = [
    "La CNIL encadre le transfert de données personnelles hors de l'Union européenne.",
    "DeepSeek R1 was trained with reinforcement learning on reasoning tasks.",
    "L'Italie a interdit DeepSeek le 30 janvier pour des raisons de transfert de données.",
    "The Eiffel Tower is 330 metres tall and was built for the 1889 World's Fair.",
    "Photosynthesis converts light energy into chemical energy in plants.",
]
IDS = [f"c{i}" for i in range(len(TEXTS))]
SOURCES = ["cnil.md", "deepseek.md", "deepseek.md", "paris.md", "biology.md"]
QUERIES = ["transfert de données", "DeepSeek Italie", "Eiffel tower 1889", "reinforcement learning", "nothing matches"]


def test_english_is_stemmed_the_english_way_so_inflections_meet():
    assert analyze_in("applies", "en") == analyze_in("apply", "en") == analyze_in("applied", "en")
    index = LexicalIndex.build(["c"], ["ai_act.html"], ["This Regulation applies to providers."], ["en"])
    assert [hit.chunk_id for hit in index.search("When does it apply?", 5, language="en")] == ["c"]


def test_a_possessive_is_its_noun_whichever_apostrophe_it_is_typed_with():
    # "DeepSeek’s" (a web page's typographic apostrophe) made "deepseek’", which no other "DeepSeek" matched.
    for language in ("en", "fr"):
        assert analyze_in("DeepSeek’s models", language)[0] == analyze_in("DeepSeek's", language)[0] == "deepseek"
    assert analyze_query("Grall’s guide") == ["grall", "guid"]
    index = LexicalIndex.build(["c"], ["a.md"], ["Grall wrote a guide on AI risks."], ["en"])
    assert [hit.chunk_id for hit in index.search("What is Grall’s view?", 5, language="en")] == ["c"]


def test_each_language_drops_only_its_own_stopwords():
    assert "ai" in analyze_in("the AI Act", "en")  # the French "ai" (has) is a stopword, the English "AI" is not
    assert analyze_in("j'ai", "fr") == []
    assert "ai" in analyze_query("the AI Act")  # a query for either language keeps what either keeps


def test_french_is_stemmed_lightly_so_unrelated_words_stay_apart():
    # Snowball's French stemmer makes "organisme" and "organe" one word; plural and feminine endings only here.
    assert analyze_in("organismes", "fr") == analyze_in("organisme", "fr") != analyze_in("organe", "fr")


def french_chunk(source: str, text: str, *headings: str) -> Chunk:
    return Chunk(
        source=source, title="", text=text, start=0, end=len(text), index=0, heading_path=headings, language="fr"
    )


def test_a_question_naming_a_file_finds_its_passages_by_the_file_name():
    chunks = [
        french_chunk("related/cnil_guide_rgpd.html", "Tenez un registre des traitements.", "Fiche 3"),
        french_chunk("related/gdpr_chapter_v.txt", "Un registre des traitements est tenu."),
    ]
    assert chunks[0].search_text.startswith("cnil guide rgpd\n")
    index = LexicalIndex.build(
        [c.source for c in chunks], [c.source for c in chunks], [c.search_text for c in chunks], ["fr", "fr"]
    )
    hits = index.search("Le registre des traitements selon le guide de la CNIL", 5, language="fr")
    assert hits[0].chunk_id == "related/cnil_guide_rgpd.html" and hits[0].score > 2 * hits[1].score


def test_a_file_name_word_no_other_document_holds_names_its_documents_and_a_topic_word_names_none():
    def page(source: str, text: str, title: str = "") -> Chunk:
        return Chunk(source=source, title=title, text=text, start=0, end=len(text), index=0, language="fr")

    wiki = "wikipedia_distillation.md"
    chunks = [
        page(wiki, "Hinton a formulé le concept en 2015.", "Distillation des connaissances"),
        page(wiki, "Le modèle élève imite le modèle maître.", "Distillation des connaissances"),
        page("pauseia_faq.md", "Pause IA demande un traité sur les puces."),
        page("pauseia_faq.md", "Qui nous finance ? Des dons."),
        page("paper.txt", "Le raisonnement de R1 est transmis, écrit Wikipedia."),
    ]
    index = LexicalIndex.build(
        [f"c{n}" for n in range(len(chunks))], [c.source for c in chunks], [c.search_text for c in chunks]
    )
    # "wikipedia" is in the page's file name, but the paper's text holds it too: it names nothing
    assert index.named_sources("D'après Wikipédia, qui a formulé le concept ?", "fr") == []
    index.remove("paper.txt")
    assert index.named_sources("D'après Wikipédia, qui a formulé le concept ?", "fr") == [wiki]
    assert index.named_sources("Que demande Pause IA ?", "fr") == ["pauseia_faq.md"]  # two words, as its name has it
    assert index.named_sources("Qui a formulé le concept ?", "fr") == []  # words of the text alone name nothing
    assert index.named_sources("Qu'est-ce que la distillation ?", "fr") == [wiki]  # a word of its name, nowhere else
    index.put("paper.txt", "", [LexicalEntry("c9", "paper\nLa distillation des modèles.", "fr")])
    assert index.named_sources("Qu'est-ce que la distillation ?", "fr") == []  # now another document's text holds it
    assert index.named_sources("D'après Wikipédia ?", "fr", sources=[wiki]) == []  # it names all there is to search


def warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rag.lexical" and r.levelno >= logging.WARNING]


# --- scores: those of a bm25s index built whole over the chunks present ---------------------------------------
WORDS = (
    "données transfert règlement modèle puce énergie coût entraînement Italie CNIL DeepSeek Mistral "
    "model chip energy cost training reasoning benchmark table regulation transfer court judgment"
).split()


def random_documents(seed: int, documents: int = 12) -> dict[str, list[LexicalEntry]]:
    """Documents of a few chunks of words drawn from a small vocabulary (so terms repeat across chunks), some
    chunks empty once analysed."""
    rng = random.Random(seed)
    result = {}
    for d in range(documents):
        entries = []
        for c in range(rng.randint(1, 4)):
            text = " ".join(rng.choices(WORDS, k=rng.randint(0, 30))) or "le la les"
            entries.append(LexicalEntry(f"doc{d}-{c}", text, rng.choice(["fr", "en"])))
        result[f"doc{d}.md"] = entries
    return result


def bm25s_scores(documents: dict[str, list[LexicalEntry]], query: str) -> dict[str, np.float32]:
    """What the index built whole with bm25s (the previous design) scores for `query`, by chunk id."""
    entries = [e for source in documents for e in documents[source]]
    retriever = bm25s.BM25()
    retriever.index([analyze_in(e.text, e.language) or ["\x00"] for e in entries], show_progress=False)
    tokens = analyze_query(query)
    scores = retriever.get_scores(tokens) if any(t in retriever.vocab_dict for t in tokens) else []
    return {e.chunk_id: score for e, score in zip(entries, scores, strict=False) if score > 0}


def index_scores(index: LexicalIndex, query: str) -> dict[str, np.float32]:
    return {hit.chunk_id: np.float32(hit.score) for hit in index.search(query, 1000)}


QUERIES_BOTH = ["transfert de données CNIL", "energy cost of training", "DeepSeek chip", "modèle règlement court"]


@pytest.mark.parametrize("merge_every", [10**9, 1], ids=["recent postings", "merged after each document"])
def test_scores_equal_a_bm25s_index_built_whole_after_any_sequence_of_updates(monkeypatch, merge_every: int):
    monkeypatch.setattr(rag.lexical, "_MERGE_MIN_POSTINGS", merge_every)
    monkeypatch.setattr(rag.lexical, "_MERGE_FRACTION", 10**9 if merge_every > 1 else 1)
    rng = random.Random(3)
    index, present = LexicalIndex(), {}
    for step in range(40):
        documents = random_documents(step)
        source = rng.choice(sorted(documents))
        if present and rng.random() < 0.3:
            gone = rng.choice(sorted(present))
            index.remove(gone)
            del present[gone]
        else:  # new, or a new version of one already there
            index.put(source, f"v{step}", documents[source])
            present[source] = documents[source]
        for query in QUERIES_BOTH:
            assert index_scores(index, query) == bm25s_scores(present, query), (step, query)
    assert len(index) == sum(len(entries) for entries in present.values())
    assert sorted(index.ids) == sorted(e.chunk_id for entries in present.values() for e in entries)


def test_equal_scores_rank_by_chunk_id_whatever_order_the_documents_came_in():
    same = "Le transfert de données est encadré."
    forwards, backwards = LexicalIndex(), LexicalIndex()
    names = [f"copy{n}.md" for n in range(6)]
    for name in names:
        forwards.put(name, "", [LexicalEntry(f"{name}#0", same, "fr")])
    for name in reversed(names):
        backwards.put(name, "", [LexicalEntry(f"{name}#0", same, "fr")])
    expected = [f"{name}#0" for name in names[:3]]
    assert [h.chunk_id for h in forwards.search("transfert", 3)] == expected
    assert [h.chunk_id for h in backwards.search("transfert", 3)] == expected


def test_a_search_within_sources_sees_only_their_passages():
    index = LexicalIndex.build(IDS, SOURCES, TEXTS)
    assert [h.chunk_id for h in index.search("transfert de données", 5, ["deepseek.md"])] == ["c2"]
    assert index.search("transfert de données", 5, ["absent.md"]) == []


# --- updates that cost what changed ---------------------------------------------------------------------------
class CountingStore(MemoryStore):
    """Counts the chunks the lexical catch-up reads from the store."""

    def __init__(self):
        super().__init__("live", "fake", 2)
        self.chunks_read = 0

    def chunks(self, sources: Sequence[str] | None = None) -> list[Chunk]:
        found = super().chunks(sources)
        self.chunks_read += len(found)
        return found

    def write(self, source: str, texts: list[str], version: str = "1") -> None:
        self.delete(self.ids_for_source(source))
        chunks = [
            Chunk(source=source, title="", text=t, start=0, end=len(t), index=n, language="fr")
            for n, t in enumerate(texts)
        ]
        self.upsert(chunks, [ChunkVectors([1.0, 0.0], []) for _ in chunks])
        self.put_document(
            DocumentRecord(
                source=source, root="", path=source, content_hash=version, size=1, mtime_ns=0, kind="md",
                title="", chunks=len(chunks), indexed_at=version, pipeline="p",
            )
        )  # fmt: skip


@pytest.fixture
def store() -> CountingStore:
    store = CountingStore()
    for n in range(20):
        store.write(f"doc{n}.md", [f"Document {n} : transfert de données numéro {n}.", f"Partie deux du {n}."])
    return store


def test_a_catch_up_reads_only_the_documents_whose_record_changed(store: CountingStore, tmp_path: Path):
    lexical = LexicalIndex(tmp_path / "lexical")
    assert catch_up_lexical(lexical, store) == 20 and store.chunks_read == 40 and len(lexical) == 40
    store.chunks_read = 0
    assert catch_up_lexical(lexical, store) == 0 and store.chunks_read == 0  # nothing changed, nothing read
    store.write("doc3.md", ["Document 3 réécrit : le vortiban de Quimperlé."], version="2")
    store.delete(store.ids_for_source("doc7.md"))
    store.delete_document("doc7.md")
    assert catch_up_lexical(lexical, store) == 2 and store.chunks_read == 1
    assert [h.chunk_id for h in lexical.search("vortiban", 5)] == list(store.ids_for_source("doc3.md"))
    assert lexical.search("numéro 7", 5, ["doc7.md"]) == [] and len(lexical) == 37
    assert lexical.keys()["doc3.md"] == lexical_key(store.documents()["doc3.md"])
    # A replica opening the files finds the same index and has nothing to read from the store.
    replica, store.chunks_read = LexicalIndex.open(tmp_path / "lexical"), 0
    assert catch_up_lexical(replica, store) == 0 and store.chunks_read == 0
    for query in [*QUERIES, "vortiban", "numéro 12"]:
        assert replica.search(query, 5) == lexical.search(query, 5)


def test_a_catch_up_for_given_documents_reads_and_changes_only_those(store: CountingStore, tmp_path: Path):
    lexical = LexicalIndex(tmp_path / "lexical")
    catch_up_lexical(lexical, store)
    store.write("doc3.md", ["Document 3 réécrit : le vortiban de Quimperlé."], version="2")
    store.write("doc4.md", ["Document 4 réécrit : le quimbolet."], version="2")
    store.delete(store.ids_for_source("doc7.md"))
    store.delete_document("doc7.md")
    store.chunks_read = 0
    assert catch_up_lexical(lexical, store, ["doc3.md"]) == 1 and store.chunks_read == 1
    assert lexical.search("vortiban", 3) and not lexical.search("quimbolet", 3)  # doc4 waits for its turn
    assert "doc7.md" in set(lexical.keys())
    assert catch_up_lexical(lexical, store, ["doc7.md"]) == 1 and "doc7.md" not in set(lexical.keys())
    assert catch_up_lexical(lexical, store) == 1 and lexical.search("quimbolet", 3)  # the full check sees doc4


def test_a_rebuilt_index_moves_in_whole(store: CountingStore, tmp_path: Path):
    live = LexicalIndex(tmp_path / "lexical")
    catch_up_lexical(live, store)
    built = LexicalIndex(tmp_path / "lexical.building")
    built.put("other.md", "k", [LexicalEntry("o#0", "Le vortiban.", "fr")])
    built.move_to(tmp_path / "lexical")
    assert not (tmp_path / "lexical.building").exists()
    assert LexicalIndex.open(tmp_path / "lexical").keys() == {"other.md": "k"}


# --- persistence: a damaged document file is read again, never an error ---------------------------------------
@pytest.fixture
def saved(store: CountingStore, tmp_path: Path) -> Path:
    catch_up_lexical(LexicalIndex(tmp_path / "lexical"), store)
    return tmp_path / "lexical"


def segment_of(directory: Path, source: str) -> Path:
    return rag.lexical._segment_path(directory, source)


def edited(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_text(json.dumps(change(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")

    return damage


def first_chunk(change: Callable[[list], object]) -> Callable[[dict], dict]:
    return lambda body: {**body, "chunks": [change(body["chunks"][0]), *body["chunks"][1:]]}


DAMAGE: dict[str, Callable[[Path], None]] = {
    "zero length": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "random bytes": lambda p: p.write_bytes(np.random.default_rng(7).bytes(200)),
    "holds []": lambda p: p.write_text("[]"),
    "lacks key": edited(lambda b: {k: v for k, v in b.items() if k != "key"}),
    "ids are numbers": edited(lambda b: {**b, "ids": list(range(len(b["ids"])))}),
    "another document's": edited(lambda b: {**b, "source": "doc4.md"}),
    "one chunk too few": edited(lambda b: {**b, "chunks": b["chunks"][:-1]}),
    "term number out of range": edited(first_chunk(lambda c: [[len(c[0]) + 99, *c[0][1:]], c[1]])),
    "frequency zero": edited(first_chunk(lambda c: [c[0], [0, *c[1][1:]]])),
    "frequencies cut short": edited(first_chunk(lambda c: [c[0], c[1][:-1]])),
    "term repeated": edited(first_chunk(lambda c: [[c[0][0], *c[0][:-1]], c[1]])),
    "chunk not a pair": edited(first_chunk(lambda c: c[0])),
    "frequencies as text": edited(first_chunk(lambda c: [c[0], [str(f) for f in c[1]]])),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_document_file_is_reported_and_read_again(saved: Path, store: CountingStore, damage, caplog):
    damaged = segment_of(saved, "doc5.md")
    damage(damaged)
    with caplog.at_level(logging.WARNING, logger="rag.lexical"):
        opened = LexicalIndex.open(saved)
    [warning], held = warnings(caplog), opened.keys()
    assert str(damaged) in warning.getMessage() and "doc5.md" not in held and len(opened) == 38
    store.chunks_read = 0
    assert catch_up_lexical(opened, store) == 1 and store.chunks_read == 2  # that document alone, again
    assert [h.chunk_id for h in opened.search("numéro 5", 1, ["doc5.md"])] and damaged.exists()


def test_no_index_yet_is_empty_without_a_warning(tmp_path: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="rag.lexical"):
        opened = LexicalIndex.open(tmp_path / "lexical")
    assert len(opened) == 0 and opened.search("DeepSeek", 3) == [] and not warnings(caplog)


def test_the_whole_corpus_index_of_the_previous_design_is_retired(tmp_path: Path):
    (tmp_path / "lexical" / "bm25").mkdir(parents=True)
    (tmp_path / "lexical" / "meta.json").write_text("{}")
    LexicalIndex.open(tmp_path / "lexical")
    assert sorted(p.name for p in (tmp_path / "lexical").iterdir()) == []


# --- the checkpoint: an open loads arrays, then reads only the document files written since -------------------
def reads_counted(monkeypatch) -> list[Path]:
    read: list[Path] = []
    original = rag.lexical._read_segment

    def counting(path: Path):
        read.append(path)
        return original(path)

    monkeypatch.setattr(rag.lexical, "_read_segment", counting)
    return read


def same_answers(a: LexicalIndex, b: LexicalIndex) -> bool:
    queries = [*QUERIES, "vortiban", "numéro 12", "Partie deux", "document transfert"]
    return a.keys() == b.keys() and len(a) == len(b) and all(a.search(q, 40) == b.search(q, 40) for q in queries)


def test_an_open_reads_the_checkpoint_and_only_the_document_files_written_since(saved: Path, monkeypatch):
    assert (saved / "checkpoint.npz").exists()  # the catch-up that read all 20 documents left one
    writer = LexicalIndex.open(saved)
    writer.put("doc3.md", "2", [LexicalEntry("new#0", "Document 3 réécrit : le vortiban de Quimperlé.", "fr")])
    writer.remove("doc7.md")
    read = reads_counted(monkeypatch)
    reader = LexicalIndex.open(saved)
    assert read == [segment_of(saved, "doc3.md")]
    assert same_answers(reader, writer) and "doc7.md" not in set(reader.keys())
    assert [h.chunk_id for h in reader.search("vortiban", 3)] == ["new#0"]
    # what a file name names is read from the checkpoint's documents as from the writer's
    assert reader.named_sources("Que dit doc5 ?", "fr") == writer.named_sources("Que dit doc5 ?", "fr") == ["doc5.md"]
    read.clear()
    assert same_answers(LexicalIndex.open(saved), writer) and read == [segment_of(saved, "doc3.md")]


def test_an_open_checkpoints_once_a_quarter_of_the_documents_changed(saved: Path, monkeypatch):
    writer = LexicalIndex.open(saved)
    for n in range(5):  # a quarter of the 20
        writer.put(f"doc{n}.md", "2", [LexicalEntry(f"new{n}#0", f"Le vortiban numéro {n}.", "fr")])
    read = reads_counted(monkeypatch)
    LexicalIndex.open(saved)
    assert len(read) == 5
    read.clear()
    assert same_answers(LexicalIndex.open(saved), writer) and read == []


def npz_edited(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files}
        change(arrays)
        with path.open("wb") as file:
            np.savez(file, **arrays)

    return damage


def setting(name: str, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    return lambda arrays: arrays.__setitem__(name, value(arrays[name]))


CHECKPOINT_DAMAGE: dict[str, Callable[[Path], None]] = {
    "zero length": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "random bytes": lambda p: p.write_bytes(np.random.default_rng(7).bytes(400)),
    "another version": npz_edited(setting("version", lambda v: v + 1)),
    "an array missing": npz_edited(lambda arrays: arrays.pop("base_rows")),
    "a row out of range": npz_edited(setting("base_rows", lambda v: v + len(v))),
    "one id too few": npz_edited(setting("ids_ends", lambda v: v[:-1])),
    "pointers out of order": npz_edited(setting("base_pointers", lambda v: v[::-1].copy())),
    "a document's rows twice": npz_edited(setting("segment_rows", lambda v: np.zeros_like(v))),
    "a source twice": npz_edited(
        lambda a: a.update(rag.lexical._packed("sources", ["doc0.md"] * len(a["sources_ends"])))
    ),
    "strings not UTF-8": npz_edited(setting("vocabulary_bytes", lambda v: np.full_like(v, 0xFF))),
    "a pickled array": npz_edited(setting("row_length", lambda v: np.array([object()] * len(v), dtype=object))),
}


@pytest.mark.parametrize("damage", CHECKPOINT_DAMAGE.values(), ids=CHECKPOINT_DAMAGE.keys())
def test_a_damaged_checkpoint_is_reported_and_every_document_file_read(saved: Path, damage, monkeypatch, caplog):
    intact = LexicalIndex.open(saved)
    damage(saved / "checkpoint.npz")
    read = reads_counted(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="rag.lexical"):
        opened = LexicalIndex.open(saved)
    [warning] = warnings(caplog)
    assert "checkpoint" in warning.getMessage() and len(read) == 20 and same_answers(opened, intact)
    read.clear()
    assert same_answers(LexicalIndex.open(saved), intact) and read == []  # written again, whole
