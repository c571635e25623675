"""Export a manifest's file rows as csv, json or parquet, for a person or another tool."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from batchload.errors import UsageError
from batchload.state.ledger import Ledger
from batchload.state.sqlstore import FILE_COLUMNS

EXPORT_FORMATS = ("csv", "json", "parquet")

_INT_COLUMNS = frozenset(
    {"part", "parts", "size", "mtime_ns", "rows", "bytes_sent", "attempts", "last_status"}
)


def export(manifest: Ledger, fmt: str, out: Path) -> int:
    """Write every file row to ``out`` as csv, json or parquet; returns the row count."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use csv, json or parquet")
    rows = [r.to_dict() for r in manifest.rows()]
    for row in rows:
        row["receipt"] = json.dumps(row["receipt"], sort_keys=True) if row["receipt"] else None
        # a name that is not UTF-8 shows its odd bytes as \xNN (text cannot hold them)
        row["source_path"] = os.fsencode(row["source_path"]).decode("utf-8", "backslashreplace")
    schema = {name: (pl.Int64 if name in _INT_COLUMNS else pl.String) for name in FILE_COLUMNS}
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    if fmt == "csv":
        frame.write_csv(out)
    elif fmt == "json":
        frame.write_json(out)
    else:
        frame.write_parquet(out)
    return frame.height
