"""The ledger's processes, claims, locks and request budget in SQL, for both stores.

Tables (beside the manifest's ``datasets``, ``files`` and ``file_keys``)::

    claims(dataset, source_path, seq, owner, lease_until, outcome done|invalid|failed,
           finished_at; PK (dataset, source_path))
    workers(owner PK, started_at, seen_at, finished_at, gone_at)
    locks(name PK, owner, lease_until)
    budgets(name PK, tat, granted_at, interval_s)

A file's claim is *finished* by the manifest write that settles it
(:meth:`~batchload.state.sqlstore.SqlLedger.apply`), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchload.state.ledger import Pending, Progress, WorkerRow, gone_here
from batchload.state.sqlbase import Db, SqlBase, chunks, marks

THROTTLE_RECOVERY = 0.98
"""Each grant brings a budget lowered by a 429 this much closer to its set rate."""


class SqlClaims(SqlBase):
    """Every query of the processes sharing a ledger."""

    # --- processes and claims ---------------------------------------------------------------

    def clock(self) -> float:
        """The store's time, in epoch seconds."""
        with self._read() as db:
            return float(db.query(f"SELECT {self.NOW}")[0][0])

    def register(self, owner: str) -> float:
        """Record ``owner`` as a process of the run; returns its start on the store's clock,
        taken before it reads the manifest (see :meth:`enqueue`). What processes of this
        host that have ended still held is let go of first (:meth:`release_gone`)."""
        with self._write() as db:
            self._release_gone(db)
            db.run(
                f"INSERT INTO workers (owner, started_at, seen_at) VALUES (?, {self.NOW}, "
                f"{self.NOW})",
                (owner,),
            )
            return float(db.query("SELECT started_at FROM workers WHERE owner = ?", (owner,))[0][0])

    def unregister(self, owner: str, *, silent_s: float) -> tuple[str, ...]:
        """``owner`` is finished: the claims it still holds go back to the queue at once.
        Returns the other processes still at work (unfinished, heard from within
        ``silent_s``, and not known to have ended); none: ``owner`` is the last of its
        run to finish."""
        with self._write() as db:
            # processes finishing together take turns here, so that one of them is last
            db.query(
                "SELECT owner FROM workers WHERE finished_at IS NULL "
                f"ORDER BY owner{self.FOR_UPDATE}"
            )
            self._release_gone(db)  # an ended process of this host is not still at work
            self._free_claims(db, owner)
            db.run(f"UPDATE workers SET finished_at = {self.NOW} WHERE owner = ?", (owner,))
            running = db.query(
                "SELECT owner FROM workers WHERE finished_at IS NULL AND gone_at IS NULL "
                f"AND seen_at >= {self.NOW} - ? ORDER BY started_at",
                (silent_s,),
            )
        return tuple(str(o) for (o,) in running)

    def release_gone(self) -> tuple[str, ...]:
        """Let go of what unfinished processes of this host that have ended held (their
        claims go back to the queue, their locks are freed) instead of waiting out their
        leases; returns them."""
        with self._write() as db:
            return self._release_gone(db)

    def _release_gone(self, db: Db) -> tuple[str, ...]:
        rows = db.query("SELECT owner FROM workers WHERE finished_at IS NULL AND gone_at IS NULL")
        gone = tuple(str(o) for (o,) in rows if gone_here(str(o)))
        for owner in gone:
            self._free_claims(db, owner)
            db.run("DELETE FROM locks WHERE owner = ?", (owner,))
            db.run(f"UPDATE workers SET gone_at = {self.NOW} WHERE owner = ?", (owner,))
        return gone

    @staticmethod
    def _free_claims(db: Db, owner: str) -> None:
        """``owner``'s unfinished claims go back to the queue."""
        db.run(
            "UPDATE claims SET owner = NULL, lease_until = NULL "
            "WHERE owner = ? AND outcome IS NULL",
            (owner,),
        )

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
            for chunk in [None] if paths is None else list(chunks(paths)):
                where = "" if chunk is None else f" AND source_path IN ({marks(chunk)})"
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
            db.run(
                f"UPDATE workers SET seen_at = {self.NOW}, gone_at = NULL WHERE owner = ?",
                (owner,),
            )
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
                "SELECT owner, started_at, seen_at, finished_at, gone_at FROM workers "
                "ORDER BY started_at"
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
                gone_at=None if gone is None else float(gone),
                done=tally.get(owner, {}).get("done", 0),
                failed=tally.get(owner, {}).get("failed", 0)
                + tally.get(owner, {}).get("invalid", 0),
                in_flight=tally.get(owner, {}).get("in_flight", 0),
            )
            for owner, started, seen, finished, gone in workers
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
