"""The store on its own: what a refused commit leaves behind (nothing) and overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchload.schemadiff import Column
from batchload.server.store import (
    DatasetNotFound,
    FileRecord,
    NewDataset,
    SchemaConflict,
    StagedFile,
    Store,
)

SCHEMA = (Column("a", "int64"),)


def record(
    store: Store, file_id: str, data: bytes, dataset_id: str = "d"
) -> tuple[FileRecord, StagedFile]:
    staged = store.stage(data)
    file = FileRecord(
        dataset_id=dataset_id,
        file_id=file_id,
        rows=data.count(b"\n") - 1,
        bytes=staged.bytes,
        sha256=staged.sha256,
        file_format="csv",
        received_at="2025-01-01T00:00:00.000Z",
    )
    return file, staged


def files_on_disk(root: Path) -> list[str]:
    return sorted(p.read_text() for p in root.rglob("*.csv"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    store.create_dataset(NewDataset(id="d", name="d", schema=SCHEMA))
    return store


def test_overwrite_replaces_the_bytes(store: Store, tmp_path: Path) -> None:
    assert store.commit_file(*record(store, "f", b"a\n1\n"), schema=SCHEMA) is False
    assert store.commit_file(*record(store, "f", b"a\n2\n"), schema=SCHEMA) is True
    assert files_on_disk(tmp_path) == ["a\n2\n"]
    (listed,) = store.list_files("d")
    assert listed.rows == 1 and listed.bytes == 4


def test_refused_commits_leave_nothing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(SchemaConflict) as conflict:
        store.commit_file(*record(store, "f", b"b\n1\n"), schema=(Column("b", "int64"),))
    assert conflict.value.locked == SCHEMA
    with pytest.raises(DatasetNotFound):
        store.commit_file(*record(store, "f", b"a\n1\n", dataset_id="nope"), schema=SCHEMA)
    assert files_on_disk(tmp_path) == []
    assert list((tmp_path / "tmp").iterdir()) == []
    assert store.list_files("d") == []


def test_delete_removes_metadata_and_bytes(store: Store, tmp_path: Path) -> None:
    store.commit_file(*record(store, "f", b"a\n1\n"), schema=SCHEMA)
    store.commit_file(*record(store, "g", b"a\n2\n"), schema=SCHEMA)
    assert store.delete_file("d", "f") is True
    assert store.delete_file("d", "f") is False
    assert files_on_disk(tmp_path) == ["a\n2\n"]
    store.delete_dataset("d")
    assert store.get_dataset("d") is None
    assert not (tmp_path / "files" / "d").exists()
    with pytest.raises(DatasetNotFound):
        store.delete_dataset("d")


def test_create_dataset_is_idempotent(store: Store) -> None:
    again, created = store.create_dataset(NewDataset(id="d", name="other", schema=()))
    assert created is False and again.name == "d" and again.schema == SCHEMA


def test_a_group_commit_gives_each_upload_its_own_outcome(store: Store, tmp_path: Path) -> None:
    """Uploads queued behind a commit in progress are committed together, in one
    transaction, and each still gets its own answer: added, replaced or refused."""
    import hashlib
    import threading
    import time

    uploads = [(f"f{i % 6}", f"a\n{i}\n".encode(), SCHEMA, "d") for i in range(12)]
    uploads += [("bad", b"b\n1\n", (Column("b", "int64"),), "d"), ("gone", b"a\n1\n", SCHEMA, "x")]
    outcomes: dict[int, bool | Exception] = {}

    def upload(index: int) -> None:
        file_id, data, schema, dataset_id = uploads[index]
        try:
            outcomes[index] = store.commit_file(
                *record(store, file_id, data, dataset_id), schema=schema
            )
        except (SchemaConflict, DatasetNotFound) as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(uploads))]
    with store._lock:  # a commit in progress: every upload queues behind it
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(store._queue) < len(uploads) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(store._queue) == len(uploads)
    for thread in threads:
        thread.join()

    assert isinstance(outcomes.pop(12), SchemaConflict)
    assert isinstance(outcomes.pop(13), DatasetNotFound)
    by_id: dict[str, list[bool | Exception]] = {}
    for index, outcome in outcomes.items():
        by_id.setdefault(uploads[index][0], []).append(outcome)
    assert {k: sorted(v, key=str) for k, v in by_id.items()} == {
        f"f{i}": [False, True] for i in range(6)
    }
    listed = store.list_files("d")
    assert [f.file_id for f in listed] == [f"f{i}" for i in range(6)]
    on_disk = files_on_disk(tmp_path)
    assert len(on_disk) == 6  # the replaced bytes are gone, nothing refused was kept
    assert {hashlib.sha256(t.encode()).hexdigest() for t in on_disk} == {f.sha256 for f in listed}
    assert {f.rows for f in listed} == {1}
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_locked_schema_is_read_by_id_alone(store: Store) -> None:
    """What an upload checks against: the schema, or None when there is no dataset."""
    store.commit_file(*record(store, "f", b"a\n1\n"), schema=SCHEMA)
    assert store.locked_schema("d") == SCHEMA
    assert store.locked_schema("nope") is None
    store.delete_dataset("d")
    assert store.locked_schema("d") is None
