"""Checks across the files of a run: repeated unique keys, and files grouped by column layout.

A backfill that sends the same day twice passes every per-file check; only a memory
of the keys already accepted catches it. :class:`UniqueKeys` is that memory, kept
small (8-byte hashes) and safe to share between the worker threads that validate.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from batchload.verdict import MAX_EXAMPLES, FileVerdict, Problem

if TYPE_CHECKING:
    from batchload.contract import Contract

__all__ = ["FingerprintGroup", "UniqueKeys", "group_by_fingerprint"]


class UniqueKeys:
    """The contract's ``unique`` key of every valid file of a run, to catch repeats across files.

    Keys are hashed to 64 bits per row (polars ``hash_rows``) and kept as sorted runs
    beside the file they came from: 12 bytes a row, about 120 MB for 10M rows.
    Looking up a file's keys costs O(rows × log(total)). Two different keys sharing a
    64-bit hash would be reported as a repeat; at 10M rows the chance is ~3e-6.
    Safe to share between worker threads.
    """

    _SEED = 0x6261_7463  # fixed, so a run hashes the same key the same way

    def __init__(self, key: Sequence[str]) -> None:
        self.key = tuple(key)
        self._files: list[Path] = []
        self._runs: list[pl.DataFrame] = []  # each sorted by "h", with the file number "f"
        self._lock = threading.Lock()

    @classmethod
    def for_contract(cls, contract: Contract) -> UniqueKeys:
        return cls(contract.unique)

    def __len__(self) -> int:
        return sum(run.height for run in self._runs)

    def claim(self, items: Sequence[tuple[Path, pl.DataFrame]]) -> list[Problem | None]:
        """Check each file's keys against all earlier ones; remember the files that pass.

        Returns, per item, ``None`` or the Problem that makes the file invalid (its
        keys are then not remembered). Within ``items``, the earlier file wins.
        """
        if not self.key:
            return [None] * len(items)
        if not items:
            return []
        hashed = [self._hash(frame) for _, frame in items]
        pairs = self._pairs(hashed)
        with self._lock:
            if self._all_new(pairs):  # the usual case, in one lookup for the whole group
                first = pl.lit(len(self._files), dtype=pl.UInt32)
                self._files += [path for path, _ in items]
                distinct = pl.col("h").ne_missing(pl.col("h").shift(1))
                self._add(pairs.filter(distinct).with_columns(pl.col("f") + first))
                return [None] * len(items)
            results: list[Problem | None] = []
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
                self._add(pl.concat(accepted).sort("h"))
            return results

    @staticmethod
    def _pairs(hashed: Sequence[pl.Series]) -> pl.DataFrame:
        """Every key hash as a row (``h``, ``f``: its file's position in ``hashed``), sorted.

        Sorted by hash (then file), so that lookups in the sorted runs are fast (~5x
        faster than unsorted ones) and a hash seen twice follows its first sighting.
        """
        heights = [hashes.len() for hashes in hashed]
        starts = pl.Series(list(itertools.accumulate(heights[:-1], initial=0)), dtype=pl.Int64)
        rows = pl.int_range(0, sum(heights), dtype=pl.Int64, eager=True)
        files = (starts.search_sorted(rows, side="right") - 1).cast(pl.UInt32)
        return pl.DataFrame({"h": pl.concat(hashed), "f": files}).sort("h", "f")

    def _all_new(self, pairs: pl.DataFrame) -> bool:
        """True when no two files share a key and no key was accepted before.

        Then checking the files one by one would accept every one of them; when not,
        :meth:`claim` does exactly that, to find which file repeats which.
        """
        hashes, files = pairs.get_column("h"), pairs.get_column("f")
        if ((hashes == hashes.shift(1)) & (files != files.shift(1))).any():
            return False  # (a key repeated within one file is the file's own unique check)
        for run in self._runs:
            if run.height == 0:
                continue
            sorted_h = run.get_column("h")
            position = sorted_h.search_sorted(hashes, side="left").clip(0, run.height - 1)
            if (sorted_h.gather(position) == hashes).any():
                return False
        return True

    def _hash(self, frame: pl.DataFrame) -> pl.Series:
        missing = [c for c in self.key if c not in frame.columns]
        if missing:
            return pl.Series("h", [], dtype=pl.UInt64)
        return frame.select(self.key).hash_rows(seed=self._SEED).alias("h")

    def _find(self, hashes: pl.Series, pending: Sequence[pl.DataFrame]) -> Problem | None:
        if hashes.len() == 0:
            return None
        candidates = list(self._runs)
        if pending:
            candidates.append(pl.concat(pending).sort("h"))
        hit_rows: list[pl.Series] = []
        files: list[pl.Series] = []
        for run in candidates:
            if run.height == 0:
                continue
            sorted_h = run.get_column("h")
            position = sorted_h.search_sorted(hashes, side="left").clip(0, run.height - 1)
            matched = sorted_h.gather(position) == hashes
            if matched.any():
                hit_rows.append(matched)
                files.append(run.get_column("f").gather(position.filter(matched)))
        if not hit_rows:
            return None
        hit = hit_rows[0]
        for more in hit_rows[1:]:
            hit = hit | more
        rows = tuple(int(i) + 1 for i in hit.arg_true().head(MAX_EXAMPLES).to_list())
        earlier = pl.concat(files).mode().sort().item(0)
        first_file = self._files[int(earlier)]
        return Problem(
            "unique_across_files",
            ", ".join(self.key),
            int(hit.sum()),
            rows,
            (),
            f"already in {first_file}",
        )

    def _add(self, run: pl.DataFrame) -> None:
        """Add a sorted run; merge neighbours of similar size so lookups stay O(log n) each."""
        self._runs.append(run)
        while len(self._runs) > 1 and self._runs[-2].height <= 2 * self._runs[-1].height:
            last = self._runs.pop()
            self._runs[-1] = self._runs[-1].merge_sorted(last, key="h")  # O(n), both sorted


@dataclass(frozen=True, slots=True)
class FingerprintGroup:
    """Files that read with the same ordered column names and types."""

    fingerprint: str
    matches_contract: bool
    columns: tuple[str, ...]
    paths: tuple[Path, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "matches_contract": self.matches_contract,
            "columns": list(self.columns),
            "paths": [str(p) for p in self.paths],
        }


def group_by_fingerprint(
    verdicts: Iterable[FileVerdict], contract: Contract
) -> list[FingerprintGroup]:
    """Files grouped by column layout as read: layouts unlike the contract's first, rarest first."""
    groups: dict[str, tuple[tuple[str, ...], list[Path]]] = {}
    for verdict in verdicts:
        if verdict.fingerprint is None:
            continue
        groups.setdefault(verdict.fingerprint, (verdict.columns, []))[1].append(verdict.path)
    result = [
        FingerprintGroup(fp, fp == contract.fingerprint, columns, tuple(paths))
        for fp, (columns, paths) in groups.items()
    ]
    result.sort(key=lambda g: (g.matches_contract, len(g.paths)))
    return result
