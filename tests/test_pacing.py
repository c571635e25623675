"""The adaptive limit on requests in flight, end to end against a real server with latency."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from batchload.config import START_CONCURRENCY
from batchload.progress import Event, Paced
from batchload.server.process import ServerProcess
from tests.upload_helpers import ServerView, job, run, write_signals


def test_default_settings_grow_past_the_start_over_a_slow_link(
    server_factory: Callable[..., ServerProcess], token: str, tmp_path: Path
) -> None:
    server = server_factory("--latency-ms", "50")
    paths = write_signals(tmp_path / "data", 60)
    events: list[Event] = []
    summary = run(
        server, token, [job(tmp_path / "data" / "*.csv")], tmp_path / "m.sqlite", sink=events.append
    )

    assert (summary.uploaded, summary.failed, summary.invalid) == (60, 0, 0)
    limits = [e.concurrency for e in events if isinstance(e, Paced)]
    assert limits, "the limit never moved from its start"
    assert max(limits) > START_CONCURRENCY
    assert summary.dataset_id is not None
    on_server = ServerView(server.url, token).files(summary.dataset_id)
    assert sorted(on_server) == sorted(p.stem for p in paths)


def test_a_cap_holds_the_limit(
    server_factory: Callable[..., ServerProcess], token: str, tmp_path: Path
) -> None:
    server = server_factory("--latency-ms", "50")
    write_signals(tmp_path / "data", 40)
    cap = START_CONCURRENCY + START_CONCURRENCY // 2
    events: list[Event] = []
    summary = run(
        server,
        token,
        [job(tmp_path / "data" / "*.csv")],
        tmp_path / "m.sqlite",
        sink=events.append,
        concurrency=cap,
    )

    assert summary.uploaded == 40
    limits = [e.concurrency for e in events if isinstance(e, Paced)]
    assert limits[0] == cap  # slow start's first doubling, held to the cap
    assert max(limits) == cap
