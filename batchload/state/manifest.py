"""The manifest: a SQLite file (WAL) that is the truth about a run, and what resumes it.

The SQLite store of the ledger (:mod:`batchload.state.ledger`; the queries are shared
with PostgreSQL in :mod:`batchload.state.sqlstore`): processes on one machine may share
one manifest, each claiming files as it goes.

- One row per file or part (``files``), keyed by dataset name, source path and part
  number (0 for a whole file); one row per dataset (``datasets``) whose id is
  recorded before any file is sent to it.
- One writer per process: before a run, the pipeline's preflight; during it, the
  writer task, which commits each batch of updates in one transaction
  (``BEGIN IMMEDIATE``: processes sharing the file take turns). A state the next step
  relies on (a dataset's id) is committed before that step starts.
- Resume is fast because :meth:`Manifest.resume_index` reads what it needs of a
  dataset's rows in one narrow query, so deciding that an unchanged file is done
  needs no read of the file and no parsing of its receipt.
- The contract's ``unique`` key is checked across runs too: each validated file's
  row-key hashes are kept (``file_keys``: one blob of u64 hashes in the machine's byte
  order per source file), written in the same transaction as the file's ``done`` rows,
  so a re-run knows the keys of the files it skips without reading them. It reads
  them a few files at a time (:meth:`Manifest.key_counts`, then
  :meth:`Manifest.key_hashes`) into a sorted run on disk: its memory does not grow
  with the dataset's history.

Schema (``PRAGMA user_version`` = 6; an older manifest is upgraded when opened: v1
gains ``file_keys``, whose files sent before have no keys recorded, v2 gains
``converted_from``, v3 the claims and ``owner``, v4 an object's ``etag``, v5 a
process's ``gone_at``)::

    datasets(name PK, dataset_id, state creating|ready, endpoint, contract,
             file_id_template, created_at, updated_at)
    files(dataset, source_path, part, parts, file_id, size, mtime_ns, etag, sha256,
          sent_sha256, file_format, converted_from, dataset_id, rows, bytes_sent,
          state pending|invalid|sent|done|failed, attempts, last_status, last_error,
          receipt JSON, owner, created_at, updated_at, done_at;
          PK (dataset, source_path, part), UNIQUE (dataset, file_id))
    file_keys(dataset, source_path, scheme, hashes BLOB; PK (dataset, source_path))
    claims, workers, locks, budgets: see batchload.state.sqlclaims

The token is never written here.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchload.errors import UsageError
from batchload.state.records import FileKeys, KeyRun
from batchload.state.sqlbase import Db, from_db, to_db
from batchload.state.sqlstore import SqlLedger, keys_upsert

SCHEMA_VERSION = 6
BLOB_CHUNK_BYTES = 4 << 20
"""Key hashes left on disk go into their row this much at a time."""
BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another holding the file's lock."""

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
_CLAIMS = """
ALTER TABLE files ADD COLUMN owner TEXT;
CREATE TABLE claims (
    dataset TEXT NOT NULL,
    source_path TEXT NOT NULL,
    seq INTEGER NOT NULL,
    owner TEXT,
    lease_until REAL,
    outcome TEXT CHECK (outcome IN ('done', 'invalid', 'failed')),
    finished_at REAL,
    PRIMARY KEY (dataset, source_path)
);
CREATE INDEX claims_queue ON claims (dataset, outcome, seq);
CREATE INDEX claims_owner ON claims (owner);
CREATE TABLE workers (
    owner TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until REAL NOT NULL);
CREATE TABLE budgets (
    name TEXT PRIMARY KEY,
    tat REAL NOT NULL,
    granted_at REAL NOT NULL,
    interval_s REAL NOT NULL
);
"""
#: What upgrades a manifest from each older version to the next, in order (a new one
#: runs them all: its tables are the sum of every step).
_MIGRATIONS = {
    0: _SCHEMA,
    1: _FILE_KEYS,
    2: "ALTER TABLE files ADD COLUMN converted_from TEXT;",
    3: _CLAIMS,
    4: "ALTER TABLE files ADD COLUMN etag TEXT;",
    5: "ALTER TABLE workers ADD COLUMN gone_at REAL;",
}


class _Connection:
    """The :class:`~batchload.state.sqlstore.Db` calls over one sqlite3 connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.db.cursor()
        cursor.row_factory = None
        return [tuple(map(from_db, r)) for r in cursor.execute(sql, list(map(to_db, params)))]

    def records(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, list(map(to_db, params)))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, map(from_db, row), strict=True)) for row in cursor.fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.db.execute(sql, list(map(to_db, params)))

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, (list(map(to_db, row)) for row in rows))


class Manifest(SqlLedger):
    """A manifest file, open for reading and writing; one connection, used by one thread
    at a time (a lock), shared by the processes on this machine that open the file."""

    NOW = "batchload_now()"
    """Python's clock: SQLite's own counts whole milliseconds, and two ledger events in
    one millisecond (a file finished, a process registered) must stay in order."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        super().__init__()
        self.path = path
        self.location = str(path)
        self._connection = _Connection(connection)
        self._lock = threading.RLock()

    def _store_keys(self, db: Db, keys: Sequence[FileKeys]) -> None:
        """Hashes left on disk (a large file's) are written into a zero-filled blob a chunk
        at a time: bound as one value, they would be copied twice, by the sqlite3 module
        and by SQLite (+300 MB at the end of a 500 MB CSV, whose 100 MB of hashes were
        read back whole)."""
        assert isinstance(db, _Connection)
        for on_disk, batch in itertools.groupby(keys, lambda k: isinstance(k.hashes, KeyRun)):
            if not on_disk:
                super()._store_keys(db, list(batch))
                continue
            for k in batch:
                assert isinstance(k.hashes, KeyRun)
                params = (k.dataset, k.source_path, k.scheme, 8 * k.hashes.rows)
                sql = keys_upsert("zeroblob(?)") + " RETURNING rowid"
                (rowid,) = db.db.execute(sql, list(map(to_db, params))).fetchone()
                with db.db.blobopen("file_keys", "hashes", rowid) as blob:
                    for chunk in k.hashes.chunks(BLOB_CHUNK_BYTES):
                        blob.write(chunk)

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Manifest:
        """Open (and with ``create``, create) the manifest at ``path``."""
        if not create and not path.is_file():
            raise UsageError(f"no manifest at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.create_function("batchload_now", 0, time.time)
            db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            _use_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")  # two processes opening a new file: one creates it
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise UsageError(f"{path} is a manifest of a newer batchload (v{version})")
                # every step in one transaction: all or nothing
                for step in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[step].split(";"):
                        if statement.strip():
                            db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{path} is not a usable manifest: {exc}") from None
        except OSError as exc:
            raise UsageError(f"cannot open manifest {path}: {exc.strerror or exc}") from None
        return cls(path, db)

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._connection.db.close()

    def __enter__(self) -> Manifest:
        return self

    @contextmanager
    def _reading(self) -> Iterator[_Connection]:
        with self._lock:
            yield self._connection

    @contextmanager
    def _writing(self) -> Iterator[_Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error)."""
        with self._lock:
            db = self._connection.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL, waiting as long as the busy timeout for others opening the file.

    A new file's switch takes an exclusive lock, and SQLite answers "locked" at once,
    without its busy handler, while another connection is switching or creating the same
    file: two processes starting a shared backfill on a new manifest saw one of them
    refuse it as unusable.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


MANIFEST_DIR = Path(".batchload") / "manifests"


def default_manifest_path(name: str, *, base: Path | None = None) -> Path:
    """``.batchload/manifests/<name>.sqlite`` (relative to ``base``, default the cwd)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    return (base or Path.cwd()) / MANIFEST_DIR / f"{safe}.sqlite"
