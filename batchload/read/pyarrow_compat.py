"""pyarrow's CSV errors, read back into facts: the only module that parses their text.

pyarrow's CSV reader raises ``ArrowInvalid`` for every problem, with the row, the
column, the Arrow type and the refused cell only in the message (pyarrow 26):

- ``CSV parse error: Row #3: Expected 2 columns, got 1: ...``
- ``In CSV column #1: Row #3: CSV conversion error to int64: invalid value 'x'``
- ``In CSV column #1: Row #2: CSV conversion error to string: invalid UTF8 data``
- ``Empty CSV file``

``Row #N`` counts the header as row 1 and comes only from a reader on one thread;
``column #N`` counts from 0. ``tests/test_compat_pyarrow.py`` feeds pyarrow each kind of
bad CSV and pins that these facts still come out, so a pyarrow upgrade that rewords a
message fails there, not as a vaguer message to a user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BadValue", "EmptyCsv", "RaggedRow", "csv_error"]


@dataclass(frozen=True, slots=True)
class RaggedRow:
    """A row with more or fewer fields than the header."""

    row: int | None  # data row, 1 = the first row under the header; None when not named
    expected: int
    got: int


@dataclass(frozen=True, slots=True)
class BadValue:
    """A cell that does not convert to its column's Arrow type."""

    column: int  # 0-based position in the header
    row: int | None  # data row, 1 = the first row under the header; None when not named
    arrow_type: str
    detail: str  # pyarrow's words after the type: ``invalid value 'x'``
    value: str | None  # the cell's text, when pyarrow shows it
    invalid_utf8: bool


@dataclass(frozen=True, slots=True)
class EmptyCsv:
    """No header row."""


_RAGGED = re.compile(r"CSV parse error: (?:Row #(\d+): )?Expected (\d+) columns, got (\d+)")
_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to ([^:]+): (.*)", re.S
)
_VALUE = re.compile(r"invalid value '(.*)'", re.S)


def csv_error(exc: BaseException) -> RaggedRow | BadValue | EmptyCsv | None:
    """What a pyarrow CSV error says, or None when it is none of the kinds above."""
    text = str(exc)
    ragged = _RAGGED.search(text)
    if ragged:
        row, expected, got = ragged.groups()
        return RaggedRow(_data_row(row), int(expected), int(got))
    conversion = _CONVERSION.search(text)
    if conversion:
        column, row, arrow_type, detail = conversion.groups()
        value = _VALUE.search(detail)
        return BadValue(
            column=int(column),
            row=_data_row(row),
            arrow_type=arrow_type,
            detail=detail.strip(),
            value=value.group(1) if value else None,
            invalid_utf8="invalid UTF8" in detail,
        )
    if "Empty CSV" in text:
        return EmptyCsv()
    return None


def _data_row(row: str | None) -> int | None:
    return int(row) - 1 if row else None
