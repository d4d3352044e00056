"""Office formats (.docx .pptx .xlsx .csv .odt .odp .ods .epub .eml): files built in the test load with exact
offsets, their structure (headings, slides, sheets) comes out as blocks, a sheet's row is a chunk under its
header, and a corrupt file of each type is a LoadError with its reason."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from contracts import assert_block_contract
from office_samples import (
    CSV_HEADER,
    CSV_ROW,
    DOCX_HEADER,
    DOCX_ROW,
    ODS_HEADER,
    ODS_ROW,
    PPTX_ROW,
    XLSX_HEADER,
    XLSX_ROW,
    csv_bytes,
    docx_bytes,
    eml_bytes,
    epub_bytes,
    odp_bytes,
    ods_bytes,
    ods_repeat_bomb,
    odt_bytes,
    pptx_bytes,
    xlsx_bytes,
    zip_bomb,
)

from index.chunking import chunk_document
from index.discovery import discover
from index.loaders import SUPPORTED_SUFFIXES, load_document
from index.loaders.office import MAX_UNPACKED_BYTES
from index.types import Chunk, Document, LoadError

SAMPLES: dict[str, Callable[[], bytes]] = {
    ".docx": docx_bytes,
    ".pptx": pptx_bytes,
    ".xlsx": xlsx_bytes,
    ".csv": csv_bytes,
    ".odt": odt_bytes,
    ".odp": odp_bytes,
    ".ods": ods_bytes,
    ".epub": epub_bytes,
    ".eml": eml_bytes,
}
ZIPPED = (".docx", ".pptx", ".xlsx", ".odt", ".odp", ".ods", ".epub")


def load(tmp_path: Path, suffix: str, data: bytes | None = None, **bounds: int) -> Document:
    path = tmp_path / f"échantillon{suffix}"
    path.write_bytes(SAMPLES[suffix]() if data is None else data)
    return load_document(path, tmp_path, **bounds)


def blocks(doc: Document) -> list[tuple[int, int | None, str]]:
    """(heading level, page, text) of each block."""
    return [(b.heading_level, b.page, doc.text[b.start : b.end]) for b in doc.blocks]


def row_chunk(chunks: list[Chunk], row: str) -> Chunk:
    """The chunk that is the row alone."""
    return next(chunk for chunk in chunks if chunk.text == row)


@pytest.mark.parametrize("suffix", list(SAMPLES))
def test_each_format_loads_with_exact_offsets(tmp_path: Path, suffix: str) -> None:
    doc = load(tmp_path, suffix)
    assert doc.kind == suffix[1:]
    assert doc.title.strip()
    assert_block_contract(doc)
    for chunk in chunk_document(doc):
        assert doc.text[chunk.start : chunk.end] == chunk.text
    assert "\r" not in doc.text and "\x0b" not in doc.text


def test_new_suffixes_are_discovered(tmp_path: Path) -> None:
    for suffix, build in SAMPLES.items():
        (tmp_path / f"doc{suffix.upper() if suffix == '.docx' else suffix}").write_bytes(build())
    (tmp_path / "notes.rtf").write_bytes(b"{\\rtf1 not a supported type}")
    found = {f.path.suffix.lower() for f in discover([tmp_path])[0]}
    assert found == set(SAMPLES)
    assert set(SAMPLES) <= set(SUPPORTED_SUFFIXES)


# ------------------------------------------------------------------------------------------------ word, slides


def test_docx_headings_lists_and_tables_in_document_order(tmp_path: Path) -> None:
    doc = load(tmp_path, ".docx")
    assert doc.title == "Rapport régional"  # no core-properties title: the Title paragraph
    assert blocks(doc) == [
        (1, None, "Rapport régional"),
        (1, None, "Présentation générale"),
        (0, None, "Le château de Chambord a été achevé en 1547 sous François Iᵉʳ."),
        (0, None, "premier point à retenir"),
        (0, None, "second point, déjà traité"),
        (2, None, "Population des villes"),
        (0, None, f"{DOCX_HEADER}\nLyon | 522 000 | Auvergne-Rhône-Alpes\n{DOCX_ROW}"),
        (0, None, "Source : recensement de 2021, publié à l'été.\nDeuxième ligne du même paragraphe."),
    ]
    table = next(b for b in doc.blocks if b.table)
    assert table.header is not None and doc.text[table.header[0] : table.header[1]] == DOCX_HEADER
    assert not table.records  # a document's table: its rows are chunks of their own only with the setting


def test_docx_table_of_figures_has_no_header(tmp_path: Path) -> None:
    doc = load(tmp_path, ".docx", docx_bytes(rows=[["2021", "12,5 %"], ["2022", "13,1 %"]]))
    table = next(b for b in doc.blocks if b.table)
    assert table.header is None


def test_pptx_slides_are_pages_with_title_headings_and_notes(tmp_path: Path) -> None:
    doc = load(tmp_path, ".pptx")
    assert doc.title == "Bilan de l'année"
    assert blocks(doc) == [
        (1, 1, "Bilan de l'année"),
        (0, 1, "Présenté par l'équipe de Nantes"),
        (1, 2, "Résultats"),
        (0, 2, "Chiffre d'affaires en hausse de 12 %"),
        (0, 2, "Coûts maîtrisés"),
        (2, 2, "Notes"),
        (0, 2, "Insister sur la croissance."),
        (1, 3, "Tarifs de la cafétéria"),
        (0, 3, f"Boisson | Prix\nThé vert | 1,80 €\n{PPTX_ROW}"),
        (1, 4, "Slide 4"),  # untitled: its own heading, so its text is not taken for slide 3's
        (0, 4, "Une diapositive sans titre\nsur deux lignes."),
        (1, 5, "Slide 5"),  # empty placeholders give nothing
    ]
    chunks = chunk_document(doc)
    assert {c.page for c in chunks if "Coûts maîtrisés" in c.text} == {2}
    assert row_chunk(chunk_document(doc, table_row_chunks=True), PPTX_ROW).page == 3


def test_odt_and_odp_read_as_word_and_powerpoint(tmp_path: Path) -> None:
    odt = load(tmp_path, ".odt")
    assert odt.title == "Guide du visiteur"
    assert blocks(odt) == [
        (1, None, "Introduction"),
        (0, None, "Le château de Chambord accueille des visiteurs toute l'année.\nFermé le 25 décembre."),
        (0, None, "visite guidée en français"),
        (0, None, "audio-guide in English"),
        (2, None, "Tarifs d'entrée"),
        (0, None, "Billet | Prix\nAdulte | 15 €\nEnfant | 10 €"),
    ]
    table = next(b for b in odt.blocks if b.table)
    assert table.header is not None and odt.text[table.header[0] : table.header[1]] == "Billet | Prix"
    odp = load(tmp_path, ".odp")
    assert odp.title == "Stratégie 2030"
    assert blocks(odp) == [
        (1, 1, "Stratégie 2030"),
        (0, 1, "Réduire les coûts de l'énergie"),  # the page-number frame is left out
        (2, 1, "Notes"),
        (0, 1, "Parler de l'usine de Marseille."),
        (1, 2, "Slide 2"),
        (0, 2, "Une page sans titre, à Besançon."),
    ]


# ------------------------------------------------------------------------------------------------------ sheets


def test_xlsx_sheets_are_pages_with_a_table_of_records_each(tmp_path: Path) -> None:
    doc = load(tmp_path, ".xlsx")
    assert doc.title == "Classeur des ventes"
    assert blocks(doc) == [
        (1, 1, "Ventes"),
        (0, 1, f"{XLSX_HEADER}\nÎle-de-France | Crème brûlée | 1250.5 | 2024-03-01\n{XLSX_ROW}"),
        (1, 3, "Équipe"),  # the empty sheet "Vide" is page 2 and gives nothing
        (0, 3, "Name | Role\nZoë Brontë | Data engineer\nRenée |  | remote"),  # from column B; a gap kept
    ]
    tables = [b for b in doc.blocks if b.table]
    assert all(b.records and b.header is not None for b in tables)


@pytest.mark.parametrize(
    ("suffix", "header", "row", "page", "sheet"),
    [
        (".xlsx", XLSX_HEADER, XLSX_ROW, 1, "Ventes"),
        (".ods", ODS_HEADER, ODS_ROW, 1, "Employés"),
        (".csv", CSV_HEADER, CSV_ROW, None, None),
    ],
)
def test_a_sheet_row_is_a_chunk_under_its_header(
    tmp_path: Path, suffix: str, header: str, row: str, page: int | None, sheet: str | None
) -> None:
    doc = load(tmp_path, suffix)
    chunks = chunk_document(doc)  # table_row_chunks off: a sheet's rows are records all the same
    chunk = row_chunk(chunks, row)
    assert chunk.heading_path[-1] == header
    assert chunk.heading_path == ((sheet,) if sheet else ()) + (header,)
    assert chunk.embedding_text.endswith(f"{header}\n{row}")
    assert chunk.page == page
    assert any(header in c.text and row in c.text for c in chunks), "the packed table stays too"


def test_row_chunks_of_other_tables_still_follow_the_setting(tmp_path: Path) -> None:
    doc = load(tmp_path, ".docx")
    assert not any(c.text == DOCX_ROW for c in chunk_document(doc))
    assert row_chunk(chunk_document(doc, table_row_chunks=True), DOCX_ROW).heading_path[-1] == DOCX_HEADER


def test_ods_repeats_are_expanded_without_building_empty_ones(tmp_path: Path) -> None:
    started = time.perf_counter()
    doc = load(tmp_path, ".ods")  # 16,000 empty cells a row and 1,048,000 empty rows, as LibreOffice saves
    assert time.perf_counter() - started < 5
    assert blocks(doc) == [
        (1, 1, "Employés"),
        (0, 1, f"{ODS_HEADER}\nZoé Lambert | Comptabilité | A-101\n{ODS_ROW}"),
        (1, 2, "Chiffres"),
        (0, 2, "3.5"),  # a cell without a paragraph: its value
    ]


@pytest.mark.parametrize(
    ("encoding", "delimiter"), [("cp1252", ";"), ("utf-8-sig", ","), ("utf-16", "\t"), ("utf-8", "|")]
)
def test_csv_any_encoding_and_delimiter(tmp_path: Path, encoding: str, delimiter: str) -> None:
    doc = load(tmp_path, ".csv", csv_bytes(encoding, delimiter))
    assert doc.title == "échantillon"  # no title of its own: the file name
    text = f"{CSV_HEADER}\nDupont | Orléans | 42\n{CSV_ROW}\nLefèvre | Saint-Étienne Loire | 51"  # quotes honoured
    assert blocks(doc) == [(0, None, text)]


# ---------------------------------------------------------------------------------------------- books, e-mails


def test_epub_chapters_in_spine_order_with_their_headings(tmp_path: Path) -> None:
    doc = load(tmp_path, ".epub")
    assert doc.title == "Les Misérables (extraits)"
    assert blocks(doc) == [
        (1, None, "Un juste"),
        (0, None, "Jean Valjean arrive à Digne en octobre 1815."),
        (2, None, "Monseigneur Bienvenu"),
        (0, None, "L'évêque l'accueille à sa table."),
        (1, None, "Cosette"),  # no heading in the chapter: its table-of-contents entry
        (0, None, "Cosette vit chez les Thénardier à Montfermeil."),
    ]


def test_eml_headers_body_and_text_attachments(tmp_path: Path) -> None:
    doc = load(tmp_path, ".eml")
    assert doc.title == "Réunion du comité à Orléans"
    assert blocks(doc) == [
        (1, None, "Réunion du comité à Orléans"),
        (
            0,
            None,
            "From: Zoé Dupré <zoe@example.fr>\nTo: Équipe projet <equipe@example.fr>\n"
            "Date: Mon, 03 Mar 2031 10:00:00 +0100\nSubject: Réunion du comité à Orléans",
        ),
        (0, None, "Bonjour,"),  # the latin-1 text part, preferred to the HTML one
        (0, None, "La réunion aura lieu à Orléans le 3 mars, salle Jeanne-d'Arc."),
        (0, None, "Cordialement,\nZoé"),
        (2, None, "participants.csv"),
        (0, None, "Nom | Ville\nDupont | Nîmes\nRenée | Besançon"),  # windows-1252, decoded as declared
        (2, None, "compte-rendu.md"),
        (3, None, "Compte rendu"),
        (0, None, "Décisions prises à l'unanimité."),
    ]
    assert "plan.pdf" not in doc.text and "PDF-1.4" not in doc.text
    assert row_chunk(chunk_document(doc), "Renée | Besançon").heading_path[-1] == "Nom | Ville"


def test_eml_html_body_is_read_as_a_page(tmp_path: Path) -> None:
    doc = load(tmp_path, ".eml", eml_bytes(html_only=True))
    assert (2, None, "Ordre du jour") in blocks(doc)
    assert (0, None, "La réunion aura lieu à Orléans le 3 mars.") in blocks(doc)
    assert "<b>" not in doc.text


# ------------------------------------------------------------------------------------------------ bad files


def _corrupt_files() -> list[tuple[str, bytes, str]]:
    rng = random.Random(13)
    noise = bytes(rng.randrange(256) for _ in range(3000))
    cases = []
    for suffix in ZIPPED:
        data = SAMPLES[suffix]()
        cases.append((f"truncated{suffix}", data[: len(data) // 2], f"not a valid {suffix} file (corrupt zip)"))
        cases.append((f"random{suffix}", noise, f"not a valid {suffix} file (corrupt zip)"))
    return [
        *cases,
        ("pptx-as-docx.docx", pptx_bytes(), "not a valid .docx file"),  # a zip, but not a Word package
        ("text-in-a-zip.xlsx", _zip({"hello.txt": "bonjour"}), "not a valid .xlsx file"),
        ("no-body.odt", _zip({"mimetype": "application/vnd.oasis.opendocument.text"}), "not a valid .odt file"),
        ("garbage.eml", noise, "not a valid .eml file (no e-mail headers)"),
        ("binary.csv", noise + b"\x00\x00" + noise, "binary"),
        ("open-quote.csv", b'a,b\n"never closed,1\n' + b"x" * 140_000, "not a valid .csv file"),
    ]


def _zip(members: dict[str, str]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "data", "reason"), _corrupt_files(), ids=lambda v: v if isinstance(v, str) else "")
def test_corrupt_files_raise_load_error_with_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(LoadError) as info:
        load_document(path, tmp_path)
    assert reason in info.value.reason
    assert len(info.value.reason) < 80


def test_zip_bomb_is_refused_before_parsing(tmp_path: Path) -> None:
    data = zip_bomb()
    assert len(data) < 500_000
    started = time.perf_counter()
    with pytest.raises(LoadError) as info:
        load(tmp_path, ".docx", data)
    assert time.perf_counter() - started < 1
    assert info.value.reason == f".docx archive too large: unpacks to 210 MB, limit {MAX_UNPACKED_BYTES >> 20} MB"


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_a_sheet_over_the_document_bound_is_too_large(tmp_path: Path, suffix: str) -> None:
    data = xlsx_bytes(rows=400) if suffix == ".xlsx" else b"a;b\n" + b"ligne;valeur\n" * 2000
    with pytest.raises(LoadError) as info:
        load(tmp_path, suffix, data, max_document_chars=5000)
    assert info.value.reason == f"{suffix} file too large: over 5000 characters of text"


def test_office_extraction_is_held_to_the_time_bound(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as info:
        load(tmp_path, ".pptx", max_extraction_seconds=0)
    assert info.value.reason == ".pptx file extraction too slow: over 0 s"


def test_ods_repeat_bomb_stops_at_the_bound(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(LoadError) as info:
        load(tmp_path, ".ods", ods_repeat_bomb(), max_document_chars=100_000)
    assert info.value.reason == ".ods file too large: over 100000 characters of text"
    assert time.perf_counter() - started < 5
