"""How a run behaves: :class:`RunOptions`, every field with a sensible default, checked
once when it is made (a bad value is a :class:`~batchload.errors.UsageError`).

A frozen dataclass of plain values, so that it travels as it is to wherever a run is
started (another thread, another process, a Dask worker).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from batchload.config import DEFAULT_MAX_CONCURRENCY
from batchload.errors import UsageError
from batchload.pipeline.listing import ON_EXISTING, OnExisting
from batchload.pipeline.stop import DEFAULT_STOP_GRACE_S
from batchload.protocol import DEFAULT_MAX_REQUEST_MB
from batchload.send.retry import RetryPolicy
from batchload.state.ledger import DEFAULT_LEASE_S

MEMORY_BUDGET_MB = 256.0
"""Files being checked count what :func:`~batchload.check.checker.check_bytes` says against it
(a large file read whole is checked alone, small groups and large CSVs validated block
by block several at once), and a split workbook's frame stays counted until its parts
are sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How a run behaves; every field has a sensible default."""

    concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Most requests in flight. A run starts with a few and adapts to the link: more
    while answers come back as fast, fewer when latency rises or on a 429 or 5xx."""
    max_request_mb: float = DEFAULT_MAX_REQUEST_MB
    dry_run: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    seed: int | None = None
    """Seeds the backoff jitter, for repeatable tests."""
    reconcile: bool = True
    workers: int | None = None
    """Read/validate threads; default the CPU count."""
    memory_budget_mb: float = MEMORY_BUDGET_MB
    validate: bool = True
    """False: send files without validating them (the service still parses them); only a
    file to be split is read, to cut its parts. For trusted files, and to measure what
    validation costs."""
    on_existing: OnExisting = "fail"
    """What to do with a file_id the service holds from another source (see
    :mod:`batchload.pipeline.listing`): ``fail`` (a conflict), ``skip`` or ``replace``."""
    lease_s: float = DEFAULT_LEASE_S
    """How long this process's claims outlive its last heartbeat (then another process
    sharing the manifest takes its files over)."""
    max_rps: float | None = None
    """Most requests a second, over every process sharing the manifest; None: no budget
    (each process's adaptive concurrency alone)."""
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    """After a stop request, how long requests in flight may take before they are cut."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if not self.lease_s > 0:
            raise UsageError("--lease-s must be positive")
        if self.max_rps is not None and not self.max_rps > 0:
            raise UsageError("--max-rps must be positive")
        if not self.max_request_mb > 0:
            raise UsageError("--max-request-mb must be positive")
        if self.on_existing not in ON_EXISTING:
            raise UsageError(f"--on-existing must be one of {', '.join(ON_EXISTING)}")
