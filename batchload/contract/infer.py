"""Infer a contract from sample files, and report where the samples disagree (drift).

Samples are read with their own types (CSV types inferred by pyarrow, as the API
infers them when no column types are sent). Where files disagree, the contract takes
the widest type and every disagreement is reported as a :class:`Drift`, so that the
choice is never silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandera.polars as pa
import polars as pl

from batchload.contract.model import Contract, build_contract, dtype_instance
from batchload.errors import ContractError

__all__ = ["Drift", "infer_contract"]


@dataclass(frozen=True, slots=True)
class Drift:
    """Where sample files disagree when a contract is inferred from several of them."""

    kind: Literal["missing", "extra", "reordered", "type", "empty"]
    column: str
    detail: str
    paths: tuple[Path, ...]

    def __str__(self) -> str:
        names = ", ".join(p.name for p in self.paths[:3])
        more = f" and {len(self.paths) - 3} more" if len(self.paths) > 3 else ""
        return f"{self.kind}: column {self.column!r}: {self.detail} (in {names}{more})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "column": self.column,
            "detail": self.detail,
            "paths": [str(p) for p in self.paths],
        }


def infer_contract(
    samples: Sequence[tuple[Path, pl.DataFrame]], name: str
) -> tuple[Contract, list[Drift]]:
    """Infer a contract from sample frames (read by :func:`~batchload.read.frames.read_samples`),
    and report where the samples disagree.

    Columns keep the first file's order (then any column the others add); a dtype
    is widened to what every sample fits (ints and floats -> Float64, anything and
    text -> String); a column empty in a sample takes the others' dtype. Columns
    with no null in any sample are ``nullable: false``. No value checks are written.
    """
    if not samples:
        raise ContractError("no sample files to infer a contract from")
    order: list[str] = []
    for _, frame in samples:
        order.extend(c for c in frame.columns if c not in order)

    drift: list[Drift] = []
    first_path, first = samples[0]
    for path, frame in samples[1:]:
        shared = [c for c in frame.columns if c in first.columns]
        expected = [c for c in first.columns if c in frame.columns]
        if shared != expected:
            moved = next(a for a, b in zip(shared, expected, strict=True) if a != b)
            detail = f"order {', '.join(shared)}; {first_path.name} has {', '.join(expected)}"
            drift.append(Drift("reordered", moved, detail, (path,)))
    for column in order:
        absent = tuple(p for p, f in samples if column not in f.columns)
        if absent:
            kind: Literal["missing", "extra"] = "missing" if column in first.columns else "extra"
            drift.append(Drift(kind, column, "not in every sample", absent))

    columns: dict[str, pa.Column] = {}
    for column in order:
        present = [(p, f.get_column(column)) for p, f in samples if column in f.columns]
        dtype, found = _widen(column, present)
        drift.extend(found)
        nullable = any(s.null_count() > 0 for _, s in present) or len(present) < len(samples)
        columns[column] = pa.Column(dtype, nullable=nullable)
    schema = pa.DataFrameSchema(columns, strict=True, ordered=True, name=name)
    return build_contract(schema, dataset_name=name), drift


def _widen(
    column: str, present: Sequence[tuple[Path, pl.Series]]
) -> tuple[pl.DataType, list[Drift]]:
    """The one dtype all samples of a column fit, and the drift found on the way."""
    drift: list[Drift] = []
    empty = tuple(p for p, s in present if s.dtype == pl.Null or s.null_count() == s.len())
    typed = [(p, s.dtype) for p, s in present if s.dtype != pl.Null]
    if empty and len(empty) < len(present):
        drift.append(Drift("empty", column, "all values empty", empty))
    informative = [(p, d) for p, d in typed if p not in empty] or typed
    kinds: dict[str, list[Path]] = {}
    for p, d in informative:
        kinds.setdefault(str(d), []).append(p)
    if not informative:
        return pl.String(), drift
    dtypes = [d for _, d in informative]
    chosen = dtypes[0]
    for d in dtypes[1:]:
        chosen = _supertype(chosen, d)
    if len(kinds) > 1:
        detail = "; ".join(f"{k} in {len(v)} file(s)" for k, v in kinds.items())
        others = tuple(p for p, d in informative if d != dtypes[0])
        drift.append(Drift("type", column, f"{detail}; the contract takes {chosen}", others))
    return dtype_instance(chosen), drift


def _supertype(a: pl.DataType, b: pl.DataType) -> pl.DataType:
    if a == b:
        return a
    if a.is_integer() and b.is_integer():
        return pl.Int64()
    if a.is_numeric() and b.is_numeric():
        return pl.Float64()
    if {type(a), type(b)} == {pl.Date, pl.Datetime}:
        return a if isinstance(a, pl.Datetime) else b
    return pl.String()
