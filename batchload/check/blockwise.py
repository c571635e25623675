"""Validate a large CSV block by block, in bounded memory, with the verdict of reading it whole.

- Each block (about ``block_bytes`` of the file's text, read by
  :func:`~batchload.read.frames.read_csv_blocks`) is validated alone by the code that
  validates a whole file, less the ``unique`` checks. Its problems' rows are moved
  to the file's rows and merged per (column, check): counts add up, the first rows
  and values are the file's first, and the problems come in the order the whole
  file's report gives them.
- ``unique`` checks span blocks: each block's key columns are hashed once (the
  64-bit row hash :class:`~batchload.check.crossfile.UniqueKeys` keeps, so the same hashes
  serve the checks across files), and the file's hashes are proven distinct at the
  end. Only when two hashes are equal is the file read again, to find the rows that
  really repeat a key.
- What the cut could change is left to whole-file validation (``None``): a file the
  block reader refuses (a header unlike the contract's, a bad cell, ragged rows), a
  problem that has no row (a wrong dtype), an empty file. The caller only asks for a
  contract whose checks judge each row alone (``validate.in_blocks``).

Memory: a block or two while the blocks are read (their key hashes, 8 bytes a row per
unique key, wait in a temporary file), then the hashes, sorted; and the frame when kept.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from batchload.check.crossfile import UniqueKeys
from batchload.check.rows import shown_value, unique_keys, validate_rows
from batchload.check.verdict import MAX_EXAMPLES, Problem
from batchload.errors import FileProblem
from batchload.read.csv import CannotReadInBlocks, read_csv_blocks

if TYPE_CHECKING:
    from batchload.contract.model import Contract

__all__ = ["Blockwise", "rows_hashed_to", "validate_blockwise"]


@dataclass(frozen=True, slots=True)
class Blockwise:
    """What validating a file block by block found."""

    rows: int
    problems: list[Problem]
    frame: pl.DataFrame
    """The whole frame (the blocks, not copied) when it was kept and the file is valid;
    else an empty frame with the file's columns."""
    key_hashes: pl.Series | None
    """The hashes of the asked ``key``, one per row, sorted (not in row order: see
    :func:`rows_hashed_to`), when the file is valid."""


def validate_blockwise(
    path: Path,
    contract: Contract,
    *,
    block_bytes: int,
    keep_frame: bool = False,
    key: Sequence[str] = (),
    on_block: Callable[[pl.DataFrame], None] | None = None,
) -> Blockwise | None:
    """Validate ``path`` block by block; ``None`` when it must be validated whole.

    ``key``: also hash these columns for the checks across files (the run's
    :class:`UniqueKeys` key; the contract's own key is not hashed twice).
    ``on_block``: called with each block, in order, while no problem is found (a file
    sent in parts cuts them as it is validated).
    """
    checks = unique_keys(contract)
    hashed: dict[tuple[str, ...], _Hashes] = {}
    try:
        for columns in [columns for columns, _ in checks] + ([tuple(key)] if key else []):
            if columns not in hashed:
                hashed[columns] = _Hashes(path)
        problems = _Problems()
        kept: list[pl.DataFrame] = []
        first: pl.DataFrame | None = None
        rows = 0
        try:
            for block in read_csv_blocks(path, contract, block_bytes=block_bytes):
                if first is None:
                    first = block.clear()
                if block.height == 0:
                    continue
                found = validate_rows(block, contract)
                if any(not p.rows for p in found):
                    return None  # a problem without rows: the whole file's report says it once
                problems.add(found, offset=rows)
                for columns, hashes in hashed.items():
                    hashes.add(UniqueKeys.row_hashes(block, columns))
                if keep_frame and not problems:
                    kept.append(block)
                else:
                    kept.clear()
                if on_block is not None and not problems:
                    on_block(block)
                rows += block.height
        except CannotReadInBlocks:
            return None
        if first is None or rows == 0:
            return None  # "no rows" is the whole file's to say
        series = {columns: hashes.sorted() for columns, hashes in hashed.items()}
        for columns, column in checks:
            twice = _repeats(series[columns])
            if twice.len():  # equal hashes: maybe a repeated key
                try:
                    repeated = _repeated(
                        path, contract, (columns, column), twice, rows=rows, block_bytes=block_bytes
                    )
                except CannotReadInBlocks:
                    return None  # the file changed under us: read it whole
                if repeated is not None:
                    problems.add([repeated], offset=0, last=True)
        valid = not problems
        return Blockwise(
            rows=rows,
            problems=problems.ordered(first.columns),
            frame=pl.concat(kept, rechunk=False) if valid and kept else first,
            key_hashes=series[tuple(key)] if valid and key else None,
        )
    finally:
        for hashes in hashed.values():
            hashes.close()


def rows_hashed_to(
    path: Path, contract: Contract, key: Sequence[str], hashes: pl.Series, *, block_bytes: int
) -> tuple[int, ...]:
    """The first few 1-based rows of ``path`` whose ``key`` hashes to one of ``hashes``
    (:meth:`UniqueKeys.row_hashes`); () when the file can no longer be read in blocks.

    For a file whose key hashes were kept sorted, not in row order: its rows are found
    again only when some of its keys repeat another file's."""
    wanted = hashes.implode()
    found: list[int] = []
    start = 0
    try:
        for block in read_csv_blocks(path, contract, block_bytes=block_bytes):
            hit = UniqueKeys.row_hashes(block, key).is_in(wanted)
            found += [start + 1 + int(i) for i in hit.arg_true().head(MAX_EXAMPLES).to_list()]
            if len(found) >= MAX_EXAMPLES:
                break
            start += block.height
    except CannotReadInBlocks:
        return ()
    return tuple(found[:MAX_EXAMPLES])


class _Hashes:
    """One key's 64-bit row hashes, 8 bytes a row: they wait in a temporary file while the
    blocks are read, so that a block's memory and the hashes are never held together
    (-30 MB at the peak of a 500 MB CSV), then come back into one array, sorted in
    place: the file's repeats, the checks across files and the manifest all take them
    sorted, so they are sorted once."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._len = 0
        with self._failing():
            self._file = tempfile.TemporaryFile(prefix="batchload-hashes-")  # noqa: SIM115

    def add(self, hashes: pl.Series) -> None:
        with self._failing():
            self._file.write(hashes.to_numpy().view("u1").data)
        self._len += hashes.len()

    def sorted(self) -> pl.Series:
        """The hashes in ascending order, as a UInt64 series on their array (not copied)."""
        array = np.empty(self._len, dtype=np.uint64)
        with self._failing():
            self._file.seek(0)
            if self._file.readinto(array.view("u1").data) != array.nbytes:
                raise OSError("cut short")
        self.close()
        array.sort()
        return pl.Series("h", array, dtype=pl.UInt64).set_sorted()

    def close(self) -> None:
        self._file.close()

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """A full disk (say) fails the file with the reason, as the run's spool does."""
        try:
            yield
        except OSError as exc:
            raise FileProblem(
                f"cannot keep its key hashes in a temporary file: {exc.strerror or exc}",
                path=self._path,
                hint="free space there, or point TMPDIR at a larger disk",
            ) from None


class _Problems:
    """Problems of a file's blocks, merged per (column, check) as the whole file's report."""

    def __init__(self) -> None:
        self._found: dict[tuple[str | None, str], Problem] = {}
        self._last: set[tuple[str | None, str]] = set()

    def __bool__(self) -> bool:
        return bool(self._found)

    def add(self, problems: Sequence[Problem], *, offset: int, last: bool = False) -> None:
        """Add one block's problems (rows 1-based in the block, ``offset`` rows before it).

        ``last``: problems the whole file's report lists after pandera's (uniqueness),
        when they start on the same row as another problem of their column.
        """
        for problem in problems:
            rows = tuple(r + offset for r in problem.rows)
            name = (problem.column, problem.check)
            if last:
                self._last.add(name)
            earlier = self._found.get(name)
            if earlier is None:
                self._found[name] = replace(problem, rows=rows)
                continue
            self._found[name] = replace(
                earlier,
                count=earlier.count + problem.count,
                rows=(earlier.rows + rows)[:MAX_EXAMPLES],
                values=(earlier.values + problem.values)[:MAX_EXAMPLES],
            )

    def ordered(self, columns: Sequence[str]) -> list[Problem]:
        """By column (a key over several columns first), then by first row: the whole
        file's order (``validate._summarise``)."""
        order = {name: i for i, name in enumerate(columns)}
        found = list(self._found.values())
        return sorted(
            found,
            key=lambda p: (
                order.get(p.column or "", -1),
                p.rows[0],
                (p.column, p.check) in self._last,
            ),
        )


def _repeats(hashes: pl.Series) -> pl.Series:
    """The hashes that occur twice or more in ``hashes`` (sorted; sorting was cheaper
    than ``n_unique``'s hash table, in time and memory)."""
    array = hashes.to_numpy()
    same = array[1:] == array[:-1]
    if not same.any():
        return pl.Series("h", [], dtype=pl.UInt64)
    return pl.Series("h", np.unique(array[1:][same]), dtype=pl.UInt64)


def _repeated(
    path: Path,
    contract: Contract,
    check: tuple[tuple[str, ...], str | None],
    twice: pl.Series,
    *,
    rows: int,
    block_bytes: int,
) -> Problem | None:
    """The rows of ``path`` whose key repeats (``None``: only their hashes did).

    ``check`` is one of ``validate.unique_keys``: the key's columns, and the column
    when it is a column's own ``unique``. ``twice``: the hashes seen more than once
    among the file's ``rows`` rows.

    The file is read again, keeping only the rows whose hash is seen twice, so memory
    follows the repeats, not the file. As ``validate._uniqueness`` reports it: every
    row of a repeated key fails.
    """
    columns, column = check
    wanted = twice.implode()
    candidates: list[pl.DataFrame] = []
    start = 0
    for block in read_csv_blocks(path, contract, block_bytes=block_bytes):
        if start + block.height > rows:
            raise CannotReadInBlocks(path)  # it grew since it was read
        picked = UniqueKeys.row_hashes(block, columns).is_in(wanted)
        candidates.append(
            block.select(columns).with_row_index("__row", offset=start + 1).filter(picked)
        )
        start += block.height
    if start != rows:
        raise CannotReadInBlocks(path)  # it shrank
    found = pl.concat(candidates)
    found = found.filter(found.select(columns).is_duplicated())
    if found.height == 0:
        return None
    head = found.head(MAX_EXAMPLES)
    if column is None:
        shown = head.select(pl.struct(list(columns)).struct.json_encode()).to_series()
        label, name = ", ".join(columns), "multiple_fields_uniqueness"
    else:
        shown = head.get_column(column).cast(pl.String)
        label, name = column, "field_uniqueness"
    return Problem(
        name,
        label,
        found.height,
        tuple(head.get_column("__row").to_list()),
        tuple(shown_value(v) for v in shown.to_list()),
    )
