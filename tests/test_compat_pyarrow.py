"""pyarrow's CSV error texts, as ``read/pyarrow_compat`` reads them: pinned per kind.

Each case is a real bad CSV read by pyarrow as batchload reads it (one thread, the
contract's types). A pyarrow upgrade that rewords a message fails here.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from batchload.read.pyarrow_compat import BadValue, EmptyCsv, RaggedRow, csv_error


def pyarrow_error(data: bytes, **types: pa.DataType) -> pa.ArrowInvalid:
    with pytest.raises(pa.ArrowInvalid) as caught:
        pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    return caught.value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a,b\n1,2\n3\n", RaggedRow(row=2, expected=2, got=1)),
        (b"a,b\n1,2,3\n", RaggedRow(row=1, expected=2, got=3)),
    ],
)
def test_ragged_rows(data: bytes, expected: RaggedRow) -> None:
    assert csv_error(pyarrow_error(data)) == expected


def test_a_value_that_does_not_convert() -> None:
    error = csv_error(pyarrow_error(b"a,b\n1,2\n1,x y\n", b=pa.int64()))
    assert error == BadValue(
        column=1,
        row=2,
        arrow_type="int64",
        detail="invalid value 'x y'",
        value="x y",
        invalid_utf8=False,
    )


def test_text_that_is_not_utf8() -> None:
    error = csv_error(pyarrow_error(b"a,b\n1,2\n1,\xff\n", b=pa.string()))
    assert isinstance(error, BadValue)
    assert (error.column, error.row, error.invalid_utf8) == (1, 2, True)


def test_an_empty_file() -> None:
    assert csv_error(pyarrow_error(b"")) == EmptyCsv()


def test_threads_leave_the_row_out() -> None:
    """Why batchload reads again on one thread: with threads pyarrow names no row."""
    with pytest.raises(pa.ArrowInvalid) as caught:
        pacsv.read_csv(pa.BufferReader(b"a,b\n1,2\n3\n"))
    assert csv_error(caught.value) == RaggedRow(row=None, expected=2, got=1)


def test_anything_else_is_not_read_into_facts() -> None:
    assert csv_error(pa.ArrowInvalid("something new")) is None
