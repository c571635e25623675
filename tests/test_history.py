"""The run of earlier files' key hashes on disk: it holds exactly what was stored, and
finds exactly the hashes a set of them would, across buckets, blocks and spans."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from batchload.check import history
from batchload.check.history import history_run


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny buckets, blocks and spans: a few hundred hashes cross every boundary."""
    monkeypatch.setattr(history, "BUCKET_ROWS", 64)
    monkeypatch.setattr(history, "BLOCK_ROWS", 8)
    monkeypatch.setattr(history, "SPAN_BLOCKS", 4)
    monkeypatch.setattr(history, "GAP_BLOCKS", 1)


def stored_files(seed: int, files: int, rows: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        number: rng.integers(0, 2**64 - 1, rows, dtype=np.uint64, endpoint=True)
        for number in range(3, 3 + files)
    }


def blobs(stored: dict[int, np.ndarray]) -> list[tuple[int, bytes]]:
    return [(number, hashes.tobytes()) for number, hashes in stored.items()]


@pytest.mark.usefixtures("small")
def test_the_run_finds_exactly_the_stored_hashes_and_their_files() -> None:
    stored = stored_files(0, files=12, rows=50)
    run, repeated = history_run(blobs(stored), rows=600)
    assert (len(run), len(repeated)) == (600, 0)
    owner = {int(h): number for number, hashes in stored.items() for h in hashes}
    rng = np.random.default_rng(1)
    probes = np.concatenate(
        [
            rng.choice(np.concatenate(list(stored.values())), 40),  # found, in every bucket
            rng.integers(0, 2**64 - 1, 40, dtype=np.uint64, endpoint=True),  # not found
            np.array([0, 2**64 - 1], dtype=np.uint64),  # either end of the hash range
        ]
    )
    matched, files = run.matches(pl.Series(probes))
    assert matched.to_list() == [int(p) in owner for p in probes]
    assert files.to_list() == [owner[int(p)] for p in probes if int(p) in owner]
    wanted = pl.Series(np.sort(probes))
    assert run.holds_any(wanted)
    assert not run.holds_any(pl.Series(np.sort(probes[40:80])))


@pytest.mark.usefixtures("small")
def test_a_hash_two_files_hold_still_counts_when_the_first_stops_counting() -> None:
    stored = stored_files(2, files=3, rows=30)
    shared = stored[3][:5]
    stored[5] = np.concatenate([stored[5], shared])  # file 5 repeats five of file 3's
    run, repeated = history_run(blobs(stored), rows=95)
    assert (len(run), len(repeated)) == (90, 5)
    assert sorted(repeated.hashes.to_list()) == sorted(shared.tolist())
    assert set(repeated.files_at(None).to_list()) == {5}
    matched, files = run.matches(pl.Series(shared))
    assert matched.all() and set(files.to_list()) == {3}  # the first file, in the run

    later = run.without({3})  # file 3 is validated again: its old keys go
    matched, _ = later.matches(pl.Series(stored[3]))
    assert not matched.any()
    kept = repeated.without({3})  # file 5's copies stay, beside the run
    assert kept is not None and len(kept) == 5
    matched, files = later.matches(pl.Series(stored[4]))
    assert matched.all() and set(files.to_list()) == {4}


def test_an_empty_history_holds_nothing() -> None:
    run, repeated = history_run([(0, b"")], rows=0)
    assert (len(run), len(repeated)) == (0, 0)
    matched, files = run.matches(pl.Series([1, 2], dtype=pl.UInt64))
    assert matched.to_list() == [False, False] and files.len() == 0
    assert not run.holds_any(pl.Series([1], dtype=pl.UInt64))


def test_one_bucket_of_real_sizes_is_sorted_whole() -> None:
    stored = stored_files(4, files=2, rows=1_000)
    run, _ = history_run(blobs(stored), rows=2_000)
    every = np.sort(np.concatenate(list(stored.values())))
    matched, _ = run.matches(pl.Series(every[::7]))
    assert matched.all()
    assert not run.holds_any(pl.Series(every[:10] + np.uint64(1)))
