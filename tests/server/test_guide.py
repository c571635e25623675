"""The guide's reference functions, unchanged but for the base URL, against the server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from batchload.server.process import ServerProcess
from benchmarks.guide_client import upload_data_from_file, upload_dataframe
from tests.server.conftest import SHARED_TOKENS
from tests.server.helpers import DATASETS, Api, parquet_bytes, xls_bytes, xlsx_bytes

TOKEN = SHARED_TOKENS[0]


def frame(start: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=3, freq="D") + pd.Timedelta(days=start),
            "ticker": ["AAA", "BBB", "CCC"],
            "price": [1.5 + start, 2.5, 3.5],
            "volume": [10 + start, 20, 30],
        }
    )


def test_dataframe_create_then_append(shared_server: ServerProcess, api: Api) -> None:
    created = upload_dataframe(TOKEN, frame(0), "prices", base_url=shared_server.url)
    dataset_id = created["id"]
    assert created["rows"] == 3 and created["name"] == "prices"
    assert [c["name"] for c in created["schema"]] == ["date", "ticker", "price", "volume"]

    appended = upload_dataframe(
        TOKEN,
        frame(3),
        "prices",
        file_id="second",
        dataset_id=dataset_id,
        base_url=shared_server.url,
    )
    assert appended["id"] == dataset_id and appended["file_id"] == "second"

    dataset = api.get(f"{DATASETS}/{dataset_id}").json()
    assert dataset["rows"] == 6 and dataset["file_count"] == 2
    date_type = str(pa.Table.from_pandas(frame(0)).schema.field("date").type)  # pandas' unit
    assert dataset["schema"] == [
        {"name": "date", "type": date_type},
        {"name": "ticker", "type": "string"},
        {"name": "price", "type": "double"},
        {"name": "volume", "type": "int64"},
    ]


def test_dataframe_append_with_another_schema_is_refused(
    shared_server: ServerProcess, api: Api
) -> None:
    created = upload_dataframe(TOKEN, frame(0), "prices", base_url=shared_server.url)
    other = frame(3).astype({"volume": "float64"})
    answer = upload_dataframe(
        TOKEN, other, "prices", file_id="x", dataset_id=created["id"], base_url=shared_server.url
    )
    assert answer["error"]["code"] == "schema_mismatch"
    assert answer["error"]["details"] == [
        {"column": "volume", "problem": "type", "expected": "int64", "actual": "double"}
    ]
    assert api.file_ids(created["id"]) == [created["file_id"]]


def _csv(path: Path, start: int) -> None:
    frame(start).to_csv(path, index=False)


def _parquet(path: Path, start: int) -> None:
    path.write_bytes(parquet_bytes(pa.Table.from_pandas(frame(start), preserve_index=False)))


def _excel_rows(start: int) -> list[list[object]]:
    rows: list[list[object]] = [["ticker", "price", "volume"]]
    rows += [[t, 1.5 + start + i, 10.0 * (i + 1)] for i, t in enumerate(["AAA", "BBB", "CCC"])]
    return rows


def _xlsx(path: Path, start: int) -> None:
    path.write_bytes(xlsx_bytes(_excel_rows(start)))


def _xls(path: Path, start: int) -> None:
    path.write_bytes(xls_bytes(_excel_rows(start)))


@pytest.mark.parametrize(
    ("file_format", "write"),
    [("csv", _csv), ("parquet", _parquet), ("xlsx", _xlsx), ("xls", _xls)],
)
def test_file_create_then_append(
    shared_server: ServerProcess,
    api: Api,
    tmp_path: Path,
    file_format: str,
    write: Callable[[Path, int], None],
) -> None:
    first, second = tmp_path / f"first.{file_format}", tmp_path / f"second.{file_format}"
    write(first, 0)
    write(second, 3)
    url = shared_server.url
    created = upload_data_from_file(
        TOKEN, str(first), "files", file_format=file_format, file_id="one", base_url=url
    )
    assert created["rows"] == 3, created
    assert created["bytes"] == first.stat().st_size
    appended = upload_data_from_file(
        TOKEN,
        str(second),
        "files",
        dataset_id=created["id"],
        file_format=file_format,
        file_id="two",
        base_url=url,
    )
    assert appended["rows"] == 3, appended
    assert api.file_ids(created["id"]) == ["one", "two"]
    types = {c["name"]: c["type"] for c in created["schema"]}
    assert types["ticker"] == "string" and types["price"] == "double"


def test_file_id_defaults_to_the_time_as_in_the_guide(
    shared_server: ServerProcess, api: Api, tmp_path: Path
) -> None:
    path = tmp_path / "data.csv"
    _csv(path, 0)
    created = upload_data_from_file(TOKEN, str(path), "timed", base_url=shared_server.url)
    assert created["file_id"].isdigit() and len(created["file_id"]) == 14
    assert api.file_ids(created["id"]) == [created["file_id"]]
