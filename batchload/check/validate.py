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
  layout, odd first. A group's key hashes are taken and sorted once, before it is
  validated: all distinct, they prove each file's key unique (no check of it then:
  -14 % of the CPU of validating 1 MB files) and are what the run's keys are claimed
  with. Verdict types live in :mod:`batchload.check.verdict`.

Rows are numbered as the user counts them: 1-based **data rows** (row 1 is the first
row under the header), but a workbook's **sheet rows** (a header on row 3 makes the
first data row 4; see :class:`~batchload.read.frames.Loaded`).
Everything here is synchronous and CPU-bound: the upload engine calls it from
worker threads.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import lru_cache, partial
from pathlib import Path

import polars as pl

from batchload.cancel import stop_if_cancelled
from batchload.check.blockwise import rows_hashed_to, validate_blockwise
from batchload.check.crossfile import SortedHashes, UniqueKeys
from batchload.check.rows import schemas_of, validate_chunk
from batchload.check.verdict import (
    MAX_EXAMPLES,
    MAX_PROBLEMS,
    FileVerdict,
    FingerprintGroup,
    Problem,
    Status,
    group_by_fingerprint,
    with_problem,
)
from batchload.contract.model import Contract, arrow_type_of, schema_fingerprint
from batchload.contract.reading import FIRST_SHEET, SheetChoice
from batchload.errors import UnreadableFile
from batchload.read.frames import file_format, read_frames
from batchload.read.problems import UnparseableValues

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
    "validate_files",
    "validate_frame",
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
    problems = validate_chunk([(0, frame)], contract)[0]
    return _verdict(Path(path), frame, problems, keep_frame=keep_frame)


def validate_files(
    paths: Sequence[Path | str],
    contract: Contract,
    *,
    sheet: SheetChoice = FIRST_SHEET,
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
    shifted: dict[int, int] = {}  # file -> what its rows' numbers start above 1
    for (index, path), loaded in zip(whole, read, strict=True):
        if isinstance(loaded, UnparseableValues):
            problems = [
                Problem(f"parses_as({c.expected})", c.column, c.count, c.rows, c.values)
                for c in loaded.cells
            ]
            verdicts[index] = _verdict(path, None, problems)
        elif isinstance(loaded, UnreadableFile):
            verdicts[index] = FileVerdict(path=path, status="unreadable", error=str(loaded))
        else:
            frames.append((index, loaded.frame))
            if loaded.first_row != 1:
                shifted[index] = loaded.first_row - 1

    # the key hashes, once: sorted, they prove each file's key unique (no check of it
    # then) and are the pairs the run's keys are claimed with
    pairs: pl.DataFrame | None = None
    if keys is not None and keys.key and frames:
        frame_hashes = _key_hashes(keys, frames)
        hashed.update(zip([index for index, _ in frames], frame_hashes, strict=True))
        if len(hashed) == len(frames):  # no file validated in blocks
            pairs = keys.sorted_pairs(frame_hashes)
            if keys.repeats(pairs):
                pairs = None
    found: dict[int, list[Problem]] = {}
    for chunk in _chunks(frames):
        stop_if_cancelled()
        found.update(validate_chunk(chunk, contract, key_distinct=pairs is not None))
    for index, frame in frames:
        verdicts[index] = _verdict(Path(paths[index]), frame, found[index], keep_frame=keep_frames)
    if keys is not None and keys.key:
        # the run's keys, claimed in path order (the earlier file wins within a group)
        passed = sorted(i for i in hashed if verdicts[i].valid)
        if len(passed) != len(frames):  # the pairs are of every frame, in path order
            pairs = None
        clashes = keys.claim_hashes([(Path(paths[i]), hashed[i]) for i in passed], pairs=pairs)
        for index, clash in zip(passed, clashes, strict=True):
            if clash is not None:
                verdicts[index] = with_problem(verdicts[index], clash)
            elif keep_key_hashes:
                hashes = hashed[index]
                if isinstance(hashes, SortedHashes):
                    hashes = hashes.hashes
                stored = keys.stored(Path(paths[index])) or keys.to_bytes(hashes)
                verdicts[index] = replace(verdicts[index], key_hashes=stored)
    for index, by in shifted.items():
        verdicts[index] = renumbered(verdicts[index], by)
    return [verdicts[i] for i in range(len(paths))]


def renumbered(verdict: FileVerdict, by: int) -> FileVerdict:
    """``verdict`` with its problems' rows counted ``by`` more (data rows to sheet rows)."""
    problems = tuple(replace(p, rows=tuple(r + by for r in p.rows)) for p in verdict.problems)
    return replace(verdict, problems=problems)


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
        if file_format(path) != "csv" or not schemas_of(contract).row_wise:
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
