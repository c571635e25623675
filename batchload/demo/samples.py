"""Sample data for the demo, tests and benchmarks: daily signal files that match
``schemas/equity_signals.yaml``, and the usual ways real files go wrong.

- :func:`write_signal_files` writes one file per trading day (Monday to Friday), one
  row per ticker, in csv, parquet or xlsx; the same arguments give the same bytes.
  Files are named ``signals_YYYY-MM-DD.<ext>``, so the default file_id template
  (``{stem}``) gives each day one id.
- :func:`write_bad_files` adds the mistakes a real backfill contains: a wrong type,
  a missing column, and a day exported twice.

Nothing here imports polars or pandera: parquet is written with pyarrow, and xlsx by
:func:`write_xlsx`, a minimal writer, so that no Excel library is needed.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

import pyarrow as pa
import pyarrow.parquet as pq

SampleFormat = Literal["csv", "parquet", "xlsx"]
SAMPLE_FORMATS: tuple[SampleFormat, ...] = ("csv", "parquet", "xlsx")
COLUMNS = ("date", "ticker", "signal", "confidence", "horizon_days")
HORIZONS_DAYS = (1, 5, 21, 63)
DEFAULT_START = dt.date(2023, 1, 2)
FILE_PREFIX = "signals_"

#: Large caps first; beyond them, synthetic tickers ``SYN00001``, ...
_TICKER_TEXT = (
    "AAPL MSFT NVDA AMZN GOOGL META BRK.B LLY AVGO JPM TSLA UNH XOM V PG JNJ MA HD COST "
    "MRK ABBV CVX CRM BAC NFLX AMD PEP KO WMT TMO ADBE LIN MCD DIS CSCO ACN ABT ORCL WFC "
    "INTU CAT IBM GE QCOM VZ CMCSA DHR AMGN TXN PFE NOW UBER PM ISRG SPGI UNP GS NEE RTX"
)
TICKERS: tuple[str, ...] = tuple(_TICKER_TEXT.split())

#: The demo's mix, cycled over the days: mostly csv, one in eight parquet, one in
#: fifty xlsx (at index 6, so that a short run has one too).
DEMO_FORMATS: tuple[SampleFormat, ...] = tuple(
    "xlsx" if i == 6 else "parquet" if i % 8 == 3 else "csv" for i in range(50)
)

Row = tuple[dt.date, str, float, float | None, int]


def trading_days(start: dt.date, count: int) -> list[dt.date]:
    """``count`` weekdays from ``start`` (holidays are not modelled)."""
    days: list[dt.date] = []
    day = start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def tickers(count: int) -> list[str]:
    """``count`` distinct tickers that pass the contract's pattern."""
    extra = [f"SYN{i:05d}" for i in range(1, max(0, count - len(TICKERS)) + 1)]
    return [*TICKERS, *extra][:count]


def write_signal_files(
    directory: Path,
    n_files: int,
    rows_per_file: int,
    *,
    formats: Sequence[SampleFormat] = ("csv",),
    seed: int = 0,
    start: dt.date = DEFAULT_START,
) -> list[Path]:
    """Write ``n_files`` daily files of ``rows_per_file`` rows into ``directory``.

    Day ``i`` is written in ``formats[i % len(formats)]``. Every file is valid for
    ``schemas/equity_signals.yaml``: an xlsx file holds its days as date cells and
    its horizons as whole numbers, which batchload reads as the contract's ``Date``
    and ``Int64``. Returns the paths in day order.
    """
    unknown = sorted(set(formats) - set(SAMPLE_FORMATS))
    if not formats or unknown:
        raise ValueError(f"formats must be some of {SAMPLE_FORMATS}, not {unknown or 'none'}")
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = tickers(rows_per_file)
    levels = dict.fromkeys(names, 0.0)
    paths: list[Path] = []
    for i, day in enumerate(trading_days(start, n_files)):
        rows = _day_rows(day, names, levels, rng)
        fmt = formats[i % len(formats)]
        path = directory / f"{FILE_PREFIX}{day.isoformat()}.{fmt}"
        WRITERS[fmt](path, rows)
        paths.append(path)
    return paths


def _day_rows(
    day: dt.date, names: Sequence[str], levels: dict[str, float], rng: random.Random
) -> list[Row]:
    """One row per ticker: a signal that drifts from day to day, confidence sometimes unknown."""
    rows: list[Row] = []
    for name in names:
        levels[name] = 0.9 * levels[name] + rng.gauss(0.0, 0.35)
        confidence = None if rng.random() < 0.03 else round(rng.uniform(0.2, 0.95), 3)
        rows.append((day, name, round(math.tanh(levels[name]), 4), confidence, _horizon(name)))
    return rows


def _horizon(name: str) -> int:
    """A fixed horizon per ticker (``hash()`` would change from run to run)."""
    return HORIZONS_DAYS[sum(name.encode()) % len(HORIZONS_DAYS)]


# --- writers ---------------------------------------------------------------------------


def _csv_line(row: Sequence[object]) -> str:
    return ",".join("" if v is None else str(v) for v in row) + "\n"


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    """A plain UTF-8 csv with a header line."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(_csv_line(COLUMNS))
        f.writelines(_csv_line(row) for row in rows)


def write_parquet(path: Path, rows: Sequence[Row]) -> None:
    """Parquet with the contract's Arrow types (date32, string, double, double, int64)."""
    schema = pa.schema(
        [
            ("date", pa.date32()),
            ("ticker", pa.string()),
            ("signal", pa.float64()),
            ("confidence", pa.float64()),
            ("horizon_days", pa.int64()),
        ]
    )
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
    pq.write_table(pa.table([list(c) for c in columns], schema=schema), path)


def write_xlsx_rows(path: Path, rows: Sequence[Row]) -> None:
    """The day as a one-sheet workbook, dates formatted as dates (as Excel saves them)."""
    write_xlsx(path, [list(COLUMNS), *[list(r) for r in rows]])


WRITERS = {"csv": write_csv, "parquet": write_parquet, "xlsx": write_xlsx_rows}

_EXCEL_EPOCH = dt.date(1899, 12, 30)
_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="xl/workbook.xml"/>'
        "</Relationships>"
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/worksheet" Target="worksheets/sheet1.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/styles" Target="styles.xml"/>'
        "</Relationships>"
    ),
    # Style 1 is the built-in date format 14 (m/d/yyyy): readers see those cells as dates.
    "xl/styles.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<fonts count="1"><font/></fonts><fills count="1"><fill/></fills>'
        '<borders count="1"><border/></borders>'
        '<cellStyleXfs count="1"><xf/></cellStyleXfs>'
        '<cellXfs count="2"><xf/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs>'
        "</styleSheet>"
    ),
}


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _cell(ref: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return f'<c r="{ref}" s="1"><v>{(value - _EXCEL_EPOCH).days}</v></c>'
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f'<c r="{ref}" t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'
    return f'<c r="{ref}"><v>{value!r}</v></c>'


def write_xlsx(path: Path, rows: Sequence[Sequence[object]]) -> None:
    """A one-sheet xlsx workbook of ``rows`` (strings, numbers, dates; None is an empty cell)."""
    body = "".join(
        f'<row r="{r}">'
        + "".join(_cell(f"{_column_letter(c)}{r}", v) for c, v in enumerate(row))
        + "</row>"
        for r, row in enumerate(rows, start=1)
    )
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f"<sheetData>{body}</sheetData></worksheet>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        for name, text in _XLSX_PARTS.items():
            book.writestr(name, text)
        book.writestr("xl/worksheets/sheet1.xml", sheet)


# --- the usual mistakes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BadFile:
    """A file made wrong on purpose, and what is wrong with it."""

    path: Path
    kind: Literal["wrong_type", "missing_column", "duplicate_day"]
    what: str


def write_bad_files(files: Sequence[Path]) -> list[BadFile]:
    """Spoil three of the csv ``files`` (written by :func:`write_signal_files`) in place.

    - **wrong type**: three ``confidence`` cells read ``high`` instead of a number;
    - **missing column**: ``confidence`` left out;
    - **duplicate day**: the day's rows twice, the second time with other signal
      values (an export appended to the file instead of replacing it).

    Needs at least three csv files among ``files``; returns the three, in that order.
    """
    csvs = [p for p in files if p.suffix == ".csv"]
    if len(csvs) < 3:
        raise ValueError("write_bad_files needs at least three csv files")
    wrong, duplicate, missing = (csvs[len(csvs) * k // 4] for k in (1, 2, 3))
    confidence, signal = COLUMNS.index("confidence"), COLUMNS.index("signal")

    lines = _csv_cells(wrong)
    for row in (3, 7, 11):
        if row < len(lines):
            lines[row][confidence] = "high"
    _write_cells(wrong, lines)

    _write_cells(missing, [c[:confidence] + c[confidence + 1 :] for c in _csv_cells(missing)])

    lines = _csv_cells(duplicate)
    again = [[*c[:signal], str(round(-float(c[signal]), 4)), *c[signal + 1 :]] for c in lines[1:]]
    _write_cells(duplicate, lines + again)
    return [
        BadFile(wrong, "wrong_type", "three 'confidence' cells read 'high'"),
        BadFile(missing, "missing_column", "no 'confidence' column"),
        BadFile(duplicate, "duplicate_day", "the day's rows twice, with other signals"),
    ]


def _csv_cells(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text(encoding="utf-8").splitlines()]


def _write_cells(path: Path, lines: Sequence[Sequence[str]]) -> None:
    path.write_text("".join(",".join(cells) + "\n" for cells in lines), encoding="utf-8")
