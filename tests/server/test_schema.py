"""Schema differences, column by column, and the type names the server accepts."""

from __future__ import annotations

import pytest

from batchload.schemadiff import Column, Schema, diff_schemas
from batchload.server.errors import ApiError
from batchload.server.parse import canonical_schema, canonical_type


def schema(*columns: str) -> Schema:
    """``schema("a:int64", "b:string")``."""
    return tuple(Column(*c.split(":", 1)) for c in columns)


@pytest.mark.parametrize(
    ("locked", "actual", "expected"),
    [
        (schema("a:int64"), schema("a:int64"), []),
        (
            schema("a:int64", "b:string"),
            schema("a:int64"),
            [
                {"column": "b", "problem": "missing", "expected": "string"},
            ],
        ),
        (
            schema("a:int64"),
            schema("a:int64", "z:bool"),
            [
                {"column": "z", "problem": "extra", "actual": "bool"},
            ],
        ),
        (
            schema("a:int64"),
            schema("a:double"),
            [
                {"column": "a", "problem": "type", "expected": "int64", "actual": "double"},
            ],
        ),
        (
            schema("a:int64", "b:string", "c:bool"),
            schema("b:string", "c:bool", "a:int64"),
            [
                {
                    "column": "a",
                    "problem": "reordered",
                    "expected_position": 0,
                    "actual_position": 2,
                },
            ],
        ),
        # A swap: one of the two moved; the first column is taken as the one in place.
        (
            schema("a:int64", "b:string"),
            schema("b:string", "a:int64"),
            [
                {
                    "column": "b",
                    "problem": "reordered",
                    "expected_position": 1,
                    "actual_position": 0,
                },
            ],
        ),
        (
            schema("a:int64", "b:string"),
            schema("b:double", "a:int64", "x:bool"),
            [
                {"column": "x", "problem": "extra", "actual": "bool"},
                {
                    "column": "b",
                    "problem": "reordered",
                    "expected_position": 1,
                    "actual_position": 0,
                },
                {"column": "b", "problem": "type", "expected": "string", "actual": "double"},
            ],
        ),
    ],
)
def test_diff_schemas(locked: Schema, actual: Schema, expected: list[dict[str, object]]) -> None:
    assert [d.to_wire() for d in diff_schemas(locked, actual)] == expected


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("string", "string"),
        ("utf8", "string"),
        ("large_string", "string"),
        ("float64", "double"),
        ("bool", "bool"),
        ("boolean", "bool"),
        ("date32", "date32[day]"),
        ("date32[day]", "date32[day]"),
        ("timestamp[ns]", "timestamp[ns]"),
        ("timestamp[us, tz=UTC]", "timestamp[us, tz=UTC]"),
        ("decimal128(10, 2)", "decimal128(10, 2)"),
        ("int64", "int64"),
    ],
)
def test_type_names(name: str, canonical: str) -> None:
    assert canonical_type(name) == canonical


@pytest.mark.parametrize("name", ["", "integer", "timestamp[weeks]", "decimal(x, y)", "int64 "])
def test_unknown_type_names(name: str) -> None:
    if name == "int64 ":  # surrounding blanks are forgiven
        assert canonical_type(name) == "int64"
        return
    with pytest.raises(ValueError):
        canonical_type(name)


def test_canonical_schema_reports_every_unknown_type() -> None:
    with pytest.raises(ApiError) as caught:
        canonical_schema(
            [
                {"name": "a", "type": "int64"},
                {"name": "b", "type": "nope"},
                {"name": "c", "type": "nada"},
            ]
        )
    assert caught.value.status == 400
    assert caught.value.details == [
        {"column": "b", "type": "nope"},
        {"column": "c", "type": "nada"},
    ]
