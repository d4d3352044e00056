"""Chunking and sentence splitting: exact offsets, structure, overlap, deduplication, French typography."""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

import pytest
from harness import RELATED, REPO

from index.chunking import (
    chunk_document,
    chunk_sentences,
    heading_title,
    split_sentences,
    table_header,
    table_rows,
)
from index.loaders import SUPPORTED_SUFFIXES, load_document
from index.loaders.text import text_blocks
from index.types import Block, Chunk, Document

CORPUS_FILES = sorted(
    p
    for folder in (REPO / "corpus", RELATED)
    if folder.is_dir()
    for p in folder.iterdir()
    if p.suffix in SUPPORTED_SUFFIXES
)
ARTICLE = "deepseek_article_fr.txt"
AI_ACT = "eu_ai_act_2024_1689_art2_chapter_v_gpai_art113_en.html"
PAPER = "deepseek_r1_paper_en.pdf"
SIZE, OVERLAP = 1000, 150
# Reads and chunks every file of the shared corpus (its PDFs take seconds each): with the integration tests.
corpus_wide = pytest.mark.integration


@pytest.fixture(scope="module")
def docs() -> dict[str, Document]:
    return {p.name: load_document(p, p.parent) for p in CORPUS_FILES}


@pytest.fixture(scope="module")
def chunked(docs: dict[str, Document]) -> dict[str, list[Chunk]]:
    return {name: chunk_document(doc, SIZE, OVERLAP) for name, doc in docs.items()}


@pytest.fixture(scope="module")
def chunked_with_rows(docs: dict[str, Document]) -> dict[str, list[Chunk]]:
    return {name: chunk_document(doc, SIZE, OVERLAP, table_row_chunks=True) for name, doc in docs.items()}


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def block_at(doc: Document, offset: int) -> Block:
    starts = [b.start for b in doc.blocks]
    return doc.blocks[bisect.bisect_right(starts, offset) - 1]


def make_doc(text: str, blocks: list[Block], source: str = "doc.txt") -> Document:
    return Document(source=source, title="Doc", text=text, blocks=blocks, content_hash="x", kind="txt")


def para_doc(*parts: tuple[str, int]) -> Document:
    """A document from (text, heading_level) blocks separated by blank lines."""
    text, blocks = "", []
    for part, level in parts:
        if text:
            text += "\n\n"
        blocks.append(Block(len(text), len(text) + len(part), level))
        text += part
    return make_doc(text, blocks)


def is_row_chunk(doc: Document, chunk: Chunk) -> bool:
    """A table row indexed on its own, under its table's header (the other chunks are the packed passages)."""
    block = block_at(doc, chunk.start)
    return (
        block.header is not None
        and (chunk.start, chunk.end) in table_rows(doc.text, block)
        and chunk.heading_path[-1:] == (table_header(doc.text, block),)
    )


# -------------------------------------------------------------------------------------------- whole corpus


@corpus_wide
def test_every_chunk_round_trips_its_offsets(docs: dict[str, Document], chunked: dict[str, list[Chunk]]) -> None:
    for name, chunks in chunked.items():
        doc = docs[name]
        assert chunks, name
        assert [c.index for c in chunks] == list(range(len(chunks)))
        for chunk in chunks:
            assert chunk.text == doc.text[chunk.start : chunk.end], (name, chunk.index)
            assert chunk.text == chunk.text.strip() and chunk.text
            assert chunk.source == doc.source and chunk.title == doc.title
        assert [c.start for c in chunks] == sorted(c.start for c in chunks)


@corpus_wide
def test_chunk_sizes_stay_near_the_target(docs: dict[str, Document], chunked: dict[str, list[Chunk]]) -> None:
    for name, chunks in chunked.items():
        doc = docs[name]
        for chunk in chunks:
            opens_with_heading = block_at(doc, chunk.start).heading_level > 0
            assert len(chunk.text) <= (1.5 * SIZE if opens_with_heading else SIZE), (name, chunk.index)


@corpus_wide
def test_ids_unique_and_stable_across_runs(docs: dict[str, Document], chunked: dict[str, list[Chunk]]) -> None:
    for name, chunks in chunked.items():
        ids = [c.id for c in chunks]
        assert len(set(ids)) == len(ids), name
        assert len({c.text for c in chunks}) == len(chunks), name
        path = next(p for p in CORPUS_FILES if p.name == name)
        again = chunk_document(load_document(path, path.parent), SIZE, OVERLAP)
        assert [c.id for c in again] == ids, name


@corpus_wide
def test_no_chunk_cuts_a_sentence(docs: dict[str, Document], chunked: dict[str, list[Chunk]]) -> None:
    for name, chunks in chunked.items():
        doc = docs[name]
        starts: set[int] = set()
        ends: set[int] = set()
        long_sentences: list[tuple[int, int]] = []
        for block in doc.blocks:
            spans = split_sentences(doc.text[block.start : block.end], block.start)
            if block.table:  # a table is cut between rows
                spans += table_rows(doc.text, block)
            starts.update(s for s, _ in spans)
            ends.update(e for _, e in spans)
            long_sentences += [(s, e) for s, e in spans if e - s > SIZE]
        for chunk in chunks:
            inside_long = any(s <= chunk.end <= e or s <= chunk.start <= e for s, e in long_sentences)
            if not inside_long:
                assert chunk.start in starts, (name, chunk.index, chunk.text[:60])
                assert chunk.end in ends, (name, chunk.index, chunk.text[-60:])


@corpus_wide
def test_a_chunk_never_spans_two_sections(docs: dict[str, Document], chunked: dict[str, list[Chunk]]) -> None:
    """Headings inside a chunk may only be a chain of nested headings opening it, never after body text."""
    for name, chunks in chunked.items():
        doc = docs[name]
        for chunk in chunks:
            inside = [b for b in doc.blocks if chunk.start <= b.start < chunk.end]
            seen_body = False
            for block in inside:
                if block.heading_level:
                    assert not seen_body, (name, chunk.index, chunk.text[:80])
                else:
                    seen_body = True


@corpus_wide
def test_heading_paths_are_plain_titles(docs: dict[str, Document], chunked: dict[str, list[Chunk]]) -> None:
    act = next(c for c in chunked[AI_ACT] if "10^25" in c.text)
    assert act.heading_path[-1].startswith("Article 51 – Classification of general-purpose AI models")
    assert "CHAPTER V – GENERAL-PURPOSE AI MODELS" in act.heading_path
    article_113 = next(c for c in chunked[AI_ACT] if "Article 113" in c.text)
    assert not any(h.startswith("CHAPTER V") for h in article_113.heading_path)
    wiki = chunked["wikipedia_deepseek_company_en.md"]
    assert any(c.heading_path == ("History", "Founding and early years (2016–2023)") for c in wiki)
    for chunks in chunked.values():
        for chunk in chunks:
            assert all(h and not h.startswith("#") and "\n" not in h for h in chunk.heading_path)
    french = chunked[ARTICLE]
    assert any(c.heading_path == ("Le défi de DeepSeek",) and c.text.startswith("Le défi de DeepSeek") for c in french)


@corpus_wide
def test_pdf_chunks_carry_their_page(docs: dict[str, Document], chunked: dict[str, list[Chunk]]) -> None:
    doc, chunks = docs[PAPER], chunked[PAPER]
    assert all(c.page == block_at(doc, c.start).page for c in chunks)
    assert any(c.page > 1 for c in chunks)
    assert len({c.page for c in chunks}) >= 17  # pages 19-22 hold the references, left out as back matter
    cold = next(c for c in chunks if c.text.startswith("2.3.1. Cold Start"))
    assert cold.page == 9
    assert cold.heading_path[-2:] == ("2.3. DeepSeek-R1: Reinforcement Learning with Cold Start", "2.3.1. Cold Start")


@corpus_wide
def test_repeated_paragraph_is_stored_once(chunked: dict[str, list[Chunk]]) -> None:
    repeated = "L’émergence de DeepSeek montre que l’hégémonie américaine en matière d’IA n’est plus assurée"
    chunks = chunked[ARTICLE]
    assert sum(c.text.count(repeated) for c in chunks) == 1
    # The rest of the paragraph that repeated it is still indexed.
    assert sum("Dans le même temps, cela montre également" in c.text for c in chunks) == 1


@corpus_wide
def test_overlap_repeats_whole_trailing_sentences(docs: dict[str, Document], chunked: dict[str, list[Chunk]]) -> None:
    overlaps = 0
    for name, chunks in chunked.items():
        packed = [c for c in chunks if not is_row_chunk(docs[name], c)]  # a row chunk repeats part of its table
        for prev, nxt in itertools.pairwise(packed):
            if nxt.start < prev.end:
                overlaps += 1
                assert prev.heading_path == nxt.heading_path
                shared = prev.text[nxt.start - prev.start :]
                assert len(shared) <= OVERLAP
                assert nxt.text.startswith(shared)
                table = block_at(docs[name], nxt.start)
                assert (
                    shared in [prev.text[s:e] for s, e in split_sentences(prev.text)]
                    or len(split_sentences(shared)) > 1
                    or (table.table and any(s == nxt.start for s, _ in table_rows(docs[name].text, table)))
                ), shared
    assert overlaps > 10


@corpus_wide
def test_no_overlap_when_disabled(docs: dict[str, Document]) -> None:
    chunks = chunk_document(docs["gdpr_2016_679_chapter_v_international_transfers_en.txt"], SIZE, 0)
    assert all(nxt.start >= prev.end for prev, nxt in itertools.pairwise(chunks))


# -------------------------------------------------------------------------------------------- small cases


def test_over_long_sentence_is_cut_at_word_boundaries() -> None:
    sentence = " ".join(f"mot{i}" for i in range(120)) + "."
    doc = para_doc(("Titre", 1), (sentence, 0))
    chunks = chunk_document(doc, chunk_size=200, overlap=30)
    assert len(chunks) >= 4
    for chunk in chunks:
        assert len(chunk.text) <= 200 + len("Titre\n\n")
        assert chunk.end == len(doc.text) or doc.text[chunk.end].isspace()
        assert chunk.start == 0 or doc.text[chunk.start - 1].isspace()
    assert "".join(c.text.split()[-1] for c in chunks[-1:]) == "mot119."


def test_new_heading_starts_a_new_chunk_and_short_headings_are_not_alone() -> None:
    doc = para_doc(
        ("Partie A", 1),
        ("Section A.1", 2),
        ("Première phrase de la section. Deuxième phrase.", 0),
        ("Section A.2", 2),
        ("Autre texte ici.", 0),
        ("Fin", 2),
    )
    chunks = chunk_document(doc, chunk_size=1000, overlap=100)
    assert [c.text for c in chunks] == [
        "Partie A\n\nSection A.1\n\nPremière phrase de la section. Deuxième phrase.",
        "Section A.2\n\nAutre texte ici.",
    ]
    assert chunks[0].heading_path == ("Partie A", "Section A.1")
    assert chunks[1].heading_path == ("Partie A", "Section A.2")


def test_a_plain_text_heading_line_is_a_sentence_of_its_own() -> None:
    # Plain text: one line per paragraph, a heading is a line without a full stop (as in the corpus's article).
    text = (
        "Le marché\nUn premier paragraphe sur le marché, assez long pour ne pas passer pour un texte coupé à la "
        "main.\nLe défi de DeepSeek\nBien que l’on ne puisse nier ses succès, ce modèle présente des inconvénients "
        "sérieux. Une autre phrase.\n"
    )
    doc = Document(source="a.txt", title="", text=text, blocks=text_blocks(text), content_hash="h", kind="txt")
    chunk = chunk_document(doc)[-1]
    assert chunk.heading_path == ("Le défi de DeepSeek",)
    spans = chunk_sentences(chunk.text, chunk.heading_path)
    assert [chunk.text[s:e] for s, e in spans] == [
        "Le défi de DeepSeek",
        "Bien que l’on ne puisse nier ses succès, ce modèle présente des inconvénients sérieux.",
        "Une autre phrase.",
    ]
    # Sentence splitting alone glues the heading to the first sentence (the reason for chunk_sentences).
    assert chunk.text[slice(*split_sentences(chunk.text)[0])].startswith("Le défi de DeepSeek\nBien que")
    # A label and its subtitle are one heading of two lines ("Article 44 – General principle for transfers").
    law = (
        "Article 44\nGeneral principle for transfers\nAny transfer of personal data shall take place only if the "
        "conditions laid down in this Chapter are complied with by the controller and processor.\n"
    )
    doc = Document(source="law.txt", title="", text=law, blocks=text_blocks(law), content_hash="h", kind="txt")
    [chunk] = chunk_document(doc)
    assert chunk.heading_path == ("Article 44 – General principle for transfers",)
    first, second = chunk_sentences(chunk.text, chunk.heading_path)
    assert chunk.text[slice(*first)] == "Article 44\nGeneral principle for transfers"
    assert chunk.text[slice(*second)].startswith("Any transfer of personal data")
    # A line that is not one of the chunk's headings is never split off: a wrapped sentence stays whole.
    wrapped = "Le défi de DeepSeek\nreste entier ici."
    assert chunk_sentences(wrapped, ("Autre titre",)) == split_sentences(wrapped) == [(0, len(wrapped))]


def test_paragraphs_are_packed_whole_and_overlap_is_sentence_based() -> None:
    first = " ".join(f"Phrase numéro {i} du premier paragraphe, assez longue pour compter." for i in range(5))
    second = " ".join(f"Phrase numéro {i} du second paragraphe, qui ne tient pas en entier." for i in range(6))
    doc = para_doc((first, 0), (second, 0))
    chunks = chunk_document(doc, chunk_size=400, overlap=80)
    # The second paragraph does not fit after the first: it starts a new chunk rather than being split.
    assert chunks[0].text == first
    last_sentence = "Phrase numéro 4 du premier paragraphe, assez longue pour compter."
    assert chunks[1].text.startswith(f"{last_sentence}\n\nPhrase numéro 0 du second paragraphe")
    assert all(len(c.text) <= 400 for c in chunks)
    assert chunks[-1].text.endswith("Phrase numéro 5 du second paragraphe, qui ne tient pas en entier.")


def test_duplicate_sentences_force_a_break_and_are_skipped() -> None:
    repeated = "Cette phrase répétée est assez longue pour être dédupliquée ici."
    doc = para_doc((repeated, 0), ("Autre phrase.", 0), (f"{repeated} Suite nouvelle du texte.", 0))
    chunks = chunk_document(doc, chunk_size=1000, overlap=100)
    assert [c.text for c in chunks] == [f"{repeated}\n\nAutre phrase.", "Suite nouvelle du texte."]


def test_invalid_sizes_are_rejected() -> None:
    doc = para_doc(("Texte.", 0))
    with pytest.raises(ValueError):
        chunk_document(doc, chunk_size=0)
    with pytest.raises(ValueError):
        chunk_document(doc, chunk_size=100, overlap=100)


def test_heading_title_drops_markup() -> None:
    assert heading_title("## Titre  deux") == "Titre deux"
    assert heading_title("Article 51\nClassification rules") == "Article 51 – Classification rules"


# ---------------------------------------------------------------------------------------------- sentences


def test_french_guillemets_and_abbreviations() -> None:
    text = "« C’est une révolution », a dit M. Dupont. Il a ajouté : « Et maintenant ? » Puis il est parti."
    assert sentences(text) == [
        "« C’est une révolution », a dit M. Dupont.",
        "Il a ajouté : « Et maintenant ? »",
        "Puis il est parti.",
    ]


def test_french_numbers_and_p_ex() -> None:
    text = "Les modèles, p. ex. DeepSeek, coûtent moins. Le taux est de 3,5 %. Mme Durand le confirme."
    assert sentences(text) == [
        "Les modèles, p. ex. DeepSeek, coûtent moins.",
        "Le taux est de 3,5 %.",
        "Mme Durand le confirme.",
    ]


@pytest.mark.parametrize("space", [" ", "\u00a0", "\u202f"])
def test_french_space_before_question_and_exclamation(space: str) -> None:
    text = f"Que contient le guide{space}? Ce guide est découpé en fiches{space}! Voilà."
    assert sentences(text) == [f"Que contient le guide{space}?", f"Ce guide est découpé en fiches{space}!", "Voilà."]


def test_english_abbreviations_initials_and_decimals() -> None:
    text = (
        "Dr. Smith met J. R. R. Tolkien at the U.S. Department of State, e.g. on Monday. "
        "The score rose from 3.5 to 71.0 (see Art. 5 and No. 300/2008). It was i.e. a record!"
    )
    assert sentences(text) == [
        "Dr. Smith met J. R. R. Tolkien at the U.S. Department of State, e.g. on Monday.",
        "The score rose from 3.5 to 71.0 (see Art. 5 and No. 300/2008).",
        "It was i.e. a record!",
    ]


def test_closing_quotes_ellipsis_enumerators_and_breaks() -> None:
    assert sentences('He said "Stop." Then he left.') == ['He said "Stop."', "Then he left."]
    assert sentences("Il hésita… Puis il partit.") == ["Il hésita…", "Puis il partit."]
    assert sentences("1.   This Regulation applies to: (a) providers.") == [
        "1.   This Regulation applies to: (a) providers."
    ]
    assert sentences("Titre sans point\n\nLe corps commence ici.") == ["Titre sans point", "Le corps commence ici."]
    assert sentences("Liste :\n- premier\n- second") == ["Liste :", "- premier", "- second"]
    assert sentences("Fin de la phrase. |") == ["Fin de la phrase. |"]
    assert sentences("Launched in 2025.[3] Then it grew.[4][5]") == ["Launched in 2025.[3]", "Then it grew.[4][5]"]
    assert sentences("  ") == []


def test_offsets_are_absolute() -> None:
    text = "Première phrase. Seconde phrase."
    spans = split_sentences(text, start=100)
    assert spans == [(100, 116), (117, 132)]
    assert [text[s - 100 : e - 100] for s, e in spans] == ["Première phrase.", "Seconde phrase."]


@corpus_wide
def test_back_matter_is_not_chunked(chunked: dict[str, list[Chunk]]) -> None:
    """Reference lists and markdown footnote definitions would outrank real passages in retrieval."""
    paper = chunked[PAPER]
    assert not any(c.heading_path and c.heading_path[-1].lower() == "references" for c in paper)
    wiki = chunked["wikipedia_deepseek_company_en.md"]
    assert not any("Retrieved" in c.text and "Archived from the original" in c.text for c in wiki)
    assert any("Sputnik moment" in c.text for c in wiki)


# -------------------------------------------------------------------------------------------------- tables


def load_text(tmp_path: Path, name: str, text: str) -> Document:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_document(path, tmp_path)


@corpus_wide
def test_benchmark_table_rows_are_chunks_under_their_header(
    docs: dict[str, Document], chunked_with_rows: dict[str, list[Chunk]], chunked: dict[str, list[Chunk]]
) -> None:
    name = "deepseek_r1_readme_en.md"
    doc, chunks = docs[name], chunked_with_rows[name]
    assert not any(is_row_chunk(doc, c) for c in chunked[name]), "row chunks only when asked for"

    rows = [c for c in chunks if is_row_chunk(doc, c)]
    aime = [c for c in rows if "AIME 2024" in c.text]
    assert aime, "a benchmark row is retrievable on its own"
    for chunk in aime:
        table = block_at(doc, chunk.start)
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert "\n" not in chunk.text and (chunk.start, chunk.end) in table_rows(doc.text, table)
        assert chunk.heading_path[-1] == table_header(doc.text, table)
        assert chunk.heading_path[:-1] == next(c.heading_path for c in chunks if c.start <= table.start < c.end)
    row = next(c for c in aime if c.text.startswith("Math | AIME 2024 (Pass@1)"))
    assert row.heading_path[-1].startswith("Category | Benchmark (Metric) | Claude-3.5-Sonnet-1022")
    assert row.text.endswith("79.2 | 79.8")
    assert row.embedding_text.split("\n")[0].endswith(row.heading_path[-1])  # the header is embedded with it


def test_table_rows_become_chunks_only_under_a_header(tmp_path: Path) -> None:
    intro = "Les résultats des trois modèles sur le banc d'essai sont les suivants, mesurés en mars."
    source = (
        f"# Résultats\n\n{intro}\n\n| Modèle | Score | Coût |\n|---|:---:|---|\n"
        "| Alpha | 71,2 | 3 € |\n| Bêta | 64,0 | 1 € |\n| Gamma | 80,5 | 9 € |\n\n"
        "## Vide\n\n| Modèle | Score |\n|---|---|\n\n## Sans en-tête\n\n| Delta | 12 |\n| Epsilon | 13 |\n"
    )
    doc = load_text(tmp_path, "table.md", source)
    assert not any(is_row_chunk(doc, c) for c in chunk_document(doc, SIZE, OVERLAP))
    chunks = chunk_document(doc, SIZE, OVERLAP, table_row_chunks=True)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    rows = [c for c in chunks if is_row_chunk(doc, c)]
    assert [c.text for c in rows] == ["Alpha | 71,2 | 3 €", "Bêta | 64,0 | 1 €", "Gamma | 80,5 | 9 €"]
    assert all(c.heading_path == ("Résultats", "Modèle | Score | Coût") for c in rows)
    assert all(c.text == doc.text[c.start : c.end] for c in chunks)
    table = chunks.index(rows[0]) - 1
    assert chunks[table].text.startswith("Résultats") and chunks[table].text.endswith("Gamma | 80,5 | 9 €")
    assert not any(c.heading_path[-1:] in {("Modèle | Score",), ("Delta | 12",)} for c in chunks)


def test_long_table_is_packed_whole_rows(tmp_path: Path) -> None:
    rows = [f"| Modèle numéro {n} avec un nom assez long | {n}.5 | {n * 3}.25 | {n * 7}.0 |" for n in range(60)]
    doc = load_text(tmp_path, "long.md", "| Modèle | A | B | C |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    table = doc.blocks[0]
    starts = {s for s, _ in table_rows(doc.text, table)}
    ends = {e for _, e in table_rows(doc.text, table)}
    chunks = chunk_document(doc, 500, 100, table_row_chunks=True)
    packed = [c for c in chunks if not is_row_chunk(doc, c)]
    assert len(packed) > 3 and len([c for c in chunks if is_row_chunk(doc, c)]) == 60
    for chunk in packed:
        assert chunk.start in starts and chunk.end in ends, chunk.text[:60]


def test_html_table_rows_need_a_header_row(tmp_path: Path) -> None:
    page = """<html><body><h2>Scores</h2>
    <table><thead><tr><th>Modèle</th><th>Score</th></tr></thead>
    <tbody><tr><td>R1</td><td>79,8</td></tr><tr><td>V3</td><td>39,2</td></tr></tbody></table>
    <table><tr><td>(a)</td><td>le fournisseur d'un modèle</td></tr><tr><td>(b)</td><td>le déployeur</td></tr></table>
    </body></html>"""
    doc = load_text(tmp_path, "page.html", page)
    rows = [c for c in chunk_document(doc, SIZE, OVERLAP, table_row_chunks=True) if is_row_chunk(doc, c)]
    assert [(c.text, c.heading_path) for c in rows] == [
        ("R1 | 79,8", ("Scores", "Modèle | Score")),
        ("V3 | 39,2", ("Scores", "Modèle | Score")),
    ]
    layout = [doc.text[b.start : b.end] for b in doc.blocks if not b.table and not b.heading_level]
    assert layout == ["(a) le fournisseur d'un modèle", "(b) le déployeur"]  # a layout table keeps a block per row


@corpus_wide
def test_pdf_benchmark_rows_are_chunks_under_their_header(
    docs: dict[str, Document], chunked_with_rows: dict[str, list[Chunk]]
) -> None:
    doc, chunks = docs[PAPER], chunked_with_rows[PAPER]
    rows = [c for c in chunks if is_row_chunk(doc, c)]
    aime = next(c for c in rows if "AIME 2024 (Pass@1)" in c.text)
    assert aime.text == "Math AIME 2024 (Pass@1) 16.0 9.3 39.2 63.6 79.2 79.8"  # its category label is its first cell
    assert aime.heading_path[-1].startswith("Benchmark (Metric) Claude-3.5-")
    assert aime.page == 13 and aime.text == doc.text[aime.start : aime.end]
    distilled = next(c for c in rows if c.text.startswith("DeepSeek-R1-Distill-Qwen-32B 72.6 83.3 94.3"))
    assert distilled.heading_path[-1].startswith("Model AIME 2024 MATH-500")
