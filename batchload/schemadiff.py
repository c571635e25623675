"""Locked schemas: ordered ``{"name", "type"}`` columns, and the one way two of them differ.

A dataset's locked schema is its first file's (or the explicit one it was created
with). A later file is added only when its ordered names and types are equal; when
they are not, :func:`diff_schemas` says why, column by column. The local server
answers a ``422`` with it, and the client compares a contract with a dataset's locked
schema with it before sending, so both sides always name the same differences.
Types are compared in the API's spelling (:func:`~batchload.protocol.normalize_arrow_type`).
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from batchload.protocol import normalize_arrow_type


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


def schema_from_json(columns: Any) -> Schema:
    """A schema from its wire form, types in the API's spelling (``int64``, ``string``)."""
    return tuple(
        Column(str(c.get("name")), normalize_arrow_type(str(c.get("type", "")))) for c in columns
    )


Problem = Literal["missing", "extra", "reordered", "type"]


@dataclass(frozen=True, slots=True)
class SchemaDifference:
    """One column-by-column difference between a dataset's locked schema and another.

    ``missing``: locked but absent (``expected`` type); ``extra``: not locked
    (``actual`` type); ``reordered``: in both, moved out of the locked order
    (``expected_position``, ``actual_position``, 0-based); ``type``: in both with other
    types (``expected``, ``actual``).
    """

    kind: Problem
    column: str
    expected: str | None = None
    actual: str | None = None
    expected_position: int | None = None
    actual_position: int | None = None

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"column {self.column!r} is locked as {self.expected} but not in the contract"
        if self.kind == "extra":
            return f"column {self.column!r} ({self.actual}) is in the contract, not the dataset"
        if self.kind == "reordered":
            return (
                f"column {self.column!r} is at position {_shown(self.actual_position)} in the "
                f"contract, {_shown(self.expected_position)} in the dataset"
            )
        return f"column {self.column!r} is {self.actual} in the contract, locked as {self.expected}"

    def to_wire(self) -> dict[str, Any]:
        """The API's form, an entry of a ``422`` answer's ``details``."""
        fields = {
            "expected": self.expected,
            "actual": self.actual,
            "expected_position": self.expected_position,
            "actual_position": self.actual_position,
        }
        return {
            "column": self.column,
            "problem": self.kind,
            **{k: v for k, v in fields.items() if v is not None},
        }

    def to_dict(self) -> dict[str, Any]:
        """batchload's own ``--json`` form."""
        wire = self.to_wire()
        del wire["problem"]
        return {"kind": self.kind, **wire}


def _shown(position: int | None) -> str:
    return "?" if position is None else str(position + 1)  # people count from 1


def diff_schemas(locked: Schema, actual: Schema) -> list[SchemaDifference]:
    """How ``actual`` differs from ``locked``; empty when they are equal.

    A column counts as reordered when it is outside the longest runs of shared
    columns kept in order. Names must be unique on both sides.
    """
    if locked == actual:
        return []
    expected = {column.name: (i, column.type) for i, column in enumerate(locked)}
    got = {column.name: (i, column.type) for i, column in enumerate(actual)}
    diffs = [
        SchemaDifference("missing", c.name, expected=c.type) for c in locked if c.name not in got
    ]
    diffs += [
        SchemaDifference("extra", c.name, actual=c.type) for c in actual if c.name not in expected
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
                SchemaDifference("reordered", name, expected_position=i, actual_position=j)
            )
        if expected_type != actual_type:
            diffs.append(SchemaDifference("type", name, expected_type, actual_type))
    return diffs
