"""Every error status, each with the contract's JSON body."""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pytest

from batchload.server.process import ServerProcess
from tests.server.conftest import SHARED_TOKENS
from tests.server.helpers import (
    DATASETS,
    Api,
    assert_error,
    file_body,
    parquet_bytes,
    raw_exchange,
    xls_bytes,
)

CSV = b"a,b\n1,x\n2,y\n"
TOKEN = "errors-token"


# --- 400 -----------------------------------------------------------------------------


def test_malformed_json_and_non_object_bodies(api: Api) -> None:
    assert_error(api.post(DATASETS, data=b'{"name": "x", '), 400, "bad_request")
    assert_error(api.post(DATASETS, data=b"[1, 2]"), 400, "bad_request")
    assert_error(api.post(DATASETS, data=b"\xff\xfe{}"), 400, "bad_request")
    dataset_id = api.create(CSV)["id"]
    assert_error(api.put(f"{DATASETS}/{dataset_id}/files", data=b"nope"), 400, "bad_request")


@pytest.mark.parametrize("field", ["name", "file", "upload_format", "file_format", "file_id"])
def test_missing_field(api: Api, field: str) -> None:
    body = file_body(CSV, name="n")
    del body[field]
    error = assert_error(api.post(DATASETS, json=body), 400, "bad_request")
    assert error["details"]["field"] == field


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", 3), ("file", 12), ("file_id", 7), ("tags", "x"), ("read_options", [1])],
)
def test_mistyped_field(api: Api, field: str, value: object) -> None:
    body = {**file_body(CSV, name="n"), field: value}
    error = assert_error(api.post(DATASETS, json=body), 400, "bad_request")
    assert error["details"]["field"] == field


@pytest.mark.parametrize(
    "encoded",
    ["not base64!", "YQ", "YQ==\n", "é", "QUJD" * 20_000 + "!!!!"],  # the last one is long
)
def test_invalid_base64(api: Api, encoded: str) -> None:
    body = {**file_body(CSV, name="n"), "file": encoded}
    error = assert_error(api.post(DATASETS, json=body), 400, "bad_request")
    assert "base64" in error["message"]


def test_empty_file(api: Api) -> None:
    body = {**file_body(b"", name="n"), "file": ""}
    error = assert_error(api.post(DATASETS, json=body), 400, "bad_request")
    assert "empty" in error["message"]


@pytest.mark.parametrize(
    ("data", "file_format"),
    [
        (b"a,b\n1,\xff\xfe\n", "csv"),  # not UTF-8
        (b"a,b\n1,2,3,4\n", "csv"),  # ragged
        (b"\n\n", "csv"),  # no header at all
        (b"PAR1 this is not really parquet PAR1", "parquet"),
        (CSV, "parquet"),
        (CSV, "xlsx"),
        (b"PK\x03\x04 a zip that is not a workbook", "xlsx"),
        (xls_bytes([["a"], [1]]), "xlsx"),  # an xls file sent as xlsx
        (parquet_bytes(pa.table({"a": [1]})), "xls"),
    ],
)
def test_unparseable_file(api: Api, data: bytes, file_format: str) -> None:
    body = file_body(data, file_format, name="n")
    error = assert_error(api.post(DATASETS, json=body), 400, "bad_request")
    assert file_format in error["message"]


def test_csv_options_are_checked(api: Api) -> None:
    for options in (
        {"read_options": {"bogus": 1}},
        {"read_options": {"encoding": "no-such-codec"}},
        {"read_options": {"skip_rows": True}},
        {"convert_options": {"column_types": {"a": "no-such-type"}}},
        {"convert_options": {"column_types": {"a": 5}}},
        {"convert_options": {"null_values": [1]}},
    ):
        body = file_body(CSV, name="n", **options)
        assert_error(api.post(DATASETS, json=body), 400, "bad_request")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n"},
        {"name": "n", "schema": []},
        {"name": "n", "schema": [{"name": "a"}]},
        {"name": "n", "schema": [{"name": "a", "type": "not-a-type"}]},
        {"name": "n", "schema": [{"name": "a", "type": "int64"}, {"name": "a", "type": "int64"}]},
        {"schema": [{"name": "a", "type": "int64"}]},
    ],
)
def test_bad_explicit_schema(api: Api, body: dict[str, object]) -> None:
    assert_error(api.put(f"{DATASETS}/explicit-bad", json=body), 400, "bad_request")
    assert_error(api.get(f"{DATASETS}/explicit-bad"), 404, "not_found")


BAD_IDS = ["../x", "/etc", "..", "a\x00b", "x" * 129, "", ".hidden", "-dash", "a b", "a/b"]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_bad_ids_are_refused_and_nothing_is_written(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory(tokens=(TOKEN,), name="ids")
    api = Api(server.url, TOKEN)
    dataset_id = api.create(CSV)["id"]
    before = _tree(tmp_path)
    for bad in BAD_IDS:
        body = file_body(CSV, name="n", file_id=bad)
        assert_error(api.post(DATASETS, json=body), 400, "bad_request")
        assert_error(api.put(f"{DATASETS}/{dataset_id}/files", json=body), 400, "bad_request")
        if not bad or "/" in bad or bad == "..":
            continue  # cannot be one path segment without escaping
        for method, suffix in [("GET", ""), ("PUT", ""), ("DELETE", ""), ("PUT", "/files")]:
            response = api.request(method, f"{DATASETS}/{bad}{suffix}", json=body)
            assert_error(response, 400, "bad_request")
    for encoded in ["..%2Fx", "%2Fetc", "%2E%2E", "a%00b", "a%2Fb", "..%2F..%2Fescape"]:
        for method, suffix in [("GET", ""), ("PUT", "/files"), ("POST", "/files")]:
            body = file_body(CSV, name="n", file_id="fine")
            response = api.request(method, f"{DATASETS}/{encoded}{suffix}", json=body)
            assert_error(response, 400, "bad_request")
        response = api.delete(f"{DATASETS}/{dataset_id}/files/{encoded}")
        assert_error(response, 400, "bad_request")
    # Only the server's log (and SQLite's own files) may have changed.
    changed = _tree(tmp_path) ^ before
    assert all(path.startswith("ids") for path in changed), changed
    assert not list((tmp_path / "ids" / "tmp").iterdir())
    assert api.file_ids(dataset_id) == ["file-1"]
    assert not (tmp_path / "x").exists() and not (tmp_path / "escape").exists()


# --- 401 -----------------------------------------------------------------------------


def test_missing_or_unknown_token(shared_server: ServerProcess) -> None:
    for token in (None, "wrong-token", "shared-token-a-but-longer"):
        response = Api(shared_server.url, token).get(DATASETS)
        error = assert_error(response, 401, "unauthorized")
        assert "token" in error["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    basic = Api(shared_server.url, None).get(DATASETS, headers={"Authorization": "Basic eDp5"})
    assert_error(basic, 401, "unauthorized")
    upload = Api(shared_server.url, "wrong").post(DATASETS, json=file_body(CSV, name="n"))
    assert_error(upload, 401, "unauthorized")


def test_a_revoked_token_stops_working_and_others_do_not(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(tokens=("token-one", "token-two"))
    one, two = Api(server.url, "token-one"), Api(server.url, "token-two")
    dataset_id = one.create(CSV)["id"]
    assert one.post("/admin/revoke").json() == {"revoked": True}
    assert_error(one.get(DATASETS), 401, "unauthorized")
    assert_error(one.add(dataset_id, CSV, file_id="late"), 401, "unauthorized")
    assert_error(one.post("/admin/revoke"), 401, "unauthorized")
    assert two.file_ids(dataset_id) == ["file-1"]
    assert_error(Api(server.url, "never-valid").post("/admin/revoke"), 401, "unauthorized")
    server.restart()  # revocation is in memory only
    assert one.get(DATASETS).status_code == 200


# --- 404, 405 ------------------------------------------------------------------------


def test_unknown_dataset(api: Api) -> None:
    missing = f"{DATASETS}/no-such-dataset"
    body = file_body(CSV, file_id="f")
    for method, path in [
        ("GET", missing),
        ("DELETE", missing),
        ("GET", f"{missing}/files"),
        ("PUT", f"{missing}/files"),
        ("POST", f"{missing}/files"),
        ("DELETE", f"{missing}/files/f"),
    ]:
        error = assert_error(api.request(method, path, json=body), 404, "not_found")
        assert "no-such-dataset" in error["message"]


def test_unknown_route_and_wrong_method(api: Api) -> None:
    assert_error(api.get("/no/such/route"), 404, "not_found")
    assert_error(api.get(f"{DATASETS}/a/b/c/d"), 404, "not_found")
    response = api.request("PATCH", f"{DATASETS}/some-id")
    assert_error(response, 405, "method_not_allowed")
    assert "PUT" in response.headers["Allow"]
    assert_error(api.delete(DATASETS), 405, "method_not_allowed")


# --- 413 -----------------------------------------------------------------------------


def _head(url: str, path: str, headers: dict[str, str]) -> str:
    lines = [f"POST {path} HTTP/1.1", f"Host: {url.split('//')[1]}"]
    lines += [f"Authorization: Bearer {TOKEN}", "Content-Type: application/json"]
    return "\r\n".join(lines + [f"{k}: {v}" for k, v in headers.items()])


def test_huge_declared_body_is_refused_without_reading_it(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--max-body-mb", "1", tokens=(TOKEN,))
    two_gib = 2 * 1024**3
    head = _head(server.url, DATASETS, {"Content-Length": str(two_gib)})
    # Only 64 KiB of the declared 2 GiB are ever sent: an answer proves nothing waited
    # for (or buffered) the rest.
    answer = raw_exchange(server.url, head, b'{"file": "' + b"A" * 65_536)
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert answer.json()["error"]["details"] == {"limit_bytes": 1024 * 1024}
    assert answer.headers["connection"].lower() == "close"
    assert Api(server.url, TOKEN).get("/healthz").status_code == 200


def test_body_limit_is_enforced_while_reading_a_chunked_body(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--max-body-mb", "1", tokens=(TOKEN,))
    head = _head(server.url, DATASETS, {"Transfer-Encoding": "chunked"})
    chunk = b"A" * 65_536
    chunks = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 20  # 1.25 MiB, never ended
    answer = raw_exchange(server.url, head, chunks)
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


def test_an_ordinary_client_sees_413(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--max-body-mb", "1", tokens=(TOKEN,))
    api = Api(server.url, TOKEN)
    big = base64.b64encode(os.urandom(900_000)).decode()  # 1.2 MB of base64
    response = api.post(DATASETS, json={**file_body(CSV, name="n"), "file": big})
    assert_error(response, 413, "payload_too_large")
    assert api.get(DATASETS).json() == []


# --- 408 -----------------------------------------------------------------------------


def test_a_stalled_body_times_out_and_the_server_stays_up(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--read-timeout-s", "0.3", tokens=(TOKEN,))
    head = _head(server.url, DATASETS, {"Content-Length": "1000"})
    answer = raw_exchange(server.url, head, b'{"name": "stalled"')  # then nothing more
    assert answer.status == 408
    assert answer.json()["error"]["code"] == "request_timeout"
    api = Api(server.url, TOKEN)
    assert api.create(CSV)["rows"] == 2


# --- 100, 417 -------------------------------------------------------------------------


def _expecting(url: str, expect: bytes, body: bytes) -> tuple[bytes, bytes]:
    """Send the head with ``Expect``, read the first answer's head, then send the body
    (after a refusal too, so that the server's lingering read ends at once): the first
    head and everything after it."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    head = f"POST {DATASETS} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += f"Authorization: Bearer {SHARED_TOKENS[1]}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"Expect: " + expect + b"\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        interim, rest = received.split(b"\r\n\r\n", 1)
        sock.sendall(body)
        while chunk := sock.recv(65536):
            rest += chunk
    return interim, rest


def test_expect_100_continue_then_the_answer_as_if_none_came_before(
    shared_server: ServerProcess,
) -> None:
    """The interim 100 is not counted as the answer's bytes: the answer that follows is
    whole, its length right."""
    body = json.dumps(file_body(CSV, name="continued")).encode()
    interim, rest = _expecting(shared_server.url, b"100-continue", body)
    assert interim == b"HTTP/1.1 100 Continue"
    head, answer = rest.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 201 ")
    length = next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
    assert int(length.split(b":")[1]) == len(answer)
    assert json.loads(answer)["rows"] == 2


@pytest.mark.parametrize("expect", [b"200-ok", b"caf\xe9"])
def test_an_unknown_expect_is_417(shared_server: ServerProcess, expect: bytes) -> None:
    interim, rest = _expecting(shared_server.url, expect, b"{}")
    assert interim.startswith(b"HTTP/1.1 417 "), interim
    assert rest == b"unsupported Expect header (only 100-continue is)"


# --- 415 -----------------------------------------------------------------------------


def test_unsupported_formats(api: Api) -> None:
    error = assert_error(
        api.post(DATASETS, json=file_body(CSV, "json", name="n")), 415, "unsupported_format"
    )
    assert error["details"]["supported"] == ["csv", "parquet", "xls", "xlsx"]
    body = {**file_body(CSV, name="n"), "upload_format": "hex"}
    error = assert_error(api.post(DATASETS, json=body), 415, "unsupported_format")
    assert error["details"]["field"] == "upload_format"


# --- 422 -----------------------------------------------------------------------------


def test_schema_mismatch_lists_differences_column_by_column(api: Api) -> None:
    dataset_id = api.create(b"a,b,c,d\n1,x,1.5,2\n")["id"]
    response = api.add(dataset_id, b"b,c,a,e\nx,oops,1,2\n", file_id="wrong")
    error = assert_error(response, 422, "schema_mismatch")
    assert sorted(error["details"], key=lambda d: (d["column"], d["problem"])) == [
        {"column": "a", "problem": "reordered", "expected_position": 0, "actual_position": 2},
        {"column": "c", "problem": "type", "expected": "double", "actual": "string"},
        {"column": "d", "problem": "missing", "expected": "int64"},
        {"column": "e", "problem": "extra", "actual": "int64"},
    ]
    assert api.file_ids(dataset_id) == ["file-1"]


@pytest.mark.parametrize(
    "drifted",
    [
        b"when,value\n2024-01-03,1.5\n",  # integers in one file, decimals in another
        b"when,value\n2024-01-03,\n",  # a column empty in one file
    ],
)
def test_csv_type_drift_is_refused(api: Api, drifted: bytes) -> None:
    dataset_id = api.create(b"when,value\n2024-01-02,1\n")["id"]
    error = assert_error(api.add(dataset_id, drifted, file_id="drift"), 422, "schema_mismatch")
    assert [d["column"] for d in error["details"]] == ["value"]
    # With the locked types as column_types, the same file is accepted (int64 holds nulls).
    if drifted.endswith(b",\n"):
        types = {"when": "date32[day]", "value": "int64"}
        ok = api.add(dataset_id, drifted, file_id="typed", convert_options={"column_types": types})
        assert ok.status_code == 201, ok.text


def test_explicit_create_of_an_existing_id_with_another_schema(api: Api) -> None:
    schema = [{"name": "a", "type": "int64"}]
    assert api.put(f"{DATASETS}/clash", json={"name": "c", "schema": schema}).status_code == 201
    other = [{"name": "a", "type": "string"}]
    response = api.put(f"{DATASETS}/clash", json={"name": "c", "schema": other})
    error = assert_error(response, 422, "schema_mismatch")
    assert error["details"] == [
        {"column": "a", "problem": "type", "expected": "int64", "actual": "string"}
    ]
