"""What a run returns: a frozen :class:`RunSummary`, with per-file problems, the dry-run
plan and the reconcile result, ready for ``--json``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from batchload.errors import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, BatchloadError


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Why one file was not uploaded."""

    path: str
    dataset: str | None
    file_id: str | None
    state: Literal["invalid", "failed", "conflict"]
    """``conflict``: the service holds the file_id from another source (not sent)."""
    reason: str
    status: int | None = None
    details: tuple[str, ...] = ()
    """Validation failures (capped by the validator), one line each."""


#: Validation messages that say a file's columns differ from the contract (drift), as
#: ``check.verdict.Problem.message`` writes them: the same words in every file.
_DRIFT = re.compile(
    r"column '.*' is missing|unexpected column '.*'|columns are out of order at '.*'"
    r"|column '.*' is \S+, expected \S+"
)


def drift_groups(per_file: Iterable[Iterable[str]]) -> list[tuple[str, int]]:
    """Drift across files, by kind: ``(message, files)``, most files first.

    ``per_file``: each file's validation messages; "37 files: column 'volume' is
    missing" reads better than 37 lines saying it."""
    counts: Counter[str] = Counter()
    for messages in per_file:
        counts.update({m for m in messages if _DRIFT.fullmatch(m)})
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def drift_line(per_file: Iterable[Iterable[str]]) -> str | None:
    """``drift: 37 files: column 'volume' is missing; 2 files: ...``, or None."""
    groups = drift_groups(per_file)
    if not groups:
        return None
    shown = [f"{n} file{'' if n == 1 else 's'}: {m}" for m, n in groups[:8]]
    more = f"; and {len(groups) - 8} more kinds" if len(groups) > 8 else ""
    return "drift: " + "; ".join(shown) + more


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedRequest:
    """One request a run would send (``--dry-run``): a whole file or one part."""

    path: str
    dataset: str
    file_id: str
    file_format: str
    rows: int | None
    request_bytes: int
    """Body size after base64, envelope included."""
    part: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciliation:
    """The manifest's done files compared with the files the service lists."""

    dataset: str
    dataset_id: str
    expected: int
    on_server: int
    missing: tuple[str, ...] = ()
    """Done in the manifest, absent on the service."""
    unexpected: tuple[str, ...] = ()
    """On the service, unknown to the manifest (sent by something else)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing


ProcessState = Literal["running", "finished", "gone"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunProcess:
    """One process of a run shared through the manifest, and the files it settled."""

    owner: str
    """Its name in the ledger (host:pid:suffix)."""
    done: int
    failed: int
    """Files it settled as failed or invalid."""
    state: ProcessState
    """``gone``: not heard from for longer than a lease (killed, or cut off), unfinished."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedRun:
    """A whole run over every process that shared it through the manifest, read from the
    ledger when this process finished: the processes that overlapped in time with this
    one, and with each other, back to the run's first."""

    done: int
    failed: int
    """Files settled as failed or invalid, by any process of the run."""
    in_flight: int
    """Files claimed by a process and not settled (a gone process's until its lease ends)."""
    left: int
    """Files queued that no process holds (on the whole manifest: a file another
    command queued and left is counted here too)."""
    processes: tuple[RunProcess, ...]
    running: tuple[str, ...] = ()
    """Other processes still at work when this one finished: the run goes on there. None:
    this one finished last, and its summary is the run's."""

    @property
    def last(self) -> bool:
        return not self.running

    def to_dict(self) -> dict[str, Any]:
        return {
            "last": self.last,
            "done": self.done,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "left": self.left,
            "running": list(self.running),
            "processes": [asdict(p) for p in self.processes],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """The result of a run; ``exit_code`` is what the CLI exits with."""

    dataset_id: str | None
    """The dataset's id (the first dataset's, for a plan with several)."""
    datasets: Mapping[str, str | None]
    uploaded: int
    """Files whose every byte was sent in this run."""
    parts_uploaded: int
    skipped: int
    """Done in an earlier run and unchanged: neither read nor sent."""
    invalid: int
    failed: int
    conflicts: int = 0
    """Files not sent because the service holds their file_id from another source."""
    resent: int = 0
    """Files done in an earlier run that the service had lost: sent again."""
    found_on_service: int = 0
    """Files not sent because the service holds them already (same file_id and sha256)."""
    bytes_sent: int
    """Bytes of the files and parts delivered (before base64)."""
    request_bytes: int
    """Bytes of the request bodies that succeeded (after base64, envelope included)."""
    seconds: float
    manifest: str | None
    dry_run: bool = False
    problems: tuple[Problem, ...] = ()
    plan: tuple[PlannedRequest, ...] = ()
    reconcile: tuple[Reconciliation, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()
    """Files a glob matched that batchload does not read: (path, reason)."""
    by_others: int = 0
    """Files of this run's plan that other processes sharing the manifest settled."""
    owner: str | None = None
    """This process's name in the manifest's ledger (host:pid:suffix)."""
    lost: int = 0
    """Files this process worked on whose claim another process took over (this process
    was paused or cut off past its lease): their outcome is the other's."""
    stopped: str | None = None
    """Why the run stopped early (a refused token, an unreachable service)."""
    error: BatchloadError | None = field(default=None, compare=False, repr=False)
    interrupted: bool = False
    """A stop was asked (Ctrl-C, SIGTERM): files were left for a resume."""
    left: int = 0
    """Files this run was to check and send that it did not finish (interrupted)."""
    run: SharedRun | None = None
    """The whole run over the processes sharing the manifest (None for a dry run)."""
    ledger_s: float = 0.0
    """Seconds this process spent in the manifest's transactions (claims, writes,
    heartbeats, ``--max-rps`` grants), over all its threads: the ledger's own cost."""
    ledger_calls: int = 0
    """Transactions (or single statements) those seconds were spent in."""

    @property
    def exit_code(self) -> int:
        """0 all done; 1 some invalid, failed or missing (in this process's part, or, for
        the process that finished a shared run last, in the whole run); the error's code
        if stopped; 130 if interrupted."""
        if self.error is not None:
            return self.error.exit_code
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.invalid or self.failed or self.conflicts or any(not r.ok for r in self.reconcile):
            return EXIT_INCOMPLETE
        if self.run is not None and self.run.last and self.run.failed:
            return EXIT_INCOMPLETE
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` (the error object itself is left out)."""
        data = {
            "dataset_id": self.dataset_id,
            "datasets": dict(self.datasets),
            "uploaded": self.uploaded,
            "parts_uploaded": self.parts_uploaded,
            "skipped": self.skipped,
            "by_others": self.by_others,
            "lost": self.lost,
            "owner": self.owner,
            "invalid": self.invalid,
            "failed": self.failed,
            "conflicts": self.conflicts,
            "resent": self.resent,
            "found_on_service": self.found_on_service,
            "bytes_sent": self.bytes_sent,
            "request_bytes": self.request_bytes,
            "seconds": round(self.seconds, 3),
            "manifest": self.manifest,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "stopped": self.stopped,
            "interrupted": self.interrupted,
            "left": self.left,
            "run": self.run.to_dict() if self.run is not None else None,
            "ledger_s": round(self.ledger_s, 4),
            "ledger_calls": self.ledger_calls,
            "problems": [asdict(p) for p in self.problems],
            "reconcile": [asdict(r) for r in self.reconcile],
            "ignored": [{"path": p, "reason": r} for p, r in self.ignored],
        }
        if self.dry_run:
            data["plan"] = [asdict(p) for p in self.plan]
        return data
