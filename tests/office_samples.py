"""Office documents built for tests with the libraries that write them (python-docx, python-pptx, openpyxl,
odfpy, ebooklib; csv and e-mail by hand), in French and English with accents, and a zip bomb."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from email import policy
from email.message import EmailMessage

# What the samples say, for the tests to look for.
DOCX_ROW = "Orléans | 116 000 | Centre-Val de Loire"
DOCX_HEADER = "Ville | Habitants | Région"
PPTX_ROW = "Café crème | 2,80 €"
XLSX_HEADER = "Région | Produit | Montant | Date"
XLSX_ROW = "Bretagne | Galette complète | 980 | 2024-03-02"
ODS_HEADER = "Nom | Service | Bureau"
ODS_ROW = "Loïc Hervé | Recherche | B-212"
CSV_HEADER = "Nom | Ville | Âge"
CSV_ROW = "Martin; Jr | Nîmes | 37"


def docx_bytes(
    paragraphs: tuple[str, ...] = ("Le château de Chambord a été achevé en 1547 sous François Iᵉʳ.",),
    rows: list[list[str]] | None = None,
) -> bytes:
    """A Word document: Title, headings at two levels, paragraphs, list items, a table between paragraphs."""
    import docx

    document = docx.Document()
    document.add_paragraph("Rapport régional", style="Title")
    document.add_heading("Présentation générale", level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    document.add_paragraph("premier point à retenir", style="List Bullet")
    document.add_paragraph("second point, déjà traité", style="List Number")
    document.add_heading("Population des villes", level=2)
    rows = rows or [
        ["Ville", "Habitants", "Région"],
        ["Lyon", "522 000", "Auvergne-Rhône-Alpes"],
        ["Orléans", "116 000", "Centre-Val de Loire"],
    ]
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            table.cell(i, j).text = value
    document.add_paragraph("Source : recensement de 2021, publié à l'été.\nDeuxième ligne du même paragraphe.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx_bytes(slides: list[tuple[str, list[str], str]] | None = None) -> bytes:
    """A presentation: a title slide, (title, bullets, notes) slides, a slide with a price table, and an
    untitled slide holding only a text box."""
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    first = presentation.slides.add_slide(presentation.slide_layouts[0])
    first.shapes.title.text = "Bilan de l'année"
    first.placeholders[1].text = "Présenté par l'équipe de Nantes"
    slides = slides or [
        ("Résultats", ["Chiffre d'affaires en hausse de 12 %", "Coûts maîtrisés"], "Insister sur la croissance."),
    ]
    for title, bullets, notes in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = title
        frame = slide.placeholders[1].text_frame
        frame.text = bullets[0]
        for bullet in bullets[1:]:
            frame.add_paragraph().text = bullet
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    prices = presentation.slides.add_slide(presentation.slide_layouts[5])
    prices.shapes.title.text = "Tarifs de la cafétéria"
    table = prices.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for i, row in enumerate([["Boisson", "Prix"], ["Thé vert", "1,80 €"], ["Café crème", "2,80 €"]]):
        for j, value in enumerate(row):
            table.cell(i, j).text = value
    untitled = presentation.slides.add_slide(presentation.slide_layouts[6])
    box = untitled.shapes.add_textbox(Inches(1), Inches(1), Inches(6), Inches(1))
    box.text_frame.text = "Une diapositive sans titre\x0bsur deux lignes."
    presentation.slides.add_slide(presentation.slide_layouts[1])  # empty placeholders only
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def xlsx_bytes(rows: int = 0) -> bytes:
    """A workbook: "Ventes" (header, rows, an empty row between), an empty sheet, "Équipe" whose table starts
    at column B, and `rows` more sales rows when asked (for the bounds)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sales = workbook.active
    sales.title = "Ventes"
    sales.append(["Région", "Produit", "Montant", "Date"])
    sales.append(["Île-de-France", "Crème brûlée", 1250.5, dt.date(2024, 3, 1)])
    sales.append([None, None, None, None])
    sales.append(["Bretagne", "Galette complète", 980, dt.datetime(2024, 3, 2)])
    for n in range(rows):
        sales.append(["Normandie", f"Camembert n°{n}", n, dt.date(2024, 4, 1)])
    workbook.create_sheet("Vide")
    team = workbook.create_sheet("Équipe")
    team["B2"], team["C2"] = "Name", "Role"
    team["B3"], team["C3"] = "Zoë Brontë", "Data engineer"
    team["B4"], team["D4"] = "Renée", "remote"
    workbook.properties.title = "Classeur des ventes"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_bytes(encoding: str = "cp1252", delimiter: str = ";") -> bytes:
    rows = [["Nom", "Ville", "Âge"], ["Dupont", "Orléans", "42"], ['"Martin; Jr"', "Nîmes", "37"]]
    lines = [delimiter.join(row) for row in rows]
    lines.append(delimiter.join(['"Lefèvre"', '"Saint-Étienne\nLoire"', "51"]))
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def _odf_bytes(document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _odf_table(name: str, rows: list[list[str]], header_rows: int = 0):
    from odf.table import Table, TableCell, TableHeaderRows, TableRow
    from odf.text import P

    table = Table(name=name)
    head = TableHeaderRows()
    for n, values in enumerate(rows):
        row = TableRow()
        for value in values:
            cell = TableCell(valuetype="string")
            cell.addElement(P(text=value))
            row.addElement(cell)
        (head if n < header_rows else table).addElement(row)
        if n + 1 == header_rows:
            table.addElement(head)
    return table


def odt_bytes() -> bytes:
    from odf import dc
    from odf.opendocument import OpenDocumentText
    from odf.text import H, LineBreak, List, ListItem, P, Span

    document = OpenDocumentText()
    document.meta.addElement(dc.Title(text="Guide du visiteur"))
    document.text.addElement(H(outlinelevel=1, text="Introduction"))
    paragraph = P(text="Le château de ")
    paragraph.addElement(Span(text="Chambord"))
    paragraph.addText(" accueille des visiteurs toute l'année.")
    paragraph.addElement(LineBreak())
    paragraph.addText("Fermé le 25 décembre.")
    document.text.addElement(paragraph)
    items = List()
    for text in ("visite guidée en français", "audio-guide in English"):
        item = ListItem()
        item.addElement(P(text=text))
        items.addElement(item)
    document.text.addElement(items)
    document.text.addElement(H(outlinelevel=2, text="Tarifs d'entrée"))
    document.text.addElement(_odf_table("Tarifs", [["Billet", "Prix"], ["Adulte", "15 €"], ["Enfant", "10 €"]], 1))
    return _odf_bytes(document)


def odp_bytes() -> bytes:
    from odf.draw import Frame, Page, TextBox
    from odf.namespaces import PRESENTATIONNS
    from odf.opendocument import OpenDocumentPresentation
    from odf.presentation import Notes
    from odf.style import MasterPage, PageLayout
    from odf.text import P

    document = OpenDocumentPresentation()
    layout = PageLayout(name="PL")
    document.automaticstyles.addElement(layout)
    master = MasterPage(name="Default", pagelayoutname=layout)
    document.masterstyles.addElement(master)

    def frame(parent, text: str, kind: str = "") -> None:
        element = Frame(width="20cm", height="3cm", x="1cm", y="1cm")
        if kind:
            element.setAttrNS(PRESENTATIONNS, "class", kind)
        box = TextBox()
        box.addElement(P(text=text))
        element.addElement(box)
        parent.addElement(element)

    first = Page(name="page1", masterpagename=master)
    frame(first, "Stratégie 2030", "title")
    frame(first, "Réduire les coûts de l'énergie", "outline")
    frame(first, "12", "page-number")
    notes = Notes()
    frame(notes, "Parler de l'usine de Marseille.", "notes")
    first.addElement(notes)
    document.presentation.addElement(first)
    second = Page(name="page2", masterpagename=master)
    frame(second, "Une page sans titre, à Besançon.")
    second.addElement(Frame(width="20cm", height="3cm", x="1cm", y="1cm"))  # an empty frame
    document.presentation.addElement(second)
    return _odf_bytes(document)


def ods_bytes(repeated_rows: int = 1_048_000) -> bytes:
    """A spreadsheet whose table starts two columns in, ends with a run of 16,000 empty cells per row and
    `repeated_rows` empty rows (as LibreOffice writes them), and a second sheet holding one number."""
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    document = OpenDocumentSpreadsheet()
    staff = Table(name="Employés")
    for values in [
        ["Nom", "Service", "Bureau"],
        ["Zoé Lambert", "Comptabilité", "A-101"],
        ["Loïc Hervé", "Recherche", "B-212"],
    ]:
        row = TableRow()
        row.addElement(TableCell(numbercolumnsrepeated=2))
        for value in values:
            cell = TableCell(valuetype="string")
            cell.addElement(P(text=value))
            row.addElement(cell)
        row.addElement(TableCell(numbercolumnsrepeated=16_000))
        staff.addElement(row)
    staff.addElement(TableRow(numberrowsrepeated=repeated_rows))
    document.spreadsheet.addElement(staff)
    figures = Table(name="Chiffres")
    row = TableRow()
    row.addElement(TableCell(valuetype="float", value="3.5"))
    figures.addElement(row)
    document.spreadsheet.addElement(figures)
    return _odf_bytes(document)


def ods_repeat_bomb() -> bytes:
    """A few hundred bytes declaring a filled row repeated a billion times."""
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    document = OpenDocumentSpreadsheet()
    table = Table(name="Bombe")
    row = TableRow(numberrowsrepeated=1_000_000_000)
    cell = TableCell(valuetype="string", numbercolumnsrepeated=16_384)
    cell.addElement(P(text="répété"))
    row.addElement(cell)
    table.addElement(row)
    document.spreadsheet.addElement(table)
    return _odf_bytes(document)


def epub_bytes() -> bytes:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("urn:test:miserables")
    book.set_title("Les Misérables (extraits)")
    book.set_language("fr")
    first = epub.EpubHtml(title="Un juste", file_name="c1.xhtml", lang="fr")
    first.content = (
        "<h1>Un juste</h1><p>Jean Valjean arrive à Digne en octobre 1815.</p>"
        "<h2>Monseigneur Bienvenu</h2><p>L'évêque l'accueille à sa table.</p>"
    )
    second = epub.EpubHtml(title="Cosette", file_name="c2.xhtml", lang="fr")
    second.content = "<p>Cosette vit chez les Thénardier à Montfermeil.</p>"
    book.add_item(first)
    book.add_item(second)
    book.toc = (first, second)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", first, second]
    buffer = io.BytesIO()
    epub.write_epub(buffer, book)
    return buffer.getvalue()


def eml_bytes(html_only: bool = False) -> bytes:
    """An e-mail with encoded headers, a latin-1 quoted-printable text body (and an HTML alternative), a
    windows-1252 CSV attachment, a markdown attachment and a PDF attachment (not text: left out)."""
    message = EmailMessage()
    message["Subject"] = "Réunion du comité à Orléans"
    message["From"] = "Zoé Dupré <zoe@example.fr>"
    message["To"] = "Équipe projet <equipe@example.fr>"
    message["Date"] = "Mon, 03 Mar 2031 10:00:00 +0100"
    html = "<h2>Ordre du jour</h2><p>La réunion aura lieu à <b>Orléans</b> le 3 mars.</p>"
    if html_only:
        message.set_content(html, subtype="html")
    else:
        text = "Bonjour,\n\nLa réunion aura lieu à Orléans le 3 mars, salle Jeanne-d'Arc.\n\nCordialement,\nZoé"
        message.set_content(text, charset="iso-8859-1", cte="quoted-printable")
        message.add_alternative(html, subtype="html")
    message.add_attachment(
        "Nom,Ville\nDupont,Nîmes\nRenée,Besançon\n".encode("cp1252"),
        maintype="text",
        subtype="csv",
        filename="participants.csv",
        params={"charset": "windows-1252"},
    )
    message.add_attachment(
        "# Compte rendu\n\nDécisions prises à l'unanimité.\n".encode(),
        maintype="text",
        subtype="markdown",
        filename="compte-rendu.md",
    )
    message.add_attachment(b"%PDF-1.4 not text", maintype="application", subtype="pdf", filename="plan.pdf")
    return message.as_bytes(policy=policy.SMTP)


def zip_bomb(name: str = "word/document.xml", megabytes: int = 210) -> bytes:
    """A zip of a few hundred kilobytes declaring `megabytes` MB unpacked (zeros compress ~1000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open(name, "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(megabytes):
                member.write(block)
    return buffer.getvalue()
