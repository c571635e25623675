"""Hostile HTTP against the local server: only 4xx answers, it keeps serving others, and
nothing is written outside its data dir.

What ``tests/server`` already covers (every error status, fixed bad ids, a stalled
body, a 2 GiB declared length, chunked bodies over the limit) is not repeated here;
this adds generated input (hypothesis: JSON bodies, field values, ids, headers),
bodies trickled slowly, impossible Content-Lengths, and wrong tokens of every length.
"""

from __future__ import annotations

import base64
import json
import socket
import string
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchload.server.process import ServerProcess
from tests.reliability.helpers import LEDGER
from tests.server.helpers import DATASETS

TOKEN = "hostile-http-token-4c21e9"
CSV = b"a,b\n1,x\n2,y\n"
READ_TIMEOUT_S = 0.5
EXAMPLES = 120
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # fixed examples: a failure repeats
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Target:
    """A server shared by the module, a session for it, and a dataset that exists."""

    def __init__(self, server: ServerProcess, root: Path) -> None:
        self.server = server
        self.url = server.url
        self.root = root
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"
        body = file_body(name="base", file_id="first")
        created = self.session.post(self.url + DATASETS, json=body, timeout=30)
        assert created.status_code == 201, created.text
        self.dataset_id: str = created.json()["id"]
        self.outside = tree(root, exclude=server.data_dir)

    def send(self, method: str, path: str, kind: str, **kwargs: Any) -> requests.Response:
        LEDGER.hostile_http[kind] += 1
        return self.session.request(method, self.url + path, timeout=30, **kwargs)

    def healthy(self) -> bool:
        """The server still answers a well-behaved client, fully."""
        listed = self.session.get(f"{self.url}{DATASETS}/{self.dataset_id}/files", timeout=30)
        return listed.status_code == 200 and "first" in listed.json()["ids"]


def file_body(**fields: Any) -> dict[str, Any]:
    return {
        "file": base64.b64encode(CSV).decode(),
        "upload_format": "base64",
        "file_format": "csv",
        **fields,
    }


def tree(root: Path, *, exclude: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p != exclude and exclude not in p.parents and not p.name.endswith(".serve.log")
    }


def assert_refused(response: requests.Response) -> None:
    """A 4xx with the contract's error JSON (never a 5xx, never a hang)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("hostile-http")
    knobs = ["--read-timeout-s", str(READ_TIMEOUT_S), "--max-body-mb", "1"]
    with ServerProcess(data_dir=root / "server", tokens=(TOKEN,), knobs=knobs) as server:
        target = Target(server, root)
        yield target
        assert target.healthy()
        assert tree(root, exclude=server.data_dir) == target.outside, "written outside"
        tmp = server.data_dir / "tmp"
        assert not tmp.exists() or not list(tmp.iterdir()), "staged files left behind"


# --- generated bodies, values, ids and headers -------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # what JSON can carry
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = ["name", "file", "upload_format", "file_format", "file_id", "tags", "read_options",
          "convert_options"]  # fmt: skip


@HYPOTHESIS
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=8))
def test_generated_json_bodies_are_refused(target: Target, body: dict[str, Any]) -> None:
    assert_refused(target.send("POST", DATASETS, "json bodies", json=body))
    path = f"{DATASETS}/{target.dataset_id}/files"
    assert_refused(target.send("PUT", path, "json bodies", json=body))


@HYPOTHESIS
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_generated_values_in_an_otherwise_valid_body(
    target: Target, field: str, value: Any
) -> None:
    body = file_body(name="generated", file_id="generated-1")
    body[field] = value
    answer = target.send("PUT", f"{DATASETS}/{target.dataset_id}/files", "field values", json=body)
    if answer.status_code in (200, 201):  # a value that happens to be fine (tags, name, ...)
        assert answer.json()["file_id"] == body["file_id"]
    else:
        assert_refused(answer)


@HYPOTHESIS
@given(st.binary(max_size=300))
def test_generated_bytes_as_a_body(target: Target, data: bytes) -> None:
    assert_refused(target.send("POST", DATASETS, "raw bodies", data=data))


@HYPOTHESIS
@given(st.text(max_size=40) | st.text(string.printable, max_size=300))
def test_generated_text_as_base64_is_refused(target: Target, text: str) -> None:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        pass
    else:
        return  # valid base64 is tested elsewhere; here only what is not
    body = file_body(name="b64", file_id="b64", file=text)
    assert_refused(target.send("POST", DATASETS, "invalid base64", json=body))


ids = (
    st.text(max_size=200)
    | st.sampled_from(["..", ".", "../x", "/etc/passwd", "a/../../b", "a\x00b", "x" * 129])
    | st.text(alphabet="./\\\x00%", max_size=12)
)


@HYPOTHESIS
@given(file_id=ids, dataset_id=ids)
def test_generated_ids_never_escape(target: Target, file_id: str, dataset_id: str) -> None:
    body = file_body(file_id=file_id)
    valid = bool(file_id) and file_id[0].isascii() and file_id[0].isalnum()
    valid = valid and len(file_id) <= 128 and all(c.isascii() and (c.isalnum() or c in "._-")
                                                  for c in file_id)  # fmt: skip
    answer = target.send("PUT", f"{DATASETS}/{target.dataset_id}/files", "ids in bodies", json=body)
    if valid:
        assert answer.status_code in (200, 201), answer.text
    else:
        assert_refused(answer)
    path = f"{DATASETS}/{quote(dataset_id, safe='')}/files"
    answer = target.send("PUT", path, "ids in paths", json=file_body(file_id="fine"))
    if answer.status_code not in (200, 201):
        assert_refused(answer)


header_names = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=30)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)
known_headers = st.sampled_from(
    ["Authorization", "Content-Type", "Content-Encoding", "Transfer-Encoding", "Expect",
     "Connection", "Host", "Content-Length", "Retry-After", "X-Forwarded-For"]
)  # fmt: skip


@HYPOTHESIS
@given(st.dictionaries(header_names | known_headers, header_values, max_size=6))
def test_generated_headers(target: Target, headers: dict[str, str]) -> None:
    body = json.dumps(file_body(name="h", file_id="h")).encode()
    lines = [f"POST {DATASETS} HTTP/1.1", f"Host: {target.url.split('//')[1]}"]
    if not any(k.lower() == "authorization" for k in headers):
        lines.append(f"Authorization: Bearer {TOKEN}")
    if not any(k.lower() in ("content-length", "transfer-encoding") for k in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v.strip()}" for k, v in headers.items()]
    LEDGER.hostile_http["headers"] += 1
    answer = raw_http(target.url, "\r\n".join(lines), body)
    assert answer is None or answer < 500, answer


def raw_http(url: str, head: str, body: bytes) -> int | None:
    """Send a request over a socket; the status, or None when the server closed the
    connection without a status line (allowed for garbage framing)."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            received += chunk
    return int(received.split(b" ", 2)[1])


# --- Content-Length and slow bodies ------------------------------------------------------------


@pytest.mark.parametrize(
    "length", ["99999999999999999999999999", "-1", "12abc", "1, 2", "0x10", " "]
)
def test_impossible_content_lengths(target: Target, length: str) -> None:
    LEDGER.hostile_http["content lengths"] += 1
    head = f"POST {DATASETS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    head += f"Content-Length: {length}"
    status = raw_http(target.url, head, b'{"name": "x"}')
    assert status is None or 400 <= status < 500, status
    assert target.healthy()


def trickle(url: str, path: str, body: bytes, gap_s: float, stop: threading.Event) -> int | None:
    """Send ``body`` one byte per ``gap_s`` until the server answers; its status."""
    host, port = url.split("//")[1].split(":")
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head.encode())
        sock.settimeout(gap_s)
        for byte in body:
            if stop.is_set():
                return None
            try:
                answer = sock.recv(65536)  # waits gap_s: the trickle's pace
            except TimeoutError:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:  # the server closed the connection on us
                    break
                continue
            return int(answer.split(b" ", 2)[1]) if answer else None
        sock.settimeout(60)
        answer = sock.recv(65536)
    return int(answer.split(b" ", 2)[1]) if answer else None


def test_a_body_trickled_slowly_times_out_and_others_are_served(target: Target) -> None:
    """One byte every 0.1 s never leaves the server waiting READ_TIMEOUT_S for the next
    piece, yet it must not hold the request open for ever (slowloris)."""
    body = json.dumps(file_body(name="slow", file_id="slow")).encode()
    stop = threading.Event()
    results: list[int | None] = []
    path = f"{DATASETS}/{target.dataset_id}/files"
    threads = [
        threading.Thread(target=lambda: results.append(trickle(target.url, path, body, 0.1, stop)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):  # others are served meanwhile
            assert target.healthy()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        stop.set()
    LEDGER.hostile_http["slow bodies"] += len(threads)
    assert not any(t.is_alive() for t in threads), "a trickled body was never cut off"
    assert results == [408] * len(threads), results
    assert "slow" not in target.session.get(f"{target.url}{path}", timeout=30).json()["ids"]


# --- tokens ------------------------------------------------------------------------------------


def wrong_tokens() -> list[str]:
    """A wrong token of every length from 0 to one past the real one, and odd bytes."""
    tokens = [TOKEN[:n] for n in range(len(TOKEN))]  # every prefix, the empty one included
    tokens += [TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y"), TOKEN + "x", TOKEN.upper()]
    tokens += ["x" * n for n in (1, 64, 1024, 8000)]
    tokens += [f"{TOKEN} ", f"{TOKEN}\t", "é" * 10, "\udcff" * 3]
    return tokens


def test_wrong_tokens_of_every_length_get_401(target: Target) -> None:
    for token in wrong_tokens():
        value = f"Bearer {token}".encode("utf-8", "surrogateescape")
        head = f"GET {DATASETS} HTTP/1.1\r\nHost: x\r\n".encode() + b"Authorization: " + value
        LEDGER.hostile_http["wrong tokens"] += 1
        status = raw_http(target.url, head.decode("latin-1"), b"")
        if token.strip() == TOKEN:  # surrounding whitespace is not part of a header value
            assert status == 200, token
        else:
            assert status == 401, (len(token), status)
    for scheme in ("Basic", "bearer", "Token", "", "Bearer:", "BearerX"):
        head = f"GET {DATASETS} HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme} {TOKEN}"
        LEDGER.hostile_http["wrong tokens"] += 1
        status = raw_http(target.url, head, b"")
        assert status == (200 if scheme == "bearer" else 401), (scheme, status)
    assert target.healthy()


def test_a_flood_of_refused_requests_does_not_stop_others(target: Target) -> None:
    """Hundreds of bad requests on many connections at once; a good client still gets in."""
    errors: list[BaseException] = []

    def flood() -> None:
        try:
            with requests.Session() as session:
                for i in range(60):
                    body = {"file": "not base64!", "file_id": f"f{i}", "name": "x"}
                    session.post(target.url + DATASETS, json=body, timeout=30)
                    session.get(target.url + DATASETS, timeout=30)  # no token: 401
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=flood) for _ in range(6)]
    for thread in threads:
        thread.start()
    assert target.healthy()
    for thread in threads:
        thread.join(timeout=120)
    LEDGER.hostile_http["flood"] += 6 * 60 * 2
    assert not any(t.is_alive() for t in threads), "the flood was never answered"
    assert not errors, errors
    assert target.healthy()
