"""The JSON skeleton parser gives json.loads's answer without copying long strings."""

from __future__ import annotations

import json
from typing import Any

import pybase64
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchload.server.body import RawString, loads

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def plain(value: Any) -> Any:
    """``value`` with every RawString turned back into text."""
    if isinstance(value, RawString):
        return value.text()
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


@settings(max_examples=300)
@given(json_values, st.booleans(), st.integers(min_value=0, max_value=6))
def test_same_answer_as_json_loads(value: Any, ascii_only: bool, threshold: int) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert plain(loads(body, large_string_bytes=threshold)) == json.loads(body)


def test_a_long_base64_string_is_a_view_of_the_body() -> None:
    data = bytes(range(256)) * 1000
    encoded = pybase64.b64encode(data)
    body = b'{"name": "n", "file": "' + encoded + b'", "file_id": "a"}'
    parsed = loads(body)
    assert parsed["name"] == "n" and parsed["file_id"] == "a"
    assert isinstance(parsed["file"], RawString)
    assert parsed["file"].data.obj is body  # no copy
    assert pybase64.b64decode(parsed["file"].data, validate=True) == data


def test_long_strings_with_escapes_are_parsed_by_json() -> None:
    text = "a\\/b" * 40_000
    body = json.dumps({"file": text, "x": ['"quoted"' * 20_000]}).encode()
    parsed = loads(body)
    assert parsed == json.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"a": }',
        b'{"a": "' + b"x" * 70_000,  # unterminated long string
        b'{"a": "' + b"x" * 70_000 + b'" "b"}',  # missing colon after a long string
        b'{"a": "' + b"x" * 70_000 + b'"} trailing',
        b'\xff{"a": 1}',
    ],
)
def test_malformed_json_raises_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        loads(body)


def test_bodies_with_many_strings_are_parsed_by_json_alone() -> None:
    value = {"tags": [f"t{i}" for i in range(20_000)], "file": "QUJD" * 20_000}
    body = json.dumps(value).encode()
    assert loads(body) == value


def test_utf16_bodies_fall_back_to_json_loads() -> None:
    body = json.dumps({"file": "QUJD" * 20_000}).encode("utf-16")
    assert loads(body) == json.loads(body)
