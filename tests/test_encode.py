"""Request bodies: exact length, valid JSON, streamed once, change detection; parts."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import anyio
import polars as pl
import pytest

from batchload.check.parts import split_frame
from batchload.errors import FileChanged
from batchload.protocol import Envelope, b64_len, raw_budget
from batchload.read.content import (
    KEEP_BYTES,
    DiskSource,
    MemorySource,
    fingerprint_file,
    sha256_bytes,
)
from batchload.send.body import INLINE_CHUNK_BYTES, RequestBody

ENVELOPE = Envelope(
    file_id="prices",
    file_format="csv",
    name='Eq "signals" ü',
    convert_options={"column_types": {"date": "date32[day]", "close": "double"}},
)


async def collect(body: RequestBody) -> bytes:
    return b"".join([chunk async for chunk in body])


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 14, 15, 16, 29, 30, 31, 1000])
def test_body_is_exact_json_for_every_remainder(tmp_path: Path, n: int) -> None:
    data = os.urandom(n)
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    source = DiskSource(path, n, sha256_bytes(data))
    body = RequestBody(ENVELOPE, source, chunk_bytes=15)  # tiny chunks: many boundaries
    raw = anyio.run(collect, body)
    assert len(raw) == body.content_length == ENVELOPE.request_bytes(n)
    decoded = json.loads(raw)
    assert base64.b64decode(decoded.pop("file"), validate=True) == data
    assert decoded == {
        "name": 'Eq "signals" ü',
        "upload_format": "base64",
        "file_format": "csv",
        "file_id": "prices",
        "convert_options": {"column_types": {"date": "date32[day]", "close": "double"}},
    }


def test_large_chunks_are_encoded_in_a_thread_and_match(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    path = tmp_path / "big.parquet"
    path.write_bytes(data)
    body = RequestBody(
        Envelope(file_id="b", file_format="parquet"),
        DiskSource(path, len(data), sha256_bytes(data)),
    )
    raw = anyio.run(collect, body)
    assert len(raw) == body.content_length
    assert base64.b64decode(json.loads(raw)["file"]) == data


def test_memory_source() -> None:
    data = b"PAR1" * 1000
    body = RequestBody(
        Envelope(file_id="p", file_format="parquet"),
        MemorySource(data, sha256_bytes(data)),
        chunk_bytes=300,
    )
    raw = anyio.run(collect, body)
    assert len(raw) == body.content_length
    assert base64.b64decode(json.loads(raw)["file"]) == data


def test_a_small_body_in_memory_is_one_piece_the_same_as_its_stream(tmp_path: Path) -> None:
    """What the transport sends as bytes is what streaming the file would send."""
    data = b"a,b\n1,2\n"
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    fp = fingerprint_file(path)
    kept = RequestBody(ENVELOPE, DiskSource(path, fp.size, fp.sha256, fp.data, fp.mtime_ns))
    whole = kept.inline()
    assert whole is not None and len(whole) == kept.content_length
    assert whole == anyio.run(collect, RequestBody(ENVELOPE, DiskSource(path, fp.size, fp.sha256)))
    with pytest.raises(RuntimeError, match="streams once"):
        kept.inline()
    large = b"x" * (INLINE_CHUNK_BYTES + 1)
    assert RequestBody(ENVELOPE, MemorySource(large, sha256_bytes(large))).inline() is None
    assert RequestBody(ENVELOPE, DiskSource(path, fp.size, fp.sha256)).inline() is None


def test_a_body_streams_once() -> None:
    body = RequestBody(
        Envelope(file_id="p", file_format="parquet"), MemorySource(b"x", sha256_bytes(b"x"))
    )
    anyio.run(collect, body)
    with pytest.raises(RuntimeError, match="streams once"):
        anyio.run(collect, body)


@pytest.mark.parametrize(
    ("new_content", "how"),
    [(b"a,b\n1,3\n", "changed"), (b"a,b\n1,2\n3,4\n", "grew"), (b"a,b\n", "shrank")],
)
def test_a_changed_file_is_never_sent_whole(tmp_path: Path, new_content: bytes, how: str) -> None:
    original = b"a,b\n1,2\n"
    path = tmp_path / "f.csv"
    path.write_bytes(original)
    body = RequestBody(
        ENVELOPE, DiskSource(path, len(original), sha256_bytes(original)), chunk_bytes=3
    )
    path.write_bytes(new_content)
    sent: list[bytes] = []

    async def consume() -> None:
        async for chunk in body:
            sent.append(chunk)

    with pytest.raises(FileChanged, match=f"file {how} on disk"):
        anyio.run(consume)
    assert body.problem is not None
    assert not b"".join(sent).endswith(b'"}')  # the closing bytes were held back
    assert len(b"".join(sent)) < body.content_length


@pytest.mark.parametrize(
    ("new_content", "how"),
    [(b"a,b\n1,3\n", "changed"), (b"a,b\n1,2\n3,4\n", "grew"), (b"a,b\n", "shrank"), (None, "")],
)
def test_a_small_file_is_sent_from_the_bytes_it_was_hashed_from_while_unchanged(
    tmp_path: Path, new_content: bytes | None, how: str
) -> None:
    """A kept small file is read once; a change since (its stat) stops it before a byte goes."""
    original = b"a,b\n1,2\n"
    path = tmp_path / "f.csv"
    path.write_bytes(original)
    fp = fingerprint_file(path)
    assert fp.data == original
    source = DiskSource(path, fp.size, fp.sha256, fp.data, fp.mtime_ns)
    if new_content is not None:
        path.write_bytes(new_content)
        os.utime(path, ns=(fp.mtime_ns + 1_000_000, fp.mtime_ns + 1_000_000))  # coarse clocks
    body = RequestBody(ENVELOPE, source)
    sent: list[bytes] = []

    async def consume() -> None:
        async for chunk in body:
            sent.append(chunk)

    if new_content is None:
        anyio.run(consume)
        request = json.loads(b"".join(sent))
        assert base64.b64decode(request["file"]) == original
        assert len(b"".join(sent)) == body.content_length
        return
    with pytest.raises(FileChanged, match=f"file {how} on disk"):
        anyio.run(consume)
    assert sent == []  # nothing of it went


def test_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"hello")
    fp = fingerprint_file(path)
    assert fp.sha256 == sha256_bytes(b"hello")
    assert (fp.size, fp.mtime_ns) == (5, os.stat(path).st_mtime_ns)
    assert fp.data == b"hello"  # small: kept
    path.write_bytes(b"x" * (KEEP_BYTES + 1))
    assert fingerprint_file(path).data is None  # larger: streamed again when sent


def test_raw_budget_fits_exactly() -> None:
    envelope = Envelope(file_id="x.part-0001", file_format="parquet", name="ds")
    limit = 10_000
    budget = raw_budget(limit, envelope)
    assert envelope.request_bytes(budget) <= limit < envelope.request_bytes(budget + 3)


def test_split_frame_covers_every_row_once_within_budget() -> None:
    import pyarrow.parquet as pq

    frame = pl.DataFrame(
        {
            "date": pl.date_range(pl.date(2000, 1, 1), pl.date(2027, 5, 18), eager=True),
            "ticker": [f"T{i % 97}" for i in range(10_000)],
            "value": [i * 0.5 for i in range(10_000)],
        }
    )
    import pyarrow as pa

    schema = pa.schema([("date", pa.date32()), ("ticker", pa.string()), ("value", pa.float64())])
    parts = list(split_frame(frame, budget_bytes=20_000, schema=schema))
    assert len(parts) > 3
    assert [p.index for p in parts] == list(range(1, len(parts) + 1))
    assert all(p.source.size <= 20_000 for p in parts)
    import io

    tables = [pq.read_table(io.BytesIO(p.source.data)) for p in parts]
    assert all(t.schema == schema for t in tables)
    back = pl.concat([pl.from_arrow(t) for t in tables])  # type: ignore[misc]
    assert back.equals(frame)
    again = list(split_frame(frame, budget_bytes=20_000, schema=schema))
    assert [p.source.sha256 for p in again] == [p.source.sha256 for p in parts]


def test_b64_len() -> None:
    assert [b64_len(n) for n in range(7)] == [0, 4, 4, 4, 8, 8, 8]
