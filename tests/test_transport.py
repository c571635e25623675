"""The transport against a real local server: bodies arrive intact, errors are typed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from batchload.config import ClientConfig, Secret
from batchload.errors import (
    AuthError,
    FileChanged,
    PayloadTooLarge,
    ServiceError,
    TransientError,
    UnreachableError,
)
from batchload.protocol import Envelope
from batchload.read.content import DiskSource, MemorySource, sha256_bytes
from batchload.send.body import RequestBody
from batchload.send.transport import IngestionClient
from batchload.server.process import ServerProcess

T = TypeVar("T")
CSV = b"date,ticker,value\n2024-01-02,AAA,1.5\n2024-01-03,BBB,2.25\n"
TYPES = {"column_types": {"date": "date32[day]", "ticker": "string", "value": "double"}}


def config(server: ServerProcess, token: str | None) -> ClientConfig:
    return ClientConfig(endpoint=server.url, token=Secret(token) if token else None)


def run(
    server: ServerProcess, token: str | None, fn: Callable[[IngestionClient], Awaitable[T]]
) -> T:
    async def main() -> T:
        async with IngestionClient(config(server, token)) as client:
            return await fn(client)

    return anyio.run(main)


def csv_body(data: bytes, file_id: str, *, name: str | None = None) -> RequestBody:
    envelope = Envelope(file_id=file_id, file_format="csv", name=name, convert_options=TYPES)
    return RequestBody(envelope, MemorySource(data, sha256_bytes(data)))


def test_dataset_lifecycle_and_exact_bodies(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    # A body streamed from disk in many 3-byte-multiple chunks: the server's sha256 of
    # the decoded bytes must equal ours, so Content-Length and chunking were exact.
    rows = "".join(f"2024-01-{d:02d},T{d},{d * 1.25}\n" for d in range(1, 29))
    big = (b"date,ticker,value\n" + rows.encode()) * 1
    path = tmp_path / "prices.csv"
    path.write_bytes(big)

    async def scenario(client: IngestionClient) -> dict[str, Any]:
        created = await client.create_dataset(csv_body(CSV, "first", name="prices"))
        dataset_id = created["id"]
        source = DiskSource(path, len(big), hashlib.sha256(big).hexdigest())
        body = RequestBody(
            Envelope(file_id="second", file_format="csv", convert_options=TYPES),
            source,
            chunk_bytes=9,
        )
        receipt = await client.put_file(dataset_id, body)
        again = await client.put_file(dataset_id, csv_body(CSV, "first"))
        listed = await client.list_files(dataset_id)
        datasets = await client.list_datasets()
        got = await client.get_dataset(dataset_id)
        await client.delete_file(dataset_id, "first")
        after = await client.list_files(dataset_id)
        missing = await client.get_dataset("no-such-dataset")
        return {
            "created": created,
            "receipt": receipt,
            "again": again,
            "listed": listed,
            "datasets": datasets,
            "got": got,
            "after": after,
            "missing": missing,
        }

    result = run(server, token, scenario)
    assert result["created"]["file_id"] == "first"
    assert result["created"]["rows"] == 2
    assert result["receipt"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert result["receipt"]["rows"] == 28
    assert result["again"]["overwritten"] is True
    assert sorted(result["listed"]["ids"]) == ["first", "second"]
    assert [d["name"] for d in result["datasets"]] == ["prices"]
    assert [c["type"] for c in result["got"]["schema"]] == ["date32[day]", "string", "double"]
    assert result["after"]["ids"] == ["second"]
    assert result["missing"] is None


def test_status_translation(server_factory: Callable[..., ServerProcess], token: str) -> None:
    server = server_factory("--max-body-mb", "0.01")

    async def scenario(client: IngestionClient) -> dict[str, BaseException]:
        created = await client.create_dataset(csv_body(CSV, "f1", name="ds"))
        errors: dict[str, BaseException] = {}
        attempts: dict[str, Callable[[], Awaitable[Any]]] = {
            "404": lambda: client.put_file("nope", csv_body(CSV, "x")),
            "400": lambda: client.put_file(created["id"], csv_body(b"", "x")),
            "422": lambda: client.put_file(created["id"], csv_body(b"a,b\n1,2\n", "x")),
            "413": lambda: client.put_file(created["id"], csv_body(os.urandom(3_000_000), "x")),
        }
        for key, attempt in attempts.items():
            try:
                await attempt()
            except Exception as exc:
                errors[key] = exc
        return errors

    errors = run(server, token, scenario)
    assert type(errors["404"]) is ServiceError and errors["404"].status == 404
    assert type(errors["400"]) is ServiceError and errors["400"].status == 400
    schema_error = errors["422"]
    assert isinstance(schema_error, ServiceError) and schema_error.status == 422
    assert schema_error.code == "schema_mismatch"
    assert "does not match the locked schema" in str(schema_error)
    assert isinstance(errors["413"], PayloadTooLarge)


def test_auth_errors_never_show_the_token(server: ServerProcess, token: str) -> None:
    wrong = "wrong-token-abcdef"
    with pytest.raises(AuthError) as caught:
        run(server, wrong, lambda client: client.list_datasets())
    assert caught.value.status == 401
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)
    client = IngestionClient(config(server, wrong))
    assert wrong not in repr(client)
    with pytest.raises(AuthError):
        run(server, None, lambda client: client.list_datasets())


def test_rate_limit_is_transient_with_retry_after(
    server_factory: Callable[..., ServerProcess], token: str
) -> None:
    server = server_factory("--rate-limit", "1")

    async def scenario(client: IngestionClient) -> TransientError:
        await client.list_datasets()  # the bucket's one token
        try:
            await client.list_datasets()
        except TransientError as exc:
            return exc
        raise AssertionError("expected a 429")

    exc = run(server, token, scenario)
    assert exc.status == 429
    assert exc.retry_after_s is not None and exc.retry_after_s >= 1


def test_failures_are_transient(server_factory: Callable[..., ServerProcess], token: str) -> None:
    server = server_factory("--fail-rate", "1")
    with pytest.raises(TransientError) as caught:
        run(server, token, lambda client: client.list_datasets())
    assert caught.value.status == 503


def test_unreachable(tmp_path: Path) -> None:
    dead = ClientConfig(endpoint="http://127.0.0.1:9", token=Secret("t"))

    async def main() -> None:
        async with IngestionClient(dead) as client:
            await client.list_datasets()

    with pytest.raises(UnreachableError, match=r"cannot reach http://127\.0\.0\.1:9"):
        anyio.run(main)


def test_a_file_changed_mid_send_is_refused_and_not_stored(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(CSV)
    source = DiskSource(path, len(CSV), sha256_bytes(CSV))
    path.write_bytes(CSV.replace(b"1.5", b"9.5"))  # same size, other content

    async def scenario(client: IngestionClient) -> dict[str, Any]:
        created = await client.create_dataset(csv_body(CSV, "first", name="ds"))
        body = RequestBody(
            Envelope(file_id="changed", file_format="csv", convert_options=TYPES), source
        )
        with pytest.raises(FileChanged):
            await client.put_file(created["id"], body)
        return await client.list_files(created["id"])

    assert run(server, token, scenario)["ids"] == ["first"]
