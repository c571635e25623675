"""pandera, where batchload relies on more than its documented API: the only module that does.

- **Reading a contract without pandas.** pandera's own loader
  (``pandera.io.polars_io.deserialize_schema``) imports pandas for every column with a
  check (0.35), and pandas is not a dependency of batchload. :func:`schema_from_document`
  builds the same schema from pandera's public objects (``Check.<name>(**stats)``,
  ``Column``, ``DataFrameSchema``) and takes from ``pandera.io`` only its pandas-free
  helpers for the file format: flat check keys, the legacy ``checks:`` mapping, dtype
  names. :func:`schema_to_document` is pandera's writer, with the plain timedeltas this
  loader makes written as pandera writes its ``pd.Timedelta`` (nanoseconds).
  ``tests/test_compat_pandera.py`` pins that every contract loads and writes as with
  pandera's own loader.
- **A check as a Polars expression** (for :mod:`batchload.check.proof`): which built-in
  a ``Check`` runs (``Check._check_fn``), pandera's polars check backend, the
  ``PolarsData`` it is called with and the column its query answers in. A test pins
  that each built-in row check still yields one expression.
- **A check that raised**: pandera reports it as the repr of the Polars exception in
  ``failure_case`` (``ComputeError("...")``); :func:`check_error_text` reads it back.

``pyproject.toml`` keeps pandera below its next minor release, so that an upgrade comes
through these tests first.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pandera.polars as pa
import polars as pl
from pandera import dtypes
from pandera.api.checks import Check
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.constants import CHECK_OUTPUT_KEY
from pandera.engines import polars_engine
from pandera.io._check_io import checks_dict_to_list
from pandera.io._constants import DATETIME_FORMAT
from pandera.io._flat_checks import COMPONENT_RESERVED_KEYS, unflatten_component_checks_dict
from pandera.io.polars_io import _deserialize_dtype, serialize_schema

from batchload.errors import ContractError

__all__ = [
    "CHECK_OUTPUT_KEY",
    "COMPONENT_RESERVED_KEYS",
    "PolarsCheckBackend",
    "builtin_name",
    "check_error_text",
    "check_expression",
    "check_query",
    "polars_backend",
    "schema_from_document",
    "schema_to_document",
]

#: Column options pandera's loader passes on to ``Column`` when a contract has them.
_COLUMN_KEYS = (
    "nullable",
    "unique",
    "coerce",
    "required",
    "regex",
    "default",
    "report_duplicates",
    "drop_invalid_rows",
)
_NS_PER_US = 1_000

# ---------------------------------------------------------------------------- loading


def schema_from_document(document: Mapping[str, Any], *, path: Path | None) -> pa.DataFrameSchema:
    """The pandera schema a contract mapping describes, as pandera's ``from_yaml`` builds it.

    Every problem is a ContractError naming the file and, when it has one, the column.
    """
    columns = {}
    for name, stats in (document.get("columns") or {}).items():
        try:
            columns[name] = _column(str(name), stats)
        except Exception as exc:  # pandera raises TypeError, ValueError, re.error, ...
            raise ContractError(f"column {name!r}: {_explained(exc)}", path=path) from exc
    try:
        checks = [_check(entry, None) for entry in _entries(document.get("checks"))]
        return pa.DataFrameSchema(
            columns,
            checks=checks or None,
            dtype=document.get("dtype"),
            coerce=document.get("coerce", False),
            strict=document.get("strict", False),
            name=document.get("name"),
            ordered=document.get("ordered", False),
            unique=document.get("unique"),
            report_duplicates=document.get("report_duplicates", "all"),
            unique_column_names=document.get("unique_column_names", False),
            add_missing_columns=document.get("add_missing_columns", False),
            title=document.get("title"),
            description=document.get("description"),
        )
    except Exception as exc:
        raise ContractError(
            f"not a valid pandera polars schema: {_explained(exc)}", path=path
        ) from exc


class _Unknown(ValueError):
    """A dtype or check name pandera has no meaning for."""


def _column(name: str, stats: Mapping[str, Any]) -> pa.Column:
    options = dict(stats)
    unflatten_component_checks_dict(options)
    dtype = None
    if options.get("dtype"):
        try:
            dtype = _deserialize_dtype(options["dtype"])  # type: ignore[no-untyped-call]
        except TypeError:
            raise _Unknown(f"unknown dtype {options['dtype']!r}") from None
    checks = [_check(entry, dtype) for entry in _entries(options.get("checks"))]
    return pa.Column(
        dtype,
        checks=checks,
        title=options.get("title"),
        description=options.get("description"),
        name=name,
        **{key: options[key] for key in _COLUMN_KEYS if key in options},
    )


def _entries(checks: Any) -> list[Mapping[str, Any]]:
    """A ``checks:`` value as a list of entries (pandera also reads the older mapping)."""
    return list(checks_dict_to_list(checks) or [])  # type: ignore[no-untyped-call]


def _check(entry: Mapping[str, Any], dtype: Any) -> Check:
    """``Check.<check_name>(**stats)``, then the check's options set as attributes."""
    stats = dict(entry)
    options = dict(stats.pop("options", None) or {})
    check_name = options.pop("check_name", None)
    make = getattr(Check, str(check_name), None)
    if str(check_name).startswith("_") or not callable(make):
        raise _Unknown(f"unknown check {check_name!r}")
    if set(stats) == {"value"}:
        check = make(_stat(stats["value"], dtype))
    else:
        check = make(**{key: _stat(value, dtype) for key, value in stats.items()})
    for option, value in options.items():
        setattr(check, option, value)
    return cast(Check, check)


def _stat(value: Any, dtype: Any) -> Any:
    """A check's statistic as pandera's loader gives it to the check, without pandas:
    a datetime for a Datetime column (written ``%Y-%m-%d %H:%M:%S``; pandera made a
    ``pd.Timestamp``), a timedelta for a Duration column (written as nanoseconds; pandera
    made a ``pd.Timedelta``). A list is converted item by item. Anything else, or
    a value that does not convert exactly, is left as it is."""
    if dtype is None:
        return value
    if isinstance(value, list):
        return [_stat(item, dtype) for item in value]
    if polars_engine.Engine.dtype(dtypes.DateTime).check(dtype):
        if isinstance(value, str):
            try:
                return dt.datetime.strptime(value, DATETIME_FORMAT)
            except ValueError:
                return value
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day)
    elif polars_engine.Engine.dtype(dtypes.Timedelta).check(dtype):
        exact = isinstance(value, int) and not isinstance(value, bool)
        if exact and value % _NS_PER_US == 0:
            return dt.timedelta(microseconds=value // _NS_PER_US)
    return value


def _explained(exc: Exception) -> str:
    if isinstance(exc, _Unknown):
        return str(exc)
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def schema_to_document(schema: pa.DataFrameSchema) -> dict[str, Any]:
    """pandera's serialization of a schema (YAML-ready), durations as nanoseconds."""
    return cast(dict[str, Any], _durations_as_ns(serialize_schema(schema)))


def _durations_as_ns(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return value // dt.timedelta(microseconds=1) * _NS_PER_US
    if isinstance(value, dict):
        return {key: _durations_as_ns(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_durations_as_ns(item) for item in value]
    return value


# ---------------------------------------------------------------------------- checks


def builtin_name(check: Check) -> str | None:
    """The name of the pandera built-in a check runs (``in_range``), None for a custom one."""
    name = getattr(getattr(check, "_check_fn", None), "__name__", None)
    return name if name is not None and check.is_builtin_check(name) else None


def polars_backend(check: Check, frame: pl.LazyFrame) -> PolarsCheckBackend | None:
    """The backend pandera runs ``check`` with on ``frame``; None when it is not the
    polars one (narwhals: its semantics are pandera's to run).

    As ``Check.__call__`` does first: a built-in's function is refreshed for the data
    types registered since the check was made.
    """
    name = builtin_name(check)
    if name is not None:
        check._check_fn = check.get_builtin_check_fn(name)
    backend = check.get_backend(frame)(check)
    return backend if isinstance(backend, PolarsCheckBackend) else None


class _Selected:
    """Stands in for a LazyFrame to catch the one expression a built-in check selects."""

    def __init__(self) -> None:
        self.expression: pl.Expr | None = None

    def select(self, *exprs: Any, **named: Any) -> _Selected:
        if named or len(exprs) != 1 or not isinstance(exprs[0], pl.Expr):
            raise TypeError("not one expression")
        self.expression = exprs[0]
        return self


def check_expression(backend: PolarsCheckBackend, column: str) -> pl.Expr | None:
    """The boolean expression a column's check computes, when the check is a plain
    ``select`` of one (pandera's built-in checks are); None for any other."""
    if column == "*" or backend.check.element_wise:
        return None
    selected = _Selected()
    try:
        out = backend.check_fn(PolarsData(cast(Any, selected), column))
    except Exception:  # not a plain select: it collected, or looked at the schema
        return None
    return selected.expression if out is selected else None


def check_query(backend: PolarsCheckBackend, frame: pl.LazyFrame, column: str) -> Any:
    """The check run as pandera runs it: a bool, or a LazyFrame whose boolean column
    :data:`CHECK_OUTPUT_KEY` holds each row's outcome."""
    return backend.apply(PolarsData(frame, column))


# ---------------------------------------------------------------------------- reports

_RAISED = re.compile(r'(\w+)\("(.*)', flags=re.S)


def check_error_text(failure_case: Any) -> str | None:
    """The first line of the error a check raised, when ``failure_case`` is pandera's
    report of one (``ComputeError("cannot compare ...")``); None for a failing value."""
    match = _RAISED.match(str(failure_case)) if isinstance(failure_case, str) else None
    if match is None or not match.group(1).endswith("Error"):
        return None
    message = match.group(2).strip()
    message = message.removesuffix('")') if "\n" not in message else message
    lines = message.strip().splitlines()
    return lines[0] if lines else match.group(1)
