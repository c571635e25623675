"""The store on its own: what a refused commit leaves behind (nothing) and overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchload.server.schema import Column
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
