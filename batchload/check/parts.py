"""Parts: a large file cut by rows into slices, each sent as its own parquet file.

Parts are written from the validated rows, cast to the contract's Arrow types, so the
service parses exactly the values that were checked. They are cut deterministically
(same rows and limit, same parts, whether the rows come whole or block by block), so
a resumed run cuts identical parts.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from batchload.errors import FileProblem
from batchload.lazy import lazy_module
from batchload.read.content import DiskSource, MemorySource, sha256_bytes

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    pq = lazy_module("pyarrow.parquet")  # written only for parts and workbooks


PART_FILL = 0.9
"""Parts aim at this fraction of the byte budget, so most fit at the first try."""


@dataclass(frozen=True, slots=True)
class Part:
    """One slice of a large file, as parquet ready to send as its own file: bytes in
    memory, or a file of a run's spool (:mod:`batchload.check.spool`)."""

    index: int
    """1-based."""
    first_row: int
    rows: int
    source: MemorySource | DiskSource


def parquet_bytes(frame: pl.DataFrame, schema: pa.Schema | None) -> bytes:
    """A frame written as parquet, cast to ``schema`` when given (the contract's types)."""
    sink = io.BytesIO()
    write_parquet(frame, schema, sink)
    return sink.getvalue()


def write_parquet(frame: pl.DataFrame, schema: pa.Schema | None, where: Any) -> None:
    """Write a frame as parquet to ``where`` (a path or a binary file), cast to ``schema``
    when given: the bytes of :func:`parquet_bytes`."""
    table = frame.to_arrow()
    if schema is not None:
        table = table.select(schema.names).cast(schema)
    pq.write_table(table, where)


PartWriter = Callable[[int, "pl.DataFrame"], "MemorySource | DiskSource"]
"""Writes part ``index`` (its rows given) as parquet, in memory or to a file, again when
it is cut smaller: what :class:`PartCutter` makes its parts' bytes with."""


PROBE_ROWS = 50_000
"""The first part's row count follows the parquet bytes per row of this many first rows
(or all, when fewer), so it is known before the rest of the file is read."""


class PartCutter:
    """Cut rows, fed in order, into parquet parts of at most ``budget_bytes`` each.

    Each part's row count follows the bytes per row of what came before it: the first
    part's, of its first ``PROBE_ROWS`` rows; the next ones', of the part before. A
    part over budget is halved until it fits. So the parts depend only on the rows and
    the budget: a file fed block by block as it is read gives the parts of its whole
    frame fed at once, and a resumed run cuts the same parts. Memory: the rows of one
    part not yet cut, and the block being fed. Blocking: run it in a thread.
    """

    def __init__(
        self,
        *,
        budget_bytes: int,
        schema: pa.Schema | None,
        path: Path | str = "<frame>",
        write: PartWriter | None = None,
    ) -> None:
        self.budget_bytes = budget_bytes
        self.schema = schema
        self.path = path
        self._write = write or self._in_memory
        self.rows = 0
        """Rows fed so far."""
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._next_rows: int | None = None
        self._start = 0
        self._index = 1
        self._empty: pl.DataFrame | None = None

    def feed(self, block: pl.DataFrame) -> Iterator[Part]:
        """Take the next rows; yield the parts they complete."""
        if self._empty is None:
            self._empty = block.clear()
        if block.height:
            self._pending.append(block)
            self._pending_rows += block.height
            self.rows += block.height
        return self._cut(final=False)

    def finish(self) -> Iterator[Part]:
        """Yield the parts of the rows left (one empty part when no row was fed)."""
        yield from self._cut(final=True)
        if self._index == 1 and self._empty is not None:
            yield self._part(self._empty, 0)

    def _cut(self, *, final: bool) -> Iterator[Part]:
        while self._pending_rows:
            if self._next_rows is None:
                if self._pending_rows < PROBE_ROWS and not final:
                    return
                probe = self._frame().head(PROBE_ROWS)
                size = len(parquet_bytes(probe, self.schema))
                self._next_rows = self._rows_for(probe.height, size)
            if self._pending_rows < self._next_rows and not final:
                return
            frame = self._frame()
            count = min(self._next_rows, self._pending_rows)
            source = self._write(self._index, frame.slice(0, count))
            while source.size > self.budget_bytes and count > 1:
                count = max(1, count // 2)
                source = self._write(self._index, frame.slice(0, count))
            if source.size > self.budget_bytes:
                raise FileProblem(
                    f"row {self._start + 1} alone is larger than the request limit allows",
                    path=self.path,
                    hint="raise --max-request-mb",
                )
            rest = frame.slice(count)
            self._pending = [rest] if rest.height else []
            self._pending_rows -= count
            self._next_rows = self._rows_for(count, source.size)
            yield self._part_of(source, count)

    def _frame(self) -> pl.DataFrame:
        if len(self._pending) > 1:
            self._pending = [pl.concat(self._pending, rechunk=False)]
        return self._pending[0]

    def _rows_for(self, rows: int, size: int) -> int:
        return max(1, int(self.budget_bytes * PART_FILL * rows / max(size, 1)))

    def _in_memory(self, index: int, frame: pl.DataFrame) -> MemorySource:
        data = parquet_bytes(frame, self.schema)
        return MemorySource(data, sha256_bytes(data))

    def _part(self, frame: pl.DataFrame, count: int) -> Part:
        return self._part_of(self._write(self._index, frame), count)

    def _part_of(self, source: MemorySource | DiskSource, count: int) -> Part:
        part = Part(self._index, self._start, count, source)
        self._start += count
        self._index += 1
        return part


def split_frame(
    frame: pl.DataFrame,
    *,
    budget_bytes: int,
    schema: pa.Schema | None,
    path: Path | str = "<frame>",
) -> Iterator[Part]:
    """Cut a validated frame into parquet parts of at most ``budget_bytes`` each: the
    parts a :class:`PartCutter` cuts from it. Blocking: run it in a thread."""
    cutter = PartCutter(budget_bytes=budget_bytes, schema=schema, path=path)
    yield from cutter.feed(frame)
    yield from cutter.finish()
