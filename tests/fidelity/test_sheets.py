"""Workbooks as people make them: where the header is (--header-row, --sheet, a plan, the
contract), and verdicts that name the spreadsheet's own rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest
import xlsxwriter

from batchload.check.validate import validate_files
from batchload.contract.model import build_contract, contract_from_yaml
from batchload.contract.reading import Reading, SheetChoice
from batchload.pipeline.plan import load_plan
from batchload.server.process import ServerProcess
from tests.conftest import TOKEN
from tests.fidelity.test_corpus import D1, D2, QUOTES, stored, xlsx
from tests.test_cli_schema import run as cli
from tests.upload_helpers import job, run

HAND_ROWS: list[list[object]] = [[D1, "A", 1.5, "x"], [D2, "B", None, "y"]]


@pytest.fixture
def quotes(tmp_path: Path) -> Path:
    schema = tmp_path / "quotes.yaml"
    schema.write_text(QUOTES)
    return schema


@pytest.fixture
def hand(tmp_path: Path) -> Path:
    """A title on row 1, a blank row, the header on row 3, after a notes sheet."""
    _, write = xlsx("hand.xlsx", HAND_ROWS, header=2, notes=True)
    return write(tmp_path)


def test_validate_refuses_a_misplaced_header_saying_what_to_pass(
    capsys: pytest.CaptureFixture[str], quotes: Path, tmp_path: Path
) -> None:
    _, write = xlsx("title.xlsx", HAND_ROWS, header=2)
    path = write(tmp_path)
    code, out, _ = cli(capsys, "validate", str(path), "--schema", str(quotes))
    assert code == 1
    assert (
        f"{path}: unreadable: the contract's columns are not in the header row of "
        "sheet 'Data' (sheets: 'Data'); columns found in row 3 of sheet 'Data': pass "
        "--header-row 3 (or set header_row: 3 under metadata.batchload in the contract)"
    ) in out
    code, out, err = cli(
        capsys, "validate", str(path), "--header-row", "3", "--schema", str(quotes)
    )
    assert code == 0, out + err
    assert f"{path}: valid (2 rows)" in out


def test_sheet_and_header_row_flags_read_a_hand_made_workbook(
    capsys: pytest.CaptureFixture[str], quotes: Path, hand: Path
) -> None:
    code, out, _ = cli(capsys, "validate", str(hand), "--schema", str(quotes))
    assert code == 1
    assert "columns found in row 3 of sheet 'Data': pass --sheet 'Data' --header-row 3" in out
    for sheet in ("Data", "2"):
        args = ("--sheet", sheet, "--header-row", "3", "--schema", str(quotes), "--json")
        code, out, err = cli(capsys, "validate", str(hand), *args)
        assert code == 0, out + err
        assert json.loads(out)["files"][0]["rows"] == 2
    code, out, err = cli(
        capsys, "validate", str(hand), "--header-row", "0", "--schema", str(quotes)
    )
    assert code == 2 and "--header-row" in err and "Traceback" not in err


def test_schema_infer_reads_where_it_is_told(
    capsys: pytest.CaptureFixture[str], hand: Path
) -> None:
    code, out, err = cli(
        capsys, "schema", "infer", str(hand), "--name", "q", "--sheet", "Data", "--header-row", "3"
    )
    assert code == 0, err
    assert list(contract_from_yaml(out).names) == ["day", "key", "bid", "note"]


def test_flags_win_over_the_plan_and_the_plan_over_the_contract(tmp_path: Path, hand: Path) -> None:
    wrong = contract_from_yaml(QUOTES + "metadata:\n  batchload:\n    header_row: 2\n")
    (verdict,) = validate_files([hand], wrong, sheet=SheetChoice(sheet="Data"))
    assert verdict.status == "invalid"  # row 2 (blank) taken for the header, as it says
    assert "column 'day' is missing" in [p.message for p in verdict.problems]
    (verdict,) = validate_files([hand], wrong, sheet=SheetChoice(sheet="Data", header_row=3))
    assert verdict.valid, verdict.reason
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[[upload]]\nschema = "q.yaml"\nfiles = ["hand.xlsx"]\nsheet = "Data"\nheader_row = 3\n'
    )
    (planned,) = load_plan(plan).jobs
    assert planned.sheet_choice == SheetChoice(sheet="Data", header_row=3)
    plan.write_text('[[upload]]\nschema = "q.yaml"\nfiles = ["hand.xlsx"]\nheader_row = "3"\n')
    with pytest.raises(Exception, match="header_row must be a row number"):
        load_plan(plan)


def test_an_upload_with_a_header_row_lands_the_rows_under_it(
    tmp_path: Path, hand: Path, quotes: Path, server: ServerProcess
) -> None:
    text = QUOTES.replace("name: quotes", "name: quotes_hand")
    quotes.write_text(text)
    summary = run(
        server,
        TOKEN,
        [job(str(hand), schema=quotes, sheet="Data", header_row=3)],
        tmp_path / "m.sqlite",
    )
    assert summary.uploaded == 1, summary.problems
    (frame,) = stored(server, summary.dataset_id or "", contract_from_yaml(text)).values()
    assert frame.get_column("key").to_list() == ["A", "B"]
    assert frame.get_column("day").to_list() == [D1, D2]


# ---------------------------------------------------------------------------- row-exact

UTC = pl.Datetime("us", "UTC")
TYPED = build_contract(
    pa.DataFrameSchema(
        {
            "day": pa.Column(pl.Date),
            "price": pa.Column(pl.Float64, pa.Check.ge(0)),
            "code": pa.Column(pl.String, pa.Check.isin(["A", "B"])),
            "at": pa.Column(UTC),
        },
        strict=True,
        ordered=True,
    ),
    dataset_name="typed",
    reading=Reading(header_row=3),
)
GOOD: list[object] = [D1, 1.5, "A", dt.datetime(2024, 1, 2, 9, 30)]
#: Per column, a value that fails it: a reading error or a failed check.
BAD: dict[str, object] = {"day": "2024/01/02", "price": -1.0, "code": 3.0, "at": "noon"}
ROWS = 12


def typed_book(path: Path, bad_row: int, column: str) -> Path:
    """``ROWS`` data rows under a header on sheet row 3; ``column`` bad on data row
    ``bad_row`` (0-based)."""
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Data")
    sheet.write(0, 0, "exported")
    stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.write_row(2, 0, list(TYPED.names))
    for r in range(ROWS):
        for c, name in enumerate(TYPED.names):
            value = BAD[name] if (r == bad_row and name == column) else GOOD[c]
            if isinstance(value, dt.date):
                moment = value if isinstance(value, dt.datetime) else dt.datetime(2024, 1, 2)
                sheet.write_datetime(3 + r, c, moment, stamp)
            else:
                sheet.write(3 + r, c, value)
    book.close()
    return path


@pytest.mark.parametrize("column", list(BAD))
@pytest.mark.parametrize("bad_row", [0, ROWS // 2, ROWS - 1], ids=["first", "middle", "last"])
def test_a_bad_value_reports_its_sheet_row_alone(tmp_path: Path, column: str, bad_row: int) -> None:
    path = typed_book(tmp_path / f"{column}.xlsx", bad_row, column)
    (verdict,) = validate_files([path], TYPED)
    assert verdict.status == "invalid", verdict.reason
    (problem,) = verdict.problems
    assert problem.column == column
    assert (problem.count, problem.rows) == (1, (bad_row + 4,))  # the header is on row 3


def test_the_valid_typed_book_reads_each_type_exactly(tmp_path: Path) -> None:
    path = typed_book(tmp_path / "good.xlsx", -1, "day")
    (verdict,) = validate_files([path], TYPED, keep_frames=True)
    assert verdict.valid and verdict.frame is not None, verdict.reason
    first = verdict.frame.row(0, named=True)
    assert first == {
        "day": D1,
        "price": 1.5,
        "code": "A",
        "at": dt.datetime(2024, 1, 2, 9, 30, tzinfo=dt.UTC),
    }


# ---------------------------------------------------------------------------- warnings


def blank_column_book(path: Path) -> Path:
    """A workbook with a column whose cells are all empty (fastexcel warns it cannot
    tell its type: calamine finds no value to guess from)."""
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Data")
    dates = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, ["day", "key", "bid", "note", "memo"])
    for r, (day, key) in enumerate([(D1, "A"), (D2, "B")], start=1):
        sheet.write_datetime(r, 0, dt.datetime.combine(day, dt.time()), dates)
        sheet.write_row(r, 1, [key, 1.0, "x"])
        sheet.write_blank(r, 4, None)
    book.close()
    return path


def test_fastexcel_warnings_are_said_in_our_words(
    capsys: pytest.CaptureFixture[str], quotes: Path, tmp_path: Path
) -> None:
    path = blank_column_book(tmp_path / "memo.xlsx")
    code, out, err = cli(capsys, "validate", str(path), "--schema", str(quotes), "--json")
    assert code == 1, err
    assert json.loads(out)["files"][0]["status"] == "invalid"  # an extra column
    assert err.splitlines() == [
        f"warning: {path}: column 'memo' has no value in any row: read as text"
    ]
    code, out, err = cli(capsys, "schema", "infer", str(path), "--name", "memo")
    assert code == 0, err
    assert "Could not determine dtype" not in err
    assert f"warning: {path}: column 'memo' has no value in any row: read as text" in err
