"""Read an Excel sheet (xlsx, xls) into a polars DataFrame, or say why it cannot be read.

fastexcel (calamine) reads the first sheet unless ``sheet`` is given, each column's
type guessed from all its cells (numbers are doubles, dates are ``timestamp[ms]``),
as the API reads a workbook. A cell that does not fit its column's type (``"n/a"``
among numbers) would silently become null: it is reported instead, as
:class:`~batchload.read.UnparseableValues`. An xlsx that would inflate past
``MAX_WORKBOOK_EXPANDED_BYTES`` is refused before calamine opens it (a zip bomb).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from batchload.errors import UnreadableFile
from batchload.read import (
    MAX_EXAMPLES,
    BadCells,
    UnparseableValues,
    _check_file,
    _raise_unreadable,
    shorten,
)

if TYPE_CHECKING:
    from batchload.contract import Contract

__all__ = ["MAX_WORKBOOK_EXPANDED_BYTES", "read_excel"]

#: Most bytes an xlsx's parts may inflate to (its XML; Excel's own limit of 1,048,576
#: rows fits). calamine holds a sheet in memory at about 3x its XML, so past this a
#: workbook is refused before calamine opens it: a zip bomb cannot fill memory.
MAX_WORKBOOK_EXPANDED_BYTES = 1 << 30
_INFLATE_CHUNK_BYTES = 1 << 20


def read_excel(path: Path, contract: Contract | None, sheet: str | None) -> pl.DataFrame:
    """Load a sheet exactly as the API does (types guessed from every row), keeping the
    cells calamine could not fit in the guessed type, which it would otherwise null."""
    import fastexcel

    _check_file(path)
    if path.suffix.lower() == ".xlsx":
        _check_expanded_size(path, MAX_WORKBOOK_EXPANDED_BYTES)
    try:
        reader = fastexcel.read_excel(path)
    except fastexcel.FastExcelError as exc:
        return _raise_unreadable(path, f"not a readable {path.suffix.lstrip('.')} workbook", exc)
    names = list(reader.sheet_names)
    if not names:
        raise UnreadableFile("the workbook has no sheets", path=path)
    if sheet is None:
        index = 0
    elif sheet in names:
        index = names.index(sheet)
    else:
        raise UnreadableFile(
            f"no sheet {sheet!r}; sheets: {', '.join(repr(n) for n in names)}", path=path
        )
    try:
        loaded = reader.load_sheet(index, schema_sample_rows=None)
        batch, errors = loaded.to_arrow_with_errors()
    except fastexcel.FastExcelError as exc:
        return _raise_unreadable(path, f"sheet {names[index]!r} cannot be read", exc)
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    if frame.width == 0:
        raise UnreadableFile(f"sheet {names[index]!r} is empty: no header row", path=path)
    if errors is not None and errors.errors:
        raise UnparseableValues(path, _excel_bad_cells(frame, errors.errors))
    return frame


def _check_expanded_size(path: Path, limit: int) -> None:
    """Refuse an xlsx whose parts inflate past ``limit`` bytes.

    The zip's declared sizes are checked first, then each part is really inflated,
    in bounded memory and only up to the limit, because declared sizes can lie and
    calamine trusts the compressed stream. A file that is not a zip is left for
    calamine to name.
    """
    import zipfile
    import zlib

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
    import struct
    import zlib

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


def _excel_bad_cells(frame: pl.DataFrame, errors: Sequence[Any]) -> list[BadCells]:
    """Group calamine's cell errors by column (``offset_position`` is 0-based data row, column)."""
    from batchload.contract import arrow_type_of

    found: dict[str, list[tuple[int, str]]] = {}
    for error in errors:
        row, column = error.offset_position
        name = frame.columns[column] if column < frame.width else f"#{column + 1}"
        match = re.search(r"got '\w+\(\"?(.*?)\"?\)'", error.detail)
        found.setdefault(name, []).append((row + 1, match.group(1) if match else error.detail))
    return [
        BadCells(
            name,
            arrow_type_of(frame.schema[name]) if name in frame.columns else "?",
            len(cells),
            tuple(r for r, _ in cells[:MAX_EXAMPLES]),
            tuple(shorten(v) for _, v in cells[:MAX_EXAMPLES]),
        )
        for name, cells in found.items()
    ]
