"""Loaders: every corpus file loads with exact offsets; encodings, HTML/PDF quirks and bad files."""

from __future__ import annotations

import hashlib
import io
import random
import time
from pathlib import Path

import pytest
from contracts import assert_block_contract
from harness import RELATED, REPO
from pypdf import PdfWriter
from samples import pdf_bomb, text_pdf
from selectolax.lexbor import LexborHTMLParser

from index.chunking import chunk_document
from index.discovery import LINK_OUTSIDE, discover
from index.loaders import MAX_PAGE_CHARS, decode_text, load_document
from index.types import Document, LoadError

CORPUS = REPO / "corpus"
# The documents a refresh indexes (corpus/README.md describes the folder and is not one of them).
CORPUS_FILES = sorted(f.path for f in discover([CORPUS, RELATED])[0])
AI_ACT = RELATED / "eu_ai_act_2024_1689_art2_chapter_v_gpai_art113_en.html"
CNIL = RELATED / "cnil_guide_rgpd_equipe_developpement_fr.html"
PAPER = RELATED / "deepseek_r1_paper_en.pdf"
GDPR = RELATED / "gdpr_2016_679_chapter_v_international_transfers_en.txt"
WIKI = RELATED / "wikipedia_deepseek_company_en.md"
ARTICLE = CORPUS / "deepseek_article_fr.txt"

FRENCH = "Le modèle « DeepSeek » coûte moins cher : l’œuvre de l’équipe a été saluée à Noël (3 €)."
FRENCH_LATIN1 = "Le modèle « DeepSeek » coûte moins cher : l'équipe a été saluée à Noël, déjà ça."


def load(path: Path) -> Document:
    return load_document(path, path.parent)


def blocks_text(doc: Document, level: int | None = None) -> list[str]:
    return [doc.text[b.start : b.end] for b in doc.blocks if level is None or b.heading_level == level]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_corpus_files_are_all_found() -> None:
    names = {p.name for p in CORPUS_FILES}
    for expected in (ARTICLE, AI_ACT, CNIL, PAPER, GDPR, WIKI):
        assert expected.name in names
    assert len(CORPUS_FILES) >= 9


@pytest.mark.integration  # every file of the shared corpus: its PDFs take seconds each
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_every_corpus_file_loads_with_exact_block_offsets(path: Path) -> None:
    doc = load(path)
    assert doc.source == path.name
    assert doc.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert doc.kind == {".txt": "txt", ".md": "md", ".html": "html", ".pdf": "pdf"}[path.suffix]
    assert doc.title.strip()
    assert len(doc.blocks) >= 10
    assert_block_contract(doc)
    assert all((block.page is not None) == (doc.kind == "pdf") for block in doc.blocks)
    assert any(b.heading_level for b in doc.blocks), "every corpus file has some structure"


def test_source_is_posix_path_relative_to_root(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "note.md"
    path.parent.mkdir(parents=True)
    path.write_text("# Note\n\nUne phrase.\n", encoding="utf-8")
    doc = load_document(path, tmp_path)
    assert doc.source == "a/b/note.md"
    assert doc.path == path


# ------------------------------------------------------------------------------------------------ encodings


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", FRENCH),
        ("latin-1", FRENCH_LATIN1),
        ("utf-16", FRENCH),  # with BOM
        ("utf-16-le", FRENCH),  # no BOM
        ("utf-16-be", FRENCH),  # no BOM
        ("utf-8-sig", FRENCH),
        ("utf-8", FRENCH),
        ("utf-32", FRENCH),
    ],
)
def test_french_text_decodes_right_in_every_encoding(tmp_path: Path, encoding: str, text: str) -> None:
    data = f"{text}\r\nDeuxième ligne, encore accentuée : é è ê à ç ô.\r\n".encode(encoding)
    assert decode_text(data) == f"{text}\nDeuxième ligne, encore accentuée : é è ê à ç ô.\n"
    doc = load(write(tmp_path, f"fr_{encoding}.txt", data))
    assert text in doc.text
    assert "\ufeff" not in doc.text and "\r" not in doc.text


def test_html_declared_legacy_charset_is_honoured(tmp_path: Path) -> None:
    page = '<html><head><meta charset="windows-1251"><title>Тест</title></head><body><p>Привет, мир.</p></body></html>'
    doc = load(write(tmp_path, "ru.html", page.encode("cp1251")))
    assert doc.title == "Тест" and "Привет, мир." in doc.text


def test_decode_normalises_to_nfc_and_unix_newlines() -> None:
    assert decode_text("E\u0301te\u0301\r\nfin\rok".encode()) == "Été\nfin\nok"


def test_decode_rejects_binary() -> None:
    with pytest.raises(LoadError):
        decode_text(b"\x00\x01\x02binary\x00\xff\xfe\x00\x00\x13")


# --------------------------------------------------------------------------------------------- plain text


def test_article_headings_are_conservative() -> None:
    doc = load(ARTICLE)
    headings = blocks_text(doc, level=2)
    assert headings == ["Le défi de DeepSeek", "L'UE se situe entre « deux courants »"]
    assert doc.text.startswith("L’émergence de DeepSeek")  # the txt text is the decoded file
    assert doc.title == "deepseek_article_fr"


def test_legal_text_labels_become_headings_and_points_keep_their_letter() -> None:
    doc = load(GDPR)
    headings = blocks_text(doc, level=5)
    assert "Article 44\n\nGeneral principle for transfers" in headings
    assert any(b.startswith("CHAPTER V") for b in blocks_text(doc, level=3))
    assert any(b.startswith("(a)\n\nthe rule of law") for b in blocks_text(doc, level=0))


# ----------------------------------------------------------------------------------------------- markdown


def test_markdown_front_matter_is_stripped_and_links_reduced() -> None:
    doc = load(WIKI)
    assert doc.title == "DeepSeek - Wikipedia"
    assert "created:" not in doc.text and "clippings" not in doc.text
    assert "](http" not in doc.text and "[^" not in doc.text
    assert "History" in blocks_text(doc, level=2)
    assert "Founding and early years (2016–2023)" in blocks_text(doc, level=3)
    assert "Liang Wenfeng" in doc.text


def test_markdown_structure(tmp_path: Path) -> None:
    source = (
        "---\ntitle: Mon guide\n---\n# Grand titre\n\nUn paragraphe\nsur deux lignes avec **gras** et "
        "[un lien](https://example.org).\n\n## Code\n\n```python\ndef f():\n\n    return 1\n```\n\n"
        '- premier point\n- second point\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<div align="center"><img src=x></div>\n'
    )
    doc = load(write(tmp_path, "guide.md", source.encode()))
    assert doc.title == "Mon guide"
    assert blocks_text(doc, level=1) == ["Grand titre"]
    assert blocks_text(doc, level=2) == ["Code"]
    body = blocks_text(doc, level=0)
    assert body == [
        "Un paragraphe\nsur deux lignes avec gras et un lien.",
        "def f():\n\n    return 1",
        "premier point",
        "second point",
        "a | b\n1 | 2",
    ]
    assert "title:" not in doc.text and "<img" not in doc.text


def test_markdown_drops_a_bar_of_links_and_keeps_a_linked_title(tmp_path: Path) -> None:
    """A README's bar of links names pages elsewhere: indexed, it is a chunk that matches many questions and
    answers none. Prose with links, and a lone linked title, stay."""
    source = (
        "# Projet\n\n"
        '<p align="center"><a href="zh.md">中文</a> ｜ <a href="en.md">English</a> ｜ Français</p>\n\n'
        '<p align="center">🤗 <a href="https://hf.co/x">Hugging Face</a> | 🤖 <a href="https://ms.cn/x">ModelScope</a>'
        ' | 📑 <a href="https://arxiv.org/abs/1">Paper</a></p>\n\n'
        '<a href="./report.pdf"><b>Projet: Unified Understanding and Generation</b></a>\n\n'
        '<p>Le modèle est publié sur <a href="https://hf.co/x">Hugging Face</a> et sur '
        '<a href="https://ms.cn/x">ModelScope</a> sous licence MIT.</p>\n'
    )
    doc = load(write(tmp_path, "readme.md", source.encode()))
    assert "ModelScope | " not in doc.text and "English" not in doc.text and "Paper" not in doc.text
    assert "Projet: Unified Understanding and Generation" in doc.text
    assert "Le modèle est publié sur Hugging Face et sur ModelScope sous licence MIT." in doc.text
    assert all(chunk.text == doc.text[chunk.start : chunk.end] for chunk in chunk_document(doc))
    real = load(RELATED / "qwen_readme_fr.md")
    assert "ModelScope" not in real.text[:500] and real.text.lstrip().startswith("[!Important]")


@pytest.mark.parametrize(
    "name", ["pauseia_faq_risques_ia_course_deepseek_fr.md", "pauseia_propositions_pause_puces_traite_fr.md"]
)
def test_markdown_drops_svelte_script_and_template_markup(name: str) -> None:
    doc = load(RELATED / name)
    chunks = chunk_document(doc)
    assert chunks
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        for markup in ("import ", "$:", "{#", "{/", "<script", "Accordion", "svelte"):
            assert markup not in chunk.embedding_text, (name, markup, chunk.text[:80])


def test_markdown_inside_a_component_wrapper_is_kept_and_parsed() -> None:
    doc = load(RELATED / "pauseia_propositions_pause_puces_traite_fr.md")
    # Between <Accordion id="demarches"> and </Accordion>: a heading hierarchy and its paragraphs.
    assert "Institutions internationales" in blocks_text(doc, level=2)
    assert "UNESCO – Recommandation sur l'éthique de l'IA" in blocks_text(doc, level=3)
    inner = "Texte adopté en 2021 au sein de l'UNESCO, puis endossé en 2023 par 193 États membres"
    assert any(inner in chunk.text for chunk in chunk_document(doc))


def test_markdown_component_markup_rules(tmp_path: Path) -> None:
    source = (
        "# Titre\n\n<style>\n.a { color: red }\n\n.b { color: blue }\n</style>\n"
        '<Accordion title="Questions">\nUn paragraphe **important** avec [lien](http://x).\n- un point\n'
        "</Accordion>\n\n{#each items as item}\n{:else}\n{@html marked(x)}\n{/each}\n{% if a %}\n"
        "<Nav>\nTexte de navigation qui est du contenu.\n</Nav>\n<SCRIPT>\nvar x = 1;\n</SCRIPT>\nFin du texte.\n"
        '<p align="center">\n  <a href="x"><b>Un lien</b> dans une mise en page</a>\n</p>\n'
        "\n<script>\nconst jamais = 'fermé' + deux + trois\n\nDernier paragraphe du texte.\n"
    )
    doc = load(write(tmp_path, "page.md", source.encode()))
    assert blocks_text(doc, level=0) == [
        "Un paragraphe important avec lien.",
        "un point",
        "Texte de navigation qui est du contenu.",
        "Fin du texte.",
        "Un lien dans une mise en page",
        "Dernier paragraphe du texte.",  # an unclosed <script> is dropped up to the next blank line only
    ]


# --------------------------------------------------------------------------------------------------- HTML


def test_eurlex_superscripts_and_headings() -> None:
    doc = load(AI_ACT)
    assert "10^25" in doc.text
    assert "1025 " not in doc.text and "1025." not in doc.text
    assert doc.title.startswith("Regulation (EU) 2024/1689")
    headings = [h.replace("\n", " ") for h in blocks_text(doc) if h]
    levels = {doc.text[b.start : b.end].split("\n")[0]: b.heading_level for b in doc.blocks if b.heading_level}
    assert levels["CHAPTER V"] < levels["SECTION 1"] < levels["Article 51"]
    assert levels["Article 113"] <= levels["CHAPTER V"], "Article 113 is outside Chapter V"
    assert (
        "Article 51\nClassification of general-purpose AI models as general-purpose AI models with systemic risk"
        in (blocks_text(doc))
    )
    assert any(h.startswith("(a) providers placing on the market") for h in headings)


def test_cnil_page_has_no_script_and_keeps_headings() -> None:
    doc = load(CNIL)
    for script_text in ("TableOfContents", "addEventListener", "innerHTML", "console.log", "font-family"):
        assert script_text not in doc.text
    # The guide shows JavaScript samples in <pre> blocks: those are content; nothing else may add "function(".
    tree = LexborHTMLParser(CNIL.read_text(encoding="utf-8"))
    in_code = sum((pre.text(deep=True) or "").count("function(") for pre in tree.css("pre"))
    assert doc.text.count("function(") == in_code
    assert doc.title == "Guide RGPD de l'équipe de développement"
    h1 = blocks_text(doc, level=1)
    assert "Fiche n°1 : Identifier les données à caractère personnel" in h1
    assert len([h for h in h1 if h.startswith("Fiche n°")]) == 19
    assert "Que contient le guide ?" in blocks_text(doc, level=4)


def test_html_visible_text_only(tmp_path: Path) -> None:
    page = """<html><head><title>Essai</title><style>p{color:red}</style></head><body>
    <header>Menu du site</header><nav><a href="/">Accueil</a></nav>
    <h2>Titre <em>deux</em></h2>
    <p>Un <b>mot</b>s collé, E = mc<sup>2</sup> et H<sub>2</sub>O.<br>Ligne deux.</p>
    <p hidden>caché</p><div style="display: none">invisible</div><span aria-hidden="true">aria</span>
    <script>var x = "function(";</script><noscript>sans js</noscript><template><p>modèle</p></template>
    <form><label>Nom</label><input value="valeur"><button>Envoyer</button></form>
    <table><tr><th>Modèle</th><th>Score</th></tr><tr><td>R1</td><td>79,8</td></tr></table>
    <ul><li>premier</li><li>second</li></ul>
    <article><header>En-tête d’article</header><p>Corps.</p></article>
    <footer>Pied de page</footer></body></html>"""
    doc = load(write(tmp_path, "page.html", page.encode("utf-8")))
    assert doc.title == "Essai"
    assert blocks_text(doc, level=2) == ["Titre deux"]
    body = blocks_text(doc, level=0)
    assert "Un mots collé, E = mc^2 et H_2O.\nLigne deux." in body
    assert "Modèle | Score\nR1 | 79,8" in body  # a table with a header row is one block, one row per line
    table = next(b for b in doc.blocks if b.table)
    assert table.header is not None and doc.text[table.header[0] : table.header[1]] == "Modèle | Score"
    assert "premier" in body and "second" in body
    assert "En-tête d’article" in body and "Corps." in body
    for hidden in ("Menu du site", "Accueil", "caché", "invisible", "aria", "function(", "sans js", "modèle"):
        assert hidden not in doc.text
    assert "valeur" not in doc.text and "Envoyer" not in doc.text and "Pied de page" not in doc.text


# ---------------------------------------------------------------------------------------------------- PDF


def test_pdf_keeps_pages_headings_and_joins_hyphenation() -> None:
    started = time.perf_counter()
    doc = load(PAPER)
    elapsed = time.perf_counter() - started
    assert elapsed < 15, f"PDF load took {elapsed:.1f}s"
    assert {b.page for b in doc.blocks} == set(range(1, 23))
    assert [b.page for b in doc.blocks] == sorted(b.page for b in doc.blocks)
    assert doc.title == "DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via Reinforcement Learning"
    levels = {doc.text[b.start : b.end]: b.heading_level for b in doc.blocks if b.heading_level}
    assert levels["1. Introduction"] == 1
    assert levels["2.3. DeepSeek-R1: Reinforcement Learning with Cold Start"] == 2
    assert levels["2.3.1. Cold Start"] == 3
    assert not any(". . ." in h for h in levels), "table-of-contents lines are not headings"
    assert "without supervised fine-tuning (SFT)" in doc.text and "super- vised" not in doc.text
    assert "DeepSeek-R1-Zero" in doc.text
    cold_start = next(b for b in doc.blocks if doc.text[b.start : b.end] == "2.3.1. Cold Start")
    assert cold_start.page == 9


def test_pdf_running_headers_and_footers_are_dropped() -> None:
    doc = load(RELATED / "grall_ia_gestion_des_risques_presentation_fr.pdf")
    chunks = chunk_document(doc)
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        for noise in ("Résultat de recherche d'images", "TLP:CLEAR", "IA - Vers une approche globale"):
            assert noise not in chunk.embedding_text, (noise, chunk.text[:80])
    assert doc.title == "Vers une approche globale de gestion des risques"  # the title slide keeps its title
    for content in ("La logique générale", "1. Minimal", "Étape 1 : estimer le niveau de risque"):
        assert any(content in chunk.text for chunk in chunks), content


def test_pdf_running_line_rule(tmp_path: Path) -> None:
    """A line on at least 3 pages and half of them goes, whatever numbers frame it; a line on 2 of 4 pages stays."""
    topics = ["les couts", "les risques", "la securite", "les delais"]
    pages = [
        [
            "Rapport interne CONFIDENTIEL",
            f"Texte propre a cette page qui parle de {topics[n - 1]}.",
            "Une phrase citee deux fois dans le document." if n in (1, 3) else "Rien de plus ici.",
            f"Rapport annuel {n} - 2{n}/07/2025" if n % 2 else f"2{n}/07/2025 Rapport annuel{n}",
        ]
        for n in range(1, 5)
    ]
    doc = load(write(tmp_path, "rapport.pdf", text_pdf(pages)))
    assert "CONFIDENTIEL" not in doc.text and "Rapport annuel" not in doc.text and "/07/2025" not in doc.text
    assert doc.text.count("Une phrase citee deux fois dans le document.") == 2
    assert all(f"Texte propre a cette page qui parle de {topic}." in doc.text for topic in topics)


def test_pdf_tables_of_measurements_keep_a_line_per_row(tmp_path: Path) -> None:
    page = [
        "2.1 Results",
        "We compare the three systems on two benchmarks and report the mean of five runs in the table below.",
        "Model Accuracy Latency",
        "Alpha 71.2 0.8",
        "Beta 64.0 1.1",
        "Large models",
        "Gamma 80.5 2.4",
        "Table 1 | Scores of the three systems.",
        "Chart labels that name versions are not a table, nor is anything without a measured value:",
        "Llama 2 13B",
        "Llama 2 70B",
        "Llama 3 8B",
    ]
    doc = load(write(tmp_path, "results.pdf", text_pdf([page])))
    tables = [b for b in doc.blocks if b.table]
    assert len(tables) == 1 and tables[0].header is not None
    assert doc.text[tables[0].start : tables[0].end] == (
        "Model Accuracy Latency\nAlpha 71.2 0.8\nBeta 64.0 1.1\nLarge models Gamma 80.5 2.4"
    )
    assert doc.text[tables[0].header[0] : tables[0].header[1]] == "Model Accuracy Latency"


def _pdf_bytes(encrypt: bool = False) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    if encrypt:
        writer.encrypt("secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_bomb_stops_at_its_first_page(tmp_path: Path) -> None:
    data = pdf_bomb()
    assert len(data) < 60_000
    path = write(tmp_path, "bomb.pdf", data)
    started = time.perf_counter()
    with pytest.raises(LoadError) as info:
        load_document(path, tmp_path)
    elapsed = time.perf_counter() - started
    assert info.value.reason == f"PDF page 1 too long: over {MAX_PAGE_CHARS} characters"
    assert elapsed < 30, f"the bomb took {elapsed:.1f}s"  # measured ~0.3 s: one page, not 200


@pytest.mark.parametrize(
    ("bound", "reason"),
    [
        ({"max_pdf_pages": 10}, "PDF too long: 22 pages, limit 10"),
        ({"max_document_chars": 20_000}, "PDF text too long: over 20000 characters"),
        ({"max_page_chars": 1_000}, "PDF page 1 too long: over 1000 characters"),
        ({"max_extraction_seconds": 0}, "PDF extraction too slow: over 0 s"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_pdf_bounds_can_be_overridden(bound: dict[str, int], reason: str) -> None:
    with pytest.raises(LoadError) as info:
        load_document(PAPER, PAPER.parent, **bound)
    assert info.value.reason == reason


# ---------------------------------------------------------------------------------------------- discovery


def test_discovery_does_not_follow_links_out_of_the_folder(tmp_path: Path) -> None:
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text("Secret.\n", encoding="utf-8")
    (outside / "dir" / "more.md").write_text("# More\n", encoding="utf-8")
    (corpus / "sub").mkdir(parents=True)
    (corpus / "sub" / "real.txt").write_text("Real.\n", encoding="utf-8")
    (corpus / "secret.txt").symlink_to(outside / "secret.txt")
    (corpus / "outdir").symlink_to(outside / "dir", target_is_directory=True)
    (corpus / "up").symlink_to(tmp_path, target_is_directory=True)
    (corpus / "alias.txt").symlink_to(corpus / "sub" / "real.txt")
    (corpus / "subdir").symlink_to(corpus / "sub", target_is_directory=True)
    (corpus / "notes").symlink_to(outside / "secret.txt")  # not a supported name: ignored, as a plain file is

    files, roots, skipped = discover([corpus])

    assert roots == [corpus.resolve()]
    assert [f.source for f in files] == ["alias.txt", "sub/real.txt"]  # inside links: files followed, dirs not
    assert {Path(s["path"]).name: s["reason"] for s in skipped} == {
        "secret.txt": LINK_OUTSIDE,
        "outdir": LINK_OUTSIDE,
        "up": LINK_OUTSIDE,
    }


def test_discovery_passes_over_the_folder_readme_unless_given(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# This folder\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("A document of its own.\n", encoding="utf-8")
    assert [f.source for f in discover([tmp_path])[0]] == ["sub/readme.txt"]
    assert [f.source for f in discover([tmp_path / "README.md"])[0]] == ["README.md"]


# ---------------------------------------------------------------------------------------------- bad files


def _bad_files() -> list[tuple[str, bytes, str]]:
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(4000))
    paper = PAPER.read_bytes()
    return [
        ("empty.txt", b"", "empty"),
        ("blank.md", b"  \n\n\t\n", "empty"),
        ("binary.txt", noise + b"\x00\x00" + noise, "binary"),
        ("binary.html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + noise, "binary"),
        ("truncated.pdf", paper[: len(paper) // 3], "pdf"),
        ("garbage.pdf", b"%PDF-1.7\n" + noise, "pdf"),
        ("blank.pdf", _pdf_bytes(), "no extractable text"),
        ("locked.pdf", _pdf_bytes(encrypt=True), "encrypted"),
        ("scripts.html", b"<html><body><script>alert(1)</script></body></html>", "text"),
        ("report.rtf", b"{\\rtf1 not supported}", "unsupported"),
    ]


@pytest.mark.parametrize(("name", "data", "reason"), _bad_files(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_files_raise_load_error_with_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(LoadError) as info:
        load_document(path, tmp_path)
    assert reason in info.value.reason.lower() or reason in info.value.reason
    assert len(info.value.reason) < 80


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError):
        load_document(tmp_path / "absent.txt", tmp_path)
