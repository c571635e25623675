"""Shared fixtures: a real ``batchload serve`` on an ephemeral loopback port; and every
property test seeded from its own name, so a failure repeats on the next run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from batchload.server.process import ServerProcess

TOKEN = "test-token-0123456789"

settings.register_profile("batchload", derandomize=True, database=None, deadline=None)
settings.load_profile("batchload")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with chosen knobs; every one is stopped at teardown."""
    started: list[ServerProcess] = []

    def start(
        *knobs: str, tokens: tuple[str, ...] = (TOKEN,), name: str = "server"
    ) -> ServerProcess:
        server = ServerProcess(data_dir=tmp_path / name, tokens=tokens, knobs=list(knobs))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A plain authenticated server with no faults."""
    return server_factory()


@pytest.fixture
def token() -> str:
    return TOKEN
