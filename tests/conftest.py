"""Shared fixtures: a real ``batchload serve`` on an ephemeral loopback port; every
property test seeded from its own name, so a failure repeats on the next run; and the
reliability suite's figures written at the end of a session; real PostgreSQL and S3
(moto) servers on loopback (see ``tests/services.py``).

The suite runs in pytest-xdist workers (``-n auto`` in ``pyproject.toml``): each
worker hands its share of the figures to the controller, which writes them once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from batchload.server.process import ServerProcess
from tests import services
from tests.reliability.helpers import LEDGER
from tests.upload_helpers import ROOT

TOKEN = "test-token-0123456789"
FIGURES = ROOT / ".batchload" / "reliability-last-run.json"
"""What the README's reliability section quotes."""
_LEDGER_KEY = "reliability_ledger"

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


@pytest.fixture(params=["sqlite", "postgres"])
def manifest_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A manifest on each store in turn: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "manifest.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return url


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


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """An xdist worker finished: take in its reliability figures."""
    if raw := node.workeroutput.get(_LEDGER_KEY):  # none from a worker that crashed
        LEDGER.merge(raw)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the reliability figures, unless none were gathered (another subset ran)."""
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: its controller writes
        worker_output[_LEDGER_KEY] = LEDGER.raw()
        return
    if not (LEDGER.fault_cases or LEDGER.hostile_files or LEDGER.hostile_http):
        return
    summary = LEDGER.summary()
    summary["pytest_exit_status"] = int(exitstatus)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(summary, indent=2) + "\n")
