"""Spreadsheets (.xlsx with openpyxl) and CSV files (.csv, the standard library's csv): each sheet's used range
is one table block of records (`Block.records`), so that each row is also indexed on its own under the header.

A sheet opens with its name as a level-1 heading, and its blocks have `page` = the sheet's number in the workbook
(1-based, chart sheets counted, as the tabs are). A sheet's first non-empty row is its header; empty rows are
left out, inner empty cells kept so that the columns stay under their header's. A CSV file is one sheet without
a name or a page. Cells are read as their values (a formula's last computed value), dates in ISO form. Reading
stops at the document bounds: a sheet of a million rows is a LoadError ("too large"), not a full memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from index.loaders.common import Bounds, Builder, Extracted
from index.loaders.office import check_zip, opening, read_rows
from index.loaders.text import read_text
from index.types import LoadError

_XLSX = ".xlsx"
_CSV = ".csv"
_DELIMITERS = ",;\t|"
_SNIFF_LINES = 50


def load_xlsx(data: bytes, bounds: Bounds) -> Extracted:
    """Every worksheet in tab order, read row by row (openpyxl's read-only mode streams the sheet's XML)."""
    import openpyxl

    check_zip(data, _XLSX)
    builder = Builder(bounds=bounds, what=f"{_XLSX} file")
    with opening(_XLSX):  # the sheets' XML is parsed as their rows are read
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            for number, name in enumerate(workbook.sheetnames, start=1):
                sheet = workbook[name]
                if not hasattr(sheet, "iter_rows"):
                    continue  # a chart sheet: no cells
                sheet.reset_dimensions()  # the declared used range may be wrong: read the rows that are there
                values = sheet.iter_rows(values_only=True)
                add_sheet(builder, name, read_rows(builder, ([cell_text(v) for v in row] for row in values)), number)
            title = (workbook.properties.title or "").strip()
        finally:
            workbook.close()
    return title, builder.text(), builder.blocks


def load_csv(data: bytes, bounds: Bounds) -> Extracted:
    """A CSV file of any encoding (decoded as text files are), its delimiter sniffed among , ; tab and |."""
    text = read_text(data)
    builder = Builder(bounds=bounds, what=f"{_CSV} file")
    try:
        rows = read_rows(builder, csv.reader(io.StringIO(text), delimiter=sniff_delimiter(text)))
    except csv.Error as exc:  # a quoted field that never closes, a field over csv's size limit
        raise LoadError(f"not a valid {_CSV} file ({str(exc)[:50]})") from exc
    add_sheet(builder, "", rows)
    return "", builder.text(), builder.blocks


def add_sheet(builder: Builder, name: str, rows: list[str], page: int | None = None) -> None:
    """A sheet's name as a heading and its rows as one table of records under it; nothing for an empty sheet."""
    if not rows:
        return
    builder.add(name, level=1, page=page)
    builder.add("\n".join(rows), page=page, header_rows=1, records=True)


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of fields most often, more fields
    breaking a tie; "," when none splits anything (a one-column file)."""
    sample = "\n".join(text.split("\n", _SNIFF_LINES)[:_SNIFF_LINES])
    best, best_score = ",", (0, 0)
    for delimiter in _DELIMITERS:
        try:
            counts = [len(row) for row in csv.reader(io.StringIO(sample), delimiter=delimiter) if row]
        except csv.Error:
            continue
        if not counts or counts[0] < 2:
            continue
        score = (sum(1 for count in counts if count == counts[0]), counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def cell_text(value: Any) -> str:
    """A cell's value as text: integers without ".0", dates in ISO form (without a midnight time)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)
