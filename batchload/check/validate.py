"""Validate files against their contract with pandera, fast, and report failures in bounded size.

- **Grouped validation.** pandera costs ~30 ms per ``validate`` call whatever the
  frame's size, so small files are concatenated (same columns and dtypes) with a
  file-index and a row-number column and validated in one call; each failure is
  mapped back to its file and row. A large file is validated alone, and a large
  CSV block by block, in bounded memory, with the same verdict
  (:mod:`batchload.check.blockwise`). Validation is always ``lazy=True`` on a collected
  DataFrame (on a LazyFrame pandera skips the data checks).
- **Bounded reports.** A file with a million bad rows still yields one
  :class:`Problem` per (column, check), each with the full count and only the first
  few rows and values; at most ``MAX_PROBLEMS`` per file.
- **Fast when valid.** Before pandera runs, the contract's own pandera checks are
  evaluated in one parallel Polars pass (:mod:`batchload.check.proof`); a frame that passes
  them all is valid and pandera is not called. Only a failing frame pays for
  pandera's full report.
- **Across files** (:mod:`batchload.check.crossfile`, re-exported here): :class:`UniqueKeys`
  remembers the contract's ``unique`` key of every valid file of a run and fails a
  later file that repeats one; :func:`group_by_fingerprint` sorts files by column
  layout, odd first. Verdict types live in :mod:`batchload.check.verdict`.

Rows are 1-based **data row** numbers (row 1 is the first row under the header).
Everything here is synchronous and CPU-bound: the upload engine calls it from
worker threads.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl

from batchload.check.crossfile import (
    FingerprintGroup,
    SortedHashes,
    UniqueKeys,
    group_by_fingerprint,
)
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
    MAX_PROBLEMS,
    FileVerdict,
    Problem,
    Status,
    with_problem,
)
from batchload.contract.model import Contract, arrow_type_of, schema_fingerprint
from batchload.errors import UnreadableFile
from batchload.read.frames import file_format, read_frames
from batchload.read.problems import UnparseableValues, shorten

__all__ = [
    "MAX_EXAMPLES",
    "MAX_PROBLEMS",
    "FileVerdict",
    "FingerprintGroup",
    "Problem",
    "Status",
    "UniqueKeys",
    "group_by_fingerprint",
    "in_blocks",
    "shown_value",
    "unique_keys",
    "validate_files",
    "validate_frame",
    "validate_rows",
    "with_problem",
]

#: Frames with at most this many rows are validated in groups.
SMALL_FILE_ROWS = 100_000
#: Rows per grouped pandera call.
GROUP_MAX_ROWS = 1_000_000

#: A large CSV is read and validated in blocks of about this much of its text...
BLOCK_BYTES = 8 << 20
#: ... when it is larger than this many blocks (smaller ones are read whole).
BLOCKWISE_MIN_BLOCKS = 2


def _verdict(
    path: Path,
    frame: pl.DataFrame | None,
    problems: Sequence[Problem],
    *,
    keep_frame: bool = False,
    rows: int | None = None,
) -> FileVerdict:
    """The verdict on ``frame`` (``rows``: the file's, when ``frame`` only shows its columns)."""
    fingerprint, columns = (None, ()) if frame is None else _layout(tuple(frame.schema.items()))
    return FileVerdict(
        path=path,
        status="invalid" if problems else "valid",
        rows=rows if rows is not None or frame is None else frame.height,
        problems=tuple(problems[:MAX_PROBLEMS]),
        omitted=max(0, len(problems) - MAX_PROBLEMS),
        fingerprint=fingerprint,
        columns=columns,
        frame=frame if keep_frame and not problems else None,
    )


@lru_cache(maxsize=256)
def _layout(items: tuple[tuple[str, pl.DataType], ...]) -> tuple[str, tuple[str, ...]]:
    pairs = [(name, arrow_type_of(dtype)) for name, dtype in items]
    return schema_fingerprint(pairs), tuple(f"{n}: {t}" for n, t in pairs)


# ---------------------------------------------------------------------------- one file


def validate_frame(
    frame: pl.DataFrame,
    contract: Contract,
    *,
    path: Path | str = "<frame>",
    keep_frame: bool = False,
) -> FileVerdict:
    """Validate one in-memory frame (e.g. a DataFrame handed to ``upload_dataframe``)."""
    problems = _validate_chunk([(0, frame)], contract)[0]
    return _verdict(Path(path), frame, problems, keep_frame=keep_frame)


def validate_files(
    paths: Sequence[Path | str],
    contract: Contract,
    *,
    sheet: str | None = None,
    keys: UniqueKeys | None = None,
    keep_frames: bool = False,
    keep_key_hashes: bool = False,
    block_bytes: int | None = BLOCK_BYTES,
    on_block: Callable[[pl.DataFrame], None] | None = None,
    data: Sequence[bytes | None] = (),
) -> list[FileVerdict]:
    """Read and validate a group of files; one verdict per path, in order.

    Small files with the same columns are validated together: one Polars pass
    proves them valid, and pandera runs (once for the group) only when something
    fails. A CSV larger than ``BLOCKWISE_MIN_BLOCKS`` blocks of ``block_bytes`` is
    validated block by block (``None``: every file is read whole). An unreadable file
    gets its verdict and the others go on. With ``keys``, the valid
    files' unique keys are checked against (and added to) those of the whole run, and
    with ``keep_key_hashes`` each valid verdict carries its key hashes (as
    :meth:`UniqueKeys.to_bytes`; sorted for a file validated in blocks). With
    ``keep_frames``, each valid verdict carries the frame that was validated; with
    ``on_block`` too, a file validated block by block hands each block of its rows to
    ``on_block`` (until a problem shows) instead, and its verdict carries no frame (for
    one file, sent in parts). ``data``: the bytes of each path the caller has read
    already (small files, then not read again).
    """
    verdicts: dict[int, FileVerdict] = {}
    frames: list[tuple[int, pl.DataFrame]] = []
    hashed: dict[int, pl.Series | SortedHashes] = {}  # sorted, of the files validated in blocks
    key = keys.key if keys is not None else ()
    whole: list[tuple[int, Path]] = []  # the files read whole
    for index, raw in enumerate(paths):
        path = Path(raw)
        whole.append((index, path))
        if block_bytes is not None and in_blocks(path, contract, block_bytes):
            from batchload.check.blockwise import rows_hashed_to, validate_blockwise

            keep = keep_frames and on_block is None
            done = validate_blockwise(
                path, contract, block_bytes=block_bytes, keep_frame=keep, key=key, on_block=on_block
            )
            if done is not None:
                verdicts[index] = _verdict(
                    path, done.frame, done.problems, keep_frame=keep, rows=done.rows
                )
                if done.key_hashes is not None:
                    rows = partial(rows_hashed_to, path, contract, key, block_bytes=block_bytes)
                    hashed[index] = SortedHashes(done.key_hashes, rows)
                whole.pop()
    kept = [data[index] if index < len(data) else None for index, _ in whole]
    read = read_frames([path for _, path in whole], contract, sheet=sheet, data=kept)
    for (index, path), frame in zip(whole, read, strict=True):
        if isinstance(frame, UnparseableValues):
            problems = [
                Problem(f"parses_as({c.expected})", c.column, c.count, c.rows, c.values)
                for c in frame.cells
            ]
            verdicts[index] = _verdict(path, None, problems)
        elif isinstance(frame, UnreadableFile):
            verdicts[index] = FileVerdict(path=path, status="unreadable", error=str(frame))
        else:
            frames.append((index, frame))

    found: dict[int, list[Problem]] = {}
    for chunk in _chunks(frames):
        found.update(_validate_chunk(chunk, contract))
    for index, frame in frames:
        verdicts[index] = _verdict(Path(paths[index]), frame, found[index], keep_frame=keep_frames)
    if keys is not None and keys.key:
        # the run's keys, claimed in path order (the earlier file wins within a group)
        valid = [(index, frame) for index, frame in frames if verdicts[index].valid]
        hashed.update(zip([index for index, _ in valid], _key_hashes(keys, valid), strict=True))
        passed = sorted(i for i in hashed if verdicts[i].valid)
        clashes = keys.claim_hashes([(Path(paths[i]), hashed[i]) for i in passed])
        for index, clash in zip(passed, clashes, strict=True):
            if clash is not None:
                verdicts[index] = with_problem(verdicts[index], clash)
            elif keep_key_hashes:
                hashes = hashed[index]
                if isinstance(hashes, SortedHashes):
                    hashes = hashes.hashes
                stored = keys.stored(Path(paths[index])) or keys.to_bytes(hashes)
                verdicts[index] = replace(verdicts[index], key_hashes=stored)
    return [verdicts[i] for i in range(len(paths))]


def _key_hashes(keys: UniqueKeys, frames: Sequence[tuple[int, pl.DataFrame]]) -> list[pl.Series]:
    """:meth:`UniqueKeys.hashes` of each frame, taken in one pass over them all: for a
    small file, hashing (like any polars query) is mostly the cost of the call."""
    if not frames:
        return []
    try:
        columns = {
            name: pl.concat([frame.get_column(name) for _, frame in frames], rechunk=False)
            for name in keys.key
        }
    except (pl.exceptions.ColumnNotFoundError, pl.exceptions.SchemaError):
        return [keys.hashes(frame) for _, frame in frames]  # unlike layouts: one by one
    hashes = keys.hashes(pl.DataFrame(columns))
    starts = itertools.accumulate((frame.height for _, frame in frames), initial=0)
    return [
        hashes.slice(start, frame.height) for start, (_, frame) in zip(starts, frames, strict=False)
    ]


def in_blocks(path: Path, contract: Contract, block_bytes: int) -> bool:
    """Whether ``validate_files`` validates ``path`` block by block: a large CSV, under a
    contract whose every check is judged row by row (so no verdict depends on the cut)."""
    try:
        if file_format(path) != "csv" or not _schemas(contract).row_wise:
            return False
        return path.stat().st_size > BLOCKWISE_MIN_BLOCKS * block_bytes
    except (UnreadableFile, OSError):
        return False  # reading it whole says why


def _chunks(frames: Sequence[tuple[int, pl.DataFrame]]) -> Iterable[list[tuple[int, pl.DataFrame]]]:
    """Large frames alone; small ones bucketed by layout, up to GROUP_MAX_ROWS per bucket."""
    buckets: dict[tuple[tuple[str, pl.DataType], ...], list[tuple[int, pl.DataFrame]]] = {}
    sizes: dict[tuple[tuple[str, pl.DataType], ...], int] = {}
    for item in frames:
        frame = item[1]
        if frame.height > SMALL_FILE_ROWS:
            yield [item]
            continue
        layout = tuple(frame.schema.items())
        if sizes.get(layout, 0) + frame.height > GROUP_MAX_ROWS:
            yield buckets.pop(layout)
            sizes[layout] = 0
        buckets.setdefault(layout, []).append(item)
        sizes[layout] = sizes.get(layout, 0) + frame.height
    yield from buckets.values()


# ---------------------------------------------------------------------------- pandera


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


def _schemas(contract: Contract) -> _Schemas:
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
    schemas = _schemas(contract)
    keys: list[tuple[tuple[str, ...], str | None]] = [(schemas.key, None)] if schemas.key else []
    return keys + [((name,), name) for name in schemas.unique_columns]


def validate_rows(frame: pl.DataFrame, contract: Contract) -> list[Problem]:
    """The problems of one block of a file, all but the ``unique`` checks (which span
    the file's blocks); rows are 1-based in the block."""
    return _validate_chunk([(0, frame)], contract, unique=False)[0]


def _validate_chunk(
    chunk: Sequence[tuple[int, pl.DataFrame]], contract: Contract, *, unique: bool = True
) -> dict[int, list[Problem]]:
    """One pandera call for the chunk (none when it is proven valid); problems per file index.

    ``unique=False`` leaves the ``unique`` checks out (a block of a file)."""
    schemas = _schemas(contract)
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
    if schemas.provable and proven_valid(data, contract, grouped, unique=unique):
        return problems

    cases: list[pl.DataFrame] = []
    try:
        schema.validate(data, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases.append(_normalise_cases(exc.failure_cases))
    if unique and schemas.key and all(c in data.columns for c in schemas.key):
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
    text = "null" if value is None else str(value)
    if text.startswith(("ComputeError(", "InvalidOperationError(")):
        text = re.sub(r"\s+", " ", text)
    return shorten(text)
