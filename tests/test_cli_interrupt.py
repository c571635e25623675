"""Ctrl-C and SIGTERM against a real ``batchload upload`` process and a slow real server:
the run drains (or aborts), says what is left, and the command it prints resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchload.server.process import ServerProcess
from tests.reliability.helpers import manifest_finished, wait_until
from tests.upload_helpers import SIGNALS, ServerView, sha256, write_signals

FILES = 30


def _lines_until(stream: Iterator[str], prefix: str, seen: list[str]) -> None:
    """Read ``stream`` until a line starts with ``prefix`` (the child says what it did)."""
    for line in stream:
        seen.append(line)
        if line.startswith(prefix):
            return
    raise AssertionError(f"no line {prefix!r} in:\n{''.join(seen)}")


def _env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BATCHLOAD_ENDPOINT"}
    env["SIGTECH_PLATFORM_TOKEN"] = token
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize(
    ("signals", "said"),
    [
        ([signal.SIGTERM], "SIGTERM: stopping: no new files"),
        ([signal.SIGINT, signal.SIGINT], "SIGINT: aborting the requests in flight"),
    ],
    ids=["sigterm-drains", "second-sigint-aborts"],
)
def test_a_stopped_run_resumes_with_the_command_it_prints(
    server_factory: Callable[..., ServerProcess],
    token: str,
    tmp_path: Path,
    signals: list[signal.Signals],
    said: str,
) -> None:
    server = server_factory("--latency-ms", "150")
    paths = write_signals(tmp_path / "data", FILES)
    argv = ["upload", "data", "--schema", str(SIGNALS), "--endpoint", server.url]
    argv += ["--concurrency", "2", "--manifest", "m.sqlite", "--json"]
    child = subprocess.Popen(
        [sys.executable, "-m", "batchload", *argv],
        cwd=tmp_path,
        env=_env(token),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    seen: list[str] = []
    _lines_until(child.stderr, "created dataset", seen)  # files are being sent now
    manifest = tmp_path / "m.sqlite"
    wait_until(lambda: manifest_finished(manifest) >= 1, what="a first file uploaded")
    child.send_signal(signals[0])
    _lines_until(
        child.stderr, "SIGINT: stopping" if signals[0] == signal.SIGINT else "SIGTERM", seen
    )
    for again in signals[1:]:
        child.send_signal(again)
    out, rest = child.communicate(timeout=120)
    err = "".join(seen) + rest
    assert child.returncode == 130, err
    assert said in err and "Traceback" not in err
    summary = json.loads(out)
    assert summary["interrupted"] is True and summary["exit_code"] == 130
    assert 0 < summary["left"] < FILES
    assert f"interrupted: {summary['uploaded']} file(s) uploaded, {summary['left']} left" in err
    if len(signals) == 1:  # drained: what was in flight finished
        assert summary["uploaded"] + summary["left"] == FILES
    resume = err.split("resume with:\n", 1)[1].splitlines()[0].strip()
    assert resume == summary["resume"]
    assert resume.startswith(f"cd {tmp_path} && batchload upload data --schema ")

    resumed = subprocess.run(
        resume, shell=True, env=_env(token), capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads(resumed.stdout)
    assert again["uploaded"] + again["skipped"] == FILES
    if len(signals) == 1:
        assert (again["uploaded"], again["skipped"]) == (summary["left"], summary["uploaded"])
    view = ServerView(server.url, token)
    (dataset,) = view.datasets()
    receipts = view.receipts(dataset["id"])
    assert len(receipts) == FILES  # every file once: none twice, none missing
    assert {r["file_id"]: r["sha256"] for r in receipts} == {p.stem: sha256(p) for p in paths}
