"""Hostile input files: every one gets a clear verdict, the rest of the batch lands, and
no traceback reaches the user.

All cases go through one real ``batchload run PLAN --json`` (two datasets: CSV and
parquet files against ``schemas/equity_signals.yaml``, workbooks against a small
``quotes`` contract) beside good files, each hostile file named explicitly so that it
must get an answer. Each case is then its own test: its verdict (landed, with the
server's sha256 equal to the file's, or refused with a reason that says why).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter
import xlwt

from batchload.server.process import ServerProcess
from tests.reliability.files import workbook_bytes, zip_bomb_xlsx
from tests.reliability.helpers import (
    LEDGER,
    CliResult,
    ServerView,
    assert_clean_output,
    cli,
    signal_csv,
)
from tests.upload_helpers import HEADER, SIGNALS, sha256, signal_rows

TOKEN = "hostile-files-token-93ab"
GOOD_FILES = 20
QUOTES_CONTRACT = """\
schema_type: polars_dataframe
api: polars
columns:
  ticker:
    dtype: String
    str_matches: ^[A-Z][A-Z0-9.\\-]{0,14}$
  price:
    dtype: Float64
    nullable: true
strict: true
ordered: true
name: quotes
metadata:
  batchload:
    arrow_types:
      ticker: string
      price: double
"""
RNG = random.Random(6)
GARBAGE = bytes(RNG.randrange(256) for _ in range(4096))

Build = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One hostile file: how to make it, and the verdict it must get."""

    name: str
    build: Build
    verdict: str  # "lands", or the problem's state: "invalid" / "failed"
    reason: str = ""  # for a problem: words its reason must contain (case-insensitive)
    dataset: str = "signals"
    file_id: str | None = None  # for "lands": the id it must land under (default: stem)


# --- builders ----------------------------------------------------------------------------


def text(content: str, encoding: str = "utf-8", newline: str = "\n") -> Build:
    def build(path: Path) -> None:
        path.write_bytes(content.replace("\n", newline).encode(encoding))

    return build


def raw(data: bytes) -> Build:
    return lambda path: path.write_bytes(data)


def good(index: int) -> str:
    return signal_csv(index)


def row(index: int, **changes: str) -> str:
    """One signals row with some fields replaced."""
    fields = dict(
        zip(
            ("date", "ticker", "signal", "confidence", "horizon_days"),
            signal_rows(index, 1).strip().split(","),
            strict=True,
        )
    )
    fields.update(changes)
    return ",".join(fields.values()) + "\n"


SIGNAL_TABLE_TYPES = pa.schema(
    [
        ("date", pa.date32()),
        ("ticker", pa.string()),
        ("signal", pa.float64()),
        ("confidence", pa.float64()),
        ("horizon_days", pa.int64()),
    ]
)


def signal_table(index: int, rows: int = 4) -> pa.Table:
    day = dt.date(2001, 1, 1)
    return pa.table(
        {
            "date": [day + dt.timedelta(days=i) for i in range(rows)],
            "ticker": [f"P{index}Q"] * rows,
            "signal": [0.5] * rows,
            "confidence": [None] + [0.25] * (rows - 1),
            "horizon_days": [21] * rows,
        },
        schema=SIGNAL_TABLE_TYPES,
    )


def parquet(table: pa.Table, cut: float = 1.0) -> Build:
    def build(path: Path) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        data = sink.getvalue()
        path.write_bytes(data[: int(len(data) * cut)])

    return build


def xlsx(sheets: dict[str, list[list[Any]]], cut: float = 1.0) -> Build:
    def build(path: Path) -> None:
        sink = io.BytesIO()
        book = xlsxwriter.Workbook(sink, {"in_memory": True})
        for name, rows in sheets.items():
            sheet = book.add_worksheet(name)
            for r, values in enumerate(rows):
                for c, value in enumerate(values):
                    if isinstance(value, tuple):  # (formula, cached result)
                        sheet.write_formula(r, c, value[0], None, value[1])
                    elif value is not None:
                        sheet.write(r, c, value)
        book.close()
        data = sink.getvalue()
        path.write_bytes(data[: int(len(data) * cut)])

    return build


def xls(rows: list[list[Any]]) -> Build:
    def build(path: Path) -> None:
        book = xlwt.Workbook()
        sheet = book.add_sheet("quotes")
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                sheet.write(r, c, value)
        book.save(str(path))

    return build


def symlink_to(target: str) -> Build:
    return lambda path: path.symlink_to(target)


def directory(path: Path) -> None:
    path.mkdir()
    (path / "inside.csv").write_text(good(900))


def fifo(path: Path) -> None:
    os.mkfifo(path)  # a reader that opens it without checking would hang forever


def nothing(path: Path) -> None:
    """A path named in the plan that does not exist."""


def loop(path: Path) -> None:
    other = path.with_name("loop_b.csv")
    path.symlink_to(other.name)
    other.symlink_to(path.name)


def zip_bomb(declared: int | None) -> Build:
    def build(path: Path) -> None:
        expanded = zip_bomb_xlsx(path, expanded_mib=3072, declared=declared)
        assert expanded > 3 * 10**9 and path.stat().st_size < 16 << 20  # GBs from a few MB

    return build


QUOTES = [["ticker", "price"], ["AAPL", 187.5], ["MSFT", 402.25], ["IBM", None]]


# --- the cases ------------------------------------------------------------------------------

CASES = [
    # CSV: structure
    Case("ragged_extra_field.csv", text(HEADER + row(1) + row(2).strip() + ",9\n"), "invalid",
         "ragged"),
    Case("ragged_missing_field.csv", text(HEADER + row(1) + "2001-01-01,ABC,0.1,0.2\n"),
         "invalid", "ragged"),
    Case("missing_column.csv", text("date,ticker,signal,horizon_days\n2001-01-01,AB,0.1,5\n"),
         "invalid", "confidence"),
    Case("extra_column.csv", text(HEADER.strip() + ",extra\n" + row(3).strip() + ",x\n"),
         "invalid", "extra"),
    Case("reordered_columns.csv", text("ticker,date,signal,confidence,horizon_days\n"
                                       "AB,2001-01-01,0.1,0.2,5\n"), "invalid", "out of order"),
    Case("duplicate_header.csv", text("date,ticker,signal,signal,horizon_days\n"
                                      "2001-01-01,AB,0.1,0.2,5\n"), "invalid", "duplicate"),
    Case("semicolon_separated.csv", text(good(4).replace(",", ";")), "invalid", "date"),
    Case("unterminated_quote.csv", text(HEADER + '2001-01-01,"AB,0.1,0.2,5\n'), "invalid", ""),
    Case("quoted_newline_in_value.csv", text(HEADER + '2001-01-01,"A\nB",0.1,0.2,5\n'),
         "invalid", "ticker"),
    Case("quoted_values.csv", text(HEADER + '"2001-01-01","QQ","0.1","0.2","5"\n'), "lands"),
    # CSV: values
    Case("text_in_float_column.csv", text(HEADER + row(5, signal="high")), "invalid", "signal"),
    Case("text_in_int_column.csv", text(HEADER + row(6, horizon_days="five")), "invalid",
         "horizon_days"),
    Case("impossible_date.csv", text(HEADER + row(7, date="2024-13-45")), "invalid", "date"),
    Case("out_of_range_value.csv", text(HEADER + row(8, signal="5.0")), "invalid", "signal"),
    Case("null_in_required_column.csv", text(HEADER + row(9, signal="")), "invalid", "signal"),
    Case("duplicate_keys.csv", text(HEADER + row(10) + row(10)), "invalid", "(date, ticker) key"),
    Case("megabyte_value.csv", text(HEADER + row(11, ticker="A" * (1 << 20))), "invalid",
         "ticker"),
    Case("nul_byte_in_value.csv", text(HEADER + row(12, ticker="A\x00B")), "invalid", "ticker"),
    # CSV: encodings and line ends
    Case("utf8_bom.csv", raw(b"\xef\xbb\xbf" + good(13).encode()), "lands"),
    Case("crlf_line_ends.csv", text(good(14), newline="\r\n"), "lands"),
    Case("cr_only_line_ends.csv", text(good(15), newline="\r"), "lands"),
    Case("utf16_with_bom.csv", text(good(16), encoding="utf-16"), "invalid", "utf-16"),
    Case("latin1_value.csv", raw(HEADER.encode() + b"2001-01-01,\xc9T,0.1,0.2,5\n"), "invalid",
         "utf-8"),
    Case("latin1_header.csv", raw(b"d\xe4te,ticker,signal,confidence,horizon_days\n"),
         "invalid", "utf-8"),
    # CSV: nothing much in it
    Case("empty.csv", raw(b""), "invalid", "empty"),
    Case("blank_lines_only.csv", raw(b"\n \n\r\n\t\n"), "invalid", "empty"),
    Case("bom_only.csv", raw(b"\xef\xbb\xbf"), "invalid", "empty"),
    Case("header_only.csv", text(HEADER), "invalid", "no data rows"),
    Case("header_only_no_newline.csv", text(HEADER.strip()), "invalid", "no data rows"),
    # not CSV at all
    Case("binary_garbage.csv", raw(GARBAGE), "invalid", ""),
    Case("png_named_csv.csv", raw(b"\x89PNG\r\n\x1a\n" + GARBAGE[:512]), "invalid", ""),
    Case("parquet_named_csv.csv", parquet(signal_table(17)), "invalid", ""),
    # parquet
    Case("good.parquet", parquet(signal_table(18)), "lands"),
    Case("truncated.parquet", parquet(signal_table(19), cut=0.6), "invalid", "parquet"),
    Case("another_schema.parquet", parquet(pa.table({"a": [1], "b": ["x"]})), "invalid",
         "ticker"),
    Case("wrong_types.parquet",
         parquet(signal_table(20).set_column(4, "horizon_days", pa.array(["21"] * 4))),
         "invalid", "horizon_days"),
    Case("zero_rows.parquet", parquet(signal_table(21).slice(0, 0)), "invalid", "no data rows"),
    Case("garbage.parquet", raw(b"PAR1" + GARBAGE + b"PAR1"), "invalid", "parquet"),
    Case("zero_bytes.parquet", raw(b""), "invalid", "parquet"),
    Case("csv_named_parquet.parquet", text(good(22)), "invalid", "parquet"),
    # names and the file set
    Case("name with spaces.csv", text(good(23)), "lands", file_id="name_with_spaces"),
    Case("ünïcødé €uro.csv", text(good(24)), "lands", file_id="unic_de_uro"),  # ø: no accent
    Case("日本語.csv", text(good(25)), "invalid", "file_id"),
    Case("-leading dash.csv", text(good(26)), "lands", file_id="leading_dash"),
    Case(".hidden.csv", text(good(27)), "lands", file_id="hidden"),
    Case("x" * 140 + ".csv", text(good(28)), "lands", file_id="x" * 91 + "-f5e19a4c"),
    Case("UPPER.CSV", text(good(29)), "lands"),
    Case("link_to_good.csv", symlink_to("sig_0000.csv"), "lands", file_id="sig_0000"),
    Case("broken_link.csv", symlink_to("no_such_target.csv"), "invalid", "broken symbolic link"),
    Case("link_loop.csv", loop, "invalid", "symbolic links"),
    # a folder named is walked (its one file lands once, however it is named)
    Case("a_directory.csv", directory, "lands", file_id="inside"),
    Case("link_to_directory.csv", symlink_to("a_directory.csv"), "lands", file_id="inside"),
    Case("named_pipe.csv", fifo, "invalid", "not a regular file"),
    Case("does_not_exist.csv", nothing, "invalid", "no such file"),
    Case("notes.txt", text("hello\n"), "invalid", "extension"),
    # workbooks (the quotes contract)
    Case("good.xlsx", xlsx({"quotes": QUOTES}), "lands", dataset="quotes"),
    Case("several_sheets.xlsx", xlsx({"first": QUOTES, "second": [["other"], [1]]}), "lands",
         dataset="quotes"),
    Case("formula_cell.xlsx", xlsx({"q": [*QUOTES, ["GE", ("=1+2", 3)]]}), "lands",
         dataset="quotes"),
    Case("error_cell.xlsx", xlsx({"q": [*QUOTES, ["GE", ("=1/0", "#DIV/0!")]]}), "invalid",
         "price", dataset="quotes"),
    Case("text_in_number_cell.xlsx", xlsx({"q": [*QUOTES, ["GE", "n/a"]]}), "invalid", "price",
         dataset="quotes"),
    Case("empty_sheet.xlsx", xlsx({"blank": []}), "invalid", "empty", dataset="quotes"),
    Case("no_sheet.xlsx", raw(workbook_bytes(None)), "invalid", "no sheets", dataset="quotes"),
    Case("zip_bomb.xlsx", zip_bomb(None), "invalid", "zip bomb", dataset="quotes"),
    Case("zip_bomb_lying_sizes.xlsx", zip_bomb(4096), "invalid", "zip bomb", dataset="quotes"),
    Case("truncated.xlsx", xlsx({"q": QUOTES}, cut=0.5), "invalid", "xlsx", dataset="quotes"),
    Case("csv_named_xlsx.xlsx", text("ticker,price\nAB,1\n"), "invalid", "xlsx",
         dataset="quotes"),
    Case("good_legacy.xls", xls(QUOTES[:3]), "lands", dataset="quotes"),
    Case("garbage.xls", raw(GARBAGE), "invalid", "xls", dataset="quotes"),
]  # fmt: skip


# --- one run over all of them ------------------------------------------------------------------


@dataclass
class Outcome:
    result: CliResult
    summary: dict[str, Any]
    problems: dict[str, dict[str, Any]]
    landed: dict[str, dict[str, str]]  # dataset -> file_id -> sha256
    root: Path
    sent: dict[str, tuple[str | None, str | None]]  # source name -> (sent_sha256, converted_from)


def _plan(root: Path) -> Path:
    signals = [f"signals/{c.name}" for c in CASES if c.dataset == "signals"]
    quotes = [f"quotes/{c.name}" for c in CASES if c.dataset == "quotes"]
    lines = [
        "[[upload]]",
        f'schema = "{SIGNALS}"',
        'dataset = "signals"',
        f"files = {['signals/sig_*.csv', *signals]!r}",
        "[[upload]]",
        'schema = "quotes.yaml"',
        f"files = {quotes!r}",
    ]
    plan = root / "plan.toml"
    plan.write_text("\n".join(lines).replace("'", '"') + "\n", encoding="utf-8")
    return plan


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "quotes.yaml").write_text(QUOTES_CONTRACT)
    for folder in ("signals", "quotes"):
        (root / folder).mkdir()
    for i in range(GOOD_FILES):
        (root / "signals" / f"sig_{i:04d}.csv").write_text(good(1000 + i))
    for case in CASES:
        case.build(root / case.dataset / case.name)
    with ServerProcess(data_dir=root / "server", tokens=(TOKEN,)) as server:
        args = ("run", str(_plan(root)), "--endpoint", server.url, "--json")
        args += ("--manifest", str(root / "run.sqlite"))
        result = cli(*args, token=TOKEN, cwd=root)
        summary = result.json()
        view = ServerView(server.url, TOKEN)
        landed = {
            d["name"]: {f["file_id"]: f["sha256"] for f in view.receipts(d["id"])}
            for d in view.datasets()
        }
    problems = {Path(p["path"]).name: p for p in summary["problems"]}
    with closing(sqlite3.connect(root / "run.sqlite")) as db:
        query = "SELECT source_path, sent_sha256, converted_from FROM files WHERE part = 0"
        rows = db.execute(query)
        sent = {Path(path).name: (digest, origin) for path, digest, origin in rows}
    yield Outcome(result, summary, problems, landed, root, sent)


def test_the_run_finishes_with_exit_1_and_no_traceback(outcome: Outcome) -> None:
    assert outcome.result.code == 1, outcome.result.stderr[-3000:]
    assert_clean_output(outcome.result)
    assert outcome.summary["stopped"] is None
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


def test_the_good_files_land(outcome: Outcome) -> None:
    signals = outcome.landed["signals"]
    for i in range(GOOD_FILES):
        path = outcome.root / "signals" / f"sig_{i:04d}.csv"
        assert signals[path.stem] == sha256(path)


def test_nothing_else_landed(outcome: Outcome) -> None:
    expected = {
        (c.dataset, c.file_id or Path(c.name).stem) for c in CASES if c.verdict == "lands"
    } | {("signals", f"sig_{i:04d}") for i in range(GOOD_FILES)}
    held = {(dataset, f) for dataset, files in outcome.landed.items() for f in files}
    assert held == expected


def test_every_problem_is_one_clear_line(outcome: Outcome) -> None:
    for problem in outcome.summary["problems"]:
        reason = problem["reason"]
        assert reason and "\n" not in reason and len(reason) < 600, problem
        assert "Traceback" not in reason and "Error(" not in reason, problem


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verdict(outcome: Outcome, case: Case) -> None:
    LEDGER.hostile_files.add(case.name)
    path = outcome.root / case.dataset / case.name
    if case.verdict == "lands":
        assert case.name not in outcome.problems, outcome.problems.get(case.name)
        file_id = case.file_id or path.stem
        if path.suffix in (".xls", ".xlsx"):
            # Workbooks are sent as parquet with the contract's types: the service holds
            # exactly the bytes the manifest says were sent, converted from the workbook.
            sent_sha256, converted_from = outcome.sent[case.name]
            assert converted_from == path.suffix.lstrip(".")
            assert outcome.landed[case.dataset][file_id] == sent_sha256
        else:
            source = path / "inside.csv" if path.is_dir() else path  # a folder's one file
            assert outcome.landed[case.dataset][file_id] == sha256(source.resolve())
        return
    problem = outcome.problems.get(case.name)
    assert problem is not None, f"no verdict for {case.name}"
    assert problem["state"] == case.verdict, problem
    assert case.reason.lower() in problem["reason"].lower(), problem
