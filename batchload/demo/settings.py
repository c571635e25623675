"""What ``batchload demo`` can be asked for, and its defaults: light, so the CLI's ``--help``
does not load the demo's sample writers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRADING_DAYS_PER_YEAR = 252
CONTRACT_NAME = "equity_signals"
DEFAULT_DAYS = 2 * TRADING_DAYS_PER_YEAR
DEFAULT_TICKERS = 100
MIN_DAYS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSettings:
    """What ``batchload demo`` was asked for."""

    directory: Path | None = None
    """Where to write everything; default a new temporary folder (kept afterwards)."""
    days: int = DEFAULT_DAYS
    tickers: int = DEFAULT_TICKERS
    quiet: bool = False
    seed: int = 0
