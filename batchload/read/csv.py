"""CSV, parsed the way the API parses it: pyarrow's reader with the contract's column types.

Nothing is inferred for contract columns, so files cannot drift; columns keep the
file's order, so a missing, extra or moved column is left for validation to report.
A large CSV can be read block by block (:func:`read_csv_blocks`) for bounded memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from batchload.cancel import stop_if_cancelled
from batchload.contract.model import arrow_schema
from batchload.errors import UnreadableFile
from batchload.protocol import csv_convert_options
from batchload.read.discover import csv_compression
from batchload.read.problems import (
    MAX_EXAMPLES,
    BadCells,
    UnparseableValues,
    open_failure,
    shorten,
)
from batchload.read.pyarrow_compat import BadValue, EmptyCsv, RaggedRow, csv_error

if TYPE_CHECKING:
    from batchload.contract.model import Contract


#: A CSV at least this large is parsed with pyarrow's threads.
THREADED_CSV_BYTES = 4 << 20


_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


class CannotReadInBlocks(Exception):
    """The file cannot be read block by block with the result of reading it whole.

    Not an :class:`UnreadableFile`: the caller reads the file whole, which says
    exactly what is wrong with it (or finds nothing wrong)."""


#: pyarrow's own block size when reading blocks: its default, which its whole-file reader
#: uses too. Blocks end at a newline found without regard to quotes, so a quoted newline
#: fails or not depending on where they end: the same size, the same outcome.
READ_BLOCK_BYTES = 1 << 20


#: Bytes read up front: BOM and emptiness checks, and the whole of a small file.
HEAD_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class _CsvSource:
    """A CSV file: its first bytes, and all of them when the file is small."""

    path: Path
    head: bytes
    whole: bool

    def reader(self) -> Any:
        """What pyarrow reads: the bytes in memory, or the path for a large file."""
        if not self.whole:
            return str(self.path)
        if b"\n" in self.head or b"\r" in self.head:
            return pa.BufferReader(self.head)
        return pa.BufferReader(self.head + b"\n")  # pyarrow needs a line end after a lone header


def _csv_source(path: Path, kept: bytes | None = None) -> _CsvSource:
    """``path`` as a CSV source; ``kept``: its bytes when the caller has them already.

    A compressed CSV is decompressed whole (its text's size is known only once read)."""
    codec = csv_compression(path)
    if codec is not None:
        try:
            stream = pa.input_stream(pa.BufferReader(kept) if kept else str(path), codec)
            with stream:
                return _CsvSource(path, stream.read(), True)
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableFile(
                f"not readable as {codec}-compressed CSV: {str(exc).splitlines()[0]}", path=path
            ) from None
    if kept is not None and len(kept) <= HEAD_BYTES:
        return _CsvSource(path, kept, True)
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES + 1)
    except OSError as exc:
        raise open_failure(path, exc) from None
    return _CsvSource(path, head[:HEAD_BYTES], len(head) <= HEAD_BYTES)


def read_csv(path: Path, contract: Contract | None) -> pl.DataFrame:
    return _arrow_frame(_parse_csv(_csv_source(path), contract))


def _plain_rows(source: _CsvSource, header: bytes) -> int | None:
    """The rows of a small CSV that can be parsed together with others: one whose header
    is exactly ``header`` (the contract's columns, so no type is inferred) and whose
    rows are its non-empty lines (no quotes, no carriage returns). ``None`` otherwise."""
    data = source.head
    if not source.whole or not data.startswith(header) or b'"' in data or b"\r" in data:
        return None
    body = data[len(header) :]
    if body.startswith(b"\n") or b"\n\n" in body:  # empty lines: count the others
        return sum(1 for line in body.split(b"\n") if line)
    return body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)


def _parse_plain(
    plain: Sequence[tuple[int, _CsvSource, int]], header: bytes, contract: Contract
) -> list[tuple[int, Any]] | None:
    """Parse plain small CSVs (:func:`_plain_rows`) as one text, and cut the table per file.

    A parser call costs about three times the parsing of a 20 KB file. Same options,
    same types: each file's cells are read exactly as alone. ``None`` when the text
    does not parse, or gives other than the rows counted: then each file is parsed
    alone, for its own verdict.
    """
    if len(plain) < 2:
        return None
    bodies = [source.head[len(header) :] for _, source, _ in plain]
    text = header + b"".join(
        body if body.endswith(b"\n") or not body else body + b"\n" for body in bodies
    )
    try:
        table = _pyarrow_csv(
            _CsvSource(Path("<plain>"), text, True), False, _convert_options(contract)
        )
    except pa.ArrowException:
        return None
    if table.num_rows != sum(rows for _, _, rows in plain):
        return None
    pieces = _consecutive(table, [rows for _, _, rows in plain])
    return [(index, piece) for (index, _, _), piece in zip(plain, pieces, strict=True)]


def _parse_csv(source: _CsvSource, contract: Contract | None) -> Any:
    path = source.path
    for bom, encoding in _BOMS.items():
        if source.head.startswith(bom):
            raise UnreadableFile(
                f"{encoding} text; the API reads CSV as UTF-8", path=path, hint="save it as UTF-8"
            )
    if source.whole and not source.head.strip(b"\xef\xbb\xbf \t\r\n"):
        raise UnreadableFile("empty file: no header row", path=path)
    convert = _convert_options(contract)
    threaded = not source.whole and path.stat().st_size >= THREADED_CSV_BYTES
    try:
        table = _pyarrow_csv(source, threaded, convert)
    except pa.ArrowInvalid as exc:
        error: Exception = exc
        if threaded:  # pyarrow names the row only when parsing on one thread
            try:
                table = _pyarrow_csv(source, False, convert)
            except pa.ArrowInvalid as single:
                error = single
            else:  # pragma: no cover - the threaded failure did not reproduce
                return _named(source, table)
        raise _translate_csv_error(source, error, contract) from exc
    except OSError as exc:
        raise open_failure(path, exc) from exc
    return _named(source, table)


def _convert_options(contract: Contract | None, *, as_text: bool = False) -> Any:
    """pyarrow's options for the contract's columns: the options the upload sends
    (:func:`~batchload.protocol.csv_convert_options`), with the Arrow types (or text,
    ``as_text``, to find the cells that do not parse); nothing inferred."""
    if contract is None:
        return pacsv.ConvertOptions(**csv_convert_options({}))
    options = contract.convert_options()
    if as_text:
        options["column_types"] = dict.fromkeys(contract.names, pa.string())
    else:
        options["column_types"] = {f.name: f.type for f in arrow_schema(contract)}
    return pacsv.ConvertOptions(**options)


def read_csv_blocks(path: Path, contract: Contract, *, block_bytes: int) -> Iterator[pl.DataFrame]:
    """A CSV as frames of about ``block_bytes`` of data each, parsed as :func:`read_frame`
    parses it (pyarrow's streaming reader, the same options; its threads convert a block).

    pyarrow reads ahead as many as 32 of its own blocks: they stay small
    (``READ_BLOCK_BYTES``, or ``block_bytes`` when smaller) and are gathered into
    frames, so memory holds a frame or two, whatever the file's size.

    Only a file whose header is exactly the contract's columns, in order, is read so:
    the streaming reader would fix an extra column's type from its first block, where
    the whole file's reader widens it. That file, and any file pyarrow refuses (bad
    cells, ragged rows, not UTF-8: maybe after some frames were given), raise
    :class:`CannotReadInBlocks`; read it whole for the exact verdict.
    """
    if csv_compression(path):  # decompressed whole, so read whole
        raise CannotReadInBlocks(path)
    source = _csv_source(path)
    if any(source.head.startswith(bom) for bom in _BOMS):
        raise CannotReadInBlocks(path)
    read_block = min(block_bytes, READ_BLOCK_BYTES)
    try:
        reader = pacsv.open_csv(
            str(path),
            read_options=pacsv.ReadOptions(use_threads=True, block_size=read_block),
            convert_options=_convert_options(contract),
        )
        with reader:  # closed also when the caller stops early
            if tuple(reader.schema.names) != contract.names:
                raise CannotReadInBlocks(path)
            batches: list[Any] = []
            size = 0
            for batch in reader:
                stop_if_cancelled()
                batches.append(batch)
                size += batch.nbytes
                if size >= block_bytes:
                    frame = _batches_frame(batches)
                    batches, size = [], 0  # a copy: the Arrow memory can go
                    yield frame
            if batches:
                yield _batches_frame(batches)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise CannotReadInBlocks(path) from exc


def _batches_frame(batches: Sequence[Any]) -> pl.DataFrame:
    return _arrow_frame(pa.Table.from_batches(batches))


def _pyarrow_csv(source: _CsvSource, threaded: bool, convert: Any) -> Any:
    return pacsv.read_csv(
        source.reader(),
        read_options=pacsv.ReadOptions(use_threads=threaded),
        convert_options=convert,
    )


def _named(source: _CsvSource, table: Any) -> Any:
    """``table``, once its header is known to be UTF-8 names, each once."""
    try:
        names = list(table.column_names)
    except UnicodeDecodeError:
        raise UnreadableFile(
            "the header is not UTF-8 text", path=source.path, hint="save the file as UTF-8"
        ) from None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UnreadableFile(
            f"duplicate column name {duplicates[0]!r} in the header", path=source.path
        )
    return table


def _arrow_frame(table: Any) -> pl.DataFrame:
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _translate_csv_error(
    source: _CsvSource, exc: Exception, contract: Contract | None
) -> UnreadableFile:
    path = source.path
    error = csv_error(exc)
    if isinstance(error, RaggedRow):
        where = f"row {error.row}" if error.row is not None else "a row"
        return UnreadableFile(
            f"ragged rows: {where} has {error.got} fields, the header has {error.expected}",
            path=path,
        )
    if isinstance(error, BadValue):
        header = _csv_header(source)
        column = header[error.column] if error.column < len(header) else f"#{error.column + 1}"
        if error.invalid_utf8:
            where = f", row {error.row}" if error.row is not None else ""
            return UnreadableFile(
                f"not UTF-8 text (column {column!r}{where})", path=path, hint="save it as UTF-8"
            )
        if contract is not None:
            cells = _locate_bad_csv_cells(source, contract)
            if not any(c.column == column for c in cells):
                cells.insert(
                    0,
                    BadCells(
                        column,
                        error.arrow_type,
                        1,
                        (error.row,) if error.row is not None else (),
                        (shorten(error.value),) if error.value is not None else (),
                    ),
                )
            return UnparseableValues(path, cells)
        return UnreadableFile(f"column {column!r}: {error.detail}", path=path)
    if isinstance(error, EmptyCsv):
        return UnreadableFile("empty file: no header row", path=path)
    lines = str(exc).splitlines()
    return UnreadableFile(f"not a readable CSV file: {lines[0] if lines else exc!r}", path=path)


def _csv_header(source: _CsvSource) -> list[str]:
    try:
        table = pacsv.read_csv(
            pa.BufferReader(source.head.split(b"\n", 1)[0] + b"\n"),
            read_options=pacsv.ReadOptions(use_threads=False),
        )
    except Exception:  # the header itself is broken; the caller falls back to positions
        return []
    return list(table.column_names)


def _locate_bad_csv_cells(source: _CsvSource, contract: Contract) -> list[BadCells]:
    """Re-read every column as text and find each cell that does not parse (error path only)."""
    defaults = pacsv.ConvertOptions()
    try:
        table = _pyarrow_csv(source, not source.whole, _convert_options(contract, as_text=True))
    except pa.ArrowInvalid:
        return []
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_row_index("__row", offset=1)
    bad: list[BadCells] = []
    for spec in contract.columns:
        if spec.name not in frame.columns or spec.dtype == pl.String:
            continue
        text = pl.col(spec.name)
        parsed = _parse_text(text, spec.dtype, defaults)
        failing = frame.filter(text.is_not_null() & parsed.is_null())
        if failing.height:
            head = failing.head(MAX_EXAMPLES)
            bad.append(
                BadCells(
                    spec.name,
                    spec.arrow_type,
                    failing.height,
                    tuple(head.get_column("__row").to_list()),
                    tuple(shorten(v) for v in head.get_column(spec.name).to_list()),
                )
            )
    return bad


def _parse_text(text: pl.Expr, dtype: pl.DataType, defaults: Any) -> pl.Expr:
    """Parse text as pyarrow would, close enough to find the cells it refuses."""
    if dtype == pl.Boolean:
        return (
            pl.when(text.is_in(list(defaults.true_values)))
            .then(True)
            .when(text.is_in(list(defaults.false_values)))
            .then(False)
        )
    if dtype == pl.Date:
        return text.str.to_date("%Y-%m-%d", strict=False)
    if isinstance(dtype, pl.Datetime):
        return text.str.to_datetime(time_unit=dtype.time_unit, strict=False)
    return text.cast(dtype, strict=False)


def read_csv_group(
    files: Sequence[tuple[Path, bytes | None]], contract: Contract
) -> list[pl.DataFrame | UnreadableFile]:
    """Each CSV file typed by ``contract``, or the UnreadableFile that says why not.

    ``files``: each path with its bytes where the caller has read them already. Files
    that parse to the same Arrow schema become polars frames in one conversion, each
    a slice of it: converting a small file's table alone costs about half as much as
    parsing it.
    """
    paths = [path for path, _ in files]
    data = [kept for _, kept in files]

    read: list[pl.DataFrame | UnreadableFile | None] = [None] * len(paths)
    plain: list[tuple[int, _CsvSource, int]] = []
    parsed: list[tuple[int, Any]] = []
    header = ",".join(contract.names).encode() + b"\n"
    for index, path in enumerate(paths):
        try:
            source = _csv_source(path, data[index] if index < len(data) else None)
            rows = _plain_rows(source, header)
            if rows is None:
                parsed.append((index, _parse_csv(source, contract)))
            else:
                plain.append((index, source, rows))
        except UnreadableFile as exc:
            read[index] = exc
    together = _parse_plain(plain, header, contract)
    if together is not None:
        parsed += together
    for index, source, _ in plain if together is None else ():
        try:
            parsed.append((index, _parse_csv(source, contract)))
        except UnreadableFile as exc:
            read[index] = exc
    alike: dict[Any, list[tuple[int, Any]]] = {}
    for index, table in sorted(parsed, key=lambda item: item[0]):
        alike.setdefault(table.schema, []).append((index, table))
    for tables in alike.values():
        whole = _arrow_frame(pa.concat_tables([table for _, table in tables]))
        pieces = _consecutive(whole, [table.num_rows for _, table in tables])
        for (index, _), piece in zip(tables, pieces, strict=True):
            read[index] = piece
    return [item for item in read if item is not None]


def _consecutive(whole: Any, heights: Sequence[int]) -> list[Any]:
    """``whole`` (a table or frame) cut into consecutive slices of ``heights`` rows."""
    starts = itertools.accumulate(heights, initial=0)
    return [whole.slice(start, height) for start, height in zip(starts, heights, strict=False)]
