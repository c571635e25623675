"""Sized CSV files that pass ``schemas/equity_signals.yaml``, for the benchmark scenarios.

Row ``k`` of a file set is the date ``2000-01-03 + k // TICKERS`` and the ticker
``T{k % TICKERS:05d}``, so the contract's (date, ticker) key is unique across every
file of a set, as a real backfill's would be. Values come from a seeded generator:
the same call writes the same bytes. Floats carry six decimals, so a row is about
40 bytes, like a real signal file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "equity_signals.yaml"
TICKERS = 10_000
START = dt.date(2000, 1, 3)
HORIZONS = [1, 5, 21, 63]
_SAMPLE_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class FileSet:
    """Files written for one scenario."""

    paths: tuple[Path, ...]
    rows_per_file: int

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths)

    @property
    def largest(self) -> int:
        return max((p.stat().st_size for p in self.paths), default=0)


def frame(first_row: int, rows: int, *, seed: int = 0) -> pl.DataFrame:
    """Rows ``first_row ..`` of the global sequence, valid under the contract."""
    rng = np.random.default_rng([seed, first_row])
    k = np.arange(first_row, first_row + rows, dtype=np.int64)
    confidence = np.round(rng.uniform(0.0, 1.0, rows), 6)
    return pl.DataFrame(
        {
            "date": pl.Series(k // TICKERS).cast(pl.Int32),
            "ticker": pl.Series(k % TICKERS),
            "signal": np.round(rng.uniform(-1.0, 1.0, rows), 6),
            "confidence": pl.Series(confidence).set(
                pl.Series(rng.random(rows) < 0.05), None
            ),  # about 5 % unknown
            "horizon_days": rng.choice(HORIZONS, rows),
        }
    ).with_columns(
        (pl.lit(START) + pl.duration(days=pl.col("date"))).alias("date"),
        pl.format("T{}", pl.col("ticker").cast(pl.String).str.zfill(5)).alias("ticker"),
    )


def rows_for(target_bytes: int) -> int:
    """Rows that make a CSV of about ``target_bytes``."""
    sample = frame(0, _SAMPLE_ROWS).write_csv().encode()
    per_row = len(sample) / _SAMPLE_ROWS
    return max(1, round(target_bytes / per_row))


def write_files(directory: Path, count: int, target_bytes: int, *, prefix: str = "sig") -> FileSet:
    """``count`` CSV files of about ``target_bytes`` each in ``directory`` (reused if there)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = rows_for(target_bytes)
    paths = []
    for i in range(count):
        path = directory / f"{prefix}_{i:05d}.csv"
        if not path.exists():
            frame(i * rows, rows).write_csv(path)
        paths.append(path)
    return FileSet(tuple(paths), rows)
