"""One real local server for the fidelity tests (each test uses its own dataset)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchload.server.process import ServerProcess
from tests.conftest import TOKEN


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=tmp_path_factory.mktemp("serve"), tokens=(TOKEN,)) as started:
        yield started
