"""Reading: each bad input gets a clear one-line reason; good input gets the contract's types."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest
import xlsxwriter
import xlwt
from polars.testing import assert_frame_equal

from batchload.contract.model import Contract, build_contract
from batchload.contract.reading import SheetChoice
from batchload.errors import UnreadableFile
from batchload.read.frames import Loaded, read_frame, read_frames, read_sample
from batchload.read.problems import UnparseableValues

HEADER = "date,ticker,price,volume\n"


@pytest.fixture
def contract() -> Contract:
    schema = pa.DataFrameSchema(
        {
            "date": pa.Column(pl.Date),
            "ticker": pa.Column(pl.String),
            "price": pa.Column(pl.Float64, nullable=True),
            "volume": pa.Column(pl.Int64),
        },
        strict=True,
        ordered=True,
        name="prices",
    )
    return build_contract(schema)


def write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def unreadable(path: Path, contract: Contract) -> str:
    with pytest.raises(UnreadableFile) as caught:
        read_frame(path, contract)
    assert caught.value.path == path
    assert "\n" not in str(caught.value)
    return str(caught.value)


# ---------------------------------------------------------------------------- csv


def test_csv_read_with_the_contract_types(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "a.csv", HEADER + "2024-01-02,AAPL,1.5,100\n2024-01-03,MSFT,,7\n")
    frame = read_frame(path, contract)
    assert frame.schema == pl.Schema(contract.polars_schema())
    assert frame.rows() == [
        (dt.date(2024, 1, 2), "AAPL", 1.5, 100),
        (dt.date(2024, 1, 3), "MSFT", None, 7),
    ]


def test_csv_whole_numbers_stay_float_by_contract(tmp_path: Path, contract: Contract) -> None:
    """No inference drift: a price column of whole numbers is still Float64."""
    path = write(tmp_path / "a.csv", HEADER + "2024-01-02,AAPL,1,100\n")
    assert read_frame(path, contract).schema["price"] == pl.Float64


def test_csv_with_bom_and_crlf(tmp_path: Path, contract: Contract) -> None:
    body = (HEADER + "2024-01-02,AAPL,1.5,100\n").replace("\n", "\r\n")
    path = write(tmp_path / "bom.csv", b"\xef\xbb\xbf" + body.encode())
    frame = read_frame(path, contract)
    assert frame.columns == list(contract.names)
    assert frame.height == 1


def test_csv_utf16_is_unreadable(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "u16.csv", (HEADER + "2024-01-02,AAPL,1.5,100\n").encode("utf-16"))
    assert "UTF-16 text" in unreadable(path, contract)


def test_csv_latin1_is_unreadable(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "l1.csv", (HEADER + "2024-01-02,CAFÉ,1.5,100\n").encode("latin-1"))
    message = unreadable(path, contract)
    assert "not UTF-8 text (column 'ticker', row 1)" in message


def test_csv_latin1_header_is_unreadable(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "h.csv", "date,tickér,price,volume\n".encode("latin-1"))
    assert "header is not UTF-8" in unreadable(path, contract)


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_csv_empty_file(tmp_path: Path, contract: Contract, data: bytes) -> None:
    path = write(tmp_path / "empty.csv", data)
    assert "empty file: no header row" in unreadable(path, contract)


@pytest.mark.parametrize("header", [HEADER, HEADER.rstrip("\n")])
def test_csv_header_only_gives_no_rows(tmp_path: Path, contract: Contract, header: str) -> None:
    frame = read_frame(write(tmp_path / "h.csv", header), contract)
    assert frame.height == 0
    assert frame.columns == list(contract.names)


def test_csv_ragged_rows(tmp_path: Path, contract: Contract) -> None:
    short = write(tmp_path / "short.csv", HEADER + "2024-01-02,AAPL,1,1\n2024-01-03,AAPL,1\n")
    assert "ragged rows: row 2 has 3 fields, the header has 4" in unreadable(short, contract)
    long = write(tmp_path / "long.csv", HEADER + "2024-01-02,AAPL,1,1,9\n")
    assert "row 1 has 5 fields, the header has 4" in unreadable(long, contract)


def test_csv_text_in_numeric_columns_names_every_cell(tmp_path: Path, contract: Contract) -> None:
    rows = ["2024-01-02,AAPL,1.5,100", "2024-01-03,AAPL,abc,100", "2024-01-04,AAPL,2,1.5"]
    rows += [f"2024-02-{d:02d},AAPL,x{d},{d}" for d in range(1, 10)]
    path = write(tmp_path / "t.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(UnparseableValues) as caught:
        read_frame(path, contract)
    cells = {c.column: c for c in caught.value.cells}
    assert cells["price"].count == 10
    assert cells["price"].rows == (2, 4, 5, 6, 7)
    assert cells["price"].values == ("abc", "x1", "x2", "x3", "x4")
    assert cells["price"].expected == "double"
    assert cells["volume"].count == 1 and cells["volume"].rows == (3,)
    assert "column 'price' is double (row 2: 'abc', row 4: 'x1')" in str(caught.value)


def test_csv_null_spellings_are_values_not_nulls(tmp_path: Path, contract: Contract) -> None:
    """Only an empty field is null: ``NA`` in a number column is a bad value, by row."""
    path = write(tmp_path / "na.csv", HEADER + "2024-01-02,AAPL,NA,1\n2024-01-03,AAPL,n/a,2\n")
    with pytest.raises(UnparseableValues) as caught:
        read_frame(path, contract)
    assert caught.value.cells[0].column == "price"
    assert caught.value.cells[0].rows == (1, 2)
    assert caught.value.cells[0].values == ("NA", "n/a")
    empty = write(tmp_path / "e.csv", HEADER + '2024-01-02,,,1\n2024-01-03,"",2,""\n')
    frame = read_frame(empty, contract)
    assert frame.get_column("ticker").to_list() == [None, None]
    assert frame.get_column("price").to_list() == [None, 2.0]


def test_csv_bad_date_is_a_bad_cell(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "d.csv", HEADER + "2024/01/02,AAPL,1,1\n")
    with pytest.raises(UnparseableValues) as caught:
        read_frame(path, contract)
    assert caught.value.cells[0].column == "date"
    assert caught.value.cells[0].values == ("2024/01/02",)


def test_csv_keeps_the_file_column_order(tmp_path: Path, contract: Contract) -> None:
    """Missing, extra and moved columns are read as they are, for validation to report."""
    moved = write(tmp_path / "m.csv", "ticker,date,price,volume\nAAPL,2024-01-02,1,1\n")
    assert read_frame(moved, contract).columns == ["ticker", "date", "price", "volume"]
    extra = write(tmp_path / "e.csv", HEADER.strip() + ",note\n2024-01-02,AAPL,1,1,x\n")
    assert read_frame(extra, contract).columns[-1] == "note"
    missing = write(tmp_path / "x.csv", "date,ticker\n2024-01-02,AAPL\n")
    assert read_frame(missing, contract).columns == ["date", "ticker"]


def test_csv_duplicate_header(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "dup.csv", "date,ticker,ticker\n2024-01-02,A,B\n")
    assert "duplicate column name 'ticker'" in unreadable(path, contract)


def test_unknown_extension_missing_file_and_directory(tmp_path: Path, contract: Contract) -> None:
    assert "unknown file extension '.txt'" in unreadable(write(tmp_path / "a.txt", "x"), contract)
    assert "no such file" in unreadable(tmp_path / "gone.csv", contract)
    (tmp_path / "dir.csv").mkdir()
    assert "is a directory" in unreadable(tmp_path / "dir.csv", contract)


def test_large_csv_error_still_names_the_row(tmp_path: Path, contract: Contract) -> None:
    """Files past the threaded-parse size are re-parsed on one thread to locate the row."""
    body = "".join(f"2024-01-02,T{i},1.5,{i}\n" for i in range(250_000))
    path = write(tmp_path / "big.csv", HEADER + body + "2024-01-02,X,1,oops\n")
    with pytest.raises(UnparseableValues) as caught:
        read_frame(path, contract)
    assert caught.value.cells[0].rows == (250_001,)


@pytest.mark.parametrize("with_a_bad_cell", [False, True])
def test_read_frames_gives_each_file_what_read_frame_gives(
    tmp_path: Path, contract: Contract, with_a_bad_cell: bool
) -> None:
    """Files read together come back in order, each exactly as read alone: its own rows,
    layout and error. Small plain CSVs are parsed as one text (a bad cell among them
    sends each back to be parsed alone); alike tables become frames in one conversion."""
    texts = {
        "a.csv": HEADER + "2024-01-02,AAPL,1.5,100\n2024-01-03,MSFT,,7\n",
        "moved.csv": "ticker,date,price,volume\nIBM,2024-01-02,2.5,3\n",
        "blank_lines.csv": HEADER + "\n2024-01-04,GOOG,3.0,9\n\n\n2024-01-05,GOOG,,9\n",
        "no_last_newline.csv": HEADER + "2024-01-06,X,1,2\n2024-01-07,Y,,3",
        "header_only.csv": HEADER,
        "quoted.csv": HEADER + '2024-01-08,"Q,1",1,2\n',
        "crlf.csv": HEADER.replace("\n", "\r\n") + "2024-01-09,C,1,2\r\n",
        "c.csv": HEADER + "".join(f"2024-02-{d:02d},T,{d}.5,{d}\n" for d in (1, 2, 3)),
    }
    if with_a_bad_cell:
        texts["bad.csv"] = HEADER + "2024-01-02,AAPL,x,100\n"
    paths = [write(tmp_path / name, text) for name, text in texts.items()]
    paths.insert(2, tmp_path / "missing.csv")
    parquet = tmp_path / "p.parquet"
    pl.DataFrame(
        {"date": [dt.date(2024, 1, 5)], "ticker": ["P"], "price": [1.0], "volume": [1]}
    ).write_parquet(parquet)
    paths.insert(4, parquet)

    together = read_frames(paths, contract)

    assert len(together) == len(paths)
    for path, got in zip(paths, together, strict=True):
        try:
            alone = read_frame(path, contract)
        except UnreadableFile as exc:
            assert isinstance(got, type(exc)) and str(got) == str(exc), path.name
        else:
            assert isinstance(got, Loaded), path.name
            assert_frame_equal(got.frame, alone)
    rows = {
        p.name: f.frame.height
        for p, f in zip(paths, together, strict=True)
        if isinstance(f, Loaded)
    }
    assert rows["blank_lines.csv"] == 2 and rows["no_last_newline.csv"] == 2
    assert rows["header_only.csv"] == 0 and rows["quoted.csv"] == 1


# ---------------------------------------------------------------------------- parquet


def test_parquet_keeps_its_own_types(tmp_path: Path, contract: Contract) -> None:
    frame = pl.DataFrame({"date": [dt.date(2024, 1, 2)], "ticker": ["A"], "price": [1.0]})
    frame = frame.with_columns(pl.lit(5, pl.Int32).alias("volume"))
    path = tmp_path / "a.parquet"
    frame.write_parquet(path)
    assert read_frame(path, contract).schema["volume"] == pl.Int32


def test_corrupt_parquet(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "bad.parquet", b"PAR1 this is not parquet")
    assert unreadable(path, contract).startswith("not a readable parquet file: ")


# ---------------------------------------------------------------------------- excel


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = xlsxwriter.Workbook(str(path))
    dates = book.add_format({"num_format": "yyyy-mm-dd"})
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, dt.datetime):
                    sheet.write_datetime(r, c, value, dates)
                elif value is not None:
                    sheet.write(r, c, value)
    book.close()
    return path


DAY = dt.datetime(2024, 1, 2)


def test_xlsx_first_sheet_by_default_and_sheet_by_name(tmp_path: Path, contract: Contract) -> None:
    path = write_xlsx(
        tmp_path / "b.xlsx",
        {
            "first": [["date", "ticker"], [DAY, "AAPL"]],
            "second": [["date", "ticker"], [DAY, "MSFT"], [DAY, "IBM"]],
        },
    )
    assert read_frame(path, contract).get_column("ticker").to_list() == ["AAPL"]
    assert read_frame(path, contract, sheet=SheetChoice(sheet="second")).height == 2
    with pytest.raises(UnreadableFile, match="no sheet 'third'; sheets: 'first', 'second'"):
        read_frame(path, contract, sheet=SheetChoice(sheet="third"))


def test_xlsx_read_with_the_contract_types(tmp_path: Path, contract: Contract) -> None:
    """Date cells are a Date column and whole numbers an Int64 one, as the contract says;
    without a contract the types are guessed, as the API would guess them."""
    rows: list[list[object]] = [["date", "ticker", "price", "volume"]]
    rows += [[DAY, "AAPL", 1 / 3, 3], [dt.datetime(2024, 1, 3), "MSFT", None, 4.0]]
    rows += [["2024-01-04", "IBM", "2.25", " "]]  # ISO text, a number as text, a blank cell
    path = write_xlsx(tmp_path / "t.xlsx", {"s": rows})
    frame = read_frame(path, contract)
    assert frame.schema == pl.Schema(contract.polars_schema())
    assert frame.rows() == [
        (dt.date(2024, 1, 2), "AAPL", 1 / 3, 3),  # every bit of the double
        (dt.date(2024, 1, 3), "MSFT", None, 4),
        (dt.date(2024, 1, 4), "IBM", 2.25, None),
    ]
    guessed = read_sample(path).schema
    assert (guessed["date"], guessed["volume"]) == (pl.String, pl.String)  # mixed cells
    clean = write_xlsx(tmp_path / "c.xlsx", {"s": [["date", "volume"], [DAY, 3], [DAY, 4]]})
    assert read_sample(clean).schema == pl.Schema({"date": pl.Datetime("ms"), "volume": pl.Float64})


def test_xlsx_cells_unlike_the_contract_are_reported_never_nulled_or_cut(
    tmp_path: Path, contract: Contract
) -> None:
    noon = dt.datetime(2024, 1, 3, 12, 30)
    rows: list[list[object]] = [["date", "ticker", "price", "volume"]]
    rows += [[DAY, "AAPL", 1.5, 3]]
    rows += [[noon, "MSFT", 2.0, 2.5]]  # a time of day in a Date column; not a whole number
    rows += [[45293, "IBM", "high", 4]]  # a plain number is not a date; text among numbers
    rows += [[DAY, "GE", True, 1e20]]  # a boolean is not a price; too large for Int64
    rows += [[DAY, "HP", DAY, 5]]  # a date is not a price
    path = write_xlsx(tmp_path / "bad.xlsx", {"s": rows})
    with pytest.raises(UnparseableValues) as caught:
        read_frame(path, contract)
    cells = {c.column: c for c in caught.value.cells}
    assert list(cells) == ["date", "price", "volume"]  # in the sheet's order
    assert (cells["date"].count, cells["date"].rows) == (2, (3, 4))  # sheet rows
    assert cells["date"].values == ("2024-01-03 12:30:00", "45293")
    assert cells["date"].expected == "date32[day]"
    assert cells["price"].rows == (4, 5, 6)
    assert cells["price"].values == ("high", "TRUE", "2024-01-02 00:00:00")
    assert (cells["volume"].expected, cells["volume"].rows) == ("int64", (3, 5))
    assert cells["volume"].values == ("2.5", "1e+20")
    assert str(caught.value).startswith("7 value(s) cannot be read as the contract's types; ")


def test_xlsx_na_in_a_number_column_is_an_error_not_a_null(
    tmp_path: Path, contract: Contract
) -> None:
    rows: list[list[object]] = [["date", "volume"]]
    rows += [[DAY, 1], [DAY, 2], [DAY, "n/a"], [DAY, 4], [DAY, 5]]
    path = write_xlsx(tmp_path / "na.xlsx", {"s": rows})
    with pytest.raises(UnparseableValues) as caught:
        read_frame(path, contract)
    (cells,) = caught.value.cells
    assert (cells.column, cells.count, cells.rows, cells.values) == ("volume", 1, (4,), ("n/a",))


def test_xlsx_empty_sheet_and_no_sheets(tmp_path: Path, contract: Contract) -> None:
    path = write_xlsx(tmp_path / "e.xlsx", {"blank": []})
    assert "sheet 'blank' is empty: no header row" in unreadable(path, contract)
    none = tmp_path / "none.xlsx"
    with zipfile.ZipFile(none, "w") as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxml'
            'formats-package.relationships+xml"/><Default Extension="xml" ContentType="appl'
            'ication/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/v'
            'nd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>',
        )
        z.writestr(
            "_rels/.rels",
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/pac'
            'kage/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlfo'
            'rmats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook'
            '.xml"/></Relationships>',
        )
        z.writestr(
            "xl/workbook.xml",
            '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreads'
            'heetml/2006/main"><sheets/></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/pac'
            'kage/2006/relationships"></Relationships>',
        )
    assert "the workbook has no sheets" in unreadable(none, contract)


def test_not_a_workbook(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "fake.xlsx", "date,ticker\n")
    assert unreadable(path, contract).startswith("not a readable xlsx workbook: ")


def test_xls_with_several_sheets(tmp_path: Path, contract: Contract) -> None:
    book = xlwt.Workbook()
    first = book.add_sheet("prices")
    for c, name in enumerate(["ticker", "volume"]):
        first.write(0, c, name)
    first.write(1, 0, "AAPL")
    first.write(1, 1, 10)
    first.write(2, 0, "MSFT")
    first.write(2, 1, "n/a")
    book.add_sheet("notes").write(0, 0, "note")
    path = tmp_path / "p.xls"
    book.save(str(path))
    with pytest.raises(UnparseableValues) as caught:
        read_frame(path, contract)
    assert caught.value.cells[0].rows == (3,)  # the sheet's row
    with pytest.raises(UnreadableFile, match="columns found in row 1 of sheet 'prices'"):
        read_frame(
            path, contract, sheet=SheetChoice(sheet="notes")
        )  # the header is elsewhere: say where
    assert read_frame(path, None, sheet=SheetChoice(sheet="notes")).columns == ["note"]


def test_read_sample_infers_types(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "a,b,c\n1,x,2024-01-02\n2,,2024-01-03\n")
    assert read_sample(path).schema == pl.Schema({"a": pl.Int64, "b": pl.String, "c": pl.Date})


def test_read_frames_parses_the_bytes_the_caller_read_not_the_file_again(
    tmp_path: Path, contract: Contract
) -> None:
    """What was hashed is what is validated: a small file's bytes, once read, are parsed."""
    hashed = HEADER + "2024-01-02,AAPL,1.5,100\n"
    path = write(tmp_path / "a.csv", HEADER + "2024-01-03,MSFT,2.5,7\n")  # changed since
    (loaded,) = read_frames([path], contract, data=[hashed.encode()])
    assert isinstance(loaded, Loaded)
    assert loaded.frame.get_column("ticker").to_list() == ["AAPL"]
