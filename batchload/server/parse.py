"""Parse a file's bytes in its ``file_format``: its schema (Arrow type names) and rows.

- CSV through ``pyarrow.csv`` (multithreaded, releases the GIL), honouring the SDK's
  ``read_options`` (``encoding``, ...) and ``convert_options`` (``column_types``, ...);
  types are inferred over the whole file otherwise.
- Parquet through ``pyarrow.parquet``, every row group decoded (so a corrupt page is a
  ``400``, not a surprise later).
- xlsx and xls through fastexcel (calamine), first sheet, header in the first row,
  types inferred from every row (a sample would silently turn a late ``"abc"`` in a
  number column into a null).

Every problem with the bytes is a ``400`` :class:`~batchload.server.errors.ApiError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import fastexcel
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from batchload.protocol import FileFormat, normalize_arrow_type
from batchload.schemadiff import Column, Schema, duplicate_names
from batchload.server.errors import bad_request

#: The first bytes of each binary format, to refuse a file sent under the wrong name.
_MAGIC: Final[dict[str, bytes]] = {
    "parquet": b"PAR1",
    "xlsx": b"PK\x03\x04",
    "xls": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
}
_ERROR_TEXT_CHARS: Final = 500

#: Accepted option names and the JSON types of their values (pyarrow's names).
_READ_OPTIONS: Final[dict[str, type]] = {
    "encoding": str,
    "skip_rows": int,
    "skip_rows_after_names": int,
    "column_names": list,
    "autogenerate_column_names": bool,
}
_CONVERT_OPTIONS: Final[dict[str, type]] = {
    "column_types": dict,
    "null_values": list,
    "true_values": list,
    "false_values": list,
    "strings_can_be_null": bool,
    "quoted_strings_can_be_null": bool,
    "timestamp_parsers": list,
    "decimal_point": str,
}

THREADED_CSV_BYTES: Final = 4 * 1024 * 1024
"""CSV smaller than this is parsed on one thread: waking pyarrow's pool for a small
file cost the server more CPU than the parse itself (3 ms a file, one at a time)."""

_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]")
_DECIMAL = re.compile(r"decimal(128|256)?\(\s*(\d+)\s*,\s*(-?\d+)\s*\)")


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What the server learns from a file: its ordered columns and its row count."""

    schema: Schema
    rows: int


def parse_file(
    data: bytes,
    file_format: FileFormat,
    *,
    read_options: Mapping[str, Any] | None = None,
    convert_options: Mapping[str, Any] | None = None,
) -> ParsedFile:
    """Parse ``data`` as ``file_format``; 400 when it cannot be parsed or has no columns."""
    magic = _MAGIC.get(file_format)
    if magic is not None and not data.startswith(magic):
        raise bad_request(f"the file is not a {file_format} file (wrong leading bytes)")
    try:
        if file_format == "csv":
            schema, rows = _read_csv(data, read_options or {}, convert_options or {})
        elif file_format == "parquet":
            schema, rows = _read_parquet(data)
        else:
            schema, rows = _read_excel(data)
    except (pa.ArrowException, fastexcel.FastExcelError, UnicodeError, LookupError) as exc:
        text = str(exc).strip()[:_ERROR_TEXT_CHARS]
        raise bad_request(f"cannot parse the file as {file_format}: {text}") from None
    columns = tuple(Column(field.name, _type_name(field.type)) for field in schema)
    if not columns:
        raise bad_request("the file has no columns")
    if duplicates := duplicate_names(columns):
        raise bad_request("the file has duplicate column names", details={"columns": duplicates})
    return ParsedFile(schema=columns, rows=rows)


def read_table(
    data: bytes,
    file_format: FileFormat,
    *,
    read_options: Mapping[str, Any] | None = None,
    convert_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """The values a stored file holds: its bytes parsed as :func:`parse_file` parses them."""
    if file_format == "csv":
        return _csv_table(data, read_options or {}, convert_options or {})
    if file_format == "parquet":
        return pq.read_table(pa.BufferReader(data))
    return pa.Table.from_batches([_excel_batch(data)])


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type an API type name stands for; ``ValueError`` if there is none."""
    text = name.strip()
    if match := _TIMESTAMP.fullmatch(text):
        return pa.timestamp(match.group(1), tz=match.group(2))
    if match := _DECIMAL.fullmatch(text):
        make = pa.decimal256 if match.group(1) == "256" else pa.decimal128
        return make(int(match.group(2)), int(match.group(3)))
    try:
        return pa.type_for_alias(text)
    except (ValueError, KeyError):
        raise ValueError(f"unknown Arrow type name {name!r}") from None


def canonical_type(name: str) -> str:
    """The API's spelling of a type name (``utf8`` -> ``string``); ``ValueError`` if unknown."""
    return _type_name(arrow_type(name))


def canonical_schema(columns: list[Mapping[str, Any]]) -> Schema:
    """An explicit schema from the wire, with checked and normalised types, or 400."""
    bad = []
    result = []
    for column in columns:
        try:
            result.append(Column(column["name"], canonical_type(column["type"])))
        except ValueError:
            bad.append({"column": column["name"], "type": column["type"]})
    if bad:
        raise bad_request("the schema has unknown column types", details=bad)
    schema = tuple(result)
    if duplicates := duplicate_names(schema):
        raise bad_request("the schema has duplicate column names", details={"columns": duplicates})
    return schema


def _type_name(data_type: pa.DataType) -> str:
    return normalize_arrow_type(str(data_type))


def _read_csv(
    data: bytes, read_options: Mapping[str, Any], convert_options: Mapping[str, Any]
) -> tuple[pa.Schema, int]:
    table = _csv_table(data, read_options, convert_options)
    return table.schema, table.num_rows


def _csv_table(
    data: bytes, read_options: Mapping[str, Any], convert_options: Mapping[str, Any]
) -> pa.Table:
    read_kwargs = _checked_options(read_options, _READ_OPTIONS, "read_options")
    convert_kwargs = _checked_options(convert_options, _CONVERT_OPTIONS, "convert_options")
    if "column_types" in convert_kwargs:
        convert_kwargs["column_types"] = _column_types(convert_kwargs["column_types"])
    read_kwargs.setdefault("use_threads", len(data) >= THREADED_CSV_BYTES)
    table = pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=pa_csv.ReadOptions(**read_kwargs),
        convert_options=pa_csv.ConvertOptions(**convert_kwargs),
    )
    # pyarrow infers ``binary`` for text that is not valid in the encoding: refuse it
    # rather than lock a schema around mis-decoded bytes.
    asked = convert_kwargs.get("column_types", {})
    undecodable = [
        f.name for f in table.schema if pa.types.is_binary(f.type) and f.name not in asked
    ]
    if undecodable:
        encoding = read_kwargs.get("encoding", "utf8")
        raise bad_request(
            f"cannot parse the file as csv: columns that are not valid {encoding} text",
            details={"columns": undecodable, "encoding": encoding},
        )
    return table


def _read_parquet(data: bytes) -> tuple[pa.Schema, int]:
    parquet = pq.ParquetFile(pa.BufferReader(data))
    rows = sum(batch.num_rows for batch in parquet.iter_batches())
    return parquet.schema_arrow, rows


def _read_excel(data: bytes) -> tuple[pa.Schema, int]:
    batch = _excel_batch(data)
    return batch.schema, batch.num_rows


def _excel_batch(data: bytes) -> pa.RecordBatch:
    reader = fastexcel.read_excel(data)
    if not reader.sheet_names:
        raise bad_request("the workbook has no sheets")
    return reader.load_sheet(0, schema_sample_rows=None).to_arrow()


def _checked_options(
    options: Mapping[str, Any], allowed: Mapping[str, type], field: str
) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise bad_request(
            f"{field} has unsupported keys: {', '.join(unknown)}",
            details={"field": field, "unsupported": unknown, "supported": sorted(allowed)},
        )
    for key, value in options.items():
        kind = allowed[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if ok and kind is list:
            ok = all(isinstance(item, str) for item in value)
        if not ok:
            raise bad_request(
                f"{field}.{key} has the wrong type", details={"field": f"{field}.{key}"}
            )
    return dict(options)


def _column_types(column_types: Mapping[str, Any]) -> dict[str, pa.DataType]:
    result: dict[str, pa.DataType] = {}
    bad = []
    for column, name in column_types.items():
        try:
            if not isinstance(name, str):
                raise ValueError(f"type {name!r} is not a string")
            result[column] = arrow_type(name)
        except ValueError:
            bad.append({"column": column, "type": name})
    if bad:
        raise bad_request("convert_options.column_types has unknown types", details=bad)
    return result
