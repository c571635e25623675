"""Persistence for the local server: SQLite (WAL) metadata and the files' decoded bytes.

A file becomes visible only through its metadata row, and the row is committed only
after the bytes are durable::

    stage   tmp/<nonce>.part                              write, flush, fsync
    commit  files/<dataset>/<file_id>.<nonce>.<format>    rename, fsync the directory,
            the ``files`` row pointing at it              COMMIT (WAL, synchronous=FULL)
            the bytes of the file it replaced             unlinked after the commit

A crash at any step leaves either the old state or the new one, plus at most some
unreferenced bytes, which :class:`Store` removes when it opens. The methods are
blocking: the app calls them from worker threads. One lock serialises metadata work;
staging (the slow part: hashing and writing) happens outside it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchload.schemadiff import Column, Schema, schema_to_json

_DDL = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    schema TEXT NOT NULL,
    identifier TEXT,
    tags TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    dataset_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    file_format TEXT NOT NULL,
    received_at TEXT NOT NULL,
    tags TEXT,
    path TEXT NOT NULL,
    PRIMARY KEY (dataset_id, file_id)
);
"""
_DATASET_COLUMNS = "d.id, d.name, d.schema, d.identifier, d.tags, d.created_at"
_DATASET_TOTALS = "COUNT(f.file_id), COALESCE(SUM(f.rows), 0), COALESCE(SUM(f.bytes), 0)"
_FILE_COLUMNS = "dataset_id, file_id, rows, bytes, sha256, file_format, received_at, tags"


class DatasetNotFound(LookupError):
    """No dataset has that id."""


class SchemaConflict(Exception):
    """The dataset's locked schema is not the one the caller checked the file against."""

    def __init__(self, locked: Schema) -> None:
        super().__init__("the locked schema differs")
        self.locked = locked


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetRecord:
    """A dataset as the API shows it, with totals over its files."""

    id: str
    name: str
    schema: Schema
    identifier: str | None
    tags: Mapping[str, Any] | None
    created_at: str
    file_count: int = 0
    rows: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "schema": schema_to_json(self.schema),
            "identifier": self.identifier,
            "tags": self.tags,
            "created_at": self.created_at,
            "file_count": self.file_count,
            "rows": self.rows,
            "bytes": self.bytes,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRecord:
    """One stored file: the server's receipt for it."""

    dataset_id: str
    file_id: str
    rows: int
    bytes: int
    sha256: str
    file_format: str
    received_at: str
    tags: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.dataset_id,
            "file_id": self.file_id,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "file_format": self.file_format,
            "received_at": self.received_at,
            "raw_file_key": f"{self.dataset_id}/{self.file_id}",
            "tags": self.tags,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedFile:
    """Bytes written and fsynced under ``tmp/``, not yet part of any dataset."""

    path: Path
    bytes: int
    sha256: str


@dataclass(slots=True, kw_only=True, eq=False)
class _PendingCommit:
    """A file waiting for its group's commit, and then what became of it."""

    file: FileRecord
    staged: StagedFile
    schema: Schema
    create: NewDataset | None
    final: Path | None = None
    outcome: bool | BaseException | None = None
    """True replaced a file, False added one; an exception refused it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDataset:
    """What creating a dataset needs."""

    id: str
    name: str
    schema: Schema
    identifier: str | None = None
    tags: Mapping[str, Any] | None = None


def utc_now() -> str:
    """ISO 8601 UTC time with milliseconds, e.g. ``2025-01-31T12:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """Datasets and files under ``data_dir``; safe to share between threads."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._files_dir = self.data_dir / "files"
        self._tmp_dir = self.data_dir / "tmp"
        for directory in (self.data_dir, self._files_dir, self._tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_PendingCommit] = []
        self._db = sqlite3.connect(
            self.data_dir / "metadata.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_DDL)
        self._remove_unreferenced()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reads --------------------------------------------------------------------

    def get_dataset(self, dataset_id: str) -> DatasetRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DATASET_COLUMNS}, {_DATASET_TOTALS} FROM datasets d"
                " LEFT JOIN files f ON f.dataset_id = d.id WHERE d.id = ? GROUP BY d.id",
                (dataset_id,),
            ).fetchone()
        return None if row is None else _dataset(row)

    def locked_schema(self, dataset_id: str) -> Schema | None:
        """The dataset's locked schema, None if there is no such dataset.

        What an upload needs, by primary key: :meth:`get_dataset` also totals the
        dataset's files, a scan that grows with every file stored.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT schema FROM datasets WHERE id = ?", (dataset_id,)
            ).fetchone()
        return None if row is None else _schema(row[0])

    def list_datasets(self) -> list[DatasetRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_DATASET_COLUMNS}, {_DATASET_TOTALS} FROM datasets d"
                " LEFT JOIN files f ON f.dataset_id = d.id GROUP BY d.id ORDER BY d.rowid"
            ).fetchall()
        return [_dataset(row) for row in rows]

    def list_files(self, dataset_id: str) -> list[FileRecord]:
        """The dataset's files by file_id; raises DatasetNotFound."""
        with self._lock:
            self._require(dataset_id)
            rows = self._db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE dataset_id = ? ORDER BY file_id",
                (dataset_id,),
            ).fetchall()
        return [_file(row) for row in rows]

    # --- writes -------------------------------------------------------------------

    def create_dataset(self, new: NewDataset) -> tuple[DatasetRecord, bool]:
        """Create an empty dataset; if the id exists, return it unchanged and False."""
        with self._lock, self._transaction():
            if self._db.execute("SELECT 1 FROM datasets WHERE id = ?", (new.id,)).fetchone():
                created = False
            else:
                self._insert_dataset(new)
                created = True
        record = self.get_dataset(new.id)
        assert record is not None
        return record, created

    def stage(self, data: bytes) -> StagedFile:
        """Write ``data`` durably to a temporary file (not visible); then commit or discard."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._tmp_dir / f"{uuid.uuid4().hex}.part"
        with open(path, "xb") as handle:
            try:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return StagedFile(path=path, bytes=len(data), sha256=sha256)

    def discard(self, staged: StagedFile) -> None:
        """Forget staged bytes that will not be committed."""
        staged.path.unlink(missing_ok=True)

    def commit_file(
        self,
        file: FileRecord,
        staged: StagedFile,
        *,
        schema: Schema,
        create: NewDataset | None = None,
    ) -> bool:
        """Make ``staged`` visible as ``file``; True when it replaced one with that file_id.

        ``schema`` is the file's. With ``create``, the dataset is created in the same
        transaction. Otherwise the dataset must exist (DatasetNotFound) and its locked
        schema must equal ``schema`` (SchemaConflict), checked in the transaction. The
        staged bytes are moved into place or discarded, whatever happens.

        Commits are grouped: the thread that gets the lock commits every file queued
        while the previous group was being made durable, with one directory fsync per
        dataset and one transaction, and each caller returns once its own file is
        durable. With many uploads at once this divides the fsyncs, which are most
        of a small file's cost, by the number of files waiting.
        """
        pending = _PendingCommit(file=file, staged=staged, schema=schema, create=create)
        with self._queue_lock:
            self._queue.append(pending)
        with self._lock:
            if pending.outcome is None:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit_group(group)
        assert pending.outcome is not None
        if isinstance(pending.outcome, BaseException):
            raise pending.outcome
        return pending.outcome

    def _commit_group(self, group: list[_PendingCommit]) -> None:
        """Commit ``group`` in one transaction; each pending gets its outcome."""
        moved: list[_PendingCommit] = []
        replaced: list[str] = []
        try:
            with self._transaction():
                for pending in group:
                    try:
                        replaced += self._move_into_place(pending)
                        moved.append(pending)
                    except (DatasetNotFound, SchemaConflict, ValueError, OSError) as exc:
                        self.discard(pending.staged)
                        pending.outcome = exc
                for directory in {p.final.parent for p in moved if p.final is not None}:
                    _fsync_dir(directory)
        except BaseException as exc:
            for pending in group:
                self.discard(pending.staged)
                if pending.final is not None:
                    pending.final.unlink(missing_ok=True)
                if pending.outcome is None or pending in moved:
                    pending.outcome = exc
            if not isinstance(exc, Exception):
                raise
            return
        for path in replaced:
            (self.data_dir / path).unlink(missing_ok=True)

    def _move_into_place(self, pending: _PendingCommit) -> list[str]:
        """In the open transaction: check, rename and record one file; the replaced path."""
        file, staged = pending.file, pending.staged
        dataset_id = file.dataset_id
        final = (
            self._files_dir
            / dataset_id
            / f"{file.file_id}.{staged.path.stem[:12]}.{file.file_format}"
        )
        if final.resolve().parent != self._files_dir / dataset_id:  # ids are checked; be sure
            raise ValueError(f"refusing to write outside the data dir: {final}")
        if pending.create is not None:
            self._insert_dataset(pending.create)
        else:
            locked = self._require(dataset_id)
            if locked != pending.schema:
                raise SchemaConflict(locked)
        old = self._db.execute(
            "SELECT path FROM files WHERE dataset_id = ? AND file_id = ?",
            (dataset_id, file.file_id),
        ).fetchone()
        final.parent.mkdir(exist_ok=True)
        os.replace(staged.path, final)
        pending.final = final
        self._db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dataset_id,
                file.file_id,
                file.rows,
                file.bytes,
                file.sha256,
                file.file_format,
                file.received_at,
                _dumps(file.tags),
                str(final.relative_to(self.data_dir)),
            ),
        )
        pending.outcome = old is not None
        return [] if old is None else [old[0]]

    def delete_dataset(self, dataset_id: str) -> None:
        """Remove the dataset, its files' metadata and their bytes; raises DatasetNotFound."""
        with self._lock, self._transaction():
            self._require(dataset_id)
            paths = self._db.execute(
                "DELETE FROM files WHERE dataset_id = ? RETURNING path", (dataset_id,)
            ).fetchall()
            self._db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))
        for (path,) in paths:
            (self.data_dir / path).unlink(missing_ok=True)
        # Only when empty: an upload racing this delete may still own a file in it (it
        # removes that file itself when it finds the dataset gone).
        with contextlib.suppress(OSError):
            (self._files_dir / dataset_id).rmdir()

    def delete_file(self, dataset_id: str, file_id: str) -> bool:
        """Remove one file; False when the dataset has no such file_id."""
        with self._lock, self._transaction():
            self._require(dataset_id)
            rows = self._db.execute(
                "DELETE FROM files WHERE dataset_id = ? AND file_id = ? RETURNING path",
                (dataset_id, file_id),
            ).fetchall()  # fetch all: an unfinished RETURNING statement blocks the COMMIT
        for (path,) in rows:
            (self.data_dir / path).unlink(missing_ok=True)
        return bool(rows)

    # --- internals ----------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _require(self, dataset_id: str) -> Schema:
        row = self._db.execute("SELECT schema FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        if row is None:
            raise DatasetNotFound(dataset_id)
        return _schema(row[0])

    def _insert_dataset(self, new: NewDataset) -> None:
        self._db.execute(
            "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?)",
            (
                new.id,
                new.name,
                json.dumps(schema_to_json(new.schema)),
                new.identifier,
                _dumps(new.tags),
                utc_now(),
            ),
        )

    def _remove_unreferenced(self) -> None:
        """Remove what a crash left behind: temp files and bytes no row points to."""
        for leftover in self._tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)
        referenced = {row[0] for row in self._db.execute("SELECT path FROM files")}
        for path in self._files_dir.glob("*/*"):
            if str(path.relative_to(self.data_dir)) not in referenced:
                path.unlink(missing_ok=True)
        known = {row[0] for row in self._db.execute("SELECT id FROM datasets")}
        for directory in self._files_dir.iterdir():
            if directory.name not in known:
                shutil.rmtree(directory, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dumps(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


@functools.lru_cache(maxsize=256)
def _schema(text: str) -> Schema:
    return tuple(Column(c["name"], c["type"]) for c in json.loads(text))


def _dataset(row: tuple[Any, ...]) -> DatasetRecord:
    return DatasetRecord(
        id=row[0],
        name=row[1],
        schema=_schema(row[2]),
        identifier=row[3],
        tags=None if row[4] is None else json.loads(row[4]),
        created_at=row[5],
        file_count=row[6],
        rows=row[7],
        bytes=row[8],
    )


def _file(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(
        dataset_id=row[0],
        file_id=row[1],
        rows=row[2],
        bytes=row[3],
        sha256=row[4],
        file_format=row[5],
        received_at=row[6],
        tags=None if row[7] is None else json.loads(row[7]),
    )
