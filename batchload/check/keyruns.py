"""Runs of sorted key hashes, the memory behind the checks across files: in memory, or spilled.

A run is one or more files' 64-bit key hashes, sorted, with the file each came from;
a large file's run moves to a temporary spill file and is read back a slice at a
time per lookup, so memory does not grow with the number of large files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from batchload.check.verdict import Problem
from batchload.state.records import KeyRun

#: Hashes looked up in a run at a time (bounds the lookup's temporaries: ~20 B a hash).
LOOKUP_ROWS = 1 << 18


SOLO_RUN_ROWS = 1_000_000
"""A run this long (a large file's keys) stays on its own instead of being merged."""


@dataclass(frozen=True, slots=True)
class Clash:
    """A file's repeat of earlier keys: the problem (its rows, when the hashes were in row
    order), and the hashes that repeat."""

    problem: Problem
    hashes: pl.Series


@dataclass(frozen=True, slots=True)
class MemoryRun:
    """Key hashes in ascending order, and the file each came from: one file number for
    a run of one file (no column of it), or a ``UInt32`` series beside the hashes."""

    hashes: pl.Series
    files: pl.Series | int

    def __len__(self) -> int:
        return self.hashes.len()

    @classmethod
    def of(cls, frame: pl.DataFrame) -> MemoryRun:
        """A run from a frame of ``h`` (sorted) and ``f``."""
        return cls(frame.get_column("h"), frame.get_column("f"))

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({"h": self.hashes, "f": self.files_at(None)})

    def files_at(self, positions: pl.Series | None) -> pl.Series:
        """The file numbers at ``positions`` (None: every row)."""
        count = self.hashes.len() if positions is None else positions.len()
        if isinstance(self.files, int):
            return pl.repeat(self.files, count, dtype=pl.UInt32, eager=True)
        return self.files if positions is None else self.files.gather(positions)

    def matches(self, hashes: pl.Series) -> tuple[pl.Series, pl.Series]:
        """Which of ``hashes`` are here (in their order), and the file of each one that is."""
        position = self.hashes.search_sorted(hashes, side="left").clip(0, self.hashes.len() - 1)
        matched = self.hashes.gather(position) == hashes
        return matched, self.files_at(position.filter(matched))

    def holds_any(self, hashes: pl.Series) -> bool:
        """Whether any of ``hashes`` (sorted) is here (looked up a slice at a time)."""
        run, values = self.hashes.to_numpy(), hashes.to_numpy()
        return any(
            in_sorted(run, values[start : start + LOOKUP_ROWS]).any()
            for start in range(0, len(values), LOOKUP_ROWS)
        )

    def merged(self, other: MemoryRun) -> MemoryRun:
        return MemoryRun.of(self.frame().merge_sorted(other.frame(), key="h"))  # O(n), both sorted

    def without(self, numbers: set[int]) -> MemoryRun | None:
        """This run less the keys of files ``numbers``; None when nothing is left."""
        if isinstance(self.files, int):
            return None if self.files in numbers else self
        gone = pl.Series(sorted(numbers), dtype=pl.UInt32)
        kept = self.frame().filter(~pl.col("f").is_in(gone.implode()))
        return MemoryRun.of(kept) if kept.height else None


def in_sorted(run: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Whether each of ``values`` is in ``run`` (ascending, not empty): numpy's binary
    search, a third cheaper than polars' ``search_sorted`` and ``gather``."""
    at = np.minimum(np.searchsorted(run, values), len(run) - 1)
    found: np.ndarray[Any, Any] = run[at] == values
    return found


SPILL_READ_ROWS = 1 << 18
"""Hashes of a spilled run read back at a time (2 MiB)."""


class Spill:
    """A temporary file that holds large files' runs (the u64 hashes, back to back), made
    when the first is spilled; used only under :class:`UniqueKeys`' lock."""

    def __init__(self) -> None:
        self._file: Any = None
        self._end = 0

    def spilled(self, hashes: pl.Series, files: int) -> SpilledRun:
        """Write a sorted run of one file's hashes; the run that reads it back."""
        if self._file is None:
            # kept open as long as the keys; deleted when closed
            self._file = tempfile.NamedTemporaryFile(prefix="batchload-keys-")  # noqa: SIM115
        self._file.seek(self._end)
        self._file.write(hashes.cast(pl.UInt64).to_numpy().view("u1").data)
        self._file.flush()  # for :meth:`read`, which reads beside the buffer
        run = SpilledRun(self, self._end, hashes.len(), files)
        self._end += 8 * hashes.len()
        return run

    @property
    def path(self) -> Path:
        return Path(self._file.name)

    def read(self, offset: int, rows: int) -> bytes:
        """The ``rows`` hashes at byte ``offset``, as bytes; safe beside the lock's users
        (a positioned read: no seek)."""
        data = os.pread(self._file.fileno(), 8 * rows, offset)
        if len(data) != 8 * rows:
            raise OSError("the spilled key hashes were cut short")
        return data

    def chunks(self, offset: int, rows: int) -> Iterator[np.ndarray[Any, Any]]:
        """The ``rows`` hashes at byte ``offset``, a slice at a time (one buffer, reused)."""
        buffer = np.empty(min(rows, SPILL_READ_ROWS), dtype=np.uint64)
        for start in range(0, rows, len(buffer)):
            chunk = buffer[: min(len(buffer), rows - start)]
            self._file.seek(offset + 8 * start)
            if self._file.readinto(chunk.view("u1").data) != chunk.nbytes:
                raise OSError("the spilled key hashes were cut short")
            yield chunk


@dataclass(frozen=True, slots=True)
class SpilledRun:
    """A large file's run in the spill file: read back a slice at a time per lookup (from
    the page cache, at memory speed), so that it costs no memory between lookups."""

    spill: Spill
    offset: int
    rows: int
    files: int

    def __len__(self) -> int:
        return self.rows

    def to_bytes(self) -> bytes:
        """The run's hashes as :meth:`UniqueKeys.to_bytes` gives them."""
        return self.spill.read(self.offset, self.rows)

    def on_disk(self) -> KeyRun:
        """Where the run's hashes are, for the manifest to read when it stores them."""
        return KeyRun(self.spill.path, self.offset, self.rows)

    def holds_any(self, hashes: pl.Series) -> bool:
        """Whether any of ``hashes`` (sorted) is here."""
        values = hashes.to_numpy()
        for chunk in self.spill.chunks(self.offset, self.rows):
            low = int(np.searchsorted(values, chunk[0], side="left"))
            high = int(np.searchsorted(values, chunk[-1], side="right"))
            for start in range(low, high, LOOKUP_ROWS):
                if in_sorted(chunk, values[start : min(high, start + LOOKUP_ROWS)]).any():
                    return True
        return False

    def matches(self, hashes: pl.Series) -> tuple[pl.Series, pl.Series]:
        """As :meth:`MemoryRun.matches` (every match is of the run's one file)."""
        values = hashes.to_numpy()
        matched = np.zeros(len(values), dtype=bool)
        for chunk in self.spill.chunks(self.offset, self.rows):
            for start in range(0, len(values), LOOKUP_ROWS):
                part = values[start : start + LOOKUP_ROWS]
                matched[start : start + len(part)] |= in_sorted(chunk, part)
        return pl.Series(matched), pl.repeat(
            self.files, int(matched.sum()), dtype=pl.UInt32, eager=True
        )

    def without(self, numbers: set[int]) -> SpilledRun | None:
        return None if self.files in numbers else self
