"""The one-pass proof: a frame shown valid by Polars alone, pandera not called.

pandera costs a query per check and ~30 ms per call whatever the frame's size; a
frame that passes is the common case. :func:`proven_valid` evaluates every check of
the contract, the nulls and the unique keys in one parallel Polars ``select`` and says
whether the frame is valid; on any doubt it says it cannot, and pandera then
validates the frame in full (its report is the verdict). The checks are pandera's
own: built by its check backend from the contract's Check objects and judged as
pandera judges them. A test pins that both always agree, and another that built-in
checks still join the one select after a pandera upgrade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pandera.polars as pa
import polars as pl

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
    ) and all(getattr(c, "_check_fn", None) is not None and not c.groupby for c in checks)


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
    for check in checks:
        name = getattr(check._check_fn, "__name__", None)
        if name not in ROW_WISE_CHECKS or not check.is_builtin_check(name):
            return False
    return True


def proven_valid(
    data: pl.DataFrame, contract: Contract, grouped: bool, *, unique: bool = True
) -> bool:
    """Prove a frame valid in one parallel Polars pass, or say it cannot (then run pandera).

    Each check is built by pandera's own check backend, from the contract's own
    Check objects, and judged as pandera judges it (``ignore_na``); dtypes must equal
    the contract's exactly; nullability counts NaN as null in float columns, as
    pandera does. Any doubt, including an error, returns False: pandera then
    validates the frame in full and its report is the verdict.
    """
    from pandera.api.polars.types import PolarsData
    from pandera.backends.polars.checks import PolarsCheckBackend
    from pandera.constants import CHECK_OUTPUT_KEY

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
            # what Check.__call__ does before it runs: refresh a built-in's function for
            # the registered data types, then take the backend registered for LazyFrames
            builtin = getattr(check._check_fn, "__name__", None)
            if builtin is not None and check.is_builtin_check(builtin):
                check._check_fn = check.get_builtin_check_fn(builtin)
            backend = check.get_backend(frame)(check)
            if not isinstance(backend, PolarsCheckBackend):
                return False  # another backend (narwhals): its semantics are pandera's to run
            expression = _check_expression(backend, name)
            if expression is not None:  # evaluated with the others in one select
                totals.append(_judged(expression, check).alias(f"check:{len(totals)}"))
                continue
            out = backend.apply(PolarsData(frame, name))
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
        keys = [[*contract.unique, *per_file]] if contract.unique and unique else []
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


class _Selected:
    """Stands in for a LazyFrame to catch the one expression a built-in check selects."""

    def __init__(self) -> None:
        self.expression: pl.Expr | None = None

    def select(self, *exprs: Any, **named: Any) -> _Selected:
        if named or len(exprs) != 1 or not isinstance(exprs[0], pl.Expr):
            raise TypeError("not one expression")
        self.expression = exprs[0]
        return self


def _check_expression(backend: Any, name: str) -> pl.Expr | None:
    """The expression a column's check computes, when the check is a plain ``select``
    of one (pandera's built-in checks are); None for any other, which then runs as
    pandera's own query. One ``select`` of every such expression is one pass over
    the frame, as hand-written Polars would make it."""
    from pandera.api.polars.types import PolarsData

    if name == "*" or backend.check.element_wise:
        return None
    selected = _Selected()
    try:
        out = backend.check_fn(PolarsData(cast(Any, selected), name))
    except Exception:  # not a plain select: it collected, or looked at the schema
        return None
    return selected.expression if out is selected else None
