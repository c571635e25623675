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

Schema (``PRAGMA user_version`` = 4; an older manifest is upgraded when opened: v1
gains ``file_keys``, whose files sent before have no keys recorded, v2 gains
``converted_from``, v3 ``etag``)::

    datasets(name PK, dataset_id, state creating|ready, endpoint, contract,
             file_id_template, created_at, updated_at)
    files(dataset, source_path, part, parts, file_id, size, mtime_ns, etag, sha256,
          sent_sha256, file_format, converted_from, dataset_id, rows, bytes_sent,
          state pending|invalid|sent|done|failed, attempts, last_status, last_error,
          receipt JSON, created_at, updated_at, done_at;
          PK (dataset, source_path, part), UNIQUE (dataset, file_id))
    file_keys(dataset, source_path, scheme, hashes BLOB; PK (dataset, source_path))

The token is never written here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, Protocol

from batchload.errors import UsageError

State = Literal["pending", "invalid", "sent", "done", "failed"]
STATES: tuple[State, ...] = ("pending", "invalid", "sent", "done", "failed")
DatasetState = Literal["creating", "ready"]
SCHEMA_VERSION = 4
EXPORT_FORMATS = ("csv", "json", "parquet")

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
    etag TEXT,
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
_MIGRATIONS = {
    1: _FILE_KEYS,
    2: "ALTER TABLE files ADD COLUMN converted_from TEXT;",
    3: "ALTER TABLE files ADD COLUMN etag TEXT;",
}


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRecord:
    """One manifest row: a whole file (``part == 0``) or one of its parts."""

    dataset: str
    source_path: str
    part: int = 0
    parts: int | None = None
    """How many rows the source has in all (1 for a whole file), once known."""
    file_id: str | None
    size: int
    mtime_ns: int
    etag: str | None = None
    """An object's ETag as read (None for a local file); its source_path is its URL."""
    sha256: str | None = None
    """Of the source file (an object: of the bytes read, whatever its ETag)."""
    sent_sha256: str | None = None
    """Of the bytes sent: the part's parquet, or the file itself."""
    file_format: str | None = None
    """What was sent: the file's own format, or parquet (parts, converted workbooks)."""
    converted_from: str | None = None
    """``xlsx`` or ``xls`` when a workbook was sent as parquet with the contract's types."""
    dataset_id: str | None = None
    rows: int | None = None
    bytes_sent: int | None = None
    state: State
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    receipt: Mapping[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    done_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as plain data (receipt as an object)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetRecord:
    """One dataset of the run: its name, and its id once created or given."""

    name: str
    dataset_id: str | None
    state: DatasetState
    endpoint: str
    contract: str | None = None
    file_id_template: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


KeyHashes = bytes | memoryview | Callable[[], bytes]
"""A file's key hashes, or what reads them back (see :class:`FileKeys`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileKeys:
    """The unique-key hashes of one validated source file (see :mod:`batchload.check.crossfile`)."""

    dataset: str
    source_path: str
    scheme: str
    """How the hashes were made (key columns and types, hash function and its version):
    hashes made another way are not comparable and are not used."""
    hashes: KeyHashes | None
    """u64 hashes in the machine's byte order, one per row, in no particular order (a view
    of the run's own hashes, not a copy, or what reads them back from the run's spill
    file); None deletes what an earlier run stored."""

    def blob(self) -> bytes | memoryview | None:
        """The hashes as stored (read back now when they were left on disk)."""
        return self.hashes() if callable(self.hashes) else self.hashes


@dataclass(frozen=True, slots=True)
class Changes:
    """One batch of manifest changes, applied together by :meth:`Manifest.apply`."""

    records: tuple[FileRecord, ...] = ()
    forget: tuple[tuple[str, str, int], ...] = ()
    """``(dataset, source_path, part)`` rows to delete."""
    datasets: tuple[DatasetRecord, ...] = ()
    keys: tuple[FileKeys, ...] = ()
    """Key hashes to store with the files' rows (their ``done`` state), or to delete."""


class ResumeRow(NamedTuple):
    """The few columns of a row a resume decision needs."""

    source_path: str
    part: int
    parts: int | None
    file_id: str | None
    size: int
    mtime_ns: int
    etag: str | None
    sha256: str | None
    state: State


_IN_CHUNK = 500
_FILE_COLUMNS = [f.name for f in fields(FileRecord)]
_WRITTEN = [c for c in _FILE_COLUMNS if c not in ("created_at", "updated_at", "done_at")]
_UPSERT = (
    f"INSERT INTO files ({', '.join(_WRITTEN)}, created_at, updated_at, done_at) "
    f"VALUES ({', '.join('?' for _ in _WRITTEN)}, ?, ?, ?) "
    "ON CONFLICT (dataset, source_path, part) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _WRITTEN if c not in ("dataset", "source_path"))
    + ", updated_at = excluded.updated_at, done_at = excluded.done_at"
)


def _file_row(record: FileRecord, stamp: str) -> tuple[Any, ...]:
    values = [getattr(record, c) for c in _WRITTEN]
    receipt_at = _WRITTEN.index("receipt")
    if values[receipt_at] is not None:
        values[receipt_at] = json.dumps(values[receipt_at], sort_keys=True, default=str)
    return (*values, stamp, stamp, stamp if record.state == "done" else None)


def _record(row: sqlite3.Row) -> FileRecord:
    data = dict(row)
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
        return dict(cursor.fetchall())

    def rows_for(self, dataset: str, paths: Sequence[str]) -> dict[str, list[FileRecord]]:
        """Full rows of some source paths of a dataset, grouped by path."""
        grouped: dict[str, list[FileRecord]] = {}
        for start in range(0, len(paths), _IN_CHUNK):
            chunk = paths[start : start + _IN_CHUNK]
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
        forget = list(forget)
        with self._transaction():
            for dataset in datasets:
                self._save_dataset(dataset, stamp)
            if forget:
                self._db.executemany(
                    "DELETE FROM files WHERE dataset = ? AND source_path = ? AND part = ?", forget
                )
            self._db.executemany(_UPSERT, [_file_row(r, stamp) for r in records])
            if forget:  # a source left with no row has no keys either
                self._db.executemany(
                    "DELETE FROM file_keys WHERE dataset = ? AND source_path = ? AND NOT EXISTS "
                    "(SELECT 1 FROM files WHERE dataset = ? AND source_path = ?)",
                    [(d, p, d, p) for d, p in dict.fromkeys((d, p) for d, p, _ in forget)],
                )
            if keys:
                self._db.executemany(
                    "INSERT INTO file_keys (dataset, source_path, scheme, hashes) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (dataset, source_path) DO UPDATE SET "
                    "scheme = excluded.scheme, hashes = excluded.hashes",
                    (  # one file's hashes read at a time, when they were left on disk
                        (k.dataset, k.source_path, k.scheme, k.blob())
                        for k in keys
                        if k.hashes is not None
                    ),
                )
                self._db.executemany(
                    "DELETE FROM file_keys WHERE dataset = ? AND source_path = ?",
                    [(k.dataset, k.source_path) for k in keys if k.hashes is None],
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

    # --- export ------------------------------------------------------------------------

    def export(self, fmt: str, out: Path) -> int:
        """Write every file row to ``out`` as csv, json or parquet; returns the row count."""
        import polars as pl

        if fmt not in EXPORT_FORMATS:
            raise UsageError(f"unknown export format {fmt!r}; use csv, json or parquet")
        rows = [r.to_dict() for r in self.rows()]
        for row in rows:
            row["receipt"] = json.dumps(row["receipt"], sort_keys=True) if row["receipt"] else None
        schema = {name: (pl.Int64 if name in _INT_COLUMNS else pl.String) for name in _FILE_COLUMNS}
        frame = (
            pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
        )
        if fmt == "csv":
            frame.write_csv(out)
        elif fmt == "json":
            frame.write_json(out)
        else:
            frame.write_parquet(out)
        return frame.height


_INT_COLUMNS = frozenset(
    {"part", "parts", "size", "mtime_ns", "rows", "bytes_sent", "attempts", "last_status"}
)


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


Resume = Literal["done", "rehash", "send"]


class _RowFacts(Protocol):
    """What resume_decision reads of a row (a FileRecord or a ResumeRow)."""

    @property
    def part(self) -> int: ...
    @property
    def parts(self) -> int | None: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def state(self) -> State: ...


def resume_decision(
    rows: Sequence[_RowFacts], *, size: int, mtime_ns: int, etag: str | None = None
) -> Resume:
    """What a re-run does with a source file, from its manifest rows and a fresh ``stat``
    (or an object listing).

    ``done``: every row (the whole file, or all its parts) is done and size and mtime
    (and an object's ETag) are unchanged, so the file is skipped without being read.
    ``rehash``: done, same size, another mtime or ETag (touched, copied, rewritten): hash
    it, skip it if the sha256 is the same.
    ``send``: anything else.
    """
    if not rows or any(r.state != "done" or r.parts is None for r in rows):
        return "send"  # parts is None: a split interrupted before its last part was cut
    expected = rows[0].parts or 1
    numbers = sorted(r.part for r in rows)
    if numbers != ([0] if expected == 1 and numbers == [0] else list(range(1, expected + 1))):
        return "send"
    if any((r.parts or 1) != expected for r in rows):
        return "send"
    if all(r.size == size and r.mtime_ns == mtime_ns and r.etag == etag for r in rows):
        return "done"
    if all(r.size == size and r.sha256 for r in rows):
        return "rehash"
    return "send"


MANIFEST_DIR = Path(".batchload") / "manifests"


def default_manifest_path(name: str, *, base: Path | None = None) -> Path:
    """``.batchload/manifests/<name>.sqlite`` (relative to ``base``, default the cwd)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    return (base or Path.cwd()) / MANIFEST_DIR / f"{safe}.sqlite"
