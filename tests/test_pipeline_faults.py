"""Faults, a revoked token and cancellation: every file still lands exactly once."""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from batchload.config import ClientConfig, Secret
from batchload.errors import AuthError, UnreachableError
from batchload.pipeline.run import RunOptions, run_upload
from batchload.pipeline.stop import Stop
from batchload.progress import DatasetReady, Event, FileDone, Retrying, Throttled
from batchload.send.retry import AimdLimit, Pacer, RetryPolicy
from batchload.send.sender import Sender
from batchload.send.transport import IngestionClient
from batchload.server.process import ServerProcess
from batchload.state.manifest import Manifest
from batchload.summary import RunSummary
from tests.upload_helpers import (
    FAST_RETRY,
    ServerView,
    config,
    job,
    run,
    sha256,
    signal_csv,
    write_signals,
)

DROP_RATE = 0.2


def seed_dropping_first_upload() -> int:
    """A seed whose first stored upload (the dataset's creation) loses its answer."""
    return next(s for s in range(1000) if random.Random(f"{s}:drop").random() < DROP_RATE)


def test_faults_together_every_file_exactly_once(
    server_factory: Callable[..., ServerProcess], token: str, tmp_path: Path
) -> None:
    seed = seed_dropping_first_upload()
    server = server_factory(
        "--fail-rate",
        "0.2",
        "--drop-rate",
        str(DROP_RATE),
        "--rate-limit",
        "60",
        "--seed",
        str(seed),
    )
    paths = write_signals(tmp_path / "data", 80)
    events: list[Event] = []
    summary = run(
        server,
        token,
        [job(tmp_path / "data" / "*.csv")],
        tmp_path / "m.sqlite",
        sink=events.append,
        concurrency=8,
        seed=1,
    )
    assert (summary.uploaded, summary.failed, summary.invalid) == (80, 0, 0), summary.problems
    view = ServerView(server.url, token)
    datasets = view.datasets()
    assert len(datasets) == 1  # created once, though the answer to the creation was lost
    on_server = view.files(datasets[0]["id"])
    assert {k: v["sha256"] for k, v in on_server.items()} == {p.stem: sha256(p) for p in paths}
    retries = [e for e in events if isinstance(e, Retrying)]
    assert any(e.status == 503 for e in retries)
    assert any(e.status is None for e in retries)  # dropped connections
    assert any(isinstance(e, Throttled) for e in events)  # 429: paused and slowed down
    assert sum(isinstance(e, DatasetReady) for e in events) == 1
    with Manifest.open(tmp_path / "m.sqlite") as opened:
        rows = opened.rows()
    assert {r.state for r in rows} == {"done"}
    assert max(r.attempts for r in rows) > 1


@pytest.mark.parametrize(
    "case",
    [
        (40, 2, ()),
        # slow answers, one upload task: checking runs ahead and waits to hand a file on
        # when the upload stops, and with many files the groups wait to be checked too
        # (those waits must end quietly, not as a second error)
        (40, 1, ("--latency-ms", "30")),
        (450, 1, ("--latency-ms", "30")),
    ],
)
def test_a_revoked_token_stops_the_run_and_a_resume_finishes(
    server_factory: Callable[..., ServerProcess],
    token: str,
    tmp_path: Path,
    case: tuple[int, int, tuple[str, ...]],
) -> None:
    files, concurrency, knobs = case
    server = server_factory(*knobs, tokens=(token, "observer-token"), name="auth")
    paths = write_signals(tmp_path / "data", files)
    manifest = tmp_path / "m.sqlite"
    done = 0

    def revoke_after_five(event: Event) -> None:
        nonlocal done
        if isinstance(event, FileDone):
            done += 1
            if done == 5:
                ServerView(server.url, token).revoke()

    first = run(
        server,
        token,
        [job(tmp_path / "data" / "*.csv")],
        manifest,
        sink=revoke_after_five,
        concurrency=concurrency,
    )
    assert isinstance(first.error, AuthError)
    assert first.exit_code == 3
    assert 5 <= first.uploaded < files
    with Manifest.open(manifest) as opened:
        rows = opened.rows()
        assert opened.dataset("equity_signals") is not None
    assert sum(r.state == "done" for r in rows) >= first.uploaded
    assert not any(r.state == "failed" for r in rows)  # a refused token is no file's fault

    server.restart()  # revocations last until a restart
    second = run(server, token, [job(tmp_path / "data" / "*.csv")], manifest)
    assert second.error is None
    assert second.uploaded + second.skipped == files
    view = ServerView(server.url, "observer-token")
    assert len(view.datasets()) == 1
    on_server = view.files(second.dataset_id or "")
    assert {k: v["sha256"] for k, v in on_server.items()} == {p.stem: sha256(p) for p in paths}


@pytest.mark.parametrize("stop_after", [1, 12])
def test_cancelled_midway_then_resumed(
    server: ServerProcess, token: str, tmp_path: Path, stop_after: int
) -> None:
    paths = write_signals(tmp_path / "data", 30)
    manifest = tmp_path / "m.sqlite"

    async def cancelled_run() -> None:
        with anyio.CancelScope() as scope:
            seen = 0

            def sink(event: Event) -> None:
                nonlocal seen
                if isinstance(event, FileDone):
                    seen += 1
                    if seen == stop_after:
                        scope.cancel()

            await run_upload(
                [job(tmp_path / "data" / "*.csv")],
                config=config(server, token),
                manifest_path=manifest,
                options=RunOptions(retry=FAST_RETRY, concurrency=4),
                sink=sink,
            )

    anyio.run(cancelled_run)
    with Manifest.open(manifest) as opened:
        # finished: done with every part counted (what a resume skips); a cancel between
        # a file's receipt and its bookkeeping leaves it done without, and it is sent again
        done_before = sum(r.state == "done" and r.parts is not None for r in opened.rows())
        in_doubt = sum(r.state == "sent" for r in opened.rows())
    assert done_before < 30

    resumed = run(server, token, [job(tmp_path / "data" / "*.csv")], manifest)
    # a file in doubt that the service lists with our sha256 is recorded, not sent again
    assert resumed.found_on_service <= in_doubt
    assert resumed.skipped == done_before + resumed.found_on_service
    assert resumed.uploaded == 30 - resumed.skipped
    view = ServerView(server.url, token)
    assert len(view.datasets()) == 1
    on_server = view.files(resumed.dataset_id or "")
    assert {k: v["sha256"] for k, v in on_server.items()} == {p.stem: sha256(p) for p in paths}
    assert [r.missing for r in resumed.reconcile] == [()]


def _checking_threads() -> list[str]:
    """Files of the check stage's code that other threads are running now."""
    stages = (f"{os.sep}batchload{os.sep}check{os.sep}", f"{os.sep}batchload{os.sep}read{os.sep}")
    here = threading.get_ident()
    found = []
    for ident, top in sys._current_frames().items():
        if ident == here:
            continue
        for frame, _ in traceback.walk_stack(top):
            if any(stage in frame.f_code.co_filename for stage in stages):
                found.append(frame.f_code.co_filename)
    return found


def test_a_run_cancelled_during_a_check_leaves_no_thread_checking(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    """Cancelling waits for the check in its worker thread, which stops at its next block."""
    data = tmp_path / "data"
    data.mkdir()
    rows = 800_000  # about 24 MB: checked block by block
    (data / "big.csv").write_text(signal_csv(0, rows))
    seen_checking: list[bool] = []

    async def cancelled_run() -> None:
        async with anyio.create_task_group() as group:

            async def cancel_once_checking() -> None:
                with anyio.fail_after(60):
                    while not _checking_threads():  # noqa: ASYNC110  (no event to wait for)
                        await anyio.sleep(0.005)  # polling the threads, not waiting for time
                seen_checking.append(True)
                group.cancel_scope.cancel()

            group.start_soon(cancel_once_checking)
            await run_upload(
                [job(data / "*.csv")],
                config=config(server, token),
                manifest_path=tmp_path / "m.sqlite",
                options=RunOptions(retry=FAST_RETRY, concurrency=2),
            )

    anyio.run(cancelled_run)
    assert seen_checking == [True]
    assert _checking_threads() == []


def test_a_stop_request_drains_the_run_and_a_resume_sends_exactly_what_was_left(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    paths = write_signals(tmp_path / "data", 30)
    manifest = tmp_path / "m.sqlite"

    async def stopped_run() -> RunSummary:
        stop = Stop()

        def sink(event: Event) -> None:
            if isinstance(event, FileDone) and not stop.requested:
                stop.request()  # once: a second request would abort

        return await run_upload(
            [job(tmp_path / "data")],
            config=config(server, token),
            manifest_path=manifest,
            options=RunOptions(retry=FAST_RETRY, concurrency=4),
            sink=sink,
            stop=stop,
        )

    stopped = anyio.run(stopped_run)
    assert (stopped.interrupted, stopped.exit_code, stopped.error) == (True, 130, None)
    assert stopped.left > 0 and stopped.uploaded + stopped.left == 30
    assert stopped.reconcile == ()  # not checked against the service: the run is unfinished

    resumed = run(server, token, [job(tmp_path / "data")], manifest)
    assert (resumed.skipped, resumed.uploaded) == (stopped.uploaded, stopped.left)
    on_server = ServerView(server.url, token).files(resumed.dataset_id or "")
    assert {k: v["sha256"] for k, v in on_server.items()} == {p.stem: sha256(p) for p in paths}


# --- an endpoint that is not there ---------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_endpoint_that_never_answered_stops_the_run_at_the_first_request(
    tmp_path: Path,
) -> None:
    write_signals(tmp_path / "data", 3)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    events: list[Event] = []

    async def main() -> RunSummary:
        return await run_upload(
            [job(tmp_path / "data" / "*.csv")],
            config=ClientConfig(endpoint=endpoint, token=Secret("t")),
            manifest_path=tmp_path / "m.sqlite",
            options=RunOptions(retry=FAST_RETRY),
            sink=events.append,
        )

    summary = anyio.run(main)
    assert isinstance(summary.error, UnreachableError)
    assert summary.exit_code == 4
    assert str(summary.error).startswith(f"cannot reach {endpoint}: ")
    assert "check --endpoint" in str(summary.error)
    assert not [e for e in events if isinstance(e, Retrying)]  # no retry, no backoff
    assert summary.uploaded == 0


def test_a_service_that_answered_then_went_away_is_retried(
    server: ServerProcess, token: str
) -> None:
    """A restart mid-run is waited for: once the service has answered, refusals are transient."""
    events: list[Event] = []
    policy = RetryPolicy(attempts=4, base_delay_s=0.0, max_delay_s=0.0)

    async def main() -> None:
        async with IngestionClient(config(server, token)) as client:
            sender = Sender(client, policy=policy, pacer=Pacer(AimdLimit(1)), sink=events.append)
            assert await sender.call(client.list_datasets) == []
            await anyio.to_thread.run_sync(server.stop)
            with pytest.raises(UnreachableError):
                await sender.call(client.list_datasets)

    anyio.run(main)
    assert len([e for e in events if isinstance(e, Retrying)]) == policy.attempts - 1
