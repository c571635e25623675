"""Checks across the files of a run: repeated unique keys, and files grouped by column layout.

A backfill that sends the same day twice passes every per-file check; only a memory
of the keys already accepted catches it. :class:`UniqueKeys` is that memory, kept
small (8-byte hashes) and safe to share between the worker threads that validate.
It spans runs: a file's hashes go into the manifest when it is done, and a re-run
starts from those of the files it does not read again (:class:`Earlier`), so a new
file that repeats a day sent last week is caught without reading last week's file.
Those are read from the manifest into a sorted run on disk
(:mod:`batchload.check.history`), so a run's memory does not grow with the history.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from batchload.check.history import HistoryRun, history_run
from batchload.check.keyruns import SOLO_RUN_ROWS, Clash, MemoryRun, Spill, SpilledRun
from batchload.check.verdict import MAX_EXAMPLES, Problem
from batchload.errors import BatchloadError
from batchload.state.ledger import Ledger
from batchload.state.records import KeyRun

if TYPE_CHECKING:
    from batchload.contract.model import Contract

__all__ = ["Earlier", "SortedHashes", "UniqueKeys"]

READ_ROWS = 1 << 19
"""Stored hashes read from the manifest at a time (4 MiB; one larger file's, alone)..."""

READ_FILES = 500
"""... of this many files at most (many small files' paths cost more than their keys)."""


@dataclass(frozen=True, slots=True)
class Earlier:
    """The files earlier runs sent whose keys count in this run, and the manifest that
    keeps their hashes."""

    store: Ledger
    dataset: str
    files: Sequence[tuple[str, int]]
    """``(source path, how many hashes the manifest keeps for it)``."""


@dataclass(frozen=True, slots=True)
class SortedHashes:
    """A file's key hashes (:meth:`UniqueKeys.hashes`) in ascending order, not in row
    order, and how to find its rows again, for a file that was not kept in memory.

    Claimed as they are, without a sort or a copy: the run keeps this very series.
    """

    hashes: pl.Series
    rows: Callable[[pl.Series], tuple[int, ...]]
    """The first few 1-based rows whose hash is among the given ones (the rows a repeat
    across files shows); called only when the file repeats a key, outside the lock."""


class UniqueKeys:
    """The contract's ``unique`` key of every valid file of a run, to catch repeats across files.

    Keys are hashed to 64 bits per row (polars ``hash_rows``) and kept as sorted runs
    beside the file they came from: 12 bytes a row in memory for small files merged
    into shared runs; a large file's run (8 bytes a row) stays its own, never copied
    into a merge, and is moved to a temporary file (:class:`SpilledRun`), read back a
    slice at a time by each lookup, so that memory does not grow with the number of
    large files. Looking up a file's keys costs O(rows × log(total)) per run. Two
    different keys sharing a 64-bit hash would be reported as a repeat; at 10M rows the
    chance is ~3e-6.
    Safe to share between worker threads.

    The ``earlier`` files' keys (sent by earlier runs) are taken in with the first
    claim, in a worker thread, as one sorted run on disk. An earlier file that is
    claimed again (it changed and is validated anew) first loses its old keys: a file
    never repeats itself.
    """

    _SEED = 0x6261_7463  # fixed, so a run hashes the same key the same way

    def __init__(
        self, key: Sequence[str], *, dtypes: Sequence[object] = (), earlier: Earlier | None = None
    ) -> None:
        self.key = tuple(key)
        self.scheme = self.scheme_of(self.key, dtypes)
        self._files: list[Path] = []
        self._runs: list[MemoryRun | SpilledRun | HistoryRun] = []
        self._spill = Spill()
        self._spilled: dict[Path, SpilledRun] = {}  # the files whose run is in the spill
        self._pending = earlier if self.key and earlier and earlier.files else None
        self._earlier: dict[str, int] = {}  # earlier source path -> its file number
        self._lock = threading.Lock()

    @classmethod
    def for_contract(cls, contract: Contract, *, earlier: Earlier | None = None) -> UniqueKeys:
        """The tracker of ``contract``'s unique key, starting from files sent before."""
        types = contract.polars_schema()
        dtypes = [types.get(c) for c in contract.unique]
        return cls(contract.unique, dtypes=dtypes, earlier=earlier)

    @classmethod
    def scheme_of(cls, key: Sequence[str], dtypes: Sequence[object] = ()) -> str:
        """What stored hashes must have been made with to be comparable with this run's.

        polars ``hash_rows`` is stable only within one polars version, and depends on
        the key's columns and types; stored hashes are in the machine's byte order.
        Hashes made otherwise are not used.
        """
        columns = ",".join(
            name if dtype is None else f"{name}:{dtype}"
            for name, dtype in itertools.zip_longest(key, dtypes[: len(key)])
        )
        return f"polars {pl.__version__} hash_rows {cls._SEED:#x} {sys.byteorder} {columns}"

    def hashes(self, frame: pl.DataFrame) -> pl.Series:
        """The 64-bit hash of each row's key (empty when a key column is missing)."""
        return self._hash(frame)

    @classmethod
    def row_hashes(cls, frame: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
        """The 64-bit hash of each row's ``columns``, as :meth:`hashes` makes it."""
        return frame.select(columns).hash_rows(seed=cls._SEED).alias("h")

    @staticmethod
    def to_bytes(hashes: pl.Series) -> memoryview:
        """Hashes as stored in the manifest: u64 in the machine's byte order, one per row,
        in no particular order; a view of the series' own buffer, not a copy."""
        return hashes.cast(pl.UInt64).to_numpy().view("u1").data

    def stored(self, path: Path) -> KeyRun | None:
        """Where ``path``'s key hashes (as :meth:`to_bytes` gives them) wait when its run
        is in the spill file; None when it is kept in memory. A checked file waits for
        its upload before the manifest stores its keys: this way it waits without them
        in memory."""
        run = self._spilled.get(path)  # one dict read: no need to wait for the lock
        return None if run is None else run.on_disk()

    def __len__(self) -> int:
        with self._lock:
            self._take_earlier()
            return sum(len(run) for run in self._runs)

    def claim(
        self,
        items: Sequence[tuple[Path, pl.DataFrame]],
        *,
        hashed: Sequence[pl.Series] | None = None,
    ) -> list[Problem | None]:
        """Check each file's keys against all earlier ones; remember the files that pass.

        Returns, per item, ``None`` or the Problem that makes the file invalid (its
        keys are then not remembered). Within ``items``, the earlier file wins.
        ``hashed``: the items' :meth:`hashes`, when the caller has them already.
        """
        if not self.key:
            return [None] * len(items)
        if hashed is None:
            hashed = [self._hash(frame) for _, frame in items]
        return self.claim_hashes([(path, h) for (path, _), h in zip(items, hashed, strict=True)])

    def claim_hashes(
        self,
        items: Sequence[tuple[Path, pl.Series | SortedHashes]],
        *,
        pairs: pl.DataFrame | None = None,
    ) -> list[Problem | None]:
        """:meth:`claim` for files known by their key hashes (:meth:`hashes`), in row order
        or sorted (whose clashing rows are then found by :attr:`SortedHashes.rows`).
        ``pairs``: the items' :meth:`sorted_pairs`, when the caller has them already."""
        if not self.key:
            return [None] * len(items)
        if not items:
            return []
        results = self._claim_hashes(
            [(p, h.hashes if isinstance(h, SortedHashes) else h) for p, h in items], pairs
        )
        for index, ((_, hashes), result) in enumerate(zip(items, results, strict=True)):
            if isinstance(hashes, SortedHashes) and isinstance(result, Clash):
                results[index] = replace(result.problem, rows=hashes.rows(result.hashes))
        return [r.problem if isinstance(r, Clash) else r for r in results]

    def _claim_hashes(
        self, items: Sequence[tuple[Path, pl.Series]], pairs: pl.DataFrame | None
    ) -> list[Problem | Clash | None]:
        hashed = [hashes for _, hashes in items]
        if pairs is None:
            pairs = self.sorted_pairs(hashed)
        with self._lock:
            self._take_earlier()
            self._forget_earlier([path for path, _ in items])
            if self._all_new(pairs, several=len(items) > 1):  # the usual case, one lookup
                first = len(self._files)
                self._files += [path for path, _ in items]
                if self.repeats(pairs):  # keep each hash once
                    pairs = pairs.filter(pl.col("h").ne_missing(pl.col("h").shift(1)))
                if len(items) == 1:
                    self._add(MemoryRun(pairs.get_column("h"), first))
                else:
                    self._add(MemoryRun.of(pairs.with_columns(pl.col("f") + first)))
                return [None] * len(items)
            results: list[Problem | Clash | None] = []
            accepted: list[pl.DataFrame] = []
            for (path, _), hashes in zip(items, hashed, strict=True):
                clash = self._find(hashes, accepted)
                if clash is None:
                    number = len(self._files)
                    self._files.append(path)
                    accepted.append(
                        pl.DataFrame(
                            {
                                "h": hashes,
                                "f": pl.repeat(number, len(hashes), dtype=pl.UInt32, eager=True),
                            }
                        ).unique("h", keep="first")
                    )
                results.append(clash)
            if accepted:
                self._add(MemoryRun.of(pl.concat(accepted).sort("h")))
            return results

    @staticmethod
    def sorted_pairs(hashed: Sequence[pl.Series]) -> pl.DataFrame:
        """Every key hash as a row (``h``, ``f``: its file's position in ``hashed``), sorted.

        Sorted by hash, so that lookups in the sorted runs are fast (~5x faster than
        unsorted ones) and the sightings of a hash are next to one another (in no set
        order). One file's pairs have no ``f``: its run keeps one file number.
        """
        if len(hashed) == 1:  # one file: no file column
            one = hashed[0]
            if not one.flags["SORTED_ASC"]:
                one = pl.Series("h", np.sort(one.to_numpy())).set_sorted()
            return pl.DataFrame({"h": one})
        heights = [hashes.len() for hashes in hashed]
        values = np.concatenate([hashes.to_numpy() for hashes in hashed])
        files = np.repeat(np.arange(len(hashed), dtype=np.uint32), heights)
        order = np.argsort(values)  # numpy's vectorised sort: ~3x faster than polars' here
        return pl.DataFrame({"h": pl.Series(values[order]).set_sorted(), "f": files[order]})

    @staticmethod
    def repeats(pairs: pl.DataFrame) -> bool:
        """Whether a hash shows twice in :meth:`sorted_pairs`; when not, every key is
        distinct, within each file and across them."""
        h = pairs.get_column("h")
        return bool((h.slice(1) == h.slice(0, max(h.len() - 1, 0))).any())

    def _all_new(self, pairs: pl.DataFrame, *, several: bool) -> bool:
        """True when no two files share a key and no key was accepted before.

        Then checking the files one by one would accept every one of them; when not,
        :meth:`claim` does exactly that, to find which file repeats which. ``several``:
        the pairs are of more than one file.
        """
        hashes = pairs.get_column("h")
        if several:
            files = pairs.get_column("f")
            if ((hashes == hashes.shift(1)) & (files != files.shift(1))).any():
                return False  # (a key repeated within one file is the file's own unique check)
        return not any(run.holds_any(hashes) for run in self._runs)  # pairs are sorted

    def _take_earlier(self) -> None:
        """Take in the earlier files' hashes as one sorted run on disk (once; under the lock)."""
        if self._pending is None:
            return
        earlier = self._pending
        first = len(self._files)
        numbers = {path: n for n, (path, _) in enumerate(earlier.files, start=first)}
        try:
            run, repeated = history_run(
                self._stored(earlier, numbers), sum(count for _, count in earlier.files)
            )
        except OSError as exc:  # no file can be checked against them: the run stops
            raise BatchloadError(
                "cannot keep the keys of the files earlier runs sent in a temporary file: "
                f"{exc.strerror or exc}",
                hint="free space in the temporary directory, or point TMPDIR at a larger disk",
            ) from exc
        # taken in only once read whole: a claim after a failed read tries again
        self._pending = None
        self._files += [Path(path) for path, _ in earlier.files]
        self._earlier.update(numbers)
        self._runs.append(run)
        self._add(repeated)

    def _stored(self, earlier: Earlier, numbers: dict[str, int]) -> Iterator[tuple[int, bytes]]:
        """The earlier files' hashes with their file numbers, a few files at a time."""
        batch: list[str] = []
        rows = 0
        for index, (path, count) in enumerate(earlier.files):
            batch.append(path)
            rows += count
            if rows >= READ_ROWS or len(batch) == READ_FILES or index == len(earlier.files) - 1:
                for stored, blob in earlier.store.key_hashes(earlier.dataset, self.scheme, batch):
                    yield numbers[stored], blob
                batch, rows = [], 0

    def _forget_earlier(self, paths: Iterable[Path]) -> None:
        """Drop the keys an earlier run recorded for files validated again now."""
        if not self._earlier:
            return
        numbers = {n for p in paths if (n := self._earlier.pop(str(p), None)) is not None}
        if numbers:
            self._runs = [kept for run in self._runs if (kept := run.without(numbers)) is not None]

    def _hash(self, frame: pl.DataFrame) -> pl.Series:
        missing = [c for c in self.key if c not in frame.columns]
        if missing:
            return pl.Series("h", [], dtype=pl.UInt64)
        return self.row_hashes(frame, self.key)

    def _find(self, hashes: pl.Series, pending: Sequence[pl.DataFrame]) -> Clash | None:
        if hashes.len() == 0:
            return None
        candidates: list[MemoryRun | SpilledRun | HistoryRun] = list(self._runs)
        if pending:
            candidates.append(MemoryRun.of(pl.concat(pending).sort("h")))
        hit_rows: list[pl.Series] = []
        files: list[pl.Series] = []
        for run in candidates:
            matched, of = run.matches(hashes)
            if matched.any():
                hit_rows.append(matched)
                files.append(of)
        if not hit_rows:
            return None
        hit = hit_rows[0]
        for more in hit_rows[1:]:
            hit = hit | more
        rows = tuple(int(i) + 1 for i in hit.arg_true().head(MAX_EXAMPLES).to_list())
        earlier = int(pl.concat(files).mode().sort().item(0))
        first_file = self._files[earlier]
        sent = ", sent by an earlier run" if earlier in self._earlier.values() else ""
        problem = Problem(
            "unique_across_files",
            ", ".join(self.key),
            int(hit.sum()),
            rows,
            (),
            f"already in {first_file}{sent}",
        )
        return Clash(problem, hashes.filter(hit))

    def _add(self, run: MemoryRun) -> None:
        """Add a sorted run; merge small neighbours of similar size, so that many small
        files cost few lookups, while a large file's run is never copied into a merge:
        it is moved to the spill file, so that memory does not grow with the files."""
        if len(run) == 0:
            return
        if isinstance(run.files, int) and len(run) >= SOLO_RUN_ROWS:
            spilled = self._spill.spilled(run.hashes, run.files)
            self._spilled[self._files[run.files]] = spilled
            self._runs.append(spilled)
            return
        self._runs.append(run)
        while (
            len(self._runs) > 1
            and isinstance(last := self._runs[-1], MemoryRun)
            and isinstance(previous := self._runs[-2], MemoryRun)
            and len(last) < SOLO_RUN_ROWS
            and len(previous) <= 2 * len(last)
        ):
            self._runs.pop()
            self._runs[-1] = previous.merged(last)
