"""The token never shows: not in progress output, logs, errors, tracebacks, ``--json``,
the manifest's bytes (database, WAL and exports) or the server's log.

Runs that succeed and runs that fail every way a run fails (401, 5xx, retries
exhausted, an unreachable service, invalid files) are made through the CLI (some with
``--verbose``, which prints tracebacks of errors it cannot handle) and through the
library (exceptions and their causes, progress events, log records), and every output
and every file they leave is searched.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from batchload.api import upload_files
from batchload.errors import AuthError, BatchloadError, ServiceError, UnreachableError
from batchload.progress import Event
from batchload.send.retry import RetryPolicy
from batchload.server.process import ServerProcess
from tests.reliability.helpers import finish, start_cli, write_signals
from tests.upload_helpers import HEADER, upload_args

TOKEN = "SeCrEt-5b1f0c9e7d2a4b68-tOkEn"
OTHER = "the-servers-own-token-1"
FAST = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)
Factory = Callable[..., ServerProcess]


def needles() -> list[bytes]:
    """The token, and the forms it could leak in."""
    import base64

    return [
        TOKEN.encode(),
        TOKEN.encode("utf-16-le"),
        base64.b64encode(TOKEN.encode()),
        f"Bearer {TOKEN}".encode(),
    ]


def assert_hidden(where: str, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for needle in needles():
        assert needle not in raw, f"the token shows in {where}"


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_runs_that_succeed_and_fail_never_show_the_token(
    server_factory: Factory, tmp_path: Path
) -> None:
    good = server_factory(tokens=(TOKEN,), name="good")
    flaky = server_factory("--fail-rate", "0.3", "--seed", "4", tokens=(TOKEN,), name="flaky")
    wrong = server_factory(tokens=(OTHER,), name="wrong")
    write_signals(tmp_path / "data", 8)
    (tmp_path / "data" / "bad.csv").write_text(HEADER + "not-a-date,AB,9,x,5\n")
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    manifest = tmp_path / "run.sqlite"
    # Two rounds of runs side by side (the second reads the first's manifest).
    first_round = {
        "success, --json, some files invalid": (
            upload_args("data/*.csv", manifest, good.url), 1
        ),
        "5xx answers retried": (
            upload_args("data/*.csv", tmp_path / "flaky.sqlite", flaky.url), 1
        ),
        "401, --verbose": (
            ("--verbose", *upload_args("data/*.csv", tmp_path / "401.sqlite", wrong.url)), 3
        ),
        "401 with --token-file": (
            (*upload_args("data/*.csv", tmp_path / "tf.sqlite", wrong.url),
             "--token-file", str(token_file)), 3
        ),
    }  # fmt: skip
    second_round = {
        "re-run, human output, --verbose": (
            ("--verbose", *upload_args("data/*.csv", manifest, good.url)[:-1]), 1
        ),
        "reconcile, --verbose": (
            ("--verbose", "reconcile", "--manifest", str(manifest), "--json"), 0
        ),
        "manifest show": (("manifest", "show", str(manifest)), 0),
        "manifest export": (
            ("manifest", "export", str(manifest), "--format", "json", "-o", "export.json"), 0
        ),
    }  # fmt: skip
    for runs in (first_round, second_round):
        started = {
            name: start_cli(*args, token=None if "--token-file" in args else TOKEN, cwd=tmp_path)
            for name, (args, _) in runs.items()
        }
        for name, proc in started.items():
            result = finish(proc)
            assert result.code == runs[name][1], (name, result.stderr[-2000:])
            assert_hidden(f"stdout of {name}", result.stdout)
            assert_hidden(f"stderr of {name}", result.stderr)
    # Every file the runs left: manifests (database, WAL, shared memory), exports, and
    # the servers' data dirs and logs.
    for path in files_under(tmp_path):
        if path.name == "token.txt":
            continue
        assert_hidden(str(path), path.read_bytes())


@pytest.mark.parametrize("failure", ["401", "5xx retries exhausted", "unreachable", "success"])
def test_library_errors_events_and_logs_never_show_the_token(
    server_factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    knobs = {"5xx retries exhausted": ("--fail-rate", "1")}.get(failure, ())
    server = server_factory(*knobs, tokens=(OTHER if failure == "401" else TOKEN,))
    endpoint = f"http://127.0.0.1:{closed_port()}" if failure == "unreachable" else server.url
    write_signals(tmp_path / "data", 4)
    events: list[Event] = []
    caplog.set_level(logging.DEBUG)
    raised: BaseException | None = None
    try:
        summary = upload_files(
            [str(tmp_path / "data" / "*.csv")],
            schema=Path(__file__).parents[2] / "schemas" / "equity_signals.yaml",
            endpoint=endpoint,
            token=TOKEN,
            manifest=tmp_path / "run.sqlite",
            retry=FAST,
            sink=events.append,
        )
        texts = [repr(summary), str(summary.to_dict())]
    except BatchloadError as exc:
        raised = exc
        texts = [
            "".join(traceback.format_exception(exc)),
            repr(exc),
            repr(vars(exc)),
            repr(exc.args),
        ]
        cause = exc.__cause__
        while cause is not None:  # the translated aiohttp errors, as a debugger shows them
            texts += [repr(cause), str(cause), repr(cause.args)]
            cause = cause.__cause__
    expected = {
        "401": AuthError,
        "5xx retries exhausted": ServiceError,
        "unreachable": UnreachableError,
        "success": type(None),
    }[failure]
    assert isinstance(raised, expected), raised
    texts += [repr(e) for e in events]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    for i, text in enumerate(texts):
        assert_hidden(f"{failure}: output #{i}", text)
    for path in files_under(tmp_path):
        assert_hidden(str(path), path.read_bytes())
