"""Validate rows with pandera: one call for many frames, each failure traced to file and row.

Frames alike are concatenated with their file and row numbers, validated in one
pandera call (lazy, so every failure is collected), and the failure cases are
summarised per file, column and check. Whole-file and block-by-block validation both
stand on this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.config import ValidationDepth, config_context

from batchload.check.proof import (
    FILE_COLUMN,
    ROW_COLUMN,
    provable,
    proven_valid,
    row_wise,
    unique_columns,
)
from batchload.check.verdict import (
    MAX_EXAMPLES,
    Problem,
)
from batchload.contract.model import Contract
from batchload.contract.pandera_compat import check_error_text
from batchload.read.problems import shorten


@dataclass(frozen=True, slots=True)
class _Schemas:
    """The contract's schema as batchload runs it: alone, and over a concatenation.

    Both leave out the ``unique`` checks, which :func:`_uniqueness` runs instead with
    pandera's semantics: pandera's ``DataFrame.is_duplicated`` is most of its cost on
    a large frame, while proving keys distinct by counting 64-bit row hashes is ~3x
    cheaper, and the exact (slower) comparison then runs only when that proof fails.
    Over a concatenation, uniqueness must also hold per file, not across the group.
    """

    source: pa.DataFrameSchema  # kept so its id() is not reused while cached
    alone: pa.DataFrameSchema
    grouped: pa.DataFrameSchema
    key: tuple[str, ...]  # the frame-level unique key
    unique_columns: tuple[str, ...]  # columns with ``unique: true``
    provable: bool  # only features proven_valid knows are used
    row_wise: bool  # provable, and every check judges each row alone (no unique_values_eq)


_SCHEMA_CACHE: dict[int, _Schemas] = {}


def schemas_of(contract: Contract) -> _Schemas:
    cached = _SCHEMA_CACHE.get(id(contract.schema))
    if cached is not None and cached.source is contract.schema:
        return cached
    schema = contract.schema
    uniques = unique_columns(schema)
    alone = schema.update_columns({n: {"unique": False} for n in uniques})
    alone.unique = None
    grouped = alone.add_columns(
        {FILE_COLUMN: pa.Column(pl.UInt32), ROW_COLUMN: pa.Column(pl.UInt32)}
    )
    is_provable = provable(schema)
    built = _Schemas(
        schema,
        alone,
        grouped,
        contract.unique,
        uniques,
        is_provable,
        is_provable and row_wise(schema),
    )
    if len(_SCHEMA_CACHE) > 64:
        _SCHEMA_CACHE.clear()
    _SCHEMA_CACHE[id(schema)] = built
    return built


def unique_keys(contract: Contract) -> list[tuple[tuple[str, ...], str | None]]:
    """The contract's ``unique`` checks: its key (column ``None``), then each unique column."""
    schemas = schemas_of(contract)
    keys: list[tuple[tuple[str, ...], str | None]] = [(schemas.key, None)] if schemas.key else []
    return keys + [((name,), name) for name in schemas.unique_columns]


def validate_rows(frame: pl.DataFrame, contract: Contract) -> list[Problem]:
    """The problems of one block of a file, all but the ``unique`` checks (which span
    the file's blocks); rows are 1-based in the block."""
    return validate_chunk([(0, frame)], contract, unique=False)[0]


def validate_chunk(
    chunk: Sequence[tuple[int, pl.DataFrame]],
    contract: Contract,
    *,
    unique: bool = True,
    key_distinct: bool = False,
) -> dict[int, list[Problem]]:
    """One pandera call for the chunk (none when it is proven valid); problems per file index.

    ``unique=False`` leaves the ``unique`` checks out (a block of a file);
    ``key_distinct``, the key's alone (the caller found its hashes distinct)."""
    schemas = schemas_of(contract)
    grouped = len(chunk) > 1
    if grouped:
        data = _concat_with_positions([frame for _, frame in chunk])
        schema = schemas.grouped
    else:
        data = chunk[0][1]
        schema = schemas.alone
    per_file = (FILE_COLUMN,) if grouped else ()
    problems: dict[int, list[Problem]] = {index: [] for index, _ in chunk}
    for index, frame in chunk:
        if frame.height == 0:
            problems[index].append(Problem("no_rows", None, 0))
    check_key = unique and not key_distinct
    if schemas.provable and proven_valid(data, contract, grouped, unique=unique, key=check_key):
        return problems

    cases: list[pl.DataFrame] = []
    try:
        # pandera reads PANDERA_VALIDATION_ENABLED/_DEPTH from the environment; the
        # checks batchload promises are not switched off from outside (--no-validate is).
        with config_context(
            validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA
        ):
            schema.validate(data, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases.append(_normalise_cases(exc.failure_cases))
    if check_key and schemas.key and all(c in data.columns for c in schemas.key):
        cases.append(_uniqueness(data, (*schemas.key, *per_file), None, contract.dataset_name))
    for name in schemas.unique_columns if unique else ():
        if name in data.columns:
            cases.append(_uniqueness(data, (name, *per_file), name, None))
    cases = [c for c in cases if c.height]
    if cases:
        failures = _locate(pl.concat(cases), data, grouped, len(chunk))
        failures = _with_key_values(failures, data, contract)
        for position, found in _summarise(failures, data.columns).items():
            problems[chunk[position][0]].extend(found)
    return problems


def _uniqueness(
    data: pl.DataFrame, key: Sequence[str], column: str | None, name: str | None
) -> pl.DataFrame:
    """pandera's ``unique`` check (frame-level key, or one column) as failure cases.

    Every row of a repeated key fails, as with pandera's polars backend (which
    ignores ``report_duplicates``).
    """
    keys = data.select(key)
    if keys.hash_rows().n_unique() == keys.height:  # distinct hashes prove distinct keys
        return pl.DataFrame(schema=_CASES_SCHEMA)
    repeated = keys.is_duplicated()
    value = pl.col(column).cast(pl.String) if column else pl.lit(None, pl.String)
    return (
        keys.with_row_index("index")
        .filter(repeated)
        .select(
            value.alias("failure_case"),
            pl.lit("Column" if column else "DataFrameSchema").alias("schema_context"),
            pl.lit(column if column else name, pl.String).alias("column"),
            pl.lit("field_uniqueness" if column else "multiple_fields_uniqueness").alias("check"),
            pl.col("index").cast(pl.Int64),
        )
    )


def _concat_with_positions(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate frames, adding each row's file position and 1-based row in its file."""
    heights = pl.Series([f.height for f in frames], dtype=pl.UInt32)
    starts = heights.cum_sum() - heights
    data = pl.concat(frames, how="vertical", rechunk=False)
    positions = pl.select(
        pl.int_range(0, len(frames), dtype=pl.UInt32).repeat_by(heights).explode().alias("p")
    ).to_series()
    if positions.len() != data.height:  # repeat_by of 0 gives a null row: drop it
        positions = positions.drop_nulls()
    rows = pl.int_range(1, data.height + 1, dtype=pl.UInt32, eager=True) - starts.gather(positions)
    return data.with_columns(positions.alias(FILE_COLUMN), rows.alias(ROW_COLUMN))


_CASES_SCHEMA = {
    "failure_case": pl.String,
    "schema_context": pl.String,
    "column": pl.String,
    "check": pl.String,
    "index": pl.Int64,
}


def _normalise_cases(cases: pl.DataFrame) -> pl.DataFrame:
    return cases.select(pl.col(name).cast(dtype) for name, dtype in _CASES_SCHEMA.items())


def _locate(cases: pl.DataFrame, data: pl.DataFrame, grouped: bool, files: int) -> pl.DataFrame:
    """Give every failure its file position and 1-based row; file-wide ones go to every file."""
    with_rows = cases.filter(pl.col("index").is_not_null())
    file_wide = cases.filter(pl.col("index").is_null())
    if grouped:
        lookup = data.select(
            pl.col(FILE_COLUMN).cast(pl.Int64), pl.col(ROW_COLUMN).cast(pl.Int64)
        ).with_row_index("index")
        with_rows = with_rows.join(
            lookup.with_columns(pl.col("index").cast(pl.Int64)), on="index", how="left"
        )
    else:
        with_rows = with_rows.with_columns(
            pl.lit(0, pl.Int64).alias(FILE_COLUMN), (pl.col("index") + 1).alias(ROW_COLUMN)
        )
    positions = pl.DataFrame({FILE_COLUMN: list(range(files))}, schema={FILE_COLUMN: pl.Int64})
    file_wide = file_wide.join(positions, how="cross").with_columns(
        pl.lit(None, pl.Int64).alias(ROW_COLUMN)
    )
    return pl.concat([file_wide.select(with_rows.columns), with_rows])


def _with_key_values(
    failures: pl.DataFrame, data: pl.DataFrame, contract: Contract
) -> pl.DataFrame:
    """Show a repeated unique key as its key columns, not the whole row pandera prints."""
    is_key = pl.col("check") == "multiple_fields_uniqueness"
    if not contract.unique or failures.filter(is_key).height == 0:
        return failures.with_columns(
            pl.when(is_key)
            .then(pl.lit(", ".join(contract.unique)))
            .otherwise(pl.col("column"))
            .alias("column")
        )
    indices = failures.filter(is_key).get_column("index").unique()
    keys = (
        data.select(pl.struct(list(contract.unique)).struct.json_encode().alias("key"))
        .with_row_index("index")
        .with_columns(pl.col("index").cast(pl.Int64))
        .join(indices.to_frame(), on="index", how="semi")
    )
    return (
        failures.join(keys, on="index", how="left")
        .with_columns(
            pl.when(is_key)
            .then(pl.col("key"))
            .otherwise(pl.col("failure_case"))
            .alias("failure_case"),
            pl.when(is_key)
            .then(pl.lit(", ".join(contract.unique)))
            .otherwise(pl.col("column"))
            .alias("column"),
        )
        .drop("key")
    )


def _summarise(failures: pl.DataFrame, columns: Sequence[str]) -> dict[int, list[Problem]]:
    """Collapse failure cases to one Problem per (file, column, check), bounded in size."""
    frame_wide = pl.col("schema_context") == "DataFrameSchema"
    shape_check = pl.col("check").is_in(
        ["column_in_dataframe", "column_in_schema", "column_ordered"]
    )
    failures = failures.with_columns(
        # pandera puts the column a shape check is about in failure_case
        pl.when(frame_wide & shape_check)
        .then(pl.col("failure_case"))
        .when(frame_wide & (pl.col("check") != "multiple_fields_uniqueness"))
        .then(pl.lit(None, pl.String))
        .otherwise(pl.col("column"))
        .alias("column"),
    )
    # once a column has the wrong dtype its value checks only repeat that (as errors)
    bad_dtype = failures.filter(pl.col("check").str.starts_with("dtype(")).select(
        FILE_COLUMN, "column"
    )
    if bad_dtype.height:
        failures = failures.join(
            bad_dtype.with_columns(pl.lit(True).alias("_bad")),
            on=[FILE_COLUMN, "column"],
            how="left",
        )
        failures = failures.filter(
            pl.col("_bad").is_null() | pl.col("check").str.starts_with("dtype(")
        ).drop("_bad")
    summary = (
        failures.sort(FILE_COLUMN, ROW_COLUMN, nulls_last=False, maintain_order=True)
        .group_by(FILE_COLUMN, "column", "check", maintain_order=True)
        .agg(
            pl.col(ROW_COLUMN).is_not_null().sum().alias("count"),
            pl.col(ROW_COLUMN).drop_nulls().head(MAX_EXAMPLES).alias("rows"),
            pl.col("failure_case").head(MAX_EXAMPLES).alias("values"),
        )
    )
    order = {name: i for i, name in enumerate(columns)}
    out: dict[int, list[Problem]] = {}
    for row in summary.iter_rows(named=True):
        check = row["check"]
        shape = check in ("column_in_dataframe", "column_in_schema", "column_ordered")
        examples = row["values"][: len(row["rows"]) or 1]
        values = () if shape else tuple(shown_value(v) for v in examples)
        out.setdefault(row[FILE_COLUMN], []).append(
            Problem(check, row["column"], row["count"], tuple(row["rows"]), values)
        )
    for problems in out.values():
        problems.sort(key=lambda p: (p.count > 0, order.get(p.column or "", -1)))
    return out


def shown_value(value: Any) -> str:
    """A failure case as a verdict shows it: one line, shortened."""
    if value is None:
        return "null"
    return shorten(check_error_text(value) or str(value))
