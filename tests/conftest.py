"""Shared fixtures: a real ``batchload serve`` on an ephemeral loopback port, and real
PostgreSQL and S3 (moto) servers on loopback (see ``tests/services.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchload.server.process import ServerProcess
from tests import services

TOKEN = "test-token-0123456789"


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


# --- Real PostgreSQL and S3 servers (tests/services.py): one per session, a fresh
# database or bucket per test. They fail (never skip) when they cannot start.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[services.PostgresServer]:
    """A PostgreSQL cluster on 127.0.0.1 (superuser ``postgres``, trust auth)."""
    try:
        server = services.start_postgres()
    except services.ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: services.PostgresServer) -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT/t_<uuid>``: an empty database for this test."""
    with postgres_server.database() as dbname:
        yield postgres_server.url(dbname)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.S3Server]:
    """moto's S3 server on 127.0.0.1; ``.endpoint_url``, ``.env`` (AWS_* for clients)."""
    try:
        server = services.start_s3(tmp_path_factory.mktemp("s3"))
    except services.ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: services.S3Server) -> str:
    """The name of a new, empty bucket on ``s3_server``."""
    return s3_server.create_bucket(f"t-{uuid.uuid4().hex}")
