"""Which store a manifest location names: a SQLite file, or a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from batchload.state.ledger import Ledger, is_url
from batchload.state.manifest import Manifest
from batchload.state.postgres import PostgresLedger


def open_ledger(location: str | Path, *, create: bool = True) -> Ledger:
    """Open the manifest at ``location``: ``postgresql://…`` or a SQLite file's path."""
    if is_url(location):
        return PostgresLedger.open(str(location), create=create)
    return Manifest.open(Path(location), create=create)


def exists(location: str | Path) -> bool:
    """Whether there may be a manifest to read (a URL is asked when it is opened)."""
    return is_url(location) or Path(location).is_file()
