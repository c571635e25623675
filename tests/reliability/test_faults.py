"""Faults: a real server that fails in every way, the real CLI, and nothing lost or duplicated.

Each case uploads a few hundred small files with ``batchload upload`` (a subprocess,
default retry policy) and ends by asking the server what it holds: every file exactly
once, byte-identical, in one dataset, the manifest in agreement, and ``batchload
reconcile`` clean. Fault knobs are seeded; a case also checks from the server's log
that its faults really were injected, so a knob that silently did nothing fails it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from batchload.server.process import ServerProcess
from tests.reliability.helpers import (
    LEDGER,
    ServerView,
    assert_clean_output,
    assert_exactly_once,
    assert_reconciled,
    cli,
    file_ids,
    finish,
    injected_faults,
    manifest_finished,
    manifest_integrity,
    manifest_rows,
    manifest_states,
    sha256,
    signal_csv,
    start_cli,
    wait_until,
    write_signals,
)
from tests.upload_helpers import upload_args

Factory = Callable[..., ServerProcess]
TOKEN = "reliability-token-7f3a9c"
SECOND_TOKEN = "reliability-second-token-51d2"
OBSERVER = "reliability-observer-token-c0ffee"
FILES = 200


class Background:
    """A thread that runs ``action`` and keeps its exception for the test to re-raise."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(action,), daemon=True)
        self._thread.start()

    def _run(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "background action never finished"
        if self.error is not None:
            raise self.error


# --- knobs of the server: 503, dropped answers, a 429 storm, latency spikes -----------------

KNOB_CASES = {
    "503 on 20% of requests": (["--fail-rate", "0.2", "--seed", "1"], [], "503"),
    "answers dropped on 10% of uploads": (["--drop-rate", "0.1", "--seed", "2"], [], "dropped"),
    "429 storm with Retry-After": (["--rate-limit", "25"], ["--concurrency", "32"], "429"),
    "latency spikes beyond the client timeout": (
        ["--spike-rate", "0.1", "--spike-ms", "4000", "--seed", "3"],
        ["--timeout-s", "1"],
        "spiked",
    ),
}


@pytest.mark.parametrize("case", list(KNOB_CASES))
def test_server_faults_lose_and_duplicate_nothing(
    server_factory: Factory, tmp_path: Path, case: str
) -> None:
    knobs, client_flags, fault = KNOB_CASES[case]
    server = server_factory(*knobs, tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", FILES)
    manifest = tmp_path / "run.sqlite"
    args = upload_args("data/*.csv", manifest, server.url, "--concurrency", "16", *client_flags)

    result = cli(*args, token=TOKEN, cwd=tmp_path)

    assert result.code == 0, result.stderr[-3000:]
    assert_clean_output(result)
    summary = result.json()
    assert (summary["uploaded"], summary["failed"], summary["invalid"]) == (FILES, 0, 0)
    assert_reconciled(summary)
    injected = injected_faults(server)
    assert injected[fault] > 0, f"the server injected no {fault}: {injected}"
    landed = assert_exactly_once(ServerView(server.url, TOKEN), file_ids(paths), manifest)
    LEDGER.fault(case, landed, injected.items())


# --- the server killed mid-run ---------------------------------------------------------------


def test_server_sigkilled_mid_run_and_restarted(server_factory: Factory, tmp_path: Path) -> None:
    server = server_factory("--latency-ms", "15", tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", FILES)
    manifest = tmp_path / "run.sqlite"
    args = upload_args("data/*.csv", manifest, server.url, "--concurrency", "4")
    proc = start_cli(*args, token=TOKEN, cwd=tmp_path)
    seen: dict[str, int] = {}

    def crash_and_restart() -> None:
        wait_until(lambda: manifest_states(manifest)["done"] >= 40, what="40 files done")
        seen["done"] = manifest_states(manifest)["done"]
        seen["running"] = proc.poll() is None
        server.kill()  # SIGKILL: requests in flight get no answer, nothing is flushed
        server.start()  # same port, same data dir

    crasher = Background(crash_and_restart)
    result = finish(proc)
    crasher.join()

    assert seen["running"] and seen["done"] < FILES, seen  # the crash was mid-run
    assert result.code == 0, result.stderr[-3000:]
    assert_clean_output(result)
    assert result.json()["uploaded"] == FILES
    assert_reconciled(result.json())
    landed = assert_exactly_once(ServerView(server.url, TOKEN), file_ids(paths), manifest)
    LEDGER.fault("server SIGKILLed mid-run, restarted", landed, [("server_killed", 1)])


# --- the client killed mid-run ---------------------------------------------------------------


def test_client_sigkilled_mid_run_then_resumed(server_factory: Factory, tmp_path: Path) -> None:
    server = server_factory("--latency-ms", "15", tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", FILES)
    manifest = tmp_path / "run.sqlite"
    args = upload_args("data/*.csv", manifest, server.url, "--concurrency", "4")
    proc = start_cli(*args, token=TOKEN, cwd=tmp_path)

    wait_until(lambda: manifest_finished(manifest) >= 40, what="40 files done")
    proc.send_signal(signal.SIGKILL)
    killed = finish(proc)
    assert killed.code == -signal.SIGKILL  # killed, not finished
    assert manifest_integrity(manifest) == "ok"
    done_before = manifest_finished(manifest)
    assert 40 <= done_before < FILES

    resumed = cli(*args, token=TOKEN, cwd=tmp_path)

    assert resumed.code == 0, resumed.stderr[-3000:]
    assert_clean_output(resumed)
    summary = resumed.json()
    assert summary["skipped"] >= done_before  # finished files are not sent again
    assert summary["uploaded"] + summary["skipped"] == FILES
    assert_reconciled(summary)
    landed = assert_exactly_once(ServerView(server.url, TOKEN), file_ids(paths), manifest)
    LEDGER.fault("client SIGKILLed mid-run, resumed", landed, [("client_killed", 1)])


# --- the token revoked mid-run ----------------------------------------------------------------


def test_token_revoked_mid_run_stops_with_exit_3_then_a_valid_token_finishes(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = server_factory("--latency-ms", "15", tokens=(TOKEN, SECOND_TOKEN, OBSERVER))
    paths = write_signals(tmp_path / "data", FILES)
    manifest = tmp_path / "run.sqlite"
    args = upload_args("data/*.csv", manifest, server.url, "--concurrency", "4")
    proc = start_cli(*args, token=TOKEN, cwd=tmp_path)

    def revoke() -> None:
        wait_until(lambda: manifest_states(manifest)["done"] >= 40, what="40 files done")
        ServerView(server.url, TOKEN).revoke()

    revoker = Background(revoke)
    stopped = finish(proc)
    revoker.join()

    assert stopped.code == 3, stopped.stderr[-3000:]
    assert_clean_output(stopped)
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "401" in errors[0], stopped.stderr[-3000:]
    summary = stopped.json()
    assert summary["exit_code"] == 3 and summary["stopped"]
    assert 40 <= summary["uploaded"] < FILES
    # The manifest is intact: its done files are on the server, nothing blamed on a file.
    assert manifest_integrity(manifest) == "ok"
    states = manifest_states(manifest)
    assert states["failed"] == states["invalid"] == 0, states
    view = ServerView(server.url, OBSERVER)
    [dataset] = view.datasets()
    on_server = {f["file_id"]: f["sha256"] for f in view.receipts(dataset["id"])}
    done = [r for r in manifest_rows(manifest) if r["state"] == "done"]
    assert len(done) >= summary["uploaded"]
    assert all(on_server[r["file_id"]] == r["sent_sha256"] for r in done)
    finished_before = manifest_finished(manifest)

    finished = cli(*args, token=SECOND_TOKEN, cwd=tmp_path)

    assert finished.code == 0, finished.stderr[-3000:]
    assert_clean_output(finished)
    summary = finished.json()
    assert summary["skipped"] >= finished_before
    assert summary["uploaded"] + summary["skipped"] == FILES
    assert_reconciled(summary)
    landed = assert_exactly_once(view, file_ids(paths), manifest)
    LEDGER.fault("token revoked mid-run, resumed", landed, [("token_revoked", 1)])


# --- files that change on disk during the run -------------------------------------------------


def test_files_changed_after_hashing_are_never_sent_then_resent_whole(
    server_factory: Factory, tmp_path: Path
) -> None:
    """Files hashed (checked in the first group) but changed before they are streamed:
    the stream's own hash finds it, the file fails, and the server never has a version
    that is not one of the file's versions, whole."""
    server = server_factory("--latency-ms", "20", tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", 120)
    manifest = tmp_path / "run.sqlite"
    # With one request at a time, files go in name order; the first group of 64 is hashed
    # and validated before the first file is sent, so files 50..52 are hashed, not sent
    # (checked below: fewer than 50 files were done when they changed).
    changed = {
        paths[50]: signal_csv(50).replace(",5\n", ",1\n"),  # same size, other bytes
        paths[51]: signal_csv(51) + signal_csv(9051).split("\n", 1)[1],  # grown
        paths[52]: signal_csv(52, rows=3),  # shrunk
    }
    old = {p.stem: sha256(p) for p in changed}
    args = upload_args("data/*.csv", manifest, server.url, "--concurrency", "1")
    proc = start_cli(*args, token=TOKEN, cwd=tmp_path)

    def change() -> None:
        wait_until(lambda: manifest_states(manifest)["done"] >= 1, what="the first file done")
        done_when_changed.append(manifest_states(manifest)["done"])
        for path, text in changed.items():
            with open(path, "r+b") as handle:  # in place, as an editor or a writer would
                handle.write(text.encode())
                handle.truncate()

    done_when_changed: list[int] = []
    changer = Background(change)
    first = finish(proc)
    changer.join()
    assert done_when_changed[0] < 50, done_when_changed  # they changed before being sent

    assert first.code == 1, first.stderr[-3000:]
    assert_clean_output(first)
    problems = {Path(p["path"]).stem: p for p in first.json()["problems"]}
    assert set(problems) == {p.stem for p in changed}, problems
    for problem in problems.values():
        assert problem["state"] == "failed"
        assert (
            "changed" in problem["reason"]
            or "grew" in problem["reason"]
            or "shrank" in (problem["reason"])
        ), problem
    view = ServerView(server.url, TOKEN)
    [dataset] = view.datasets()
    on_server = {f["file_id"]: f["sha256"] for f in view.receipts(dataset["id"])}
    for stem in old:  # not sent at all: neither the old version, nor a mix, nor the new one
        assert stem not in on_server, stem

    second = cli(*args, token=TOKEN, cwd=tmp_path)

    assert second.code == 0, second.stderr[-3000:]
    assert second.json()["uploaded"] == len(changed)
    assert_reconciled(second.json())
    landed = assert_exactly_once(view, file_ids(paths), manifest)
    on_server = {f["file_id"]: f["sha256"] for f in view.receipts(dataset["id"])}
    for path in changed:  # the new version, whole
        assert on_server[path.stem] == sha256(path) != old[path.stem]
    LEDGER.fault("files changed on disk mid-run", landed, [("files_changed", len(changed))])
