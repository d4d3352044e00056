"""The BM25 side: how each language's text is analysed, what of a chunk it reads, and the persisted index (a
damaged one on disk is reported and rebuilt, never an error at question time)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from index.types import Chunk
from rag.lexical import LexicalIndex, analyze_in, analyze_query

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
    index = LexicalIndex.build(["c"], ["ai_act.html"], ["This Regulation applies to providers."], "fp", ["en"])
    assert [hit.chunk_id for hit in index.search("When does it apply?", 5, language="en")] == ["c"]


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
        [c.source for c in chunks], [c.source for c in chunks], [c.search_text for c in chunks], "fp", ["fr", "fr"]
    )
    hits = index.search("Le registre des traitements selon le guide de la CNIL", 5, language="fr")
    assert hits[0].chunk_id == "related/cnil_guide_rgpd.html" and hits[0].score > 2 * hits[1].score


def warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rag.lexical" and r.levelno >= logging.WARNING]


def build() -> LexicalIndex:
    return LexicalIndex.build(IDS, SOURCES, TEXTS, fingerprint="fp-1")


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    directory = tmp_path / "lexical"
    build().save(directory)
    return directory


def test_an_intact_index_loads_and_searches_as_built(saved: Path, caplog):
    built = build()
    with caplog.at_level(logging.WARNING, logger="rag.lexical"):
        loaded = LexicalIndex.load(saved)
    assert loaded is not None and not warnings(caplog)
    assert loaded.ids == IDS and loaded.fingerprint == "fp-1" and len(loaded) == len(TEXTS)
    for query in QUERIES:
        assert loaded.search(query, 3) == built.search(query, 3)
        assert loaded.search(query, 3, ["deepseek.md"]) == built.search(query, 3, ["deepseek.md"])
    assert [hit.chunk_id for hit in loaded.search("DeepSeek Italie", 1)] == ["c2"]


def test_an_empty_index_round_trips(tmp_path: Path):
    LexicalIndex.build([], [], [], fingerprint="none").save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical")
    assert loaded is not None and len(loaded) == 0 and loaded.search("DeepSeek", 3) == []


def test_no_index_yet_is_none_without_a_warning(tmp_path: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="rag.lexical"):
        assert LexicalIndex.load(tmp_path / "lexical") is None
    assert not warnings(caplog)


def matrix(directory: Path, name: str) -> Path:
    return directory / "bm25" / f"{name}.csc.index.npy"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).bytes(max(64, path.stat().st_size)))


def array(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    return lambda directory: np.save(matrix(directory, name), change(np.load(matrix(directory, name))))


def edited(file: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        path = directory / file
        path.write_text(json.dumps(change(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")

    return damage


def without(key: str) -> Callable[[dict], dict]:
    return lambda values: {k: v for k, v in values.items() if k != key}


VOCAB, PARAMS = "bm25/vocab.index.json", "bm25/params.index.json"
DAMAGE: dict[str, Callable[[Path], None]] = {
    "zero-length data.npy": lambda d: matrix(d, "data").write_bytes(b""),
    "zero-length indices.npy": lambda d: matrix(d, "indices").write_bytes(b""),
    "zero-length indptr.npy": lambda d: matrix(d, "indptr").write_bytes(b""),
    "truncated data.npy": lambda d: truncate(matrix(d, "data")),
    "truncated indices.npy": lambda d: truncate(matrix(d, "indices")),
    "random bytes in data.npy": lambda d: random_bytes(matrix(d, "data")),
    "random bytes in vocab": lambda d: random_bytes(d / VOCAB),
    "random bytes in params": lambda d: random_bytes(d / PARAMS),
    "random bytes in meta.json": lambda d: random_bytes(d / "meta.json"),
    "zero-length meta.json": lambda d: (d / "meta.json").write_bytes(b""),
    "meta.json holds []": lambda d: (d / "meta.json").write_text("[]"),
    "meta.json holds a string": lambda d: (d / "meta.json").write_text('"ids"'),
    "meta.json lacks ids": edited("meta.json", without("ids")),
    "meta.json lacks fingerprint": edited("meta.json", without("fingerprint")),
    "ids shortened": edited("meta.json", lambda m: {**m, "ids": m["ids"][:-1], "sources": m["sources"][:-1]}),
    "ids lengthened": edited("meta.json", lambda m: {**m, "ids": [*m["ids"], "c9"], "sources": [*m["sources"], "x"]}),
    "ids emptied": edited("meta.json", lambda m: {**m, "ids": [], "sources": []}),
    "fewer sources than ids": edited("meta.json", lambda m: {**m, "sources": m["sources"][:-1]}),
    "ids are numbers": edited("meta.json", lambda m: {**m, "ids": list(range(len(m["ids"])))}),
    "ids a string": edited("meta.json", lambda m: {**m, "ids": "c0"}),
    "fingerprint a number": edited("meta.json", lambda m: {**m, "fingerprint": 1}),
    "meta.json deleted": lambda d: (d / "meta.json").unlink(),
    "data.npy deleted": lambda d: matrix(d, "data").unlink(),
    "vocab deleted": lambda d: (d / VOCAB).unlink(),
    "matrix deleted": lambda d: shutil.rmtree(d / "bm25"),
    "document numbers out of range": array("indices", lambda a: a + 100),
    "column pointers out of order": array("indptr", lambda a: a[::-1].copy()),
    "column pointers cut short": array("indptr", lambda a: a[:-2]),
    "scores not finite": array("data", lambda a: np.full_like(a, np.nan)),
    "scores of another type": array("data", lambda a: a.astype(np.int64)),
    "scores as a matrix": array("data", lambda a: a.reshape(1, -1)),
    "vocabulary past the matrix": edited(VOCAB, lambda v: {**v, "zzz": len(v) + 5}),
    "vocabulary of strings": edited(VOCAB, lambda v: {k: str(i) for k, i in v.items()}),
    "vocabulary a list": edited(VOCAB, list),
    "document count changed": edited(PARAMS, lambda p: {**p, "num_docs": 3}),
    "document count missing": edited(PARAMS, without("num_docs")),
    "unknown scoring method": edited(PARAMS, lambda p: {**p, "method": "bm25l"}),
    "unknown dtype": edited(PARAMS, lambda p: {**p, "dtype": "complex"}),
    "unknown parameter": edited(PARAMS, lambda p: {**p, "shards": 3}),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_index_is_none_with_a_warning_so_it_is_rebuilt(saved: Path, damage, caplog):
    damage(saved)
    with caplog.at_level(logging.WARNING, logger="rag.lexical"):
        assert LexicalIndex.load(saved) is None
    [warning] = warnings(caplog)
    assert str(saved) in warning.getMessage()
