"""A corpus of tricky files, each with its expected verdict; valid ones round-trip.

Every valid file is uploaded to a real local server, and the values the server
stored (its bytes read back from its store, parsed as the server parses them) equal
the values the client validated.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter
import xlwt
from polars.testing import assert_frame_equal

from batchload.api import upload_dataframe
from batchload.check.validate import validate_files
from batchload.contract.model import Contract, contract_from_yaml
from batchload.read.frames import read_frame
from batchload.server.parse import read_table
from batchload.server.process import ServerProcess
from tests.conftest import TOKEN
from tests.upload_helpers import job, run

QUOTES = """\
schema_type: polars_dataframe
columns:
  day: {dtype: Date}
  key: {dtype: String}
  bid: {dtype: Float64, nullable: true, ge: 0}
  note: {dtype: String, nullable: true}
strict: true
ordered: true
unique: [day, key]
name: quotes
"""
HEADER = "day,key,bid,note\n"
#: pyarrow's default null spellings (besides the empty field): text like any other now.
SPELLINGS = ["#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"]
SPELLINGS += ["1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"]

Writer = Callable[[Path], Path]


def text(name: str, body: str) -> tuple[str, Writer]:
    def write(folder: Path) -> Path:
        path = folder / name
        data = (HEADER + body).encode()
        if name.endswith(".gz"):
            data = gzip.compress(data)
        elif name.endswith(".bz2"):
            data = bz2.compress(data)
        elif name.endswith(".zst"):
            data = pa.compress(data, "zstd", asbytes=True)
        path.write_bytes(data)
        return path

    return name, write


def raw(name: str, data: bytes) -> tuple[str, Writer]:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return name, write


def parquet(name: str, table: pa.Table) -> tuple[str, Writer]:
    def write(folder: Path) -> Path:
        pq.write_table(table, folder / name)
        return folder / name

    return name, write


def xlsx(
    name: str, rows: list[list[object]], *, header: int = 0, notes: bool = False
) -> tuple[str, Writer]:
    def write(folder: Path) -> Path:
        book = xlsxwriter.Workbook(folder / name)
        if notes:
            book.add_worksheet("Notes").write(0, 0, "read me first")
        sheet = book.add_worksheet("Data")
        if header:
            sheet.write(0, 0, "Quotes exported by hand")
        dates = book.add_format({"num_format": "yyyy-mm-dd"})
        for r, row in enumerate([["day", "key", "bid", "note"], *rows], start=header):
            for c, value in enumerate(row):
                if isinstance(value, dt.date):
                    sheet.write_datetime(r, c, dt.datetime.combine(value, dt.time()), dates)
                elif value is not None:
                    sheet.write(r, c, value)
        book.close()
        return folder / name

    return name, write


def xls(name: str, rows: list[list[object]]) -> tuple[str, Writer]:
    def write(folder: Path) -> Path:
        book = xlwt.Workbook()
        sheet = book.add_sheet("Data")
        dates = xlwt.easyxf(num_format_str="yyyy-mm-dd")
        for r, row in enumerate([["day", "key", "bid", "note"], *rows]):
            for c, value in enumerate(row):
                if isinstance(value, dt.date):
                    sheet.write(r, c, dt.datetime.combine(value, dt.time()), dates)
                elif value is not None:
                    sheet.write(r, c, value)
        book.save(str(folder / name))
        return folder / name

    return name, write


D1, D2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
ROWS = "2024-01-02,A,1.5,x\n2024-01-03,B,2.25,\n"
LONG = "".join(f"2024-02-{d:02d},K,{d}.5,n\n" for d in range(1, 29))
TYPED = pa.schema(
    [("day", pa.date32()), ("key", pa.string()), ("bid", pa.float64()), ("note", pa.string())]
)

#: (file, expected): "valid", or "invalid"/"unreadable" and a text the verdict holds.
CORPUS: list[tuple[tuple[str, Writer], tuple[str, str]]] = [
    (text("plain.csv", ROWS), ("valid", "")),
    (text("empty_bid.csv", "2024-01-02,A,,x\n"), ("valid", "")),
    (text("all_null_bid.csv", "2024-01-02,A,,x\n2024-01-03,B,,y\n"), ("valid", "")),
    (text("quoted_empty_note.csv", '2024-01-02,A,1,""\n'), ("valid", "")),
    (text("empty_key.csv", "2024-01-02,,1,x\n"), ("invalid", "key: 1 null value(s) (rows 1)")),
    (text("quoted_empty_key.csv", '2024-01-02,"",1,x\n'), ("invalid", "key: 1 null value(s)")),
    (text("bad_first_row.csv", "2024-01-02,A,-1,x\n" + LONG), ("invalid", "(rows 1: -1.0)")),
    (text("bad_last_row.csv", LONG + "2024-03-01,A,x1,x\n"), ("invalid", "(rows 29: x1)")),
    (text("bad_date_last.csv", LONG + "2024/03/01,A,1,x\n"), ("invalid", "(rows 29: 2024/03/01)")),
    (
        raw("missing_column.csv", b"day,key,bid\n2024-01-02,A,1\n"),
        ("invalid", "column 'note' is missing"),
    ),
    (text("plain.csv.gz", ROWS), ("valid", "")),
    (text("plain.csv.bz2", ROWS), ("valid", "")),
    (text("plain.csv.zst", ROWS), ("valid", "")),
    (text("bad.csv.gz", "2024-01-02,A,NULL,x\n"), ("invalid", "(rows 1: NULL)")),
    (raw("broken.csv.gz", b"\x1f\x8bnot gzip"), ("unreadable", "gzip-compressed CSV")),
    (
        parquet(
            "typed.parquet",
            pa.table({"day": [D1], "key": ["A"], "bid": [1.0], "note": ["x"]}, schema=TYPED),
        ),
        ("valid", ""),
    ),
    (
        parquet(
            "null_type.parquet",
            pa.table({"day": [D1, D2], "key": ["A", "B"], "bid": pa.nulls(2), "note": ["x", None]}),
        ),
        ("valid", ""),
    ),
    (
        parquet(
            "pandas_none.parquet",
            pa.Table.from_pandas(
                pd.DataFrame(
                    {"day": [D1, D2], "key": ["A", "B"], "bid": [1.0, 2.0], "note": [None, None]}
                ),
                preserve_index=False,
            ),
        ),
        ("valid", ""),
    ),
    (
        parquet(
            "null_key.parquet",
            pa.table({"day": [D1], "key": pa.nulls(1), "bid": [1.0], "note": ["x"]}),
        ),
        ("invalid", "key: 1 null value(s)"),
    ),
    (
        parquet(
            "bad_last.parquet",
            pa.table(
                {"day": [D1, D2], "key": ["A", "B"], "bid": [1.0, -2.0], "note": ["x", "y"]},
                schema=TYPED,
            ),
        ),
        ("invalid", "(rows 2: -2.0)"),
    ),
    (xlsx("plain.xlsx", [[D1, "A", 1.5, "x"], [D2, "B", None, None]]), ("valid", "")),
    (
        xlsx("number_text.xlsx", [[D1, "A", 1.0, 3.141592653589793], [D2, "B", 2.0, 42.0]]),
        ("valid", ""),
    ),
    (xlsx("text_digits.xlsx", [[D1, "007", 1.0, "7.50"]]), ("valid", "")),
    (xlsx("all_null_bid.xlsx", [[D1, "A", None, "x"], [D2, "B", None, "y"]]), ("valid", "")),
    (
        xlsx("na_in_bid.xlsx", [[D1, "A", 1.0, "x"], [D2, "B", "#N/A", "y"]]),
        ("invalid", "(rows 3: #N/A)"),  # the sheet's row
    ),
    (
        xlsx("title_row.xlsx", [[D1, "A", 1.0, "x"]], header=2),
        (
            "unreadable",
            "columns found in row 3 of sheet 'Data': pass --header-row 3 "
            "(or set header_row: 3 under metadata.batchload in the contract)",
        ),
    ),
    (
        xlsx("notes_first.xlsx", [[D1, "A", 1.0, "x"]], notes=True),
        (
            "unreadable",
            "columns found in row 1 of sheet 'Data': pass --sheet 'Data' "
            "(or set sheet: 'Data' under metadata.batchload in the contract)",
        ),
    ),
    (xls("plain.xls", [[D1, "A", 1.5, "x"], [D2, "B", None, None]]), ("valid", "")),
    (xls("number_text.xls", [[D1, "A", 1.0, 3.141592653589793]]), ("valid", "")),
    (
        xls("bad_first.xls", [[D1, "A", -1.0, "x"], [D2, "B", 1.0, "y"]]),
        ("invalid", "(rows 2: -1.0)"),
    ),
]
# every null spelling: a bad value in a number column, a value in a text column
CORPUS += [
    (text(f"na_bid_{i}.csv", f"2024-01-02,A,{s},x\n"), ("invalid", f"(rows 1: {s})"))
    for i, s in enumerate(SPELLINGS)
    if s.lower().lstrip("-") != "nan"  # a float's own spelling of NaN: a value, as in polars
]
CORPUS += [
    (text(f"nan_bid_{i}.csv", f"2024-01-02,A,{s},x\n"), ("valid", ""))
    for i, s in enumerate(["NaN", "-NaN", "nan", "-nan"])
]
CORPUS += [
    (text(f"na_note_{i}.csv", f"2024-01-02,A,1,{s}\n"), ("valid", ""))
    for i, s in enumerate(SPELLINGS)
]


@pytest.fixture(scope="module")
def contract() -> Contract:
    return contract_from_yaml(QUOTES)


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60
    assert len({name for (name, _), _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("file", "expected"), CORPUS, ids=[n for (n, _), _ in CORPUS])
def test_each_file_gets_its_verdict(
    tmp_path: Path, contract: Contract, file: tuple[str, Writer], expected: tuple[str, str]
) -> None:
    path = file[1](tmp_path)
    (verdict,) = validate_files([path], contract)
    status, holds = expected
    shown = verdict.reason + " | " + " | ".join(p.message for p in verdict.problems)
    assert verdict.status == status, shown
    assert holds in shown, shown


# ---------------------------------------------------------------------------- round trip


def stored(server: ServerProcess, dataset_id: str, contract: Contract) -> dict[str, pl.DataFrame]:
    """Each file the server stored, read back from its store as it parsed it."""
    db = sqlite3.connect(f"file:{server.data_dir / 'metadata.sqlite3'}?mode=ro", uri=True)
    with db:
        rows = db.execute(
            "SELECT file_id, file_format, path FROM files WHERE dataset_id = ?", (dataset_id,)
        ).fetchall()
    db.close()
    tables = {}
    for file_id, file_format, path in rows:
        data = (server.data_dir / path).read_bytes()
        options = contract.convert_options() if file_format == "csv" else None
        table = read_table(data, file_format, convert_options=options)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        tables[file_id] = frame
    return tables


def test_valid_files_store_the_values_validated(tmp_path: Path, server: ServerProcess) -> None:
    """csv, compressed csv, parquet, xlsx and xls: what lands is what was checked.
    (The corpus repeats keys across files, so this dataset's contract has no key.)"""
    text_ = QUOTES.replace("unique: [day, key]\n", "").replace("name: quotes", "name: quotes_rt")
    schema = tmp_path / "quotes_rt.yaml"
    schema.write_text(text_)
    contract = contract_from_yaml(text_)
    folder = tmp_path / "data"
    folder.mkdir()
    valid = [file for file, (status, _) in CORPUS if status == "valid"]
    paths = [write(folder) for _, write in valid]
    assert {p.name.split(".", 1)[1] for p in paths} >= {"csv", "csv.gz", "parquet", "xlsx", "xls"}
    summary = run(
        server,
        TOKEN,
        [job(*map(str, paths), schema=schema, file_id="{name}")],
        tmp_path / "m.sqlite",
    )
    assert summary.uploaded == len(paths), summary.problems
    on_server = stored(server, summary.dataset_id or "", contract)
    assert set(on_server) == {p.name for p in paths}
    for path in paths:
        assert_frame_equal(on_server[path.name], read_frame(path, contract), check_dtypes=True)
    db = sqlite3.connect(f"file:{server.data_dir / 'metadata.sqlite3'}?mode=ro", uri=True)
    with db:
        formats = dict(db.execute("SELECT file_id, file_format FROM files").fetchall())
    db.close()
    for name in ("plain.csv.gz", "plain.csv.bz2", "plain.csv.zst"):
        assert formats[name] == "csv", name  # sent as the CSV it holds, not converted


def test_extra_null_spellings_are_sent_with_the_file(tmp_path: Path, server: ServerProcess) -> None:
    text_ = QUOTES.replace("name: quotes", "name: quotes_na") + (
        'metadata:\n  batchload:\n    null_values: ["N/A"]\n'
    )
    schema = tmp_path / "quotes_na.yaml"
    schema.write_text(text_)
    contract = contract_from_yaml(text_)
    path = tmp_path / "na.csv"
    path.write_text(HEADER + "2024-01-02,A,N/A,N/A\n2024-01-03,B,1,#N/A\n")
    summary = run(server, TOKEN, [job(str(path), schema=schema)], tmp_path / "m.sqlite")
    assert summary.uploaded == 1, summary.problems
    (frame,) = stored(server, summary.dataset_id or "", contract).values()
    assert frame.get_column("bid").to_list() == [None, 1.0]
    assert frame.get_column("note").to_list() == [None, "#N/A"]
    assert_frame_equal(frame, read_frame(path, contract))


def test_dataframes_with_all_null_columns_round_trip(tmp_path: Path, server: ServerProcess) -> None:
    schema = tmp_path / "quotes_df.yaml"
    schema.write_text(QUOTES.replace("name: quotes", "name: quotes_df"))
    contract = contract_from_yaml(schema.read_text())
    frames = [
        pd.DataFrame({"day": [D1], "key": ["A"], "bid": [None], "note": [None]}),
        pl.DataFrame({"day": [D2], "key": ["B"], "bid": [None], "note": ["x"]}),
    ]
    config = {"endpoint": server.url, "token": TOKEN, "schema": schema}
    results = [upload_dataframe(frame, **config) for frame in frames]
    on_server = stored(server, results[0].dataset_id, contract)
    assert len(on_server) == 2
    for frame in on_server.values():
        assert frame.schema == pl.Schema(contract.polars_schema())
        assert frame.get_column("bid").to_list() == [None]


def test_a_header_row_and_sheet_from_the_contract_read_a_hand_made_workbook(
    tmp_path: Path,
) -> None:
    contract = contract_from_yaml(
        QUOTES + "metadata:\n  batchload:\n    sheet: '2'\n    header_row: 3\n"
    )
    _, write = xlsx("hand.xlsx", [[D1, "A", 1.0, 2.5], [D2, "B", None, "y"]], header=2, notes=True)
    frame = read_frame(write(tmp_path), contract)
    assert frame.get_column("key").to_list() == ["A", "B"]
    assert frame.get_column("note").to_list() == ["2.5", "y"]
