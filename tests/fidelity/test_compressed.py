"""Compressed CSVs are sent as the CSV they hold, and resume like any file."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from batchload.contract.model import contract_from_yaml
from batchload.read.frames import read_frame
from batchload.server.process import ServerProcess
from tests.conftest import TOKEN
from tests.fidelity.test_corpus import HEADER, QUOTES, stored
from tests.upload_helpers import job, run

COMPRESS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".zst": lambda data: pa.compress(data, "zstd", asbytes=True),
}


def quotes(tmp_path: Path, name: str) -> Path:
    schema = tmp_path / f"{name}.yaml"
    schema.write_text(QUOTES.replace("name: quotes", f"name: {name}"))
    return schema


def compressed(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_bytes(COMPRESS[path.suffix](text.encode()))
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_compressed_csvs_land_as_their_text_and_a_rerun_sends_nothing(
    tmp_path: Path, server: ServerProcess
) -> None:
    schema = quotes(tmp_path, "quotes_gz")
    contract = contract_from_yaml(schema.read_text())
    texts = {
        f"day{i}.csv{suffix}": HEADER
        + f"2024-01-0{i},A,1.5,x\n2024-01-0{i},B,,\n2024-01-0{i},C,0,N/A\n"
        for i, suffix in enumerate(COMPRESS, start=1)
    }
    paths = [compressed(tmp_path, name, text) for name, text in texts.items()]
    manifest = tmp_path / "m.sqlite"
    summary = run(server, TOKEN, [job(*map(str, paths), schema=schema)], manifest)
    assert (summary.uploaded, summary.parts_uploaded) == (3, 0), summary.problems

    with closing(sqlite3.connect(server.data_dir / "metadata.sqlite3")) as db:
        held = dict(
            db.execute(
                "SELECT file_id, file_format FROM files WHERE dataset_id = ?",
                (summary.dataset_id,),
            ).fetchall()
        )
    assert held == {p.stem: "csv" for p in paths}  # {stem} of day1.csv.gz: day1.csv
    on_server = stored(server, summary.dataset_id or "", contract)
    for path in paths:
        assert_frame_equal(on_server[path.stem], read_frame(path, contract))
    with closing(sqlite3.connect(manifest)) as db:
        rows = db.execute(
            "SELECT source_path, sha256, sent_sha256, file_format, converted_from FROM files"
        ).fetchall()
    assert sorted(rows) == sorted(
        (
            str(p.resolve()),
            sha256(p.read_bytes()),
            sha256(texts[p.name].encode()),
            "csv",
            f"csv{p.suffix}",
        )
        for p in paths
    )

    again = run(server, TOKEN, [job(*map(str, paths), schema=schema)], manifest)
    assert (again.uploaded, again.skipped, again.bytes_sent) == (0, 3, 0)


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_a_large_compressed_csv_is_sent_in_parquet_parts(
    tmp_path: Path, server: ServerProcess, suffix: str
) -> None:
    """Its text would not fit in one request: its rows go in parts, none lost or doubled."""
    name = f"quotes_big{suffix.strip('.')}"
    schema = quotes(tmp_path, name)
    contract = contract_from_yaml(schema.read_text())
    body = "".join(f"2024-01-02,K{i:05d},{i}.25,note {i}\n" for i in range(4000))
    path = compressed(tmp_path, f"big.csv{suffix}", HEADER + body)
    assert path.stat().st_size < 40_000 < len(body)  # small on disk, large as text
    summary = run(
        server, TOKEN, [job(str(path), schema=schema)], tmp_path / "m.sqlite", max_request_mb=0.05
    )
    assert summary.uploaded == 1 and summary.parts_uploaded > 1, summary.problems
    parts = stored(server, summary.dataset_id or "", contract)
    assert len(parts) == summary.parts_uploaded
    together = pl.concat([parts[k] for k in sorted(parts)])
    assert_frame_equal(together, read_frame(path, contract))
