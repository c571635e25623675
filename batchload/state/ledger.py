"""The ledger: what a manifest store offers, so that several processes can share one run.

A store keeps the manifest (datasets, files, key hashes) and, beside it, what lets N
processes split one run between them without a coordinator:

- **claims**: every file a run has to work on is queued once (:meth:`Ledger.enqueue`);
  a process takes a batch with :meth:`Ledger.claim` (owner + lease), keeps the lease
  alive with :meth:`Ledger.renew` (its heartbeat), and every state change of a file is
  written only while the process still owns its claim (:meth:`Ledger.apply` with an
  owner: the rows of a file another process took over are refused, not written).
  A killed process's leases run out and its files are claimed again by another; one
  that ran on this host and has ended (:func:`gone_here`) is let go of at once
  (:meth:`Ledger.release_gone`), so a resume after a crash does not wait out a lease.
- **locks**: a named row with an owner and a lease (:meth:`Ledger.lock`), so that a
  dataset is created by one process while the others wait for its id.
- **a request budget** (:meth:`Ledger.grant`): GCRA over one row, so that all the
  processes of a run together never send more than ``--max-rps`` requests a second.

Two stores implement it: the SQLite manifest (:mod:`batchload.state.manifest`, one
machine) and PostgreSQL (:mod:`batchload.state.postgres`, many). Times are seconds
on the store's clock (:meth:`Ledger.clock`), so machines need not agree on the time.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

from batchload.state.records import (
    Changes,
    DatasetRecord,
    FileKeys,
    FileRecord,
    ResumeRow,
)
from batchload.summary import ProcessState, RunProcess, SharedRun

Outcome = Literal["done", "invalid", "failed"]

DEFAULT_LEASE_S = 60.0
"""How long a claim outlives its owner's last heartbeat: then another process takes it."""


def new_owner() -> str:
    """A name for this process in the ledger: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def gone_here(owner: str) -> bool:
    """Whether ``owner`` (see :func:`new_owner`) was a process of this host that has ended.

    Only a certain end counts: a pid that no longer exists. A process of another host,
    or a pid in use (by it, or by another process since), is left to its lease.
    """
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if os.name != "posix" or host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: is it there (nothing is sent)
    except ProcessLookupError:
        return True
    except OSError:  # there, and another user's
        return False
    return False


def is_url(location: str | Path) -> bool:
    """Whether a manifest location names a PostgreSQL ledger rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


_PASSWORD = re.compile(r"(?P<head>postgres(?:ql)?://[^:/@\s]*):[^@\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of any PostgreSQL URL in it replaced by ``***``."""
    return _PASSWORD.sub(r"\g<head>:***@", text)


@dataclass(frozen=True, slots=True)
class Pending:
    """The files of a dataset's queue not finished yet, and when the next lease runs out."""

    unfinished: int
    next_expiry_s: float | None
    """Store time at which the earliest live lease of another process runs out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRow:
    """One process of a run as the ledger sees it (``manifest show``)."""

    owner: str
    started_at: float
    seen_at: float
    finished_at: float | None
    gone_at: float | None = None
    """When another process of its host found it had ended without finishing."""
    done: int
    failed: int
    in_flight: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A run's progress over every process, read from the ledger."""

    now: float
    done: int
    failed: int
    in_flight: int
    left: int
    workers: tuple[WorkerRow, ...]

    def shared_run(
        self, since: float, *, silent_s: float, running: Sequence[str] = ()
    ) -> SharedRun:
        """The run going on at store time ``since``: the processes whose life reaches it,
        and those whose life reaches theirs, back to the run's first. A process not heard
        from for ``silent_s`` and unfinished is gone; ``running``: the others still at
        work, as :meth:`Ledger.unregister` found them."""

        def state(w: WorkerRow) -> ProcessState:
            if w.finished_at is not None:
                return "finished"
            if w.gone_at is not None:
                return "gone"
            return "running" if self.now - w.seen_at <= silent_s else "gone"

        def end(w: WorkerRow) -> float:
            if w.finished_at is not None:
                return w.finished_at
            return self.now if state(w) == "running" else w.seen_at

        start = since
        while True:
            members = [w for w in self.workers if end(w) >= start]
            first = min((w.started_at for w in members), default=start)
            if first >= start:
                break
            start = first
        names = {w.owner for w in members}
        others = [w for w in self.workers if w.owner not in names]
        return SharedRun(
            done=sum(w.done for w in members),
            failed=sum(w.failed for w in members),
            in_flight=sum(w.in_flight for w in members),
            # what gone processes of earlier runs still hold is anyone's to take
            left=self.left + sum(w.in_flight for w in others),
            processes=tuple(
                RunProcess(owner=w.owner, done=w.done, failed=w.failed, state=state(w))
                for w in members
            ),
            running=tuple(running),
        )


class LedgerTime:
    """Time this process spent in a store's transactions, over all its threads: the
    ledger's own cost per run (claims, writes, heartbeats, budget grants), which a
    run's summary reports. A wait for the database (its lock, a pooled connection)
    counts: the caller waits all the same."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Add the time spent in this block (one transaction) to the count."""
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            with self._lock:
                self.calls += 1
                self.seconds += spent


class Ledger(Protocol):
    """A manifest store that several processes can share (see the module docstring)."""

    location: str
    """Where it is, fit to print (a URL's password redacted)."""
    spent: LedgerTime

    def close(self) -> None: ...
    def __enter__(self) -> Ledger: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # the manifest
    def dataset(self, name: str) -> DatasetRecord | None: ...
    def datasets(self) -> list[DatasetRecord]: ...
    def save_dataset(self, record: DatasetRecord) -> None: ...
    def resume_index(self, dataset: str) -> dict[str, list[ResumeRow]]: ...
    def key_counts(self, dataset: str, scheme: str) -> dict[str, int]: ...
    def key_hashes(
        self, dataset: str, scheme: str, paths: Sequence[str]
    ) -> list[tuple[str, bytes]]: ...
    def rows_for(self, dataset: str, paths: Sequence[str]) -> dict[str, list[FileRecord]]: ...
    def rows(self, *, dataset: str | None = None) -> list[FileRecord]: ...
    def write(
        self,
        records: Sequence[FileRecord],
        *,
        forget: Iterable[tuple[str, str, int]] = (),
        datasets: Sequence[DatasetRecord] = (),
        keys: Sequence[FileKeys] = (),
    ) -> None: ...
    def apply(
        self, changes: Sequence[Changes], *, owner: str | None = None
    ) -> frozenset[tuple[str, str]]: ...
    def counts(self) -> dict[str, dict[str, int]]: ...

    # claims, locks, budget
    def clock(self) -> float: ...
    def register(self, owner: str) -> float: ...
    def unregister(self, owner: str, *, silent_s: float) -> tuple[str, ...]: ...
    def release_gone(self) -> tuple[str, ...]: ...
    def enqueue(self, dataset: str, paths: Sequence[str], *, since: float) -> None: ...
    def claim(self, dataset: str, owner: str, *, limit: int, lease_s: float) -> tuple[str, ...]: ...
    def pending(
        self, dataset: str, owner: str, *, paths: Sequence[str] | None = None
    ) -> Pending: ...
    def renew(self, owner: str, lease_s: float) -> int: ...
    def release(self, dataset: str, owner: str, paths: Sequence[str]) -> None: ...
    def lock(self, name: str, owner: str, *, lease_s: float) -> bool: ...
    def unlock(self, name: str, owner: str) -> None: ...
    def grant(self, name: str, interval_s: float) -> float: ...
    def throttle(self, name: str, pause_s: float, *, max_interval_s: float) -> None: ...
    def progress(self) -> Progress: ...
