"""Read an Excel sheet (xlsx, xls) into a polars DataFrame typed by its contract, or say why not.

- fastexcel (calamine) reads the sheet and header row a :class:`SheetChoice` (flags,
  a plan) or the contract names; by default the first sheet, with its header in its
  first row that has a cell. When that row does not hold the contract's columns and
  another row (or sheet) does, the file is refused saying which ``--header-row`` (and
  ``--sheet``) to pass. Rows are numbered as the spreadsheet shows them: a header on
  row 3 makes the first data row 4.
- Excel keeps every number as a double and a date as a number with a date format,
  so the types a reader guesses from a sheet (``double``, ``timestamp[ms]``) cannot match a
  contract's ``Date`` or ``Int64`` columns. So with a contract, each of its columns
  is read as the contract's type, **strictly**: a ``Date`` column takes date cells
  at midnight (or ``YYYY-MM-DD`` text), a ``Datetime`` column date-time cells, an
  integer column whole numbers, a float column numbers (text that spells a number
  is that number, as in a CSV), a boolean column ``TRUE``/``FALSE``. Any other cell
  (a time of day in a ``Date`` column, ``2.5`` in an ``Int64`` column, ``"n/a"``,
  other text or a boolean among numbers) is never nulled or truncated: it is
  reported with its row and value, as :class:`~batchload.read.frames.UnparseableValues`.
  An empty (or blank) cell is null. Numbers are read as exact doubles; the number
  columns are read a second time as text, since only that tells a boolean cell
  from the number 1. Columns the contract does not name keep the types calamine
  guesses, for validation to report.
- Without a contract (``batchload schema infer``), each column's type is guessed from
  all its cells, and a cell that does not fit the guess is reported the same way.
- The API would guess a workbook's types itself (as above: not the contract's), so a
  workbook is not sent as it is: the upload sends the validated frame as parquet
  with the contract's Arrow schema, as it sends the parts of a large file, and the
  manifest records ``converted_from`` (``xlsx`` or ``xls``).
- An xlsx that would inflate past ``MAX_WORKBOOK_EXPANDED_BYTES`` is refused before
  calamine opens it (a zip bomb).
- fastexcel logs its warnings from Rust through Python's ``logging`` (logger
  ``fastexcel``), and they would reach the terminal raw. They are caught while a
  sheet is read and said again in our words on the ``batchload.read`` logger (which
  the CLI prints on stderr): ``x.xlsx: column 'memo' has no value in any row: read
  as text``.
"""

from __future__ import annotations

import logging
import re
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from batchload.contract.model import arrow_type_of
from batchload.contract.reading import SheetChoice
from batchload.errors import UnreadableFile
from batchload.lazy import lazy_module
from batchload.read.fastexcel_compat import refused_value
from batchload.read.problems import (
    MAX_EXAMPLES,
    BadCells,
    UnparseableValues,
    check_readable,
    raise_unreadable,
    shorten,
)

if TYPE_CHECKING:
    import fastexcel
    from fastexcel import DType

    from batchload.contract.model import Contract
else:
    fastexcel = lazy_module("fastexcel")  # read only for workbooks

__all__ = ["MAX_WORKBOOK_EXPANDED_BYTES", "Loaded", "read_excel"]

#: Most bytes an xlsx's parts may inflate to (its XML; Excel's own limit of 1,048,576
#: rows fits). calamine holds a sheet in memory at about 3x its XML, so past this a
#: workbook is refused before calamine opens it: a zip bomb cannot fill memory.
MAX_WORKBOOK_EXPANDED_BYTES = 1 << 30
_INFLATE_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Loaded:
    """A file's frame, and the number its first data row has as the user counts rows:
    1 (data rows) but for a workbook, where it is the sheet row under the header."""

    frame: pl.DataFrame
    first_row: int = 1


def read_excel(path: Path, contract: Contract | None, choice: SheetChoice) -> Loaded:
    """Load a sheet: the contract's columns as its types, strictly (every cell that does
    not fit is reported, none is nulled or cut); without a contract, types guessed from
    every row as the API would, reporting the cells that do not fit the guess.

    ``choice`` (flags, a plan) wins over the contract's sheet and header row. Bad cells
    are reported by sheet row."""
    check_readable(path)
    if path.suffix.lower() == ".xlsx":
        _check_expanded_size(path, MAX_WORKBOOK_EXPANDED_BYTES)
    with _translated_warnings(path) as columns:
        return _read_sheet(path, contract, choice, columns)


def _read_sheet(
    path: Path, contract: Contract | None, choice: SheetChoice, columns: list[str]
) -> Loaded:
    """:func:`read_excel`'s work; ``columns`` learns the sheet's, to name them in warnings."""
    try:
        reader = fastexcel.read_excel(path)
    except fastexcel.FastExcelError as exc:
        raise_unreadable(path, f"not a readable {path.suffix.lstrip('.')} workbook", exc)
    names = list(reader.sheet_names)
    if not names:
        raise UnreadableFile("the workbook has no sheets", path=path)
    if contract is not None:
        choice = choice.over(contract.reading)
    index = _sheet_index(path, names, choice.sheet)
    dtypes: dict[str | int, DType] = {}
    if contract is not None:
        dtypes = {c.name: load for c in contract.columns if (load := _load_as(c.dtype))}
    try:
        header = 0 if choice.header_row is None else choice.header_row - 1  # from 0
        # skip_rows=0: header_row counts from the sheet's first row, not its first filled one
        loaded = reader.load_sheet(
            index, header_row=header, skip_rows=0, schema_sample_rows=None, dtypes=dtypes or None
        )
        if choice.header_row is None and _all_unnamed(loaded):  # row 1 is blank
            header = _first_filled_row(reader, index)
            loaded = reader.load_sheet(
                index,
                header_row=header,
                skip_rows=0,
                schema_sample_rows=None,
                dtypes=dtypes or None,
            )
        first_row = header + 2  # the sheet row under the header, 1-based
        batch, errors = loaded.to_arrow_with_errors()
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        columns.extend(frame.columns)
        if frame.width == 0:
            raise UnreadableFile(f"sheet {names[index]!r} is empty: no header row", path=path)
        if contract is not None and choice.header_row is None:
            _check_header_place(
                reader, index, names, contract=contract, found=frame.columns, path=path
            )
        texts: pl.DataFrame | None = None
        numbers = [n for n, load in dtypes.items() if load == "float" and n in frame.columns]
        words = [c.name for c in contract.columns if c.dtype == pl.String] if contract else []
        words = [n for n in words if n in frame.columns]
        if numbers or words:
            # again, the numbers as text (only that tells a boolean cell from the number
            # 1) and the text as numbers (calamine's text of a number is rounded)
            again_as: dict[str | int, DType] = {
                **dict.fromkeys(numbers, "string"),
                **dict.fromkeys(words, "float"),
            }
            again = reader.load_sheet(
                index,
                header_row=header,
                skip_rows=0,
                schema_sample_rows=None,
                use_columns=[*numbers, *words],
                dtypes=again_as,
            )
            as_read = pl.from_arrow(again.to_arrow())
            assert isinstance(as_read, pl.DataFrame)
            texts = as_read
    except fastexcel.FastExcelError as exc:
        raise_unreadable(path, f"sheet {names[index]!r} cannot be read", exc)
    bad = []
    if errors is not None:
        bad = _excel_bad_cells(frame, errors.errors, contract, texts, first_row=first_row)
    if contract is not None:
        frame, strict = _as_contract_types(frame, contract, texts, first_row=first_row)
        bad = _merged(bad + strict, frame.columns)
    if bad:
        raise UnparseableValues(path, bad)
    return Loaded(frame, first_row)


log = logging.getLogger("batchload.read")


class _Catcher(logging.Handler):
    """Keeps fastexcel's log records for the sheet its thread is reading (sheets are read
    in several check threads at once); a record outside a read is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        said = getattr(self.local, "said", None)
        if said is not None:
            said.append(record.getMessage())


_CATCHER = _Catcher()
_fastexcel_log = logging.getLogger("fastexcel")
_fastexcel_log.addHandler(_CATCHER)
_fastexcel_log.propagate = False  # never raw on the user's terminal: said again below


@contextmanager
def _translated_warnings(path: Path) -> Iterator[list[str]]:
    """Say what fastexcel logs while this thread reads ``path`` in our words, once the
    read is over (it may fail); the caller fills the list it is given with the sheet's
    columns, to name them."""
    said: list[str] = []
    columns: list[str] = []
    _CATCHER.local.said = said
    try:
        yield columns
    finally:
        _CATCHER.local.said = None
        for message in said:
            log.warning("%s: %s", path, _in_our_words(message, columns))


_NO_TYPE = re.compile(r"Could not determine dtype for column (\d+), falling back to string")


def _in_our_words(message: str, columns: Sequence[str]) -> str:
    """One line for a fastexcel warning: the column named, what it means for the data."""
    found = _NO_TYPE.search(message)
    if found is None:
        return f"the workbook reader warns: {message.strip().splitlines()[0]}"
    position = int(found.group(1))
    name = repr(columns[position]) if position < len(columns) else f"#{position + 1}"
    return f"column {name} has no value in any row: read as text"


def _sheet_index(path: Path, names: list[str], sheet: str | None) -> int:
    """The sheet's position: by name, else a number counts sheets from 1; first by default."""
    if sheet is None:
        return 0
    if sheet in names:
        return names.index(sheet)
    if sheet.isdigit() and 1 <= int(sheet) <= len(names):
        return int(sheet) - 1
    raise UnreadableFile(
        f"no sheet {sheet!r}; sheets: {', '.join(repr(n) for n in names)}", path=path
    )


_UNNAMED = "__UNNAMED__"  # fastexcel's name for a column whose header cell is empty


def _all_unnamed(loaded: Any) -> bool:
    return all(c.name.startswith(_UNNAMED) for c in loaded.selected_columns)


def _first_filled_row(reader: Any, index: int) -> int:
    """The 0-based sheet row of the sheet's first cell: the header when no header row is
    given (blank rows above it are not a title). calamine's range starts at that row, so
    it is how many rows the full count has more than the count from the range."""
    every = reader.load_sheet(index, header_row=None, skip_rows=0, n_rows=1, dtypes="string")
    filled = reader.load_sheet(index, header_row=None, n_rows=1, dtypes="string")
    return int(every.total_height - filled.total_height)


#: Rows searched for the contract's header when the first row is not it.
_HEADER_SEARCH_ROWS = 50


def _check_header_place(
    reader: Any, index: int, names: list[str], *, contract: Contract, found: list[str], path: Path
) -> None:
    """Refuse a sheet whose first row is not the header (a title row, a blank row, notes
    first) when the contract's columns are found elsewhere, saying where and what to
    pass, rather than read garbage."""
    wanted = set(contract.names)
    if wanted & set(found):
        return
    sheets = ", ".join(repr(n) for n in names)
    for position in [index, *(i for i in range(len(names)) if i != index)]:
        name = names[position]
        top = reader.load_sheet(
            position, header_row=None, skip_rows=0, n_rows=_HEADER_SEARCH_ROWS, dtypes="string"
        )
        rows = pl.from_arrow(top.to_arrow())
        assert isinstance(rows, pl.DataFrame)
        for number, row in enumerate(rows.iter_rows(), start=1):
            cells = {str(v).strip() for v in row if v is not None}
            if len(cells & wanted) * 2 >= len(wanted):
                flags = [f"--sheet {name!r}"] if position != index else []
                keys = [f"sheet: {name!r}"] if position != index else []
                if number != 1 or not flags:
                    flags.append(f"--header-row {number}")
                    keys.append(f"header_row: {number}")
                raise UnreadableFile(
                    f"the contract's columns are not in the header row of sheet "
                    f"{names[index]!r} (sheets: {sheets}); columns found in row {number} of "
                    f"sheet {name!r}: pass {' '.join(flags)}",
                    path=path,
                    hint=f"or set {', '.join(keys)} under metadata.batchload in the contract",
                )
    # nowhere: validation reports the missing and unexpected columns


def _load_as(dtype: pl.DataType) -> DType | None:
    """What fastexcel loads a contract column as, before the strict conversion.

    Numbers load as doubles, exactly (calamine's text of a number is rounded), and
    are checked here: fastexcel would truncate 2.5 to 2 for an int column, and takes
    a boolean cell as 1.0 (found from the column's text, loaded a second time).
    Dates, date-times and booleans load as the text calamine gives a cell (a date
    cell is ``2024-01-02 00:00:00``, a plain number ``45293``), parsed here:
    fastexcel would take a plain number as a date serial and drop a time of day.
    Other types (decimals, durations, ...) are left to calamine's guess.
    """
    if dtype in (pl.String, pl.Date, pl.Boolean) or isinstance(dtype, pl.Datetime):
        return "string"
    if dtype.is_float() or dtype.is_integer():
        return "float"
    return None


_ROW = "__batchload_row"
_TEXT = "__batchload_text:"
_DATE = r"^(\d{4}-\d{2}-\d{2})(?: 00:00:00(?:\.0+)?)?$"
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


def _as_contract_types(
    frame: pl.DataFrame, contract: Contract, texts: pl.DataFrame | None, *, first_row: int
) -> tuple[pl.DataFrame, list[BadCells]]:
    """Cast the contract's columns to its types, strictly; the cells that do not fit.

    ``texts``: the number columns as calamine's text, to find boolean cells in them,
    and the text columns as numbers, to give number cells their exact text.
    """
    data = frame.with_row_index(_ROW, offset=first_row)
    if texts is not None and texts.height == frame.height:
        data = data.with_columns(texts.select(pl.all().name.prefix(_TEXT)))
    converted: list[pl.Expr] = []
    checks: list[tuple[str, str, pl.Expr, pl.Expr]] = []  # column, type, failing, shown
    for spec in contract.columns:
        if spec.name not in frame.columns:
            continue
        loaded = frame.schema[spec.name]
        value = _strict(pl.col(spec.name), loaded, spec.dtype)
        if value is None:
            continue
        if spec.dtype == pl.String and _TEXT + spec.name in data.columns:
            value = _exact_text(pl.col(spec.name), pl.col(_TEXT + spec.name))
            converted.append(value.alias(spec.name))
            continue
        failing = _blank_is_null(pl.col(spec.name), loaded).is_not_null() & value.is_null()
        shown = pl.col(spec.name).cast(pl.String)
        if _TEXT + spec.name in data.columns:
            text = pl.col(_TEXT + spec.name)
            boolean = pl.col(spec.name).is_not_null() & text.is_in(["true", "false"])
            failing = failing | boolean
            shown = pl.when(boolean).then(text.str.to_uppercase()).otherwise(shown)
        converted.append(value.alias(spec.name))
        checks.append((spec.name, spec.arrow_type, failing, shown))
    if not converted:
        return frame, []
    counts = data.select([f.sum().alias(str(i)) for i, (_, _, f, _) in enumerate(checks)])
    bad: list[BadCells] = []
    for i, (name, expected, failing, shown) in enumerate(checks):
        count = int(counts.item(0, i) or 0)
        if count:
            head = data.filter(failing).head(MAX_EXAMPLES).select(_ROW, shown.alias("shown"))
            rows = tuple(head.get_column(_ROW).to_list())
            values = tuple(shorten(v) for v in head.get_column("shown").to_list())
            bad.append(BadCells(name, expected, count, rows, values))
    return data.with_columns(converted).select(frame.columns), bad


def _exact_text(raw: pl.Expr, number: pl.Expr) -> pl.Expr:
    """A text column's cells, a number cell as its exact shortest text (``3.141592653589793``,
    ``42`` not ``42.0``) rather than calamine's rounded ``3.141592654``.

    ``number``: the column loaded as numbers, where fastexcel also parses text cells
    that spell numbers (``"007"`` is 7). A cell is taken for a number cell only when
    its text is a rounding of the number (reads back as another number): a text cell's
    text always reads back as exactly its number, and keeps its text (``007``, ``7.50``).
    """
    rounded = raw.str.strip_chars().cast(pl.Float64, strict=False) != number
    whole = number.is_finite() & (number == number.floor()) & (number.abs() < 2.0**53)
    exact = pl.when(whole).then(number.cast(pl.Int64).cast(pl.String))
    return (
        pl.when(rounded.fill_null(False))
        .then(exact.otherwise(number.cast(pl.String)))
        .otherwise(raw)
    )


def _blank_is_null(raw: pl.Expr, loaded: pl.DataType) -> pl.Expr:
    """A text cell of only spaces counts as empty (null) in a column that is not text."""
    if loaded != pl.String:
        return raw
    return pl.when(raw.str.strip_chars() == "").then(None).otherwise(raw)


def _strict(raw: pl.Expr, loaded: pl.DataType, dtype: pl.DataType) -> pl.Expr | None:
    """``raw`` (as fastexcel loaded it) as ``dtype``, null where a cell does not fit;
    None when ``dtype`` is left as calamine guessed it."""
    if loaded == pl.Null:  # every cell empty
        return pl.lit(None, dtype=dtype)
    if loaded.is_float() and dtype.is_float():
        return raw.cast(dtype)
    if loaded.is_float() and dtype.is_integer():
        whole = raw.is_finite() & (raw == raw.floor())
        return pl.when(whole).then(raw.cast(dtype, strict=False))  # out of range: null
    if loaded != pl.String:
        return None
    if dtype == pl.String:
        return raw
    text = _blank_is_null(raw, loaded).str.strip_chars()
    if dtype == pl.Date:
        return text.str.extract(_DATE, 1).str.to_date("%Y-%m-%d", strict=False)
    if isinstance(dtype, pl.Datetime):
        parsed = pl.coalesce(
            text.str.to_datetime(f, time_unit=dtype.time_unit, strict=False)
            for f in _DATETIME_FORMATS
        )
        return parsed.dt.replace_time_zone(dtype.time_zone) if dtype.time_zone else parsed
    if dtype == pl.Boolean:
        lowered = text.str.to_lowercase()
        return pl.when(lowered == "true").then(True).when(lowered == "false").then(False)
    return None


def _merged(cells: Sequence[BadCells], columns: Sequence[str]) -> list[BadCells]:
    """One BadCells per column (calamine's and the strict cast's together), in sheet order."""
    by_column: dict[str, list[BadCells]] = {}
    for cell in cells:
        by_column.setdefault(cell.column, []).append(cell)
    order = {name: i for i, name in enumerate(columns)}
    merged: list[BadCells] = []
    for name, found in sorted(by_column.items(), key=lambda kv: order.get(kv[0], len(order))):
        examples = sorted(
            (row, value) for c in found for row, value in zip(c.rows, c.values, strict=False)
        )[:MAX_EXAMPLES]
        merged.append(
            BadCells(
                name,
                found[0].expected,
                sum(c.count for c in found),
                tuple(r for r, _ in examples),
                tuple(v for _, v in examples),
            )
        )
    return merged


def _check_expanded_size(path: Path, limit: int) -> None:
    """Refuse an xlsx whose parts inflate past ``limit`` bytes.

    The zip's declared sizes are checked first, then each part is really inflated,
    in bounded memory and only up to the limit, because declared sizes can lie and
    calamine trusts the compressed stream. A file that is not a zip is left for
    calamine to name.
    """
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as handle:
            parts = archive.infolist()
            total = sum(info.file_size for info in parts)
            for info in parts:
                if total > limit:
                    break
                if info.compress_type == zipfile.ZIP_DEFLATED:
                    real = _inflated_size(handle, info, limit - total + info.file_size + 1)
                    total += real - info.file_size
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise UnreadableFile(f"not a readable xlsx workbook: {exc}", path=path) from None
    if total > limit:
        raise UnreadableFile(
            f"the workbook expands to more than {limit >> 20} MiB uncompressed "
            f"({path.stat().st_size} bytes on disk): refused as a zip bomb",
            path=path,
            hint="export the sheet as CSV or parquet",
        )


def _inflated_size(handle: Any, info: Any, budget: int) -> int:
    """Bytes one deflated zip part really inflates to, counted up to ``budget``."""
    handle.seek(info.header_offset)
    header = handle.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise OSError(f"bad local header for {info.filename}")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    handle.seek(info.header_offset + 30 + name_length + extra_length)
    inflater = zlib.decompressobj(-15)
    left, size = info.compress_size, 0
    while left > 0 and not inflater.eof and size <= budget:
        data = handle.read(min(left, _INFLATE_CHUNK_BYTES))
        if not data:
            break
        left -= len(data)
        size += len(inflater.decompress(data, _INFLATE_CHUNK_BYTES))
        while inflater.unconsumed_tail and size <= budget:
            size += len(inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK_BYTES))
    return size


def _excel_bad_cells(
    frame: pl.DataFrame,
    errors: Sequence[Any],
    contract: Contract | None,
    texts: pl.DataFrame | None = None,
    *,
    first_row: int,
) -> list[BadCells]:
    """Group calamine's cell errors by column (``offset_position`` is 0-based data row,
    column), by sheet row (``first_row``: the first data row's).

    A cell's value is shown as its text in ``texts`` when it has one there (a date
    cell among numbers reads ``2024-01-02 00:00:00``, not calamine's debug form).
    """
    expected = {} if contract is None else {c.name: c.arrow_type for c in contract.columns}
    found: dict[str, list[tuple[int, str]]] = {}
    for error in errors:
        row, column = error.offset_position
        name = frame.columns[column] if column < frame.width else f"#{column + 1}"
        shown = refused_value(error.detail)
        value = error.detail if shown is None else shown
        if texts is not None and name in texts.columns and row < texts.height:
            value = texts.get_column(name)[row] or value
        if contract is not None and shown is not None and not value.strip():
            continue  # a blank text cell is an empty cell (null), as in every other column
        found.setdefault(name, []).append((row + first_row, value))
    return [
        BadCells(
            name,
            expected.get(name)
            or (arrow_type_of(frame.schema[name]) if name in frame.columns else "?"),
            len(cells),
            tuple(r for r, _ in cells[:MAX_EXAMPLES]),
            tuple(shorten(v) for _, v in cells[:MAX_EXAMPLES]),
        )
        for name, cells in found.items()
    ]
