"""What the server stores survives a restart and a crash; a crash leaves nothing half-written."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from batchload.schemadiff import Column
from batchload.server.process import ServerProcess
from batchload.server.store import FileRecord, NewDataset, Store
from tests.server.helpers import DATASETS, Api, parquet_bytes, raw_exchange

TOKEN = "persist-token"
CSV = b"a,b\n1,x\n2,y\n"
Factory = Callable[..., ServerProcess]


def snapshot(api: Api) -> dict[str, Any]:
    """Everything the API says about every dataset."""
    datasets = api.get(DATASETS).json()
    return {
        "datasets": datasets,
        "files": {d["id"]: api.get(f"{DATASETS}/{d['id']}/files").json() for d in datasets},
    }


def stored_bytes(data_dir: Path) -> dict[str, bytes]:
    return {p.name.split(".")[0]: p.read_bytes() for p in (data_dir / "files").glob("*/*")}


def test_restart_keeps_every_dataset_and_file(server_factory: Factory, tmp_path: Path) -> None:
    server = server_factory(tokens=(TOKEN,), name="data")
    api = Api(server.url, TOKEN)
    parquet = parquet_bytes(pa.table({"x": [1.5, 2.5], "y": ["p", "q"]}))
    first = api.create(CSV, name="csv-set", file_id="one")["id"]
    api.add(first, CSV + b"3,z\n", file_id="two")
    api.add(first, CSV, file_id="two")  # overwritten
    api.add(first, CSV, file_id="gone")
    api.delete(f"{DATASETS}/{first}/files/gone")
    second = api.create(parquet, "parquet", name="parquet-set", file_id="p1")["id"]
    schema = [{"name": "s", "type": "string"}]
    api.put(f"{DATASETS}/explicit", json={"name": "e", "schema": schema, "tags": {"t": 1}})
    before = snapshot(api)

    server.restart()
    assert snapshot(api) == before
    # A crash (SIGKILL) loses nothing that was answered either.
    api.add(second, parquet, "parquet", file_id="p2")
    before = snapshot(api)
    server.kill()
    server.start()
    assert snapshot(api) == before

    # The decoded bytes are what was sent, byte for byte.
    on_disk = stored_bytes(tmp_path / "data")
    assert on_disk == {"one": CSV, "two": CSV, "p1": parquet, "p2": parquet}
    receipts = {f["file_id"]: f["sha256"] for f in before["files"][first]["files"]}
    assert receipts == dict.fromkeys(["one", "two"], hashlib.sha256(CSV).hexdigest())


def test_a_crash_mid_upload_leaves_nothing_visible(server_factory: Factory, tmp_path: Path) -> None:
    server = server_factory("--read-timeout-s", "30", tokens=(TOKEN,), name="crash")
    api = Api(server.url, TOKEN)
    dataset_id = api.create(CSV, file_id="kept")["id"]
    head = "\r\n".join(
        [
            f"PUT {DATASETS}/{dataset_id}/files HTTP/1.1",
            "Host: x",
            f"Authorization: Bearer {TOKEN}",
            "Content-Length: 100000",
        ]
    )
    # Half a body is sent, the server waits for the rest, and is killed meanwhile.
    # Whether it had read some of it or none, nothing of it may become visible.
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname or "", parts.port or 0)) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + b'{"file_id": "half", "file": "' + b"A" * 40_000)
        assert api.get("/healthz").status_code == 200
        server.kill()
    server.start()
    assert api.file_ids(dataset_id) == ["kept"]
    assert list((tmp_path / "crash" / "tmp").iterdir()) == []
    assert stored_bytes(tmp_path / "crash") == {"kept": CSV}
    assert raw_exchange(server.url, "GET /healthz HTTP/1.1\r\nHost: x").status == 200


def test_opening_a_store_removes_what_a_crash_left_behind(tmp_path: Path) -> None:
    store = Store(tmp_path)
    schema = (Column("a", "int64"),)
    store.create_dataset(NewDataset(id="d", name="d", schema=schema))
    staged = store.stage(b"a\n1\n")
    record = FileRecord(
        dataset_id="d",
        file_id="f",
        rows=1,
        bytes=staged.bytes,
        sha256=staged.sha256,
        file_format="csv",
        received_at="2025-01-01T00:00:00.000Z",
    )
    assert store.commit_file(record, staged, schema=schema) is False
    assert not staged.path.exists()  # moved into place, not copied
    store.close()
    # A temp file cut short, bytes renamed into place but never committed, and the
    # directory of a dataset whose delete was committed before its files were removed.
    (tmp_path / "tmp" / "abc.part").write_bytes(b"half")
    (tmp_path / "files" / "d" / "g.123456789abc.csv").write_bytes(b"a\n2\n")
    (tmp_path / "files" / "deleted").mkdir()
    (tmp_path / "files" / "deleted" / "x.123456789abc.csv").write_bytes(b"a\n3\n")

    store = Store(tmp_path)
    assert [f.file_id for f in store.list_files("d")] == ["f"]
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [p.name.split(".")[0] for p in (tmp_path / "files").glob("*/*")] == ["f"]
    assert not (tmp_path / "files" / "deleted").exists()
    store.close()
