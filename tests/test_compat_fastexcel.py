"""fastexcel's cell errors, as ``read/fastexcel_compat`` reads them: pinned on a real sheet.

A sheet with a refused cell in a column of each type is loaded as batchload loads it
(``to_arrow_with_errors`` with the columns' types); a fastexcel upgrade that changes
what a ``CellError`` says fails here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import fastexcel
import xlsxwriter

from batchload.read.fastexcel_compat import refused_value


def test_each_refused_cell_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "cells.xlsx"
    workbook = xlsxwriter.Workbook(path)
    sheet = workbook.add_worksheet()
    sheet.write_row(0, 0, ["n", "d", "b", "f"])
    sheet.write_row(1, 0, [1, dt.date(2024, 1, 2), True, 1.5])
    sheet.write_row(2, 0, ["abc", "not a date", "yes", 'say "hi"\tnow'])
    sheet.write_row(3, 0, [" ", True, "x", "é"])
    workbook.close()

    loaded = fastexcel.read_excel(path).load_sheet(
        0,
        schema_sample_rows=None,
        dtypes={"n": "int", "d": "date", "b": "boolean", "f": "float"},
    )
    _, errors = loaded.to_arrow_with_errors()
    assert errors is not None
    found = {e.offset_position: refused_value(e.detail) for e in errors.errors}
    assert found == {
        (1, 0): "abc",
        (2, 0): " ",
        (1, 1): "not a date",
        (2, 1): "true",
        (1, 2): "yes",
        (2, 2): "x",
        (1, 3): 'say "hi"\tnow',
        (2, 3): "é",
    }


def test_a_detail_that_shows_no_cell() -> None:
    assert refused_value("something new") is None
    assert refused_value("Expected int but got 'Empty'") is None
