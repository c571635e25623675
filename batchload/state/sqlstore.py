"""The ledger in SQL, written once for both stores (SQLite and PostgreSQL).

A store subclass supplies a connection (:meth:`SqlLedger._read` for one statement or a
few, :meth:`SqlLedger._write` for one transaction) and a handful of dialect words
(``NOW`` as epoch seconds, ``GREATEST``, row locks); every query of the manifest and of
the claims lives here. Statements use ``?`` placeholders; the PostgreSQL adapter turns
them into psycopg's.

Tables (beside the manifest's ``datasets``, ``files`` and ``file_keys``)::

    claims(dataset, source_path, seq, owner, lease_until, outcome done|invalid|failed,
           finished_at; PK (dataset, source_path))
    workers(owner PK, started_at, seen_at, finished_at)
    locks(name PK, owner, lease_until)
    budgets(name PK, tat, granted_at, interval_s)

A file's claim is *finished* by the write that settles it (a failed or invalid row, or
its done rows with their part count, see :func:`outcome_of`), in the same transaction.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from batchload.errors import UsageError
from batchload.state.ledger import Outcome, Pending, Progress, WorkerRow
from batchload.state.records import (
    STATES,
    Changes,
    DatasetRecord,
    FileKeys,
    FileRecord,
    ResumeRow,
    now_iso,
)

EXPORT_FORMATS = ("csv", "json", "parquet")
IN_CHUNK = 500
FILE_COLUMNS = [f.name for f in fields(FileRecord)]
_WRITTEN = [c for c in FILE_COLUMNS if c not in ("created_at", "updated_at", "done_at")]
_UPSERT = (
    f"INSERT INTO files ({', '.join(_WRITTEN)}, created_at, updated_at, done_at) "
    f"VALUES ({', '.join('?' for _ in _WRITTEN)}, ?, ?, ?) "
    "ON CONFLICT (dataset, source_path, part) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _WRITTEN if c not in ("dataset", "source_path"))
    + ", updated_at = excluded.updated_at, done_at = excluded.done_at"
)
_INT_COLUMNS = frozenset(
    {"part", "parts", "size", "mtime_ns", "rows", "bytes_sent", "attempts", "last_status"}
)
THROTTLE_RECOVERY = 0.98
"""Each grant brings a budget lowered by a 429 this much closer to its set rate."""


class Db(Protocol):
    """The few calls the ledger makes of a connection (``?`` placeholders)."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def records(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...
    def run(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


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


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def _marks(items: Sequence[object]) -> str:
    return ", ".join("?" for _ in items)


class SqlLedger:
    """Every query of the ledger; a subclass gives it connections and its dialect."""

    NOW = ""
    """An SQL expression: the store's clock in epoch seconds, fixed within a statement."""
    GREATEST = "max"
    LEAST = "min"
    FOR_UPDATE = ""
    """Row locks on the claims a write checks (PostgreSQL); SQLite locks the database."""
    SKIP_LOCKED = ""

    location: str

    # --- connections: the subclass's --------------------------------------------------

    def _read(self) -> contextlib.AbstractContextManager[Db]:
        raise NotImplementedError

    def _write(self) -> contextlib.AbstractContextManager[Db]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SqlLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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

    def key_hashes(self, dataset: str, scheme: str) -> dict[str, bytes]:
        """Source path -> the key hashes stored for it, of those made with ``scheme``.

        One plain query (hashes made another way, with another key or another polars,
        are left out); whether each file is done is for the caller to judge from its
        rows (:meth:`resume_index`), which a resume has read already.
        """
        with self._read() as db:
            rows = db.query(
                "SELECT source_path, hashes FROM file_keys WHERE dataset = ? AND scheme = ?",
                (dataset, scheme),
            )
        return {path: bytes(hashes) for path, hashes in rows}

    def rows_for(self, dataset: str, paths: Sequence[str]) -> dict[str, list[FileRecord]]:
        """Full rows of some source paths of a dataset, grouped by path."""
        grouped: dict[str, list[FileRecord]] = {}
        with self._read() as db:
            for chunk in _chunks(paths):
                query = (
                    f"SELECT * FROM files WHERE dataset = ? AND source_path IN ({_marks(chunk)}) "
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
            for chunk in _chunks(paths):
                rows = db.query(
                    f"SELECT source_path FROM claims WHERE dataset = ? AND owner = ? "
                    f"AND outcome IS NULL AND source_path IN ({_marks(chunk)}){self.FOR_UPDATE}",
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
            db.many(
                "INSERT INTO file_keys (dataset, source_path, scheme, hashes) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (dataset, source_path) DO UPDATE SET "
                "scheme = excluded.scheme, hashes = excluded.hashes",
                (  # one file's hashes read at a time, when they were left on disk
                    (k.dataset, k.source_path, k.scheme, k.blob())
                    for k in keys
                    if k.hashes is not None
                ),
            )
            db.many(
                "DELETE FROM file_keys WHERE dataset = ? AND source_path = ?",
                [(k.dataset, k.source_path) for k in keys if k.hashes is None],
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """``{dataset: {state: count}}`` with every state present."""
        result: dict[str, dict[str, int]] = {}
        with self._read() as db:
            rows = db.query("SELECT dataset, state, COUNT(*) FROM files GROUP BY dataset, state")
        for dataset, state, count in rows:
            result.setdefault(dataset, dict.fromkeys(STATES, 0))[state] = count
        return result

    def export(self, fmt: str, out: Path) -> int:
        """Write every file row to ``out`` as csv, json or parquet; returns the row count."""
        import polars as pl

        if fmt not in EXPORT_FORMATS:
            raise UsageError(f"unknown export format {fmt!r}; use csv, json or parquet")
        rows = [r.to_dict() for r in self.rows()]
        for row in rows:
            row["receipt"] = json.dumps(row["receipt"], sort_keys=True) if row["receipt"] else None
        schema = {name: (pl.Int64 if name in _INT_COLUMNS else pl.String) for name in FILE_COLUMNS}
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

    # --- processes and claims ---------------------------------------------------------------

    def clock(self) -> float:
        """The store's time, in epoch seconds."""
        with self._read() as db:
            return float(db.query(f"SELECT {self.NOW}")[0][0])

    def register(self, owner: str) -> float:
        """Record ``owner`` as a process of the run; returns its start on the store's clock,
        taken before it reads the manifest (see :meth:`enqueue`)."""
        with self._write() as db:
            db.run(
                f"INSERT INTO workers (owner, started_at, seen_at) VALUES (?, {self.NOW}, "
                f"{self.NOW})",
                (owner,),
            )
            return float(db.query("SELECT started_at FROM workers WHERE owner = ?", (owner,))[0][0])

    def unregister(self, owner: str) -> None:
        """``owner`` is finished: the claims it still holds go back to the queue at once."""
        with self._write() as db:
            db.run(
                "UPDATE claims SET owner = NULL, lease_until = NULL "
                "WHERE owner = ? AND outcome IS NULL",
                (owner,),
            )
            db.run(f"UPDATE workers SET finished_at = {self.NOW} WHERE owner = ?", (owner,))

    def enqueue(self, dataset: str, paths: Sequence[str], *, since: float) -> None:
        """Queue the files a process has to work on (in the order given).

        A file another process finished after ``since`` (this process's start) stays
        finished: it was settled in this run, and this process's plan is older than that.
        One finished before is queued again: this process saw it and still has work on it.
        """
        with self._write() as db:
            db.many(
                "INSERT INTO claims (dataset, source_path, seq) VALUES (?, ?, ?) "
                "ON CONFLICT (dataset, source_path) DO UPDATE SET outcome = NULL, "
                "owner = NULL, lease_until = NULL, finished_at = NULL "
                "WHERE claims.outcome IS NOT NULL AND claims.finished_at < ?",
                [(dataset, path, seq, since) for seq, path in enumerate(paths)],
            )

    def claim(self, dataset: str, owner: str, *, limit: int, lease_s: float) -> tuple[str, ...]:
        """Take up to ``limit`` unfinished files of ``dataset`` that nobody holds, or whose
        holder's lease ran out; each gets ``owner`` and a lease of ``lease_s``."""
        with self._write() as db:
            rows = db.query(
                f"UPDATE claims SET owner = ?, lease_until = {self.NOW} + ? "
                "WHERE dataset = ? AND source_path IN (SELECT source_path FROM claims "
                "WHERE dataset = ? AND outcome IS NULL "
                f"AND (owner IS NULL OR (lease_until < {self.NOW} AND owner <> ?)) "
                f"ORDER BY seq LIMIT ?{self.SKIP_LOCKED}) RETURNING seq, source_path",
                (owner, lease_s, dataset, dataset, owner, limit),
            )
        return tuple(path for _, path in sorted(rows))

    def pending(self, dataset: str, owner: str, *, paths: Sequence[str] | None = None) -> Pending:
        """Unfinished files of ``dataset`` (of ``paths`` only, if given) that ``owner`` does
        not hold, and the first moment one of them may be taken over."""
        count, expiry = 0, None
        with self._read() as db:
            for chunk in [None] if paths is None else list(_chunks(paths)):
                where = "" if chunk is None else f" AND source_path IN ({_marks(chunk)})"
                found, first = db.query(
                    "SELECT COUNT(*), MIN(lease_until) FROM claims WHERE dataset = ? "
                    f"AND outcome IS NULL AND (owner IS NULL OR owner <> ?){where}",
                    (dataset, owner, *(chunk or ())),
                )[0]
                count += int(found)
                if first is not None:
                    expiry = float(first) if expiry is None else min(expiry, float(first))
        return Pending(count, expiry)

    def renew(self, owner: str, lease_s: float) -> int:
        """The heartbeat: extend every lease ``owner`` holds; returns the number of claims."""
        with self._write() as db:
            db.run(f"UPDATE workers SET seen_at = {self.NOW} WHERE owner = ?", (owner,))
            db.run(
                f"UPDATE locks SET lease_until = {self.NOW} + ? WHERE owner = ?", (lease_s, owner)
            )
            held = db.query(
                f"UPDATE claims SET lease_until = {self.NOW} + ? "
                "WHERE owner = ? AND outcome IS NULL RETURNING source_path",
                (lease_s, owner),
            )
        return len(held)

    def release(self, dataset: str, owner: str, paths: Sequence[str]) -> None:
        """Give claims back unfinished (files this process cannot work on)."""
        with self._write() as db:
            db.many(
                "UPDATE claims SET owner = NULL, lease_until = NULL "
                "WHERE dataset = ? AND source_path = ? AND owner = ? AND outcome IS NULL",
                [(dataset, p, owner) for p in paths],
            )

    # --- locks and the request budget ------------------------------------------------------

    def lock(self, name: str, owner: str, *, lease_s: float) -> bool:
        """Take the named lock if it is free, expired or already ``owner``'s."""
        with self._write() as db:
            rows = db.query(
                f"INSERT INTO locks (name, owner, lease_until) VALUES (?, ?, {self.NOW} + ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "lease_until = excluded.lease_until "
                f"WHERE locks.lease_until < {self.NOW} OR locks.owner = excluded.owner "
                "RETURNING owner",
                (name, owner, lease_s),
            )
        return bool(rows)

    def unlock(self, name: str, owner: str) -> None:
        with self._write() as db:
            db.run("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def grant(self, name: str, interval_s: float) -> float:
        """One request of the budget ``name`` (one per ``interval_s`` at most, no burst):
        returns how many seconds the caller waits before sending it (GCRA, one statement)."""
        now, greatest = self.NOW, self.GREATEST
        with self._write() as db:
            rows = db.query(
                f"INSERT INTO budgets (name, tat, granted_at, interval_s) "
                f"VALUES (?, {now} + ?, {now}, ?) ON CONFLICT (name) DO UPDATE SET "
                f"granted_at = {greatest}(budgets.tat, {now}), "
                f"tat = {greatest}(budgets.tat, {now}) + budgets.interval_s, "
                f"interval_s = {greatest}(excluded.interval_s, "
                f"budgets.interval_s * {THROTTLE_RECOVERY}) "
                f"RETURNING granted_at - {now}",
                (name, interval_s, interval_s),
            )
        return max(0.0, float(rows[0][0]))

    def throttle(self, name: str, pause_s: float, *, max_interval_s: float) -> None:
        """A 429: halve the budget's rate (to no less than one per ``max_interval_s``) and
        hold every process's next grant for ``pause_s``."""
        now = self.NOW
        with self._write() as db:
            db.run(
                f"UPDATE budgets SET interval_s = {self.LEAST}(interval_s * 2, ?), "
                f"tat = {self.GREATEST}(tat, {now} + ?) WHERE name = ?",
                (max_interval_s, pause_s, name),
            )

    def progress(self) -> Progress:
        """Files done, failed, in flight and left over the whole queue, and per process."""
        now = self.clock()
        with self._read() as db:
            per_owner = db.query(
                "SELECT owner, outcome, COUNT(*), MIN(lease_until) FROM claims "
                "GROUP BY owner, outcome"
            )
            workers = db.query(
                "SELECT owner, started_at, seen_at, finished_at FROM workers ORDER BY started_at"
            )
        tally: dict[str | None, dict[str, int]] = {}
        left = 0
        for owner, outcome, count, _ in per_owner:
            key = outcome or "in_flight"
            if outcome is None and owner is None:
                left += count
                continue
            tally.setdefault(owner, {}).setdefault(key, 0)
            tally[owner][key] += count
        rows = tuple(
            WorkerRow(
                owner=owner,
                started_at=float(started),
                seen_at=float(seen),
                finished_at=None if finished is None else float(finished),
                done=tally.get(owner, {}).get("done", 0),
                failed=tally.get(owner, {}).get("failed", 0)
                + tally.get(owner, {}).get("invalid", 0),
                in_flight=tally.get(owner, {}).get("in_flight", 0),
            )
            for owner, started, seen, finished in workers
        )
        every = list(tally.values())
        return Progress(
            now=now,
            done=sum(t.get("done", 0) for t in every),
            failed=sum(t.get("failed", 0) + t.get("invalid", 0) for t in every),
            in_flight=sum(t.get("in_flight", 0) for t in every),
            left=left,
            workers=rows,
        )
