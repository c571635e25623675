"""Claims: how one process takes its share of a run that several processes share.

- Every process runs the same command and plans the same work; each queues its work
  in the ledger (once for all of them) and then takes batches of files from the
  queue (:meth:`Claims.groups`), so no file is checked or sent by two processes at
  once. Each claim has a lease that a heartbeat task renews (:meth:`Claims.heartbeat`);
  a process that dies stops renewing, and after the lease another one takes its
  files over (at once, if it ran on the same host and its pid is gone).
- A process holds at most a batch of files more than its pacer lets it have requests
  in flight (and at least two batches), claimed ahead of its checks and uploads, so
  that the others find work too and its requests never wait for a claim: it claims
  the next batch when that much room is free (:meth:`Claims.finished_with`).
- A process that finds only files held by live others waits until the first of their
  leases could run out and asks again, rather than finishing early: the run is done
  for it when the queue has nothing unfinished left. Files another process settled
  are counted as such (:attr:`Claims.by_others`), so every file is counted once.
- Every write of a file's state is checked against its claim in the ledger; a write
  for a file another process took over is refused, and the file is *lost* to this
  process (:attr:`Claims.lost`): later writes for it raise
  :class:`~batchload.errors.ClaimLost` before anything is sent.
- A dataset is created by one process at a time, under a lock row in the ledger
  (:meth:`Claims.creating`); the others find its id there when they get the lock.
- A process that is finished leaves (:meth:`Claims.leave`): its unfinished claims go
  back to the queue, and it reads the whole run from the ledger. The processes leave
  one at a time, so exactly one finds no other still at work: it finished the run last,
  and its summary is the run's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

import anyio

from batchload.check.checker import groups
from batchload.errors import ClaimLost
from batchload.jobs import PreparedJob, Work
from batchload.state.ledger import Ledger
from batchload.state.records import Changes, DatasetRecord
from batchload.summary import SharedRun

P = ParamSpec("P")
T = TypeVar("T")

CLAIM_BATCH = 32
"""Files one claim takes: small enough that processes share a run evenly, large
enough that small files are still checked in groups."""
MAX_WAIT_S = 5.0
"""Longest wait before asking the queue again while others hold every file left:
their work may finish (or fail) long before their leases would run out."""
MIN_WAIT_S = 0.05


class Claims:
    """This process's claims on a ledger shared with others (see the module docstring)."""

    def __init__(self, ledger: Ledger, *, owner: str, since: float, lease_s: float) -> None:
        self.ledger = ledger
        self.owner = owner
        self.since = since
        self.lease_s = lease_s
        self.limiter = anyio.CapacityLimiter(1)
        """One ledger call at a time from this process (its writer shares it)."""
        self.held = 0
        """Files claimed and not yet finished with (checked and sent, or refused)."""
        self.in_flight: Callable[[], int] = lambda: CLAIM_BATCH
        """How many requests this process may have in flight now (the run sets it to its
        pacer's limit): it claims the next batch while it holds no more files than that."""
        self._freed = anyio.Event()
        self.lost: set[tuple[str, str]] = set()
        self.by_others = 0
        """Files of this process's plan that other processes settled in this run."""
        self.gone = False
        """Left the ledger (:meth:`leave`)."""

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one blocking ledger call in a worker thread, one at a time."""
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self.limiter)

    async def enqueue(self, jobs: Iterable[PreparedJob]) -> None:
        """Queue every job's work (each dataset once)."""
        paths: dict[str, list[str]] = {}
        for job in jobs:
            paths.setdefault(job.name, []).extend(w.source.key for w in job.work)
        for name, queued in paths.items():
            if queued:
                await self.call(self.ledger.enqueue, name, queued, since=self.since)

    async def groups(self, job: PreparedJob) -> AsyncIterator[tuple[Work, ...]]:
        """The job's works in groups, as this process claims them; ends when none is left
        unfinished in the queue (waiting, meanwhile, for files others hold)."""
        by_path = {w.source.key: w for w in job.work}
        if not by_path:
            return
        foreign: set[str] = set()
        claimed: set[str] = set()
        while True:
            while self.held > max(CLAIM_BATCH, self.in_flight()):  # enough in hand: wait
                self._freed = anyio.Event()
                await self._freed.wait()
            paths = await self.call(
                self.ledger.claim, job.name, self.owner, limit=CLAIM_BATCH, lease_s=self.lease_s
            )
            mine = [by_path[p] for p in paths if p in by_path]
            if others := [p for p in paths if p not in by_path]:  # queued by another plan
                foreign.update(others)
                await self.call(self.ledger.release, job.name, self.owner, others)
            if mine:
                self.held += len(mine)
                claimed.update(w.source.key for w in mine)
                for group in groups(mine):
                    yield group
                continue
            # others' plans share the queue: then ask about this plan's own files only
            left = [p for p in by_path if p not in claimed] if foreign else None
            pending = await self.call(self.ledger.pending, job.name, self.owner, paths=left)
            if not pending.unfinished:
                break
            if pending.next_expiry_s is not None:  # held by others: any of this host ended?
                gone = await self.call(self.ledger.release_gone)
                if gone:
                    continue  # its files are free at once
            await anyio.sleep(await self._wait_s(pending.next_expiry_s))
        self.by_others += len(by_path) - len(claimed)

    def finished_with(self, files: int = 1) -> None:
        """This process is done with ``files`` claimed files: room for more."""
        self.held -= files
        self._freed.set()

    async def _wait_s(self, next_expiry_s: float | None) -> float:
        if next_expiry_s is None:
            return MIN_WAIT_S  # files nobody holds: take them at once
        until = next_expiry_s - await self.call(self.ledger.clock)
        return min(max(until, MIN_WAIT_S), MAX_WAIT_S)

    async def heartbeat(self) -> None:
        """Renew this process's leases every third of a lease, until cancelled."""
        while True:
            await anyio.sleep(self.lease_s / 3)
            await self.call(self.ledger.renew, self.owner, self.lease_s)

    async def leave(self) -> SharedRun:
        """This process is finished: what it still holds goes back to the queue at once.
        Returns the whole run as the ledger has it now (a lease's silence makes a
        process gone)."""
        self.gone = True
        running = await self.call(self.ledger.unregister, self.owner, silent_s=self.lease_s)
        progress = await self.call(self.ledger.progress)
        return progress.shared_run(self.since, silent_s=self.lease_s, running=running)

    def apply(self, changes: list[Changes]) -> None:
        """Write changes under this process's claims (blocking: the writer's thread)."""
        self.lost |= self.ledger.apply(changes, owner=self.owner)

    def check(self, changes: Changes) -> None:
        """Raise :class:`ClaimLost` when ``changes`` are for a file another process took."""
        for record in changes.records:
            if (record.dataset, record.source_path) in self.lost:
                raise ClaimLost(
                    f"{record.source_path}: another process took it over (this one's lease "
                    "ran out); its outcome is that process's to record",
                    path=record.source_path,
                )

    @asynccontextmanager
    async def creating(self, name: str) -> AsyncIterator[DatasetRecord | None]:
        """Hold the ledger's lock on creating dataset ``name``; yields the ledger's record
        of it, as another process may have left it meanwhile."""
        lock = f"create:{name}"
        # another process holds it, and no Event crosses processes: ask again shortly
        while not await self.call(self.ledger.lock, lock, self.owner, lease_s=self.lease_s):  # noqa: ASYNC110
            await anyio.sleep(MIN_WAIT_S * 4)
        try:
            yield await self.call(self.ledger.dataset, name)
        finally:
            with anyio.CancelScope(shield=True):
                await self.call(self.ledger.unlock, lock, self.owner)
