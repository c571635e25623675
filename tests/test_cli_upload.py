"""The upload CLI as a user meets it: exit codes, one JSON object, no token anywhere."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchload.cli import main
from batchload.server.process import ServerProcess
from batchload.state.manifest import Manifest
from tests.reliability.helpers import manifest_finished, manifest_states, wait_until
from tests.upload_helpers import (
    HEADER,
    SIGNALS,
    ServerView,
    sha256,
    signal_csv,
    upload_args,
    write_signals,
)

PRICES = SIGNALS.parent / "market_prices.yaml"
SPIKE_RATE = 0.5


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., Ran]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run the CLI in this process (as ``batchload ...`` would), from ``cwd``."""

    def run(*args: str, cwd: Path, token: str | None = None, check: int | None = None) -> Ran:
        monkeypatch.chdir(cwd)
        monkeypatch.delenv("BATCHLOAD_ENDPOINT", raising=False)
        if token is None:
            monkeypatch.delenv("SIGTECH_PLATFORM_TOKEN", raising=False)
        else:
            monkeypatch.setenv("SIGTECH_PLATFORM_TOKEN", token)
        capsys.readouterr()
        try:
            returned = main(list(args))
            code = returned if isinstance(returned, int) else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        captured = capsys.readouterr()
        result = Ran(code, captured.out, captured.err)
        if check is not None:
            assert result.returncode == check, result.stderr
        return result

    return run


def assert_no_secret(token: str, *texts: str, files: tuple[Path, ...] = ()) -> None:
    for text in texts:
        assert token not in text
    for path in files:
        if path.exists():
            assert token.encode() not in path.read_bytes(), path


def test_upload_json_rerun_and_no_token_anywhere(
    cli: Cli, server: ServerProcess, token: str, tmp_path: Path
) -> None:
    paths = write_signals(tmp_path / "data", 12)
    args = ("upload", "data/*.csv", "--schema", str(SIGNALS), "--endpoint", server.url, "--json")
    first = cli(*args, cwd=tmp_path, token=token, check=0)
    summary = json.loads(first.stdout)  # stdout is exactly one JSON document
    assert (summary["uploaded"], summary["skipped"], summary["exit_code"]) == (12, 0, 0)
    manifest = tmp_path / ".batchload" / "manifests" / "equity_signals.sqlite"
    assert summary["manifest"] == str(manifest)
    assert summary["reconcile"][0]["missing"] == []
    files = ServerView(server.url, token).files(summary["dataset_id"])
    assert {k: v["sha256"] for k, v in files.items()} == {p.stem: sha256(p) for p in paths}

    human = cli(*args[:-1], cwd=tmp_path, token=token, check=0)  # again, without --json
    assert human.stdout == ""
    assert "uploaded 0 file(s)" in human.stderr and "12 skipped" in human.stderr
    assert f"manifest: {manifest}" in human.stderr
    wal = manifest.with_name(manifest.name + "-wal")
    assert_no_secret(token, first.stdout, first.stderr, human.stderr, files=(manifest, wal))


def test_bad_files_exit_1_and_good_ones_land(
    cli: Cli, server: ServerProcess, token: str, tmp_path: Path
) -> None:
    write_signals(tmp_path / "data", 3)
    (tmp_path / "data" / "bad.csv").write_text(HEADER + "2024-01-02,AAA,3.0,0.5,5\n")
    args = upload_args("data/*.csv", Path("m.sqlite"), server.url)
    result = cli(*args, cwd=tmp_path, token=token, check=1)
    summary = json.loads(result.stdout)
    assert (summary["uploaded"], summary["invalid"]) == (3, 1)
    assert summary["problems"][0]["path"].endswith("bad.csv")
    assert "in_range" in result.stderr  # the reason is also told to the person


def test_wrong_token_exits_3_with_the_manifest_kept(
    cli: Cli, server: ServerProcess, tmp_path: Path
) -> None:
    write_signals(tmp_path / "data", 2)
    wrong = "wrong-token-SECRET-9876"
    token_file = tmp_path / "token.txt"
    token_file.write_text(wrong + "\n")
    args = upload_args("data/*.csv", Path("m.sqlite"), server.url, "--token-file", str(token_file))
    result = cli(*args, cwd=tmp_path, check=3)
    assert "Traceback" not in result.stderr
    assert "401" in result.stderr
    assert json.loads(result.stdout)["stopped"]
    manifest = tmp_path / "m.sqlite"
    with Manifest.open(manifest, create=False) as opened:
        assert opened.rows() == []
    assert_no_secret(wrong, result.stdout, result.stderr, files=(manifest,))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--dataset", "a", "--dataset-id", "b"), 2, "not both"),
        (("--file-id", "{nope}"), 2, "unknown field"),
        (("--endpoint", "ftp://x"), 2, "not an http(s) URL"),
        (("--endpoint", "http://127.0.0.1:9", "--retries", "1"), 4, "cannot reach"),
    ],
)
def test_usage_and_service_errors(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    write_signals(tmp_path / "data", 1)
    result = cli(
        "upload", "data/*.csv", "--schema", str(SIGNALS), *args, cwd=tmp_path, token="t", check=code
    )
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_endpoint_that_never_answers_fails_fast_with_exit_4(cli: Cli, tmp_path: Path) -> None:
    """With the default retries: refused at the first request, so no backoff before exit 4."""
    write_signals(tmp_path / "data", 2)
    url = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback
    args = ("upload", "data/*.csv", "--schema", str(SIGNALS), "--endpoint", url, "--json")
    result = cli(*args, cwd=tmp_path, token="t", check=4)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: cannot reach {url}: ")
    assert errors[0].endswith("(check --endpoint and that the service is up)")
    summary = json.loads(result.stdout)
    assert summary["uploaded"] == 0 and summary["stopped"].startswith("cannot reach")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", ["/api", "/ingestion"])
def test_a_wrong_base_path_is_a_usage_error_that_says_so(
    cli: Cli, server: ServerProcess, token: str, tmp_path: Path, path: str
) -> None:
    write_signals(tmp_path / "data", 1)
    endpoint = server.url + path
    args = ("upload", "data", "--schema", str(SIGNALS), "--endpoint", endpoint)
    for command in (args, ("ls", "--endpoint", endpoint)):
        result = cli(*command, cwd=tmp_path, token=token, check=2)
        assert (
            f"error: {endpoint}/ingestion/datasets/ answered 404 Not Found: is --endpoint the "
            "API's base URL? (give the URL before /ingestion, e.g. https://api.sigtech.com)"
        ) in result.stderr
    assert ServerView(server.url, token).datasets() == []


def test_nothing_matched_and_no_token(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        "upload", "nothing/*.csv", "--schema", str(SIGNALS), cwd=tmp_path, token="t", check=2
    )
    assert "no files matched" in result.stderr
    write_signals(tmp_path / "data", 1)
    result = cli("upload", "data/*.csv", "--schema", str(SIGNALS), cwd=tmp_path, check=2)
    assert "SIGTECH_PLATFORM_TOKEN" in result.stderr


def test_dry_run_needs_no_token_and_sends_nothing(
    cli: Cli, server: ServerProcess, token: str, tmp_path: Path
) -> None:
    write_signals(tmp_path / "data", 2)
    (tmp_path / "data" / "big.csv").write_text(signal_csv(99, rows=4000))
    result = cli(
        "upload",
        "data/*.csv",
        "--schema",
        str(SIGNALS),
        "--endpoint",
        server.url,
        "--max-request-mb",
        "0.03",
        "--dry-run",
        "--json",
        cwd=tmp_path,
        check=0,
    )
    plan = json.loads(result.stdout)["plan"]
    assert {p["file_id"] for p in plan if not p["part"]} == {"sig_0000", "sig_0001"}
    assert any(p["file_id"] == "big.part-0002" for p in plan)
    assert ServerView(server.url, token).datasets() == []


def seed_holding_the_uploads_after_the_creation() -> int:
    """A ``--seed`` under which the server answers a run's first two ingestion requests
    (the dataset lookup and its PUT) at once and the next eight a minute late."""
    wanted = [False] * 2 + [True] * 8
    for seed in range(100_000):
        draws = random.Random(f"{seed}:spike")  # the server's spike generator
        if [draws.random() < SPIKE_RATE for _ in wanted] == wanted:
            return seed
    raise AssertionError("no seed holds those answers")


def test_killed_midway_then_resumed(
    cli: Cli, server_factory: Callable[..., ServerProcess], token: str, tmp_path: Path
) -> None:
    """Killed with uploads stored but unanswered; resumed, every file is there once.

    The server holds its answers to the uploads after the dataset's creation (seeded
    spikes), so however slowly this runs the kill finds no file finished and two sent
    whose answers never came. The resumed run's listing finds those two stored with
    our sha256: they are recorded as there, not sent again.
    """
    seed = seed_holding_the_uploads_after_the_creation()
    spikes = ["--spike-rate", str(SPIKE_RATE), "--spike-ms", "60000", "--seed", str(seed)]
    server = server_factory(*spikes)
    paths = write_signals(tmp_path / "data", 24)
    args = [
        sys.executable,
        "-m",
        "batchload",
        "upload",
        "data/*.csv",
        "--schema",
        str(SIGNALS),
        "--endpoint",
        server.url,
        "--concurrency",
        "2",
        "--manifest",
        "m.sqlite",
    ]
    env = {**os.environ, "SIGTECH_PLATFORM_TOKEN": token}
    child = subprocess.Popen(args, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    for line in child.stderr:  # blocks until the dataset exists
        if line.startswith("created dataset"):
            break
    manifest = tmp_path / "m.sqlite"
    wait_until(lambda: manifest_states(manifest)["sent"] == 2, what="two uploads sent")
    log = server.stderr_path
    assert log is not None
    wait_until(  # the server stored both, and holds its answers
        lambda: log.read_text().count("delaying the answer") == 2, what="two uploads held"
    )
    child.send_signal(signal.SIGKILL)  # no clean-up
    assert child.wait() == -signal.SIGKILL  # killed, not finished
    child.stderr.close()
    assert manifest_finished(manifest) == 0  # nothing was answered meanwhile

    server.knobs = []  # the held answers die with the old process; what it stored stays
    server.kill()
    server.start()
    result = cli(*args[3:], "--json", cwd=tmp_path, token=token, check=0)
    summary = json.loads(result.stdout)
    assert (summary["uploaded"], summary["found_on_service"]) == (22, 2)
    view = ServerView(server.url, token)
    assert len(view.datasets()) == 1
    files = view.files(summary["dataset_id"])
    assert {k: v["sha256"] for k, v in files.items()} == {p.stem: sha256(p) for p in paths}


def test_plan_with_two_datasets_and_manifest_commands(
    cli: Cli, server: ServerProcess, token: str, tmp_path: Path
) -> None:
    write_signals(tmp_path / "signals", 3)
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "p1.csv").write_text(_prices_csv())
    (tmp_path / "backfill.toml").write_text(
        f"""
[run]
concurrency = 4

[[upload]]
schema = "{SIGNALS}"
files = ["signals/*.csv"]

[[upload]]
schema = "{PRICES}"
files = ["prices/*.csv"]
dataset = "prices_2024"
"""
    )
    result = cli(
        "run",
        "backfill.toml",
        "--endpoint",
        server.url,
        "--json",
        cwd=tmp_path,
        token=token,
        check=0,
    )
    summary = json.loads(result.stdout)
    assert summary["uploaded"] == 4
    assert set(summary["datasets"]) == {"equity_signals", "prices_2024"}
    manifest = tmp_path / ".batchload" / "manifests" / "backfill.sqlite"
    assert summary["manifest"] == str(manifest)

    shown = cli("manifest", "show", str(manifest), "--json", cwd=tmp_path, check=0)
    datasets = {d["name"]: d["files"]["done"] for d in json.loads(shown.stdout)["datasets"]}
    assert datasets == {"equity_signals": 3, "prices_2024": 1}
    cli(
        "manifest",
        "export",
        str(manifest),
        "--format",
        "csv",
        "-o",
        "rows.csv",
        cwd=tmp_path,
        check=0,
    )
    assert len((tmp_path / "rows.csv").read_text().splitlines()) == 5
    checked = cli("reconcile", "--manifest", str(manifest), cwd=tmp_path, token=token, check=0)
    assert checked.stdout.count(": ok:") == 2

    ServerView(server.url, token).session.delete(
        f"{server.url}/ingestion/datasets/{summary['datasets']['prices_2024']}/files/p1", timeout=30
    ).raise_for_status()
    missing = cli(
        "reconcile", "--manifest", str(manifest), "--json", cwd=tmp_path, token=token, check=1
    )
    results = {r["dataset"]: r for r in json.loads(missing.stdout)["reconcile"]}
    assert results["prices_2024"]["missing"] == ["p1"]


def _prices_csv() -> str:
    header = "date,ticker,open,high,low,close,volume,currency\n"
    return header + "2024-01-02,AAA,10.0,11.0,9.5,10.5,1000,USD\n"


@pytest.mark.parametrize(
    "command",
    [["upload"], ["run"], ["manifest", "show"], ["manifest", "export"], ["reconcile"]],
)
def test_help_has_an_example(cli: Cli, command: list[str], tmp_path: Path) -> None:
    result = cli(*command, "--help", cwd=tmp_path, check=0)
    assert "Example" in result.stdout
