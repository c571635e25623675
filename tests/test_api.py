"""The one-call API: DataFrames (pandas and polars) and files, against a real server."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

import batchload
from batchload.errors import AuthError, FileProblem, UsageError
from batchload.server.process import ServerProcess
from tests.upload_helpers import FAST_RETRY, SIGNALS, ServerView, sha256, write_signals


def signals_frame(rows: int = 10, ticker: str = "AAA") -> pl.DataFrame:
    rng = random.Random(rows)
    return pl.DataFrame(
        {
            "date": [date(2024, 1, 1 + i % 28) for i in range(rows)],
            "ticker": [ticker] * rows,
            "signal": [rng.uniform(-1, 1) for _ in range(rows)],
            "confidence": [None if i % 3 == 0 else 0.5 for i in range(rows)],
            "horizon_days": [5] * rows,
        }
    )


def test_polars_frame_creates_then_adds_and_resending_overwrites(
    server: ServerProcess, token: str
) -> None:
    frame = signals_frame()
    first = batchload.upload_dataframe(
        frame, dataset="signals_df", endpoint=server.url, token=token, schema=SIGNALS
    )
    assert first.created and first.rows == 10 and first.parts == 0
    assert first.file_id.startswith("df-")
    again = batchload.upload_dataframe(
        frame, dataset="signals_df", endpoint=server.url, token=token, schema=SIGNALS
    )
    assert (again.dataset_id, again.file_id, again.created) == (
        first.dataset_id,
        first.file_id,
        False,
    )
    other = batchload.upload_dataframe(
        signals_frame(ticker="BBB"),
        dataset_id=first.dataset_id,
        endpoint=server.url,
        token=token,
        schema=SIGNALS,
        file_id="bbb",
    )
    view = ServerView(server.url, token)
    assert [d["name"] for d in view.datasets()] == ["signals_df"]
    files = view.files(first.dataset_id)
    assert sorted(files) == sorted([first.file_id, "bbb"])
    assert other.receipts[0]["rows"] == 10


def test_pandas_frame_like_the_guide(server: ServerProcess, token: str) -> None:
    frame = pd.DataFrame({"ticker": ["A", "B", "C"], "value": [1.5, 2.5, 3.5]})
    result = batchload.upload_dataframe(
        frame, dataset="pandas_df", endpoint=server.url, token=token
    )
    assert result.rows == 3
    view = ServerView(server.url, token)
    dataset = next(d for d in view.datasets() if d["id"] == result.dataset_id)
    assert [c["name"] for c in dataset["schema"]] == ["ticker", "value"]
    assert view.files(result.dataset_id)[result.file_id]["rows"] == 3


def test_a_large_frame_goes_in_parts(server: ServerProcess, token: str) -> None:
    frame = signals_frame(rows=20_000)
    result = batchload.upload_dataframe(
        frame,
        dataset="big_df",
        endpoint=server.url,
        token=token,
        max_request_mb=0.05,
        retry=FAST_RETRY,
    )
    assert result.parts > 1
    files = ServerView(server.url, token).files(result.dataset_id)
    assert sum(f["rows"] for f in files.values()) == 20_000
    assert sorted(files)[0] == f"{result.file_id}.part-0001"


def test_frame_refused_by_its_contract(server: ServerProcess, token: str) -> None:
    bad = signals_frame().with_columns(pl.lit(7.0).alias("signal"))
    with pytest.raises(FileProblem, match="in_range"):
        batchload.upload_dataframe(
            bad, dataset="x", endpoint=server.url, token=token, schema=SIGNALS
        )
    with pytest.raises(UsageError, match="name the dataset"):
        batchload.upload_dataframe(signals_frame(), endpoint=server.url, token=token)
    with pytest.raises(UsageError, match="pandas or polars"):
        batchload.upload_dataframe([1, 2], dataset="x", endpoint=server.url, token=token)
    with pytest.raises(AuthError):
        batchload.upload_dataframe(signals_frame(), dataset="x", endpoint=server.url, token="wrong")
    assert ServerView(server.url, token).datasets() == []


def test_upload_files(server: ServerProcess, token: str, tmp_path: Path) -> None:
    paths = write_signals(tmp_path / "data", 3)
    summary = batchload.upload_files(
        [tmp_path / "data" / "*.csv"],
        schema=SIGNALS,
        endpoint=server.url,
        token=token,
        manifest=tmp_path / "m.sqlite",
        retry=FAST_RETRY,
    )
    assert (summary.uploaded, summary.exit_code) == (3, 0)
    files = ServerView(server.url, token).files(summary.dataset_id or "")
    assert {k: v["sha256"] for k, v in files.items()} == {p.stem: sha256(p) for p in paths}
    with pytest.raises(AuthError):
        batchload.upload_files(
            [tmp_path / "data" / "*.csv"],
            schema=SIGNALS,
            endpoint=server.url,
            token="nope",
            manifest=tmp_path / "other.sqlite",
        )


def test_upload_files_async(server: ServerProcess, token: str, tmp_path: Path) -> None:
    import anyio

    write_signals(tmp_path / "data", 2)

    async def main() -> int:
        summary = await batchload.upload_files_async(
            [str(tmp_path / "data" / "*.csv")],
            schema=SIGNALS,
            endpoint=server.url,
            token=token,
            manifest=tmp_path / "m.sqlite",
        )
        return summary.uploaded

    assert anyio.run(main) == 2
