"""The manifest: a SQLite file (WAL) that is the truth about a run, and what resumes it.

- One row per file or part (``files``), keyed by dataset name, source path and part
  number (0 for a whole file); one row per dataset (``datasets``) whose id is
  recorded before any file is sent to it.
- One writer at a time: before a run, the pipeline's preflight; during it, the
  writer task, which commits each batch of updates in one transaction. A state the
  next step relies on (a dataset's id) is committed before that step starts.
- Resume is fast because :meth:`Manifest.resume_index` reads what it needs of a
  dataset's rows in one narrow query, so deciding that an unchanged file is done
  needs no read of the file and no parsing of its receipt.
- The contract's ``unique`` key is checked across runs too: each validated file's
  row-key hashes are kept (``file_keys``: one blob of little-endian u64 hashes per
  source file), written in the same transaction as the file's ``done`` rows, so a
  re-run knows the keys of the files it skips without reading them
  (:meth:`Manifest.key_hashes`, one query).

Schema (``PRAGMA user_version`` = 3; an older manifest is upgraded when opened: v1
gains ``file_keys``, whose files sent before have no keys recorded, v2 gains
``converted_from``)::

    datasets(name PK, dataset_id, state creating|ready, endpoint, contract,
             file_id_template, created_at, updated_at)
    files(dataset, source_path, part, parts, file_id, size, mtime_ns, sha256,
          sent_sha256, file_format, converted_from, dataset_id, rows, bytes_sent,
          state pending|invalid|sent|done|failed, attempts, last_status, last_error,
          receipt JSON, created_at, updated_at, done_at;
          PK (dataset, source_path, part), UNIQUE (dataset, file_id))
    file_keys(dataset, source_path, scheme, hashes BLOB; PK (dataset, source_path))

A source path that is not UTF-8 (a file name in another encoding) is stored as its
bytes, a BLOB, which never equals any text: paths stay exact and distinct, and such a
name never stops a run (``_stored_path`` / ``_source_path``).

The token is never written here.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any

from batchload.errors import UsageError
from batchload.state.records import (
    STATES,
    Changes,
    DatasetRecord,
    FileKeys,
    FileRecord,
    ResumeRow,
    now_iso,
)

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    dataset_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('creating', 'ready')),
    endpoint TEXT NOT NULL,
    contract TEXT,
    file_id_template TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    dataset TEXT NOT NULL,
    source_path TEXT NOT NULL,
    part INTEGER NOT NULL DEFAULT 0,
    parts INTEGER,
    file_id TEXT,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    sent_sha256 TEXT,
    file_format TEXT,
    converted_from TEXT,
    dataset_id TEXT,
    rows INTEGER,
    bytes_sent INTEGER,
    state TEXT NOT NULL CHECK (state IN ('pending', 'invalid', 'sent', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    receipt TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    done_at TEXT,
    PRIMARY KEY (dataset, source_path, part),
    UNIQUE (dataset, file_id)
);
"""
_FILE_KEYS = """
CREATE TABLE IF NOT EXISTS file_keys (
    dataset TEXT NOT NULL,
    source_path TEXT NOT NULL,
    scheme TEXT NOT NULL,
    hashes BLOB NOT NULL,
    PRIMARY KEY (dataset, source_path)
);
"""
#: What upgrades a manifest from each older version to the next, in order.
_MIGRATIONS = {1: _FILE_KEYS, 2: "ALTER TABLE files ADD COLUMN converted_from TEXT;"}


_IN_CHUNK = 500
FILE_COLUMNS = [f.name for f in fields(FileRecord)]
_WRITTEN = [c for c in FILE_COLUMNS if c not in ("created_at", "updated_at", "done_at")]
_UPSERT = (
    f"INSERT INTO files ({', '.join(_WRITTEN)}, created_at, updated_at, done_at) "
    f"VALUES ({', '.join('?' for _ in _WRITTEN)}, ?, ?, ?) "
    "ON CONFLICT (dataset, source_path, part) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _WRITTEN if c not in ("dataset", "source_path"))
    + ", updated_at = excluded.updated_at, done_at = excluded.done_at"
)


def _stored_path(path: str) -> str | bytes:
    """A source path as the manifest keeps it: its text, or its bytes when it is not UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a file name (surrogate escapes)
        return os.fsencode(path)
    return path


def _source_path(value: str | bytes) -> str:
    """The path :func:`_stored_path` stored, as Python names it again."""
    return value if isinstance(value, str) else os.fsdecode(value)


_PATH_AT = _WRITTEN.index("source_path")


def _file_row(record: FileRecord, stamp: str) -> tuple[Any, ...]:
    values = [getattr(record, c) for c in _WRITTEN]
    values[_PATH_AT] = _stored_path(values[_PATH_AT])
    receipt_at = _WRITTEN.index("receipt")
    if values[receipt_at] is not None:
        values[receipt_at] = json.dumps(values[receipt_at], sort_keys=True, default=str)
    return (*values, stamp, stamp, stamp if record.state == "done" else None)


def _record(row: sqlite3.Row) -> FileRecord:
    data = dict(row)
    data["source_path"] = _source_path(data["source_path"])
    if data["receipt"]:
        data["receipt"] = json.loads(data["receipt"])
    return FileRecord(**data)


class Manifest:
    """A manifest file, open for reading and (by one writer at a time) writing."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Manifest:
        """Open (and with ``create``, create) the manifest at ``path``."""
        if not create and not path.is_file():
            raise UsageError(f"no manifest at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UsageError(f"{path} is a manifest of a newer batchload (v{version})")
            if version == 0:
                script = _SCHEMA + _FILE_KEYS
                db.executescript(f"BEGIN; {script} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            elif version < SCHEMA_VERSION:  # every step in one transaction: all or nothing
                steps = "".join(_MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))
                db.executescript(f"BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{path} is not a usable manifest: {exc}") from None
        except OSError as exc:
            raise UsageError(f"cannot open manifest {path}: {exc.strerror or exc}") from None
        return cls(path, db)

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- datasets ----------------------------------------------------------------------

    def dataset(self, name: str) -> DatasetRecord | None:
        """The dataset called ``name`` in this manifest, if any."""
        row = self._db.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        return DatasetRecord(**dict(row)) if row else None

    def datasets(self) -> list[DatasetRecord]:
        """Every dataset in the manifest, by name."""
        rows = self._db.execute("SELECT * FROM datasets ORDER BY name").fetchall()
        return [DatasetRecord(**dict(r)) for r in rows]

    def save_dataset(self, record: DatasetRecord) -> None:
        """Insert or update a dataset row, committed before this returns."""
        self._save_dataset(record, now_iso())

    def _save_dataset(self, record: DatasetRecord, stamp: str) -> None:
        self._db.execute(
            "INSERT INTO datasets (name, dataset_id, state, endpoint, contract, "
            "file_id_template, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET dataset_id = excluded.dataset_id, "
            "state = excluded.state, endpoint = excluded.endpoint, "
            "contract = excluded.contract, file_id_template = excluded.file_id_template, "
            "updated_at = excluded.updated_at",
            (
                record.name,
                record.dataset_id,
                record.state,
                record.endpoint,
                record.contract,
                record.file_id_template,
                stamp,
                stamp,
            ),
        )

    # --- files -------------------------------------------------------------------------

    def resume_index(self, dataset: str) -> dict[str, list[ResumeRow]]:
        """What a resume decides from, per source path, in one narrow query.

        Light tuples instead of full rows (no receipt is parsed), so that deciding that
        thousands of files are done costs microseconds each.
        """
        cursor = self._db.cursor()
        cursor.row_factory = None
        cursor.execute(
            f"SELECT {', '.join(ResumeRow._fields)} FROM files WHERE dataset = ? "
            "ORDER BY source_path, part",
            (dataset,),
        )
        index: dict[str, list[ResumeRow]] = {}
        for values in cursor:
            row = ResumeRow._make(values)
            if type(values[0]) is bytes:  # a name that is not UTF-8
                row = row._replace(source_path=_source_path(values[0]))
            index.setdefault(row.source_path, []).append(row)
        return index

    def key_hashes(self, dataset: str, scheme: str) -> dict[str, bytes]:
        """Source path -> the key hashes stored for it, of those made with ``scheme``.

        One plain query (hashes made another way, with another key or another polars,
        are left out); whether each file is done is for the caller to judge from its
        rows (:meth:`resume_index`), which a resume has read already.
        """
        cursor = self._db.cursor()
        cursor.row_factory = None
        cursor.execute(
            "SELECT source_path, hashes FROM file_keys WHERE dataset = ? AND scheme = ?",
            (dataset, scheme),
        )
        return {_source_path(path): hashes for path, hashes in cursor}

    def rows_for(self, dataset: str, paths: Sequence[str]) -> dict[str, list[FileRecord]]:
        """Full rows of some source paths of a dataset, grouped by path."""
        grouped: dict[str, list[FileRecord]] = {}
        for start in range(0, len(paths), _IN_CHUNK):
            chunk = [_stored_path(p) for p in paths[start : start + _IN_CHUNK]]
            marks = ", ".join("?" for _ in chunk)
            query = (
                f"SELECT * FROM files WHERE dataset = ? AND source_path IN ({marks}) "
                "ORDER BY source_path, part"
            )
            for row in self._db.execute(query, (dataset, *chunk)):
                record = _record(row)
                grouped.setdefault(record.source_path, []).append(record)
        return grouped

    def rows(self, *, dataset: str | None = None) -> list[FileRecord]:
        """Every row (of one dataset, or all), ordered by dataset, source and part."""
        where, params = ("WHERE dataset = ?", (dataset,)) if dataset else ("", ())
        query = f"SELECT * FROM files {where} ORDER BY dataset, source_path, part"
        return [_record(r) for r in self._db.execute(query, params)]

    def write(
        self,
        records: Sequence[FileRecord],
        *,
        forget: Iterable[tuple[str, str, int]] = (),
        datasets: Sequence[DatasetRecord] = (),
        keys: Sequence[FileKeys] = (),
    ) -> None:
        """In one transaction: save datasets, delete ``(dataset, source_path, part)`` rows,
        upsert ``records`` in order, drop the key hashes of a source left with no row,
        then store or delete ``keys``."""
        stamp = now_iso()
        forgotten = [(d, _stored_path(p), part) for d, p, part in forget]
        with self._transaction():
            for dataset in datasets:
                self._save_dataset(dataset, stamp)
            if forgotten:
                self._db.executemany(
                    "DELETE FROM files WHERE dataset = ? AND source_path = ? AND part = ?",
                    forgotten,
                )
            self._db.executemany(_UPSERT, [_file_row(r, stamp) for r in records])
            if forgotten:  # a source left with no row has no keys either
                self._db.executemany(
                    "DELETE FROM file_keys WHERE dataset = ? AND source_path = ? AND NOT EXISTS "
                    "(SELECT 1 FROM files WHERE dataset = ? AND source_path = ?)",
                    [(d, p, d, p) for d, p in dict.fromkeys((d, p) for d, p, _ in forgotten)],
                )
            if keys:
                self._db.executemany(
                    "INSERT INTO file_keys (dataset, source_path, scheme, hashes) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (dataset, source_path) DO UPDATE SET "
                    "scheme = excluded.scheme, hashes = excluded.hashes",
                    (  # one file's hashes read at a time, when they were left on disk
                        (k.dataset, _stored_path(k.source_path), k.scheme, k.blob())
                        for k in keys
                        if k.hashes is not None
                    ),
                )
                self._db.executemany(
                    "DELETE FROM file_keys WHERE dataset = ? AND source_path = ?",
                    [(k.dataset, _stored_path(k.source_path)) for k in keys if k.hashes is None],
                )

    def apply(self, changes: Sequence[Changes]) -> None:
        """Apply many batches of changes in one transaction (the writer task's call)."""
        self.write(
            [r for c in changes for r in c.records],
            forget=[f for c in changes for f in c.forget],
            datasets=[d for c in changes for d in c.datasets],
            keys=[k for c in changes for k in c.keys],
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """``{dataset: {state: count}}`` with every state present."""
        result: dict[str, dict[str, int]] = {}
        for row in self._db.execute(
            "SELECT dataset, state, COUNT(*) FROM files GROUP BY dataset, state"
        ):
            result.setdefault(row[0], dict.fromkeys(STATES, 0))[row[1]] = row[2]
        return result

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


MANIFEST_DIR = Path(".batchload") / "manifests"


def default_manifest_path(name: str, *, base: Path | None = None) -> Path:
    """``.batchload/manifests/<name>.sqlite`` (relative to ``base``, default the cwd)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    return (base or Path.cwd()) / MANIFEST_DIR / f"{safe}.sqlite"
