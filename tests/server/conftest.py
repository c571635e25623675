"""Fixtures of the server tests: one shared server per module, and an API helper."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchload.server.process import ServerProcess
from tests.server.helpers import Api

#: Tokens of the module-shared server; the second one outlives a revoked first.
SHARED_TOKENS = ("shared-token-a", "shared-token-b")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One plain server for a whole module: tests there create their own datasets."""
    data_dir = tmp_path_factory.mktemp("shared") / "server"
    with ServerProcess(data_dir=data_dir, tokens=SHARED_TOKENS) as server:
        yield server


@pytest.fixture
def api(shared_server: ServerProcess) -> Api:
    return Api(shared_server.url, SHARED_TOKENS[1])
