"""Writing the ideas export (storage.ideas.export_rows) as CSV or an Excel workbook.

People's words go into spreadsheets here, so a cell that a spreadsheet would run as a formula
(text starting with = + - or @, or a tab or carriage return before one) is written with a
leading apostrophe, which shows it as the text it is.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from storage.ideas import EXPORT_COLUMNS

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Characters an .xlsx file cannot hold (control characters other than tab and line breaks).
_NOT_IN_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Widths (in characters) of the columns that hold sentences; the others fit their header.
_WIDE_COLUMNS = {"title": 40, "problem": 60, "suggestion": 60, "benefits": 30, "history": 70}
_NARROW_WIDTH = 16


def safe_cell(text: str) -> str:
    """The text, with a leading apostrophe if a spreadsheet would take it for a formula."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def write_csv(rows: Iterable[Mapping[str, str]], stream: TextIO) -> None:
    """A header row, then one row per idea. Open a file with newline="" for it."""
    writer = csv.writer(stream)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([safe_cell(row.get(column, "")) for column in EXPORT_COLUMNS])


def write_xlsx(rows: Iterable[Mapping[str, str]], path: Path) -> None:
    """One sheet, "Ideas": a bold, frozen header row, then one row per idea, every cell text."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Ideas"
    sheet.append(list(EXPORT_COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    wrap = Alignment(wrap_text=True, vertical="top")
    for row in rows:
        sheet.append(
            [safe_cell(_NOT_IN_XLSX.sub("", row.get(column, ""))) for column in EXPORT_COLUMNS]
        )
        for cell in sheet[sheet.max_row]:
            # Text, always: openpyxl would otherwise store "=..." as a formula.
            cell.data_type = "s"
            cell.alignment = wrap
    for index, column in enumerate(EXPORT_COLUMNS):
        letter = sheet.cell(row=1, column=index + 1).column_letter
        sheet.column_dimensions[letter].width = _WIDE_COLUMNS.get(column, _NARROW_WIDTH)
    workbook.save(path)
