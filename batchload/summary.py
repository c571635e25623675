"""What a run returns: a frozen :class:`RunSummary`, with per-file problems, the dry-run
plan and the reconcile result, ready for ``--json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from batchload.errors import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, BatchloadError


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Why one file was not uploaded."""

    path: str
    dataset: str | None
    file_id: str | None
    state: Literal["invalid", "failed"]
    reason: str
    status: int | None = None
    details: tuple[str, ...] = ()
    """Validation failures (capped by the validator), one line each."""


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
    stopped: str | None = None
    """Why the run stopped early (a refused token, an unreachable service)."""
    error: BatchloadError | None = field(default=None, compare=False, repr=False)
    interrupted: bool = False
    """A stop was asked (Ctrl-C, SIGTERM): files were left for a resume."""
    left: int = 0
    """Files this run was to check and send that it did not finish (interrupted)."""

    @property
    def exit_code(self) -> int:
        """0 all done; 1 some invalid, failed or missing; the error's code if stopped;
        130 if interrupted."""
        if self.error is not None:
            return self.error.exit_code
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.invalid or self.failed or any(not r.ok for r in self.reconcile):
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
            "invalid": self.invalid,
            "failed": self.failed,
            "bytes_sent": self.bytes_sent,
            "request_bytes": self.request_bytes,
            "seconds": round(self.seconds, 3),
            "manifest": self.manifest,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "stopped": self.stopped,
            "interrupted": self.interrupted,
            "left": self.left,
            "problems": [asdict(p) for p in self.problems],
            "reconcile": [asdict(r) for r in self.reconcile],
        }
        if self.dry_run:
            data["plan"] = [asdict(p) for p in self.plan]
        return data
