"""The dry run: every request a run would send, planned and printed, nothing sent."""

from __future__ import annotations

import time

import anyio

from batchload.check.dryplan import plan_requests
from batchload.jobs import PreparedJob
from batchload.pipeline.prepare import ignored_files
from batchload.state.ledger import Ledger
from batchload.summary import Problem, RunSummary


async def dry_run(
    prepared: list[PreparedJob],
    *,
    validate: bool,
    workers: int,
    manifest: Ledger | None,
    manifest_path: str,
    started: float,
    limit: int,
) -> RunSummary:
    """Validate and plan every request; send nothing, write nothing (``manifest``, if
    there is one, is only read)."""
    limiter = anyio.CapacityLimiter(workers)
    plan, problems = await anyio.to_thread.run_sync(
        lambda: plan_requests(prepared, limit, validate=validate, manifest=manifest),
        limiter=limiter,
    )
    datasets = {
        job.name: job.job.dataset_id or (job.record.dataset_id if job.record else None)
        for job in prepared
    }
    rejected = [
        Problem(path=r.path, dataset=job.name, file_id=None, state="invalid", reason=r.reason)
        for job in prepared
        for r in job.file_set.rejected
    ]
    all_problems = tuple(rejected + problems)
    return RunSummary(
        dataset_id=next(iter(datasets.values()), None),
        datasets=datasets,
        uploaded=0,
        parts_uploaded=0,
        skipped=sum(len(job.skipped) for job in prepared),
        invalid=sum(1 for p in all_problems if p.state == "invalid"),
        failed=0,
        bytes_sent=0,
        request_bytes=sum(p.request_bytes for p in plan),
        seconds=time.monotonic() - started,
        manifest=manifest_path,
        dry_run=True,
        problems=all_problems,
        ignored=ignored_files(prepared),
        plan=tuple(plan),
    )
