"""``batchload serve`` as a command: refusing to start, tokens from the environment,
the one stdout line, a clean exit on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from batchload.server.process import LISTENING_RE, ServerProcess
from tests.server.helpers import DATASETS, Api

Factory = Callable[..., ServerProcess]


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchload", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BATCHLOAD_SERVER_TOKENS": "", **(env or {})},
    )


def test_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    proc = serve("--data-dir", str(tmp_path / "d"))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert stdout == ""
    assert stderr.strip().startswith("error: no token configured")
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_tokens_from_the_environment_and_one_stdout_line(tmp_path: Path) -> None:
    proc = serve("--data-dir", str(tmp_path / "d"), env={"BATCHLOAD_SERVER_TOKENS": "e1, e2"})
    try:
        assert proc.stdout is not None
        match = LISTENING_RE.match(proc.stdout.readline().strip())
        assert match, "no listening line"
        url = match.group(1)
        assert not url.endswith(":0")
        assert Api(url, "e2").get(DATASETS).status_code == 200
        assert Api(url, "e3").get(DATASETS).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert stdout == ""  # nothing after the listening line: logs go to stderr
    assert "GET /ingestion/datasets" in stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_cleanly(server_factory: Factory, signum: int) -> None:
    server = server_factory(tokens=("t",))
    Api(server.url, "t").create(b"a\n1\n")
    proc = server.proc
    assert proc is not None
    server.stop(signum)
    assert proc.returncode == 0


def test_no_auth_accepts_every_request(server_factory: Factory) -> None:
    server = server_factory(tokens=())
    assert Api(server.url, None).get(DATASETS).status_code == 200
    assert Api(server.url, "anything").get(DATASETS).status_code == 200
    assert Api(server.url, None).post("/admin/revoke").status_code == 400


def test_help_has_a_purpose_and_an_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "batchload", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "local ingestion server" in result.stdout
    assert "batchload serve --port 0 --token" in result.stdout
    assert "/admin/revoke" in result.stdout
