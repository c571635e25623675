"""The key hashes of the files earlier runs sent, as one sorted run on disk.

A dataset's history can hold far more unique-key hashes than a run should keep in
memory: 2,000 files of 5,000 rows are 10M hashes, ~200 MB as sorted runs in memory.
:func:`history_run` takes them from the manifest a batch of files at a time into a
temporary file, sorted in two passes whose memory is bounded (~``BUCKET_ROWS`` pairs)
however long the history is:

1. each batch's (hash, file) pairs are appended to the bucket of the hash's top bits
   (the hashes are uniform, so the buckets come out about equal);
2. each bucket is sorted in memory and written after the one before: the run is sorted.

A lookup reads only the blocks of the run that its hashes fall in, found through the
first hash of every block (``BLOCK_ROWS``: 1/512 of the run in memory), so it costs
what the file looked up costs, not what the history does. The file is unnamed: it
is gone when the run ends, however it ends.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any

import numpy as np
import polars as pl

from batchload.check.keyruns import MemoryRun

BUCKET_ROWS = 1 << 19
"""Pairs a bucket holds on average, and pairs partitioned at a time (~6 MiB)."""

BLOCK_ROWS = 512
"""Hashes of the run per block (4 KiB): the unit a lookup reads."""

SPAN_BLOCKS = 256
"""Blocks a lookup reads at once, at most (1 MiB of hashes)."""

GAP_BLOCKS = 4
"""Blocks between two wanted ones that a lookup reads rather than seek past."""


@dataclass(frozen=True, slots=True, eq=False)
class HistoryRun:
    """Earlier files' key hashes, ascending and each once, in a temporary file: the
    hashes, then the file number of each. ``gone``: files whose keys no longer count
    (validated again in this run)."""

    file: IO[bytes]
    rows: int
    numbers_at: int
    """Byte offset of the file numbers (u32, one per hash)."""
    firsts: np.ndarray[Any, Any]
    """The first hash of every block."""
    gone: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return self.rows

    def holds_any(self, hashes: pl.Series) -> bool:
        """Whether any of ``hashes`` (sorted) is here, of a file that still counts."""
        found, _ = self._search(hashes.to_numpy())
        return bool(found.any())

    def matches(self, hashes: pl.Series) -> tuple[pl.Series, pl.Series]:
        """Which of ``hashes`` are here (in their order), and the file of each one that is."""
        values = hashes.to_numpy()
        order = np.argsort(values, kind="stable")
        found, files = self._search(values[order])
        matched = np.empty_like(found)
        matched[order] = found
        in_order = np.empty_like(files)
        in_order[order] = files
        return pl.Series(matched), pl.Series(in_order[matched], dtype=pl.UInt32)

    def without(self, numbers: set[int]) -> HistoryRun:
        """This run, the keys of files ``numbers`` no longer counted."""
        return replace(self, gone=self.gone | numbers)

    def _search(self, values: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
        """For ``values`` (ascending): whether each is here, and its file (0 if not)."""
        found = np.zeros(len(values), dtype=bool)
        files = np.zeros(len(values), dtype=np.uint32)
        if not self.rows or not len(values):
            return found, files
        blocks = np.searchsorted(self.firsts, values, side="right") - 1  # -1: below the run
        for low, high, first, last in _spans(blocks):
            start, stop = first * BLOCK_ROWS, min(self.rows, (last + 1) * BLOCK_ROWS)
            run = _read(self.file, 8 * start, stop - start, np.uint64)
            wanted = values[low:high]
            at = np.minimum(np.searchsorted(run, wanted), len(run) - 1)
            hit = run[at] == wanted
            if hit.any():
                found[low:high] = hit
                numbers = _read(self.file, self.numbers_at + 4 * start, stop - start, np.uint32)
                files[low:high] = np.where(hit, numbers[at], 0)
        if self.gone:
            found &= ~np.isin(files, np.fromiter(self.gone, dtype=np.uint32))
        return found, files


def _spans(blocks: np.ndarray[Any, Any]) -> Iterator[tuple[int, int, int, int]]:
    """The runs of near blocks that ascending ``blocks`` touch, as (first value, end
    value, first block, last block); a span is at most ``SPAN_BLOCKS`` long."""
    low = int(np.searchsorted(blocks, 0))  # values below the run's first hash: not here
    if low == len(blocks):
        return
    touched, starts = np.unique(blocks[low:], return_index=True)
    starts += low
    first = previous = int(touched[0])
    span_low = int(starts[0])
    for block, start in zip(touched[1:].tolist(), starts[1:].tolist(), strict=True):
        if block - previous > GAP_BLOCKS or block - first >= SPAN_BLOCKS:
            yield span_low, start, first, previous
            first, span_low = block, start
        previous = block
    yield span_low, len(blocks), first, previous


def history_run(stored: Iterable[tuple[int, bytes]], rows: int) -> tuple[HistoryRun, MemoryRun]:
    """The run of ``stored`` (file number, u64 hashes in the machine's byte order), which
    hold about ``rows`` hashes in all; and, beside it, the rare hashes that more than
    one file holds (beyond the first), in memory, so that each still counts if the first
    file's keys stop counting."""
    bits = min(16, max(0, math.ceil(rows / BUCKET_ROWS) - 1).bit_length())
    with tempfile.TemporaryFile(prefix="batchload-history-") as scratch:
        buckets = _partition(stored, scratch, bits)
        return _sorted(scratch, buckets)


Segment = tuple[int, int, int]
"""Part of a bucket in the scratch file: where its hashes are, where their files, how many."""


def _partition(
    stored: Iterable[tuple[int, bytes]], scratch: IO[bytes], bits: int
) -> list[list[Segment]]:
    """Pass 1: a batch of pairs at a time, grouped by bucket and appended to ``scratch``
    (the hashes, then their files); each bucket's segments, in the order of the files."""
    buckets: list[list[Segment]] = [[] for _ in range(1 << bits)]
    hashes: list[np.ndarray[Any, Any]] = []
    files: list[np.ndarray[Any, Any]] = []
    batch_rows = end = 0

    def flush() -> None:
        nonlocal batch_rows, end
        h, f = np.concatenate(hashes), np.concatenate(files)
        hashes.clear()
        files.clear()
        batch_rows = 0
        if bits:
            bucket = h >> np.uint64(64 - bits)
            order = _radix_order(bucket)
            h, f = h[order], f[order]
            counts = np.bincount(bucket.astype(np.intp), minlength=len(buckets)).tolist()
        else:
            counts = [len(h)]
        os.pwrite(scratch.fileno(), h.data, end)
        os.pwrite(scratch.fileno(), f.data, end + 8 * len(h))
        first = 0
        for number, count in enumerate(counts):
            if count:
                buckets[number].append((end + 8 * first, end + 8 * len(h) + 4 * first, count))
                first += count
        end += 12 * len(h)

    for number, blob in stored:
        hashes.append(np.frombuffer(blob, dtype=np.uint64, count=len(blob) // 8))
        files.append(np.full(len(hashes[-1]), number, dtype=np.uint32))
        batch_rows += len(hashes[-1])
        if batch_rows >= BUCKET_ROWS:
            flush()
    if hashes:
        flush()
    return buckets


def _sorted(scratch: IO[bytes], buckets: list[list[Segment]]) -> tuple[HistoryRun, MemoryRun]:
    """Pass 2: each bucket sorted (by hash, then file) and written after the one before,
    each hash once: a hash held again is kept beside the run."""
    bits = (len(buckets) - 1).bit_length()
    total = sum(count for segments in buckets for _, _, count in segments)
    run = tempfile.TemporaryFile(prefix="batchload-history-")  # noqa: SIM115 - kept by the run
    numbers_at = 8 * total
    firsts: list[np.ndarray[Any, Any]] = []
    again_h: list[np.ndarray[Any, Any]] = []
    again_f: list[np.ndarray[Any, Any]] = []
    rows = 0
    for segments in buckets:
        if not segments:
            continue
        h = np.concatenate([_read(scratch, at, count, np.uint64) for at, _, count in segments])
        f = np.concatenate([_read(scratch, at, count, np.uint32) for _, at, count in segments])
        # the next 16 bits first (a radix sort), then a merge sort of what is then almost
        # in order: ~2.5x faster than one sort. Both stable: (hash, file) order.
        order = _radix_order(h >> np.uint64(max(0, 48 - bits)))
        h, f = h[order], f[order]
        order = np.argsort(h, kind="stable")
        h, f = h[order], f[order]
        repeated = np.flatnonzero(h[1:] == h[:-1]) + 1
        if len(repeated):  # rare: the first file's kept in the run, the others beside it
            again_h.append(h[repeated])
            again_f.append(f[repeated])
            h, f = np.delete(h, repeated), np.delete(f, repeated)
        os.pwrite(run.fileno(), h.data, 8 * rows)
        os.pwrite(run.fileno(), f.data, numbers_at + 4 * rows)
        firsts.append(h[(-rows) % BLOCK_ROWS :: BLOCK_ROWS].copy())  # not a view of h
        rows += len(h)
    others = MemoryRun(
        pl.Series("h", np.concatenate(again_h) if again_h else [], dtype=pl.UInt64).set_sorted(),
        pl.Series("f", np.concatenate(again_f) if again_f else [], dtype=pl.UInt32),
    )
    index = np.concatenate(firsts) if firsts else np.empty(0, dtype=np.uint64)
    return HistoryRun(run, rows, numbers_at, index), others


def _radix_order(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The stable order of ``values``' low 16 bits (numpy sorts 16-bit integers by radix)."""
    return np.argsort(values.astype(np.uint16), kind="stable")


def _read(file: IO[bytes], offset: int, count: int, dtype: Any) -> np.ndarray[Any, Any]:
    """``count`` items of ``dtype`` at byte ``offset`` (a positioned read: no seek)."""
    size = count * np.dtype(dtype).itemsize
    data = os.pread(file.fileno(), size, offset)
    if len(data) != size:
        raise OSError("the run of earlier key hashes was cut short")
    return np.frombuffer(data, dtype=dtype)
