"""The manifest's queries in SQL, written once for both stores (SQLite and PostgreSQL).

The connections and dialect are the store's (:mod:`batchload.state.sqlbase`); the
claims' queries are :mod:`batchload.state.sqlclaims`. A file's claim is *finished* by
the write that settles it (a failed or invalid row, or its done rows with their part
count, see :func:`outcome_of`), in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from batchload.state.ledger import Outcome
from batchload.state.records import (
    STATES,
    Changes,
    DatasetRecord,
    FileKeys,
    FileRecord,
    ResumeRow,
    now_iso,
)
from batchload.state.sqlbase import Db, chunks, marks
from batchload.state.sqlclaims import SqlClaims

FILE_COLUMNS = [f.name for f in fields(FileRecord)]
_WRITTEN = [c for c in FILE_COLUMNS if c not in ("created_at", "updated_at", "done_at")]
_UPSERT = (
    f"INSERT INTO files ({', '.join(_WRITTEN)}, created_at, updated_at, done_at) "
    f"VALUES ({', '.join('?' for _ in _WRITTEN)}, ?, ?, ?) "
    "ON CONFLICT (dataset, source_path, part) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _WRITTEN if c not in ("dataset", "source_path"))
    + ", updated_at = excluded.updated_at, done_at = excluded.done_at"
)


def keys_upsert(hashes: str) -> str:
    """The statement that stores a file's key hashes, given as ``hashes`` (SQL)."""
    return (
        "INSERT INTO file_keys (dataset, source_path, scheme, hashes) "
        f"VALUES (?, ?, ?, {hashes}) ON CONFLICT (dataset, source_path) DO UPDATE SET "
        "scheme = excluded.scheme, hashes = excluded.hashes"
    )


def outcome_of(record: FileRecord) -> Outcome | None:
    """Whether writing ``record`` settles its file: a failure, or a done row that knows
    its file's part count (a part's first done row does not: more parts may follow)."""
    if record.state in ("invalid", "failed"):
        return record.state
    if record.state == "done" and record.parts is not None:
        return "done"
    return None


def _file_row(record: FileRecord, stamp: str, owner: str | None) -> tuple[Any, ...]:
    values = [getattr(record, c) for c in _WRITTEN]
    receipt_at = _WRITTEN.index("receipt")
    if values[receipt_at] is not None:
        values[receipt_at] = json.dumps(values[receipt_at], sort_keys=True, default=str)
    if owner is not None:
        values[_WRITTEN.index("owner")] = owner
    return (*values, stamp, stamp, stamp if record.state == "done" else None)


def _record(data: dict[str, Any]) -> FileRecord:
    if data["receipt"]:
        data["receipt"] = json.loads(data["receipt"])
    return FileRecord(**data)


class SqlLedger(SqlClaims):
    """Every query of the ledger; a subclass gives it connections and its dialect."""

    # --- datasets ------------------------------------------------------------------------

    def dataset(self, name: str) -> DatasetRecord | None:
        """The dataset called ``name`` in this manifest, if any."""
        with self._read() as db:
            rows = db.records("SELECT * FROM datasets WHERE name = ?", (name,))
        return DatasetRecord(**rows[0]) if rows else None

    def datasets(self) -> list[DatasetRecord]:
        """Every dataset in the manifest, by name."""
        with self._read() as db:
            return [DatasetRecord(**r) for r in db.records("SELECT * FROM datasets ORDER BY name")]

    def save_dataset(self, record: DatasetRecord) -> None:
        """Insert or update a dataset row, committed before this returns."""
        with self._write() as db:
            self._save_dataset(db, record, now_iso())

    @staticmethod
    def _save_dataset(db: Db, record: DatasetRecord, stamp: str) -> None:
        db.run(
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

    # --- files ---------------------------------------------------------------------------

    def resume_index(self, dataset: str) -> dict[str, list[ResumeRow]]:
        """What a resume decides from, per source path, in one narrow query.

        Light tuples instead of full rows (no receipt is parsed), so that deciding that
        thousands of files are done costs microseconds each.
        """
        with self._read() as db:
            values = db.query(
                f"SELECT {', '.join(ResumeRow._fields)} FROM files WHERE dataset = ? "
                "ORDER BY source_path, part",
                (dataset,),
            )
        index: dict[str, list[ResumeRow]] = {}
        for value in values:
            row = ResumeRow._make(value)
            index.setdefault(row.source_path, []).append(row)
        return index

    def key_counts(self, dataset: str, scheme: str) -> dict[str, int]:
        """Source path -> how many key hashes are stored for it, of those made with
        ``scheme``, by path; the hashes themselves are not read.

        Hashes made another way (another key, another polars) are left out; whether
        each file is done is for the caller to judge from its rows
        (:meth:`resume_index`), which a resume has read already.
        """
        with self._read() as db:
            rows = db.query(
                "SELECT source_path, length(hashes) FROM file_keys "
                "WHERE dataset = ? AND scheme = ? ORDER BY source_path",
                (dataset, scheme),
            )
        return {path: size // 8 for path, size in rows}

    def key_hashes(
        self, dataset: str, scheme: str, paths: Sequence[str]
    ) -> list[tuple[str, bytes]]:
        """The key hashes stored for some source paths (made with ``scheme``): the caller
        asks for a few files at a time, so that the history is never in memory whole."""
        found: list[tuple[str, bytes]] = []
        with self._read() as db:
            for chunk in chunks(paths):
                found += db.query(
                    "SELECT source_path, hashes FROM file_keys WHERE dataset = ? "
                    f"AND scheme = ? AND source_path IN ({marks(chunk)})",
                    (dataset, scheme, *chunk),
                )
        return found

    def rows_for(self, dataset: str, paths: Sequence[str]) -> dict[str, list[FileRecord]]:
        """Full rows of some source paths of a dataset, grouped by path."""
        grouped: dict[str, list[FileRecord]] = {}
        with self._read() as db:
            for chunk in chunks(paths):
                query = (
                    f"SELECT * FROM files WHERE dataset = ? AND source_path IN ({marks(chunk)}) "
                    "ORDER BY source_path, part"
                )
                for row in db.records(query, (dataset, *chunk)):
                    record = _record(row)
                    grouped.setdefault(record.source_path, []).append(record)
        return grouped

    def rows(self, *, dataset: str | None = None) -> list[FileRecord]:
        """Every row (of one dataset, or all), ordered by dataset, source and part."""
        where, params = ("WHERE dataset = ?", (dataset,)) if dataset else ("", ())
        with self._read() as db:
            found = db.records(
                f"SELECT * FROM files {where} ORDER BY dataset, source_path, part", params
            )
        return [_record(r) for r in found]

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
        then store or delete ``keys``. Not guarded by claims (see :meth:`apply`)."""
        with self._write() as db:
            self._apply(
                db, records=records, forget=list(forget), datasets=datasets, keys=keys, owner=None
            )

    def apply(
        self, changes: Sequence[Changes], *, owner: str | None = None
    ) -> frozenset[tuple[str, str]]:
        """Apply many batches of changes in one transaction (the writer task's call).

        With ``owner``, only the files whose claims ``owner`` still holds are written
        (``UPDATE … WHERE owner = me``, in effect) and a write that settles a file
        finishes its claim; the ``(dataset, source_path)`` of the files refused are
        returned: another process took them over.
        """
        records = [r for c in changes for r in c.records]
        forget = [f for c in changes for f in c.forget]
        keys = [k for c in changes for k in c.keys]
        datasets = [d for c in changes for d in c.datasets]
        with self._write() as db:
            refused: frozenset[tuple[str, str]] = frozenset()
            if owner is not None:
                touched = {(r.dataset, r.source_path) for r in records}
                touched |= {(d, p) for d, p, _ in forget} | {
                    (k.dataset, k.source_path) for k in keys
                }
                refused = frozenset(touched - self._owned(db, touched, owner))
                if refused:
                    records = [r for r in records if (r.dataset, r.source_path) not in refused]
                    forget = [f for f in forget if (f[0], f[1]) not in refused]
                    keys = [k for k in keys if (k.dataset, k.source_path) not in refused]
            self._apply(
                db, records=records, forget=forget, datasets=datasets, keys=keys, owner=owner
            )
            if owner is not None:
                settled = {(r.dataset, r.source_path): o for r in records if (o := outcome_of(r))}
                db.many(
                    f"UPDATE claims SET outcome = ?, finished_at = {self.NOW}, lease_until = NULL "
                    "WHERE dataset = ? AND source_path = ? AND owner = ?",
                    [(o, d, p, owner) for (d, p), o in settled.items()],
                )
        return refused

    def _owned(self, db: Db, touched: set[tuple[str, str]], owner: str) -> set[tuple[str, str]]:
        """Which of ``touched`` files ``owner`` holds unfinished claims on (row-locked)."""
        owned: set[tuple[str, str]] = set()
        for dataset in {d for d, _ in touched}:
            paths = sorted(p for d, p in touched if d == dataset)
            for chunk in chunks(paths):
                rows = db.query(
                    f"SELECT source_path FROM claims WHERE dataset = ? AND owner = ? "
                    f"AND outcome IS NULL AND source_path IN ({marks(chunk)}){self.FOR_UPDATE}",
                    (dataset, owner, *chunk),
                )
                owned |= {(dataset, p) for (p,) in rows}
        return owned

    def _apply(
        self,
        db: Db,
        *,
        records: Sequence[FileRecord],
        forget: list[tuple[str, str, int]],
        datasets: Sequence[DatasetRecord],
        keys: Sequence[FileKeys],
        owner: str | None,
    ) -> None:
        stamp = now_iso()
        for dataset in datasets:
            self._save_dataset(db, dataset, stamp)
        if forget:
            db.many("DELETE FROM files WHERE dataset = ? AND source_path = ? AND part = ?", forget)
        if records:
            db.many(_UPSERT, [_file_row(r, stamp, owner) for r in records])
        if forget:  # a source left with no row has no keys either
            db.many(
                "DELETE FROM file_keys WHERE dataset = ? AND source_path = ? AND NOT EXISTS "
                "(SELECT 1 FROM files WHERE dataset = ? AND source_path = ?)",
                [(d, p, d, p) for d, p in dict.fromkeys((d, p) for d, p, _ in forget)],
            )
        if keys:
            self._store_keys(db, [k for k in keys if k.hashes is not None])
            db.many(
                "DELETE FROM file_keys WHERE dataset = ? AND source_path = ?",
                [(k.dataset, k.source_path) for k in keys if k.hashes is None],
            )

    def _store_keys(self, db: Db, keys: Sequence[FileKeys]) -> None:
        """Store ``keys``' hashes (one file's read at a time, when they were left on disk)."""
        db.many(keys_upsert("?"), ((k.dataset, k.source_path, k.scheme, k.blob()) for k in keys))

    def counts(self) -> dict[str, dict[str, int]]:
        """``{dataset: {state: count}}`` with every state present."""
        result: dict[str, dict[str, int]] = {}
        with self._read() as db:
            rows = db.query("SELECT dataset, state, COUNT(*) FROM files GROUP BY dataset, state")
        for dataset, state, count in rows:
            result.setdefault(dataset, dict.fromkeys(STATES, 0))[state] = count
        return result
