"""The one-pass proof: a frame shown valid by Polars alone, pandera not called.

pandera costs a query per check and ~30 ms per call whatever the frame's size; a
frame that passes is the common case. :func:`proven_valid` evaluates every check of
the contract, the nulls and the unique keys in one parallel Polars ``select`` and says
whether the frame is valid; on any doubt it says it cannot, and pandera then
validates the frame in full (its report is the verdict). The checks are pandera's
own: built by its check backend from the contract's Check objects (through
:mod:`batchload.contract.pandera_compat`, the one module that reaches into pandera)
and judged as pandera judges them. A test pins that both always agree, and another that
built-in checks still join the one select after a pandera upgrade.

It pays where pandera's fixed cost does: a small frame validated alone (a block of a
large file, a file of its own, a DataFrame) is proven in ~3 ms against ~18 ms for a
pandera call (``benchmarks.validation``: one call per file). A large frame costs the same
either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandera.polars as pa
import polars as pl

from batchload.contract.pandera_compat import (
    CHECK_OUTPUT_KEY,
    builtin_name,
    check_expression,
    check_query,
    polars_backend,
)

if TYPE_CHECKING:
    from batchload.contract.model import Contract

FILE_COLUMN = "__batchload_file"
ROW_COLUMN = "__batchload_row"
"""Added to a concatenation of files: each row's file (its position) and row number."""


def unique_columns(schema: pa.DataFrameSchema) -> tuple[str, ...]:
    """The columns with ``unique: true``."""
    return tuple(n for n, c in schema.columns.items() if c.unique)


def provable(schema: pa.DataFrameSchema) -> bool:
    """Whether :func:`proven_valid` covers everything this schema can do to a frame."""
    if schema.dtype is not None or schema.unique_column_names or schema.drop_invalid_rows:
        return False
    checks = [*schema.checks, *(c for col in schema.columns.values() for c in col.checks)]
    return all(
        col.default is None and not getattr(col, "parsers", None) for col in schema.columns.values()
    ) and not any(c.groupby for c in checks)


#: pandera's built-in checks that judge each row alone: a file passes them iff each of
#: its blocks does, and a failing row fails alike in a block and in the whole file.
ROW_WISE_CHECKS = frozenset(
    {
        "equal_to",
        "not_equal_to",
        "greater_than",
        "greater_than_or_equal_to",
        "less_than",
        "less_than_or_equal_to",
        "in_range",
        "isin",
        "notin",
        "str_matches",
        "str_contains",
        "str_startswith",
        "str_endswith",
        "str_length",
    }
)


def row_wise(schema: pa.DataFrameSchema) -> bool:
    """Whether every check judges each row alone (so a file can be checked in blocks)."""
    checks = [*schema.checks, *(c for col in schema.columns.values() for c in col.checks)]
    return all(builtin_name(check) in ROW_WISE_CHECKS for check in checks)


def proven_valid(
    data: pl.DataFrame, contract: Contract, grouped: bool, *, unique: bool = True, key: bool = True
) -> bool:
    """Prove a frame valid in one parallel Polars pass, or say it cannot (then run pandera).

    Each check is built by pandera's own check backend, from the contract's own
    Check objects, and judged as pandera judges it (``ignore_na``); dtypes must equal
    the contract's exactly; nullability counts NaN as null in float columns, as
    pandera does. Any doubt, including an error, returns False: pandera then
    validates the frame in full and its report is the verdict. ``unique=False`` leaves
    out the ``unique`` checks, ``key=False`` the frame's key alone.
    """
    expected = contract.polars_schema()
    per_file = [FILE_COLUMN] if grouped else []  # over a concatenation, unique per file
    if grouped:
        expected = {**expected, FILE_COLUMN: pl.UInt32(), ROW_COLUMN: pl.UInt32()}
    if data.schema != pl.Schema(expected):  # names, order and dtypes, exactly
        return False
    frame = data.lazy()
    queries: list[pl.LazyFrame] = []
    totals: list[pl.Expr] = []
    checks = [("*", c) for c in contract.schema.checks]
    checks += [(n, c) for n, col in contract.schema.columns.items() for c in col.checks]
    try:
        for name, check in checks:
            if check.raise_warning:
                continue  # pandera only warns: it cannot fail the frame
            backend = polars_backend(check, frame)
            if backend is None:
                return False  # another backend (narwhals): its semantics are pandera's to run
            expression = check_expression(backend, name)
            if expression is not None:  # evaluated with the others in one select
                totals.append(_judged(expression, check).alias(f"check:{len(totals)}"))
                continue
            out = check_query(backend, frame, name)
            if isinstance(out, bool):
                if not out:
                    return False
                continue
            passed = _judged(pl.col(CHECK_OUTPUT_KEY), check)
            queries.append(out.select(passed.alias(f"query:{len(queries)}")))
        for spec in contract.columns:
            if not spec.nullable:
                present = pl.col(spec.name).is_not_null()
                if spec.dtype.is_float():
                    present = present & pl.col(spec.name).is_not_nan()
                totals.append(present.all().alias(f"null:{spec.name}"))
        keys = [[*contract.unique, *per_file]] if contract.unique and unique and key else []
        keys += [[n, *per_file] for n in unique_columns(contract.schema) if unique]
        for i, columns in enumerate(keys):
            distinct = pl.struct(columns).hash().n_unique() == pl.len()
            totals.append(distinct.alias(f"unique:{i}"))
        if totals:
            queries.append(frame.select(totals))
        if not queries:
            return True
        # one plan: polars runs the branches in parallel
        return all(pl.concat(queries, how="horizontal").collect().row(0))
    except Exception:  # a check pandera would report as an error: let pandera say so
        return False


def _judged(outcome: pl.Expr, check: Any) -> pl.Expr:
    """Whether a check passed, as pandera judges it: with ``ignore_na`` a null outcome
    passes, without it a null fails."""
    return outcome.all(ignore_nulls=True) if check.ignore_na else outcome.fill_null(False).all()
