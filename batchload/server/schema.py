"""Locked schemas: ordered ``{"name", "type"}`` columns, and how two of them differ.

A dataset's locked schema is its first file's (or the explicit one it was created
with). A later file is added only when its ordered names and types are equal; when
they are not, :func:`diff_schemas` says why, column by column, for the ``422`` answer.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a schema; ``type`` is an Arrow type name in the API's spelling."""

    name: str
    type: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


Schema = tuple[Column, ...]


def schema_to_json(schema: Schema) -> list[dict[str, str]]:
    """The wire form: a JSON array of ``{"name", "type"}``."""
    return [column.to_json() for column in schema]


def duplicate_names(schema: Schema) -> list[str]:
    """Column names that occur more than once (a schema must not have any)."""
    counts = Counter(column.name for column in schema)
    return [name for name, count in counts.items() if count > 1]


def diff_schemas(locked: Schema, actual: Schema) -> list[dict[str, Any]]:
    """How ``actual`` differs from ``locked``; empty when they are equal.

    Each difference is ``{"column", "problem", ...}`` with ``problem`` one of
    ``missing`` (with ``expected`` type), ``extra`` (with ``actual`` type),
    ``reordered`` (with ``expected_position`` and ``actual_position``, 0-based) and
    ``type`` (with ``expected`` and ``actual``). Names must be unique on both sides.
    """
    if locked == actual:
        return []
    expected = {column.name: (i, column.type) for i, column in enumerate(locked)}
    got = {column.name: (i, column.type) for i, column in enumerate(actual)}
    diffs: list[dict[str, Any]] = []
    diffs += [
        {"column": c.name, "problem": "missing", "expected": c.type}
        for c in locked
        if c.name not in got
    ]
    diffs += [
        {"column": c.name, "problem": "extra", "actual": c.type}
        for c in actual
        if c.name not in expected
    ]
    common_expected = [c.name for c in locked if c.name in got]
    common_actual = [c.name for c in actual if c.name in expected]
    # Columns outside the longest runs kept in order are the ones that moved.
    matcher = difflib.SequenceMatcher(a=common_expected, b=common_actual, autojunk=False)
    in_place = {
        name
        for block in matcher.get_matching_blocks()
        for name in common_expected[block.a : block.a + block.size]
    }
    for name in common_expected:
        (i, expected_type), (j, actual_type) = expected[name], got[name]
        if name not in in_place:
            diffs.append(
                {
                    "column": name,
                    "problem": "reordered",
                    "expected_position": i,
                    "actual_position": j,
                }
            )
        if expected_type != actual_type:
            diffs.append(
                {
                    "column": name,
                    "problem": "type",
                    "expected": expected_type,
                    "actual": actual_type,
                }
            )
    return diffs
