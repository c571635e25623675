"""What the server tests share: an HTTP helper, file builders, error-shape checks."""

from __future__ import annotations

import base64
import io
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import requests
import xlsxwriter
import xlwt

DATASETS = "/ingestion/datasets"


class Api:
    """A keep-alive session against one server, sending the bearer token."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.url + path, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def create(self, data: bytes, file_format: str = "csv", **fields: Any) -> dict[str, Any]:
        """Create a dataset from a first file (the guide's POST); asserts 201."""
        fields.setdefault("name", "test-dataset")
        response = self.post(DATASETS, json=file_body(data, file_format, **fields))
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def add(
        self,
        dataset_id: str,
        data: bytes,
        file_format: str = "csv",
        method: str = "PUT",
        **fields: Any,
    ) -> requests.Response:
        """Add a file to a dataset (PUT as in the guide, POST as in the SDK)."""
        body = file_body(data, file_format, **fields)
        return self.request(method, f"{DATASETS}/{dataset_id}/files", json=body)

    def file_ids(self, dataset_id: str) -> list[str]:
        response = self.get(f"{DATASETS}/{dataset_id}/files")
        assert response.status_code == 200, response.text
        ids: list[str] = response.json()["ids"]
        return ids


def file_body(data: bytes, file_format: str = "csv", **fields: Any) -> dict[str, Any]:
    """A file body as the guide and the SDK send it."""
    fields.setdefault("file_id", "file-1")
    return {
        "file": base64.b64encode(data).decode(),
        "upload_format": "base64",
        "file_format": file_format,
        **fields,
    }


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The contract's error shape with this status and code; returns the error object."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    """An xlsx workbook (xlsxwriter) with ``rows`` on its first sheet, header first."""
    sink = io.BytesIO()
    workbook = xlsxwriter.Workbook(sink, {"in_memory": True})
    sheet = workbook.add_worksheet()
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    workbook.close()
    return sink.getvalue()


def xls_bytes(rows: list[list[Any]]) -> bytes:
    """An xls workbook (xlwt) with ``rows`` on its first sheet, header first."""
    workbook = xlwt.Workbook()
    sheet = workbook.add_sheet("data")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    sink = io.BytesIO()
    workbook.save(sink)
    return sink.getvalue()


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_exchange(url: str, head: str, body: bytes = b"", timeout_s: float = 30.0) -> RawAnswer:
    """Send ``head`` (request line and headers) and ``body`` over a plain socket, then
    read the answer until the server closes the connection or the body is complete."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before an answer: {received!r}"
            received += chunk
        header_block, rest = received.split(b"\r\n\r\n", 1)
        lines = header_block.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return RawAnswer(status=int(lines[0].split()[1]), headers=headers, body=rest[:length])
