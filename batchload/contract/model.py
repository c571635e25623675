"""Contracts: a dataset's locked schema written down, one YAML file per dataset in ``schemas/``.

A contract file *is* pandera's own polars serialization (``schema_type:
polars_dataframe``; ``pandera.polars.DataFrameSchema.from_yaml(path)`` loads it
unchanged), with batchload's two extra facts where pandera's format leaves room:

- the **dataset name** is the schema's ``name`` (pandera round-trips it; when it is
  missing the file's stem is used);
- the **Arrow type each column is sent as** lives under the top-level
  ``metadata: {batchload: {arrow_types: {column: type}}}`` block, beside how files
  are read (:class:`Reading`: ``null_values``, ``sheet``, ``header_row``). pandera's
  ``DataFrameSchema(metadata=...)`` is not written by its YAML serializer and the
  key is ignored when pandera loads the file, so batchload writes and reads that
  block itself and puts it back on ``schema.metadata``. A column missing from the
  block is sent as the Arrow type of its polars dtype (``Int64`` -> ``int64``,
  ``String`` -> ``string``, ``Date`` -> ``date32[day]``).

A contract must say ``strict: true`` and ``ordered: true`` (the API locks ordered
columns, so an extra or moved column is a refused file) and must not ``coerce``
(batchload sends the file's own bytes, so its types must already be right). Every
mistake in a contract file is a :class:`~batchload.errors.ContractError` naming the
file: a typo in a check name, which pandera would silently ignore, included.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl
import pyarrow as pa_arrow
import yaml
from pandera.api.checks import Check

from batchload.contract.pandera_compat import (
    COMPONENT_RESERVED_KEYS,
    check_error_text,
    schema_from_document,
    schema_to_document,
)
from batchload.contract.reading import (
    READING_KEYS,
    Reading,
    Yaml12Loader,
    contract_text,
    reading_from_metadata,
)
from batchload.errors import ContractError
from batchload.protocol import csv_convert_options, normalize_arrow_type
from batchload.schemadiff import Column, SchemaDifference, diff_schemas, schema_from_json

__all__ = [
    "ColumnSpec",
    "Contract",
    "Reading",
    "SchemaDifference",
    "arrow_schema",
    "arrow_type_of",
    "build_contract",
    "contract_to_yaml",
    "diff_locked",
    "dump_contract",
    "frame_fingerprint",
    "load_contract",
    "schema_fingerprint",
]

#: Key of batchload's block inside the contract's top-level ``metadata``.
METADATA_KEY = "batchload"
ARROW_TYPES_KEY = "arrow_types"

#: Top-level keys pandera's polars serializer writes, plus ``metadata``.
_SCHEMA_KEYS = frozenset(
    {
        "schema_type",
        "version",
        "api",
        "columns",
        "checks",
        "index",
        "dtype",
        "coerce",
        "strict",
        "name",
        "ordered",
        "unique",
        "report_duplicates",
        "unique_column_names",
        "add_missing_columns",
        "title",
        "description",
        "drop_invalid_rows",
        "metadata",
    }
)

_HEADER = (
    "# batchload contract: a pandera polars schema (pandera.polars.DataFrameSchema.from_yaml\n"
    "# loads this file). metadata.batchload.arrow_types: the Arrow type each column is sent as.\n"
)


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column of a contract: its name, polars dtype, wire (Arrow) type and nullability."""

    name: str
    dtype: pl.DataType
    arrow_type: str
    nullable: bool


@dataclass(frozen=True)
class Contract:
    """A loaded contract: the pandera schema plus what batchload derives from it."""

    path: Path | None
    dataset_name: str
    schema: pa.DataFrameSchema = field(repr=False)
    columns: tuple[ColumnSpec, ...]
    unique: tuple[str, ...]
    fingerprint: str
    reading: Reading = field(default_factory=Reading)

    @property
    def names(self) -> tuple[str, ...]:
        """Column names, in order."""
        return tuple(c.name for c in self.columns)

    def column_types(self) -> dict[str, str]:
        """Column -> Arrow type name: the CSV ``convert_options.column_types`` to send."""
        return {c.name: c.arrow_type for c in self.columns}

    def convert_options(self) -> dict[str, Any]:
        """The CSV ``convert_options`` to read with and to send (one parsing truth)."""
        return csv_convert_options(self.column_types(), self.reading.null_values)

    def polars_schema(self) -> dict[str, pl.DataType]:
        """Column -> polars dtype, in order."""
        return {c.name: c.dtype for c in self.columns}

    def locked_schema(self) -> list[dict[str, str]]:
        """The schema as the API spells it: ``[{"name", "type"}, ...]``."""
        return [{"name": c.name, "type": c.arrow_type} for c in self.columns]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (``batchload schema show --json``)."""
        return {
            "path": str(self.path) if self.path else None,
            "dataset": self.dataset_name,
            "fingerprint": self.fingerprint,
            "unique": list(self.unique),
            "columns": [
                {
                    "name": c.name,
                    "dtype": str(c.dtype),
                    "type": c.arrow_type,
                    "nullable": c.nullable,
                    "checks": [_check_label(ch) for ch in self.schema.columns[c.name].checks],
                }
                for c in self.columns
            ],
        }


# ---------------------------------------------------------------------------- types


def _check_label(check: Any) -> str:
    """``in_range(0, 1)``: the label pandera uses in its failure cases."""
    return str(getattr(check, "error", None) or getattr(check, "name", None) or check)


def dtype_instance(dtype: Any) -> pl.DataType:
    """``pl.Int64`` (a class) and ``pl.Int64()`` compare equal; keep instances."""
    return dtype() if isinstance(dtype, type) else dtype  # type: ignore[no-any-return]


def arrow_type_of(dtype: pl.DataType) -> str:
    """The API's spelling of the Arrow type a polars dtype is written as."""
    arrow = pl.Series(dtype=dtype).to_arrow().type
    return normalize_arrow_type(str(arrow))


def _arrow_type(name: str) -> Any:
    """A pyarrow type from the API's spelling, or ``None`` when it is not one."""
    try:
        return pa_arrow.type_for_alias(name)
    except (ValueError, KeyError):
        pass
    zoned = re.fullmatch(r"timestamp\[(s|ms|us|ns), tz=([^\]]+)\]", name)
    if zoned:
        return pa_arrow.timestamp(zoned.group(1), tz=zoned.group(2))
    decimal = re.fullmatch(r"decimal(128|256)?\((\d+), ?(\d+)\)", name)
    if decimal:
        make = pa_arrow.decimal256 if decimal.group(1) == "256" else pa_arrow.decimal128
        return make(int(decimal.group(2)), int(decimal.group(3)))
    return None


def arrow_schema(contract: Contract) -> Any:
    """The contract as a ``pyarrow.Schema`` (what CSV reading converts to)."""
    return pa_arrow.schema([(c.name, _arrow_type(c.arrow_type)) for c in contract.columns])


def schema_fingerprint(columns: Iterable[tuple[str, str]]) -> str:
    """A stable short hash of ordered ``(name, arrow type)`` pairs."""
    text = "\n".join(f"{name}\t{normalize_arrow_type(t)}" for name, t in columns)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def frame_fingerprint(frame: pl.DataFrame) -> str:
    """The fingerprint of a frame's columns as read (comparable with a contract's)."""
    return schema_fingerprint((n, arrow_type_of(d)) for n, d in frame.schema.items())


# ---------------------------------------------------------------------------- loading


def load_contract(path: Path | str) -> Contract:
    """Read and check a contract file; every problem is a ContractError naming the file."""
    path = Path(path)
    return contract_from_yaml(contract_text(path), path=path)


def contract_from_yaml(text: str, *, path: Path | None = None) -> Contract:
    """Parse contract YAML text (``path`` only names the file in errors)."""
    try:
        document = yaml.load(text, Loader=Yaml12Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ContractError(f"not valid YAML{where}: {problem}", path=path) from None
    if not isinstance(document, Mapping):
        raise ContractError(
            "not a pandera polars schema: expected a YAML mapping with `columns:`", path=path
        )
    document = dict(document)
    schema_type = document.get("schema_type")
    if schema_type != "polars_dataframe":
        raise ContractError(
            f"not a pandera polars schema: schema_type is {schema_type!r}, "
            "expected 'polars_dataframe'",
            path=path,
        )
    unknown = sorted(set(document) - _SCHEMA_KEYS)
    if unknown:
        raise ContractError(f"unknown top-level key {unknown[0]!r}", path=path)
    metadata = document.pop("metadata", None) or {}
    arrow_types = _arrow_types_from_metadata(metadata, path)
    reading = reading_from_metadata(metadata.get(METADATA_KEY), path)
    columns = document.get("columns")
    if not isinstance(columns, Mapping) or not columns:
        raise ContractError("`columns:` must map each column name to its options", path=path)
    for name, options in columns.items():
        _check_column_keys(str(name), options, path)
    schema = schema_from_document(document, path=path)
    schema.metadata = dict(metadata) if isinstance(metadata, Mapping) else None
    return build_contract(schema, path=path, arrow_types=arrow_types, reading=reading)


def _arrow_types_from_metadata(metadata: Any, path: Path | None) -> dict[str, str]:
    if not isinstance(metadata, Mapping):
        raise ContractError("`metadata:` must be a mapping", path=path)
    block = metadata.get(METADATA_KEY) or {}
    if not isinstance(block, Mapping):
        raise ContractError(f"`metadata.{METADATA_KEY}` must be a mapping", path=path)
    unknown = sorted(set(block) - {ARROW_TYPES_KEY, *READING_KEYS})
    if unknown:
        raise ContractError(f"unknown key `metadata.{METADATA_KEY}.{unknown[0]}`", path=path)
    types = block.get(ARROW_TYPES_KEY) or {}
    if not isinstance(types, Mapping) or not all(isinstance(v, str) for v in types.values()):
        raise ContractError(
            f"`metadata.{METADATA_KEY}.{ARROW_TYPES_KEY}` must map column names to type names",
            path=path,
        )
    return {str(k): v for k, v in types.items()}


def _check_column_keys(name: str, options: Any, path: Path | None) -> None:
    """Reject what pandera would drop silently: unknown keys are usually typos of checks."""
    if not isinstance(options, Mapping):
        raise ContractError(
            f"column {name!r}: expected a mapping with at least `dtype:`", path=path
        )
    for key in options:
        if key in COMPONENT_RESERVED_KEYS:
            continue
        if not callable(getattr(Check, str(key), None)) or str(key).startswith("_"):
            raise ContractError(
                f"column {name!r}: unknown key {key!r} (not a pandera column option "
                "or built-in check)",
                path=path,
            )


def _one_line(exc: object) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def build_contract(
    schema: pa.DataFrameSchema,
    *,
    path: Path | None = None,
    arrow_types: Mapping[str, str] | None = None,
    dataset_name: str | None = None,
    reading: Reading | None = None,
) -> Contract:
    """Check a pandera polars schema against batchload's rules and derive a Contract."""
    arrow_types = dict(arrow_types or {})

    def fail(message: str, hint: str | None = None) -> ContractError:
        return ContractError(message, path=path, hint=hint)

    if not isinstance(schema, pa.DataFrameSchema):
        raise fail("not a pandera polars DataFrameSchema")
    if not schema.columns:
        raise fail("the schema has no columns")
    if not schema.strict or not schema.ordered:
        raise fail(
            "the schema must set `strict: true` and `ordered: true`",
            hint="the API locks the ordered columns, so extra or moved columns are refused",
        )
    if schema.coerce:
        raise fail("`coerce: true` is not supported: files are sent as they are, not coerced")
    if schema.add_missing_columns:
        raise fail("`add_missing_columns` is not supported: files are sent as they are")
    unknown = sorted(set(arrow_types) - set(schema.columns))
    if unknown:
        raise fail(f"metadata.{METADATA_KEY}.{ARROW_TYPES_KEY} names unknown column {unknown[0]!r}")

    specs: list[ColumnSpec] = []
    for name, column in schema.columns.items():
        if column.regex:
            raise fail(f"column {name!r}: regex column names are not supported")
        if column.coerce:
            raise fail(f"column {name!r}: `coerce: true` is not supported")
        if not column.required:
            raise fail(f"column {name!r}: `required: false` is not supported")
        if column.dtype is None:
            raise fail(f"column {name!r}: no dtype")
        dtype = dtype_instance(column.dtype.type)
        derived = arrow_type_of(dtype)
        arrow = normalize_arrow_type(arrow_types.get(name, derived))
        if arrow != derived:
            arrow_dtype = _arrow_type(arrow)
            if arrow_dtype is None:
                raise fail(f"column {name!r}: {arrow!r} is not an Arrow type name")

            sent_as = pl.from_arrow(pa_arrow.array([], type=arrow_dtype))
            if not isinstance(sent_as, pl.Series) or sent_as.dtype != dtype:
                raise fail(
                    f"column {name!r}: Arrow type {arrow!r} does not hold polars {dtype}",
                    hint=f"use {derived!r} or change the dtype",
                )
        specs.append(ColumnSpec(str(name), dtype, arrow, bool(column.nullable)))

    unique = _unique_columns(schema.unique)
    missing = [c for c in unique if c not in schema.columns]
    if missing:
        raise fail(f"`unique:` names unknown column {missing[0]!r}")
    _dry_run(schema, specs, path)
    name = dataset_name or schema.name or (path.stem if path else None)
    if not name:
        raise fail("the schema has no `name:` (the dataset name)")
    return Contract(
        path=path,
        dataset_name=str(name),
        schema=schema,
        columns=tuple(specs),
        unique=unique,
        fingerprint=schema_fingerprint((c.name, c.arrow_type) for c in specs),
        reading=reading or Reading(),
    )


def _unique_columns(unique: Any) -> tuple[str, ...]:
    if not unique:
        return ()
    if isinstance(unique, str):
        return (unique,)
    return tuple(str(c) for c in unique)


def _dry_run(schema: pa.DataFrameSchema, specs: Sequence[ColumnSpec], path: Path | None) -> None:
    """Run every check on an empty frame: a check that cannot apply fails here, not per file.

    A check may fail an empty frame without an error (``unique_values_eq``): that says
    nothing about the contract."""
    empty = pl.DataFrame(schema={c.name: c.dtype for c in specs})
    try:
        schema.validate(empty, lazy=True)
    except pa.errors.SchemaErrors as exc:
        for case in exc.failure_cases.iter_rows(named=True):
            error = check_error_text(case["failure_case"])
            if error is not None:
                raise ContractError(
                    f"column {case['column']!r}: check {case['check']} cannot run: {error}",
                    path=path,
                ) from None
    except Exception as exc:  # a check pandera could not even build an expression for
        raise ContractError(f"a check cannot run: {_one_line(exc)}", path=path) from exc


# ---------------------------------------------------------------------------- writing


def contract_to_yaml(contract: Contract) -> str:
    """pandera's own YAML for the schema, then batchload's ``metadata`` block."""
    body = schema_to_document(contract.schema)
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True)
    metadata: dict[str, Any] = {k: v for k, v in (contract.schema.metadata or {}).items()}
    metadata[METADATA_KEY] = {
        ARROW_TYPES_KEY: contract.column_types(),
        **contract.reading.to_metadata(),
    }
    return (
        _HEADER + text + yaml.safe_dump({"metadata": metadata}, sort_keys=False, allow_unicode=True)
    )


def dump_contract(contract: Contract, path: Path | str) -> Path:
    """Write the contract to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    text = contract_to_yaml(contract)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------- comparing


def diff_locked(
    contract: Contract, locked_schema: Sequence[Mapping[str, Any]]
) -> list[SchemaDifference]:
    """Compare the contract with a dataset's locked schema (its wire form), column by column."""
    ours = tuple(Column(c.name, c.arrow_type) for c in contract.columns)
    return diff_schemas(schema_from_json(locked_schema), ours)
