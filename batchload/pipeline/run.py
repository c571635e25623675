"""The pipeline: one run, wired from the stages, in one anyio task group.

- **prepare** (contracts, discovery, file_ids, resume decisions; no network) →
  **check** (read + validate + sha256 in worker threads under a CapacityLimiter of
  the CPU count; small files in groups) → **upload** (N tasks, one aiohttp session;
  the requests in flight start at a few and adapt to the link's latency, up to N:
  :class:`~batchload.send.retry.AimdLimit`) → **one manifest writer**. Bounded memory object streams
  join them, so memory stays flat however many files there are, and a byte budget
  bounds the files being read and validated (a large one alone). The parts of large
  files are cut while they are checked, into a spool on disk that the run removes
  when it ends (:mod:`batchload.check.spool`).
- The manifest is the truth: a dataset's id is committed before any file is sent to
  it, a file is ``sent`` before its request and ``done`` when the receipt is in.
  Re-sending overwrites (deterministic file_ids), so a crash costs at most a resend.
- Several processes may run the same command on one manifest (a SQLite file, or a
  PostgreSQL ledger across machines): each takes files from the ledger's queue as it
  goes, under claims with leases (:mod:`batchload.pipeline.claims`), and writes a
  file's state only while it holds the claim. ``--max-rps`` is one budget for all.
- Per-file problems (invalid, refused, retries exhausted) fail that file and the run
  goes on; a refused token (401/403) or a service that stays unreachable stops the
  run cleanly: the writer drains what it was given, and the summary says why.
- A :class:`~batchload.pipeline.stop.Stop` request (Ctrl-C, SIGTERM) drains the run: no
  new file starts, requests in flight get a bounded wait, the writer commits what it
  has, and the summary is marked ``interrupted``; a second request aborts at once.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchload.check.checker import check_bytes, check_group, cut_file, read_object
from batchload.check.crossfile import Earlier, UniqueKeys
from batchload.check.spool import PartSpool, sweep_dead
from batchload.config import START_CONCURRENCY, ClientConfig, cpu_count
from batchload.errors import AuthError, BatchloadError, ClaimLost, ConfigError
from batchload.jobs import PreparedJob, UploadJob, Work
from batchload.pipeline.claims import Claims
from batchload.pipeline.dryrun import dry_run
from batchload.pipeline.listing import Listed, decide
from batchload.pipeline.opening import open_datasets
from batchload.pipeline.options import RunOptions
from batchload.pipeline.prepare import ignored_files, prepare
from batchload.pipeline.reconcile import reconcile
from batchload.pipeline.stop import Stop
from batchload.pipeline.writer import ManifestWriter
from batchload.progress import (
    FileConflict,
    FileSkipped,
    MissingOnService,
    RunStarted,
    Sink,
    null_sink,
)
from batchload.protocol import MIB, max_request_bytes
from batchload.read.objects import OBJECT_READS
from batchload.send.ratebudget import RateBudget
from batchload.send.retry import AimdLimit, Pacer
from batchload.send.sender import DatasetGate, Sender
from batchload.send.transport import IngestionClient
from batchload.send.uploader import Ready, Uploader
from batchload.state.ledger import Ledger, new_owner
from batchload.state.stores import exists, open_ledger
from batchload.summary import Problem, Reconciliation, RunSummary


async def run_upload(
    jobs: Sequence[UploadJob],
    *,
    config: ClientConfig | None,
    manifest_path: Path | str,
    options: RunOptions | None = None,
    sink: Sink = null_sink,
    stop: Stop | None = None,
) -> RunSummary:
    """Run ``jobs``; return the summary. Needs ``config`` unless it is a dry run.

    ``manifest_path``: a SQLite file, or a ``postgresql://`` URL.
    ``stop`` lets the caller end the run early (see :mod:`batchload.pipeline.stop`).
    """
    options = options or RunOptions()
    started = time.monotonic()
    limit = max_request_bytes(options.max_request_mb)
    manifest = await anyio.to_thread.run_sync(_open_manifest, manifest_path, options.dry_run)
    claims: Claims | None = None
    try:
        if manifest is not None and not options.dry_run:
            # registered before prepare reads the manifest: what others settle after
            # this moment, this process's plan cannot know (see Ledger.enqueue)
            owner = new_owner()
            since = await anyio.to_thread.run_sync(manifest.register, owner)
            claims = Claims(manifest, owner=owner, since=since, lease_s=options.lease_s)
        endpoint = config.endpoint if config else None
        prepared = await anyio.to_thread.run_sync(
            lambda: prepare(jobs, manifest=manifest, endpoint=endpoint, max_request_bytes=limit)
        )
        if options.dry_run:
            return await dry_run(
                prepared,
                validate=options.validate,
                workers=options.workers or cpu_count(),
                manifest=manifest,
                manifest_path=manifest.location if manifest else str(manifest_path),
                started=started,
                limit=limit,
            )
        if config is None:
            raise ConfigError("an upload needs an endpoint and a token")
        assert manifest is not None and claims is not None
        run = _Run(
            prepared,
            config=config,
            manifest=manifest,
            claims=claims,
            options=options,
            sink=sink,
            limit=limit,
            stop=stop or Stop(),
        )
        summary = await run.execute(started)
        return replace(summary, run=await claims.leave())
    finally:
        with anyio.CancelScope(shield=True):
            if claims is not None and not claims.gone:  # what it holds goes back at once
                await claims.call(claims.ledger.unregister, claims.owner, silent_s=0)
            if manifest is not None:
                manifest.close()


def _open_manifest(location: Path | str, dry_run: bool) -> Ledger | None:
    """The run's manifest; a dry run only reads one that exists."""
    return open_ledger(location) if exists(location) or not dry_run else None


@dataclass(frozen=True, slots=True)
class _Group:
    job: int
    works: tuple[Work, ...]


class _Run:
    """The state one run shares between its tasks (all on one event loop)."""

    def __init__(
        self,
        prepared: list[PreparedJob],
        *,
        config: ClientConfig,
        manifest: Ledger,
        claims: Claims,
        options: RunOptions,
        sink: Sink,
        limit: int,
        stop: Stop,
    ) -> None:
        self.prepared = prepared
        self.stop = stop
        self.intake = anyio.CancelScope()
        """Around discovery's producer and the checks: cancelled by a stop request."""
        self.sending = anyio.CancelScope()
        """Around everything that sends: cancelled when a stop's grace is over."""
        self.config = config
        self.manifest = manifest
        self.claims = claims
        self.options = options
        self.sink = sink
        self.limit = limit
        self.workers = options.workers or cpu_count()
        self.cpu = anyio.CapacityLimiter(self.workers)
        self.reads = anyio.CapacityLimiter(OBJECT_READS)
        self.gates: dict[str, DatasetGate] = {}
        self.problems: list[Problem] = []
        self.skipped = sum(len(p.skipped) for p in prepared)
        self.found = self.kept = self.resent = 0
        self.writer = ManifestWriter(claims)
        self.write = self.writer.write
        self._keys: dict[str, UniqueKeys] = {}

    # --- the run -------------------------------------------------------------------------

    async def execute(self, started: float) -> RunSummary:
        for job in self.prepared:
            self.problems += [
                Problem(
                    path=r.path, dataset=job.name, file_id=None, state="invalid", reason=r.reason
                )
                for r in job.file_set.rejected
            ]
        forget = [row for job in self.prepared for row in job.forget]
        if forget:
            self.manifest.write([], forget=forget)
        await anyio.to_thread.run_sync(sweep_dead)  # what runs killed outright left
        with PartSpool.temporary() as spool:
            return await self._execute(started, spool)

    def _start(self) -> None:
        """Say what the run will do, now that the service's listing has been taken in."""
        self.skipped = sum(len(p.skipped) for p in self.prepared)
        works = [w for job in self.prepared for w in job.work]
        self.sink(
            RunStarted(
                files=len(works),
                bytes=sum(w.source.size for w in works),
                skipped=self.skipped,
                datasets=tuple(dict.fromkeys(j.name for j in self.prepared)),
            )
        )
        for job in self.prepared:
            for source in job.skipped:
                self.sink(FileSkipped(source.key))

    async def _execute(self, started: float, spool: PartSpool) -> RunSummary:
        error: BatchloadError | None = None
        reconciled: tuple[Reconciliation, ...] = ()
        budget = None
        if self.options.max_rps is not None:
            budget = RateBudget(
                self.manifest, self.options.max_rps, name=f"requests to {self.config.endpoint}"
            )
        async with IngestionClient(
            self.config, max_connections=self.options.concurrency, budget=budget
        ) as client:
            pacer = Pacer(AimdLimit(self.options.concurrency, start=START_CONCURRENCY))
            self.claims.in_flight = lambda: pacer.concurrency
            sender = Sender(
                client,
                policy=self.options.retry,
                pacer=pacer,
                sink=self.sink,
                rng=random.Random(self.options.seed),
            )
            uploader: Uploader | None = None
            try:
                async with anyio.create_task_group() as watch:
                    grace_s = self.options.stop_grace_s
                    watch.start_soon(self.stop.watch, grace_s, self.intake, self.sending)
                    watch.start_soon(self.claims.heartbeat)
                    with self.sending:
                        self.gates, listed = await open_datasets(
                            self.prepared,
                            sender=sender,
                            endpoint=self.config.endpoint,
                            manifest=self.manifest,
                            shared=self.claims.creating,
                            write=self.write,
                            sink=self.sink,
                        )
                        await self._take_in(listed)
                        self._start()
                        await self.claims.enqueue(self.prepared)  # what the listing left
                        uploader = self._uploader(sender, spool)
                        if any(job.work for job in self.prepared) and not self.stop.requested:
                            await self._pipeline(uploader)
                    # under the heartbeat: a long listing must not make this process look
                    # gone to the others on the manifest
                    if self.options.reconcile and not self.stop.requested:
                        try:
                            reconciled = await reconcile(sender, self.manifest)
                        except BatchloadError as exc:
                            error = exc
                    watch.cancel_scope.cancel()
            except Exception as exc:
                error = _run_stopper(exc)
        return self._summary(started, uploader, error, reconciled)

    def _uploader(self, sender: Sender, spool: PartSpool) -> Uploader:
        works = [w for job in self.prepared for w in job.work]
        owners = {(j.name, fid): src for j in self.prepared for fid, src in j.owners.items()}
        largest = max((w.source.size for w in works if w.split), default=0)
        return Uploader(
            sender=sender,
            gates=self.gates,
            write=self.write,
            sink=self.sink,
            owners=owners,
            max_request_bytes=self.limit,
            budget_bytes=max(int(self.options.memory_budget_mb * MIB), largest),
            recut=cut_file,
            spool=spool,
            finished=self.claims.finished_with,
        )

    async def _take_in(self, listed: dict[str, Listed]) -> None:
        """Decide from the service's listing what to send, re-send, record or refuse."""
        if not listed:
            return
        decided = await anyio.to_thread.run_sync(
            functools.partial(
                decide,
                self.prepared,
                listed,
                manifest=self.manifest,
                on_existing=self.options.on_existing,
                max_request_bytes=self.limit,
            ),
            limiter=self.claims.limiter,
        )
        self.prepared = decided.prepared
        self.found = decided.found
        self.kept = len(decided.kept)
        self.resent = sum(decided.resent.values())
        self.problems += decided.conflicts
        for problem in decided.conflicts:
            self.sink(FileConflict(problem.path, problem.file_id or "", problem.reason))
        for name, count in decided.resent.items():
            if count:
                self.sink(MissingOnService(name, listed[name].dataset_id, count))

    def keys(self, job: PreparedJob) -> UniqueKeys:
        """The run's cross-file unique-key tracker of ``job``'s dataset, starting from the
        keys of the files earlier runs sent (taken in by the first check, in a thread)."""
        if job.name not in self._keys:
            earlier = Earlier(self.manifest, job.name, job.earlier_keys)
            self._keys[job.name] = UniqueKeys.for_contract(job.contract, earlier=earlier)
        return self._keys[job.name]

    # --- stages --------------------------------------------------------------------------

    async def _pipeline(self, uploader: Uploader) -> None:
        group_send, group_recv = anyio.create_memory_object_stream[_Group](self.workers * 2)
        ready_send, ready_recv = anyio.create_memory_object_stream[Ready](self.options.concurrency)
        async with self.writer.running(), anyio.create_task_group() as stages:
            stages.start_soon(self._intake, group_send, group_recv, ready_send, uploader)
            async with ready_recv:
                # a quarter more upload tasks than requests in flight (one at least): a
                # task waiting for its file's commit (the writer's group commit) leaves
                # its place to another
                cap = self.options.concurrency
                for _ in range(cap + max(1, cap // 4)):
                    stages.start_soon(uploader.run, ready_recv.clone(), self.stop.draining)

    async def _intake(
        self,
        group_send: MemoryObjectSendStream[_Group],
        group_recv: MemoryObjectReceiveStream[_Group],
        ready_send: MemoryObjectSendStream[Ready],
        uploader: Uploader,
    ) -> None:
        """Produce and check files until all are checked, or a stop cancels it: then the
        files queued or being checked are left for a resume (a check stops at its next
        block)."""
        with self.intake:
            async with anyio.create_task_group() as intake:
                intake.start_soon(self._produce, group_send)
                async with group_recv, ready_send:
                    for _ in range(self.workers):
                        intake.start_soon(
                            self._check_loop, group_recv.clone(), ready_send.clone(), uploader
                        )

    async def _produce(self, send: ObjectSendStream[_Group]) -> None:
        async with send:
            for job in self.prepared:
                async for works in self.claims.groups(job):
                    await send.send(_Group(job.index, works))

    async def _check_loop(
        self,
        todo: ObjectReceiveStream[_Group],
        ready: ObjectSendStream[Ready],
        uploader: Uploader,
    ) -> None:
        async with todo, ready:
            async for group in todo:
                # one call per group: its frames die with the call, not when the next is read
                await self._check(group, ready, uploader)

    async def _check(
        self, group: _Group, ready: ObjectSendStream[Ready], uploader: Uploader
    ) -> None:
        job = self.prepared[group.job]
        works = await self._read_objects(group.works, uploader.spool)
        split = works[0].split
        held = 0
        limit = uploader.max_request_bytes
        need = check_bytes(job, works, validate=self.options.validate, max_request_bytes=limit)
        if need:  # the files are read into memory
            held = await uploader.budget.acquire(need)
        try:
            outcomes = await anyio.to_thread.run_sync(
                functools.partial(
                    check_group,
                    job,
                    works,
                    self.keys(job) if self.options.validate else None,
                    validate=self.options.validate,
                    spool=uploader.spool,
                    max_request_bytes=limit,
                ),
                limiter=self.cpu,
            )
            # a split workbook's frame stays in memory until its parts are sent (a split
            # file's parts are in the spool)
            holds_frame = split and outcomes[0].frame is not None
            keep = min(works[0].source.size, held) if holds_frame else 0
            await uploader.budget.release(held - keep)
            held = keep
            for outcome in outcomes:
                try:
                    item = await uploader.accept(job, outcome, held)
                except ClaimLost:
                    uploader.lost += 1
                    item = None
                if item is None:  # its outcome is recorded: the file is finished with
                    uploader.release(outcome)
                    self.claims.finished_with()
                    continue
                await ready.send(item)
                held = 0  # the upload task releases it
        finally:
            with anyio.CancelScope(shield=True):
                await uploader.budget.release(held)

    async def _read_objects(self, works: tuple[Work, ...], spool: PartSpool | None) -> list[Work]:
        """The group's objects read into the spool, several at once: a read waits on the
        network, not the CPU, so reads have a limiter of their own, not the checks'."""
        read = list(works)

        async def one(index: int) -> None:
            call = functools.partial(read_object, works[index], spool)
            read[index] = await anyio.to_thread.run_sync(call, limiter=self.reads)

        async with anyio.create_task_group() as reading:
            for index in (i for i, w in enumerate(works) if w.source.url and w.read is None):
                reading.start_soon(one, index)
        return read

    # --- the result ----------------------------------------------------------------------

    def _summary(
        self,
        started: float,
        uploader: Uploader | None,
        error: BatchloadError | None,
        reconciled: tuple[Reconciliation, ...],
    ) -> RunSummary:
        datasets = {name: gate.dataset_id for name, gate in self.gates.items()}
        for job in self.prepared:
            datasets.setdefault(job.name, job.job.dataset_id)
        problems = tuple(self.problems + (uploader.problems if uploader else []))
        works = sum(len(job.work) for job in self.prepared)
        finished = uploader.uploaded + uploader.unchanged if uploader else 0
        finished += len(problems) - len(self.problems)
        return RunSummary(
            dataset_id=next(iter(datasets.values()), None),
            datasets=datasets,
            uploaded=uploader.uploaded if uploader else 0,
            parts_uploaded=uploader.parts_uploaded if uploader else 0,
            skipped=self.skipped + self.kept + (uploader.unchanged if uploader else 0),
            by_others=self.claims.by_others,
            lost=uploader.lost if uploader else 0,
            owner=self.claims.owner,
            invalid=sum(1 for p in problems if p.state == "invalid"),
            failed=sum(1 for p in problems if p.state == "failed"),
            conflicts=sum(1 for p in problems if p.state == "conflict"),
            resent=self.resent,
            found_on_service=self.found,
            bytes_sent=uploader.bytes_sent if uploader else 0,
            request_bytes=uploader.request_bytes if uploader else 0,
            seconds=time.monotonic() - started,
            manifest=self.manifest.location,
            problems=problems,
            ignored=ignored_files(self.prepared),
            reconcile=reconciled,
            stopped=str(error) if error else None,
            error=error,
            interrupted=self.stop.requested,
            left=max(works - finished, 0),
            ledger_s=self.manifest.spent.seconds,
            ledger_calls=self.manifest.spent.calls,
        )


def _run_stopper(exc: Exception) -> BatchloadError:
    """The error that stopped the run, out of a task group's ExceptionGroup."""
    leaves: list[BaseException] = []

    def flatten(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for inner in e.exceptions:
                flatten(inner)
        else:
            leaves.append(e)

    flatten(exc)
    # A stage that found the next one gone (every upload task stopped on a refused token,
    # say) failed because of that stage's error, which is among the leaves: it says
    # nothing of its own, and the work it held stays unsent, for a resume.
    causes = [e for e in leaves if not isinstance(e, anyio.BrokenResourceError)]
    if not causes or not all(isinstance(e, BatchloadError) for e in causes):
        raise exc
    auth = [e for e in causes if isinstance(e, AuthError)]
    first = auth[0] if auth else causes[0]
    assert isinstance(first, BatchloadError)
    return first


__all__ = ["RunOptions", "Stop", "UploadJob", "reconcile", "run_upload"]
