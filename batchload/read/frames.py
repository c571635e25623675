"""Read one file into a polars DataFrame, typed by its contract, or say why it cannot be read.

- **CSV** is parsed the way the API parses it: pyarrow's CSV reader with
  ``convert_options.column_types`` taken from the contract (the very options the
  upload sends), default null spellings (``""``, ``NA``, ``null``, ...), a UTF-8 BOM
  skipped, blank lines skipped. Nothing is inferred for contract columns, so files
  cannot drift. Columns are kept in the file's order, so a missing, extra or moved
  column is left for validation to report.
  A large CSV can also be read **block by block** (:func:`read_csv_blocks`), with
  the same options, so that it never sits in memory whole.
- **Parquet** is read with its own types; a column of Arrow type ``null`` (all
  empty, as pandas writes an all-``None`` column) takes the contract's type, and
  such a file is sent as parquet of its validated frame (:func:`has_null_columns`).
- **xlsx / xls** go through fastexcel (calamine), the sheet and header row a
  :class:`~batchload.contract.reading.SheetChoice` or the contract names, else the
  first sheet (:mod:`batchload.read.excel`). Excel keeps every number as a double and a
  date as a formatted number, so the contract's columns are read as the contract's
  types, strictly: a date cell for a ``Date`` column, a whole number for an
  ``Int64`` one; a cell that does not fit (a time of day, ``2.5``, ``"n/a"`` among
  numbers) is reported with its row and value, never nulled or truncated. A
  workbook is then sent as parquet with the contract's Arrow types, not as its
  own bytes (the API would guess doubles and timestamps from them).

Rows are numbered as the user counts them: **data rows** (row 1 is the first row
under the header: line 2 of a plain CSV, row 1 of a DataFrame), but a workbook's
**sheet rows** (a header on row 3 makes the first data row 4):
:attr:`Loaded.first_row` says which.

Polars, pyarrow and fastexcel errors are translated here (and in
:mod:`batchload.read.excel`), once, into
:class:`~batchload.errors.UnreadableFile` (one-line reason) or its subclass
:class:`UnparseableValues` (which cells, in which columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from batchload.contract.reading import FIRST_SHEET, SheetChoice
from batchload.errors import UnreadableFile, UsageError
from batchload.protocol import SUFFIX_FORMATS, FileFormat
from batchload.read.csv import read_csv, read_csv_group
from batchload.read.discover import file_format_of
from batchload.read.excel import Loaded, read_excel
from batchload.read.problems import check_readable, raise_unreadable

if TYPE_CHECKING:
    from batchload.contract.model import Contract

__all__ = [
    "Loaded",
    "file_format",
    "has_null_columns",
    "load_frame",
    "read_frame",
    "read_frames",
    "read_sample",
    "read_samples",
    "typed_nulls",
]


def file_format(path: Path) -> FileFormat:
    """The file_format a file's suffix names; an unknown suffix is an UnreadableFile."""
    fmt = file_format_of(path)
    if fmt is None:
        known = ", ".join(sorted(SUFFIX_FORMATS))
        raise UnreadableFile(
            f"unknown file extension {path.suffix or '(none)'!r}; expected one of {known}",
            path=path,
        )
    return fmt


def read_frame(
    path: Path, contract: Contract | None, *, sheet: SheetChoice = FIRST_SHEET
) -> pl.DataFrame:
    """Read ``path`` typed by ``contract`` (raises UnreadableFile or UnparseableValues).

    With no contract, types are what the format gives or infers (for ``schema infer``).
    """
    return load_frame(path, contract, sheet=sheet).frame


def load_frame(
    path: Path, contract: Contract | None, *, sheet: SheetChoice = FIRST_SHEET
) -> Loaded:
    """:func:`read_frame`, with the number its first data row has as the user counts."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "csv":
        return Loaded(read_csv(path, contract))
    if fmt == "parquet":
        frame = _read_parquet(path)
        return Loaded(frame if contract is None else typed_nulls(frame, contract))
    return read_excel(path, contract, sheet)


def read_frames(
    paths: Sequence[Path],
    contract: Contract,
    *,
    sheet: SheetChoice = FIRST_SHEET,
    data: Sequence[bytes | None] = (),
) -> list[Loaded | UnreadableFile]:
    """:func:`read_frame` for each of ``paths``, or the UnreadableFile that says why not.

    ``data``: the bytes of each path, where the caller has read them already (a small
    CSV is then parsed from them, not read again). CSV files are read together
    (:func:`~batchload.read.csv.read_csv_group`): one conversion for files alike.
    """
    read: list[Loaded | UnreadableFile | None] = [None] * len(paths)
    csvs: list[tuple[int, Path, bytes | None]] = []
    for index, path in enumerate(paths):
        try:
            if file_format(path) == "csv":
                csvs.append((index, path, data[index] if index < len(data) else None))
            else:
                read[index] = load_frame(path, contract, sheet=sheet)
        except UnreadableFile as exc:
            read[index] = exc
    grouped = read_csv_group([(path, kept) for _, path, kept in csvs], contract)
    for (index, _, _), frame in zip(csvs, grouped, strict=True):
        read[index] = frame if isinstance(frame, UnreadableFile) else Loaded(frame)
    return [item for item in read if item is not None]


def read_sample(path: Path, *, sheet: SheetChoice = FIRST_SHEET) -> pl.DataFrame:
    """Read ``path`` with no contract, types as its format gives or infers them."""
    return read_frame(path, None, sheet=sheet)


def read_samples(
    paths: Sequence[Path | str], *, sheet: SheetChoice = FIRST_SHEET
) -> list[tuple[Path, pl.DataFrame]]:
    """Read each path with no contract, types as its format gives or infers them."""
    samples: list[tuple[Path, pl.DataFrame]] = []
    for raw in paths:
        path = Path(raw)
        try:
            samples.append((path, read_sample(path, sheet=sheet)))
        except UnreadableFile as exc:  # a sample that cannot be read cannot teach a type
            raise UsageError(f"cannot infer from {path}: {exc}") from exc
    return samples


def typed_nulls(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """``frame`` with each all-null column of no type (polars ``Null``: a pandas
    all-``None`` column, an Arrow ``null`` column) cast to the contract's type.

    Only the type changes (every value stays null), so a nullable column that happens
    to be empty is valid, and a required one is still reported for its nulls."""
    cast = {
        c.name: c.dtype
        for c in contract.columns
        if c.name in frame.columns and frame.schema[c.name] == pl.Null
    }
    return frame.cast(cast) if cast else frame  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- parquet


def has_null_columns(path: Path) -> bool:
    """True when a parquet file has a column of Arrow type ``null``: the service would
    lock or compare that type, so the file is sent as parquet of its typed frame."""
    try:
        return any(dtype == pl.Null for dtype in pl.read_parquet_schema(path).values())
    except (pl.exceptions.PolarsError, OSError):
        return False  # unreadable: the check stage reads it and says why


def _read_parquet(path: Path) -> pl.DataFrame:
    check_readable(path)
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise_unreadable(path, "not a readable parquet file", exc)
