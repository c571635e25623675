"""A run's worker loops, placed on an existing Dask cluster (``--dask``; the extra
``batchload[dask]``).

- Dask only places the loops. Each loop is the run one ``batchload upload`` process
  makes (:func:`~batchload.pipeline.run.run_upload`, the same jobs and options, on its
  own event loop in a worker's thread), and the loops share the run through the ledger
  as processes do: claims with leases, one dataset, one request budget. Correctness
  stays with the ledger: a loop that Dask starts again after its worker died is one
  more process on the manifest, which finds the files done and takes over the rest.
- This side submits one loop per worker (or as many as asked), reports the run's
  progress from the ledger while they run, and returns one summary: the loops' parts
  added up, and the whole run as the ledger has it.
- Everything a loop needs travels in its arguments, anchored here (relative paths made
  absolute, as a worker's directory is not ours). The token goes as a
  :class:`~batchload.config.Secret`, whose repr is ``***``: no log of Dask's shows it.
  Dask's own TLS (``tls://`` addresses) protects it on the wire.
"""

from __future__ import annotations

import functools
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import anyio

from batchload.config import ClientConfig
from batchload.errors import BatchloadError, ClusterError, UsageError
from batchload.jobs import UploadJob
from batchload.pipeline.options import RunOptions
from batchload.pipeline.run import run_upload
from batchload.state.ledger import Ledger, is_url
from batchload.state.stores import open_ledger
from batchload.summary import RunSummary, SharedRun

try:
    from distributed import CancelledError, Client, KilledWorker, wait
except ImportError:  # pragma: no cover - installed without the extra batchload[dask]
    Client = None  # type: ignore[assignment,misc]

CONNECT_TIMEOUT_S = 30.0
"""Longest wait for the scheduler to answer, and for a cluster with no worker to get one."""
REPORT_EVERY_S = 5.0


def run_loop(
    jobs: Sequence[UploadJob], config: ClientConfig, manifest: str, options: RunOptions
) -> RunSummary:
    """One worker loop, as Dask runs it on a worker: the run of one process on the manifest."""
    return anyio.run(
        functools.partial(run_upload, jobs, config=config, manifest_path=manifest, options=options),
        backend="asyncio",
    )


def run_on_dask(
    jobs: Sequence[UploadJob],
    *,
    scheduler: str,
    config: ClientConfig,
    manifest_path: Path | str,
    options: RunOptions,
    loops: int | None = None,
    placed: Callable[[int, int], None] = lambda loops, workers: None,
    report: Callable[[SharedRun], None] = lambda run: None,
    every_s: float = REPORT_EVERY_S,
) -> RunSummary:
    """Run ``jobs`` as worker loops on the Dask cluster at ``scheduler``, one per worker
    unless ``loops`` says how many. ``placed`` is told how many loops were submitted to
    how many workers; ``report`` gets the run's progress every ``every_s``.

    A SQLite manifest works when every worker is on this machine (a LocalCluster); across
    machines the run needs a ledger all of them reach (``postgresql://``)."""
    if Client is None:
        raise UsageError(
            "--dask needs Dask's distributed scheduler, which is not installed",
            hint="pip install 'batchload[dask]'",
        )
    if loops is not None and loops < 1:
        raise UsageError("--workers must be at least 1")
    started = time.monotonic()
    here = Path.cwd()
    jobs = [_anchored(job, here) for job in jobs]
    manifest = str(manifest_path) if is_url(manifest_path) else str(here / manifest_path)
    if config.ca_bundle is not None:
        config = replace(config, ca_bundle=here / config.ca_bundle)
    with _connect(scheduler) as client:
        workers = _workers(client, scheduler)
        if not is_url(manifest):
            _on_this_machine(client, manifest)
        with open_ledger(manifest) as ledger:
            since = ledger.clock()
            run_id = uuid.uuid4().hex[:8]
            futures = [
                client.submit(
                    run_loop,
                    jobs,
                    config,
                    manifest,
                    options,
                    key=f"batchload-loop-{run_id}-{i}",
                    workers=[workers[i % len(workers)]],
                    allow_other_workers=True,  # a lost worker's loop may start elsewhere
                    pure=False,
                )
                for i in range(loops or len(workers))
            ]
            placed(len(futures), len(workers))
            while True:
                try:
                    wait(futures, timeout=every_s)  # type: ignore[no-untyped-call]
                    break
                except TimeoutError:
                    report(_shared(ledger, since, options.lease_s))
            parts, errors = _outcomes(futures)
            run = _shared(ledger, since, options.lease_s)
    if not parts and errors:
        raise errors[0]
    errors += [part.error for part in parts if part.error is not None]
    return _merged(
        parts,
        run,
        error=errors[0] if errors else None,
        seconds=time.monotonic() - started,
        manifest=parts[0].manifest if parts else manifest,
    )


def _anchored(job: UploadJob, here: Path) -> UploadJob:
    """``job`` with its paths absolute: a worker's directory is not this process's."""
    return replace(job, base=here / (job.base or "."), schema=here / job.schema)


def _connect(scheduler: str) -> Client:
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {scheduler}: {exc}",
            hint="give the address the scheduler prints, e.g. tcp://HOST:8786",
        ) from exc


def _workers(client: Client, scheduler: str) -> list[str]:
    """The cluster's workers' addresses, once it has one."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError as exc:
        raise ClusterError(
            f"the Dask cluster at {scheduler} has no worker "
            f"(none joined within {CONNECT_TIMEOUT_S:g}s)"
        ) from exc
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _on_this_machine(client: Client, manifest: str) -> None:
    """A SQLite manifest is a file on this machine: every worker must be here too."""
    here = socket.gethostname()
    elsewhere = sorted(set(client.run(socket.gethostname).values()) - {here})
    if elsewhere:
        raise UsageError(
            f"--dask with a SQLite manifest ({manifest}) needs every worker on this "
            f"machine ({here}); some run on {', '.join(elsewhere)}",
            hint="share the run through PostgreSQL: --manifest postgresql://USER@HOST:PORT/DB",
        )


def _shared(ledger: Ledger, since: float, lease_s: float) -> SharedRun:
    """The run since ``since`` as the ledger has it; ``running``: its processes at work."""
    run = ledger.progress().shared_run(since, silent_s=lease_s)
    return replace(run, running=tuple(p.owner for p in run.processes if p.state == "running"))


def _outcomes(futures: Sequence[object]) -> tuple[list[RunSummary], list[BatchloadError]]:
    """The loops' summaries, and the errors that stopped loops. A loop lost with its
    worker (more often than Dask retries) is neither: the ledger has what it did, and
    the others took its files over."""
    parts: list[RunSummary] = []
    errors: list[BatchloadError] = []
    for future in futures:
        try:
            parts.append(future.result())  # type: ignore[attr-defined]
        except (KilledWorker, CancelledError):
            continue
        except BatchloadError as exc:
            errors.append(exc)
    return parts, errors


def _merged(
    parts: Sequence[RunSummary],
    run: SharedRun,
    *,
    error: BatchloadError | None,
    seconds: float,
    manifest: str | None,
) -> RunSummary:
    """One summary of the loops: their parts added up; what the plans and listings
    decided before any file was sent (skipped, re-sent, found on the service) as the
    earliest loop saw it; the files settled by loops that returned nothing (lost with a
    worker) as by others; and the run from the ledger, which is the truth of it."""
    problems = tuple(dict.fromkeys(p for part in parts for p in part.problems))
    datasets: dict[str, str | None] = {}
    for part in parts:
        for name, dataset_id in part.datasets.items():
            datasets[name] = datasets.get(name) or dataset_id
    owners = {part.owner for part in parts}
    finisher = next((p for p in parts if p.run is not None and p.run.last), None)
    return RunSummary(
        dataset_id=next(iter(datasets.values()), None),
        datasets=datasets,
        uploaded=sum(p.uploaded for p in parts),
        parts_uploaded=sum(p.parts_uploaded for p in parts),
        skipped=min((p.skipped for p in parts), default=0),
        by_others=sum(p.done + p.failed for p in run.processes if p.owner not in owners),
        lost=sum(p.lost for p in parts),
        invalid=sum(1 for p in problems if p.state == "invalid"),
        failed=sum(1 for p in problems if p.state == "failed"),
        conflicts=sum(1 for p in problems if p.state == "conflict"),
        resent=max((p.resent for p in parts), default=0),
        found_on_service=max((p.found_on_service for p in parts), default=0),
        bytes_sent=sum(p.bytes_sent for p in parts),
        request_bytes=sum(p.request_bytes for p in parts),
        seconds=seconds,
        manifest=manifest,
        problems=problems,
        ignored=parts[0].ignored if parts else (),
        reconcile=(finisher or parts[-1]).reconcile if parts else (),
        stopped=str(error) if error else None,
        error=error,
        interrupted=any(p.interrupted for p in parts),
        left=run.in_flight + run.left,
        run=run,
    )
