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
- Per-file problems (invalid, refused, retries exhausted) fail that file and the run
  goes on; a refused token (401/403) or a service that stays unreachable stops the
  run cleanly: the writer drains what it was given, and the summary says why.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream

from batchload.check.checker import check_bytes, check_group, cut_file, groups
from batchload.check.crossfile import UniqueKeys
from batchload.check.spool import PartSpool
from batchload.config import (
    DEFAULT_MAX_CONCURRENCY,
    START_CONCURRENCY,
    ClientConfig,
    cpu_count,
)
from batchload.contract.model import diff_locked
from batchload.errors import AuthError, BatchloadError, ConfigError, ServiceError, UsageError
from batchload.jobs import PreparedJob, UploadJob, Work
from batchload.pipeline.dryrun import dry_run
from batchload.pipeline.prepare import prepare
from batchload.pipeline.reconcile import reconcile
from batchload.progress import DatasetReady, FileSkipped, RunStarted, Sink, null_sink
from batchload.protocol import DEFAULT_MAX_REQUEST_MB, MIB, max_request_bytes
from batchload.send.retry import AimdLimit, Pacer, RetryPolicy
from batchload.send.sender import DatasetGate, Sender
from batchload.send.transport import IngestionClient
from batchload.send.uploader import Ready, Uploader
from batchload.state.manifest import Manifest
from batchload.state.records import Changes, DatasetRecord
from batchload.summary import Problem, Reconciliation, RunSummary

if TYPE_CHECKING:
    from batchload.check.crossfile import UniqueKeys

MEMORY_BUDGET_MB = 256.0
"""Files being checked count what :func:`~batchload.check.checker.check_bytes` says against it
(a large file read whole is checked alone, small groups and large CSVs validated block
by block several at once), and a split workbook's frame stays counted until its parts
are sent."""
WRITER_BATCH = 512


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

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if not self.max_request_mb > 0:
            raise UsageError("--max-request-mb must be positive")


async def run_upload(
    jobs: Sequence[UploadJob],
    *,
    config: ClientConfig | None,
    manifest_path: Path,
    options: RunOptions | None = None,
    sink: Sink = null_sink,
) -> RunSummary:
    """Run ``jobs``; return the summary. Needs ``config`` unless it is a dry run."""
    options = options or RunOptions()
    started = time.monotonic()
    limit = max_request_bytes(options.max_request_mb)
    manifest = _open_manifest(manifest_path, options.dry_run)
    try:
        endpoint = config.endpoint if config else None
        prepared = await anyio.to_thread.run_sync(
            lambda: prepare(jobs, manifest=manifest, endpoint=endpoint, max_request_bytes=limit)
        )
        if options.dry_run:
            return await dry_run(
                prepared,
                validate=options.validate,
                workers=options.workers or cpu_count(),
                manifest_path=manifest_path,
                started=started,
                limit=limit,
            )
        if config is None:
            raise ConfigError("an upload needs an endpoint and a token")
        assert manifest is not None
        run = _Run(
            prepared, config=config, manifest=manifest, options=options, sink=sink, limit=limit
        )
        return await run.execute(started)
    finally:
        if manifest is not None:
            manifest.close()


def _open_manifest(path: Path, dry_run: bool) -> Manifest | None:
    """The run's manifest; a dry run only reads one that exists."""
    if dry_run:
        return Manifest.open(path) if path.is_file() else None
    return Manifest.open(path)


@dataclass(frozen=True, slots=True)
class _Op:
    """One writer instruction; ``done`` is set once it is committed."""

    changes: Changes
    done: anyio.Event | None = None


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
        manifest: Manifest,
        options: RunOptions,
        sink: Sink,
        limit: int,
    ) -> None:
        self.prepared = prepared
        self.config = config
        self.manifest = manifest
        self.options = options
        self.sink = sink
        self.limit = limit
        self.workers = options.workers or cpu_count()
        self.cpu = anyio.CapacityLimiter(self.workers)
        self.db = anyio.CapacityLimiter(1)
        self.gates: dict[str, DatasetGate] = {}
        self.problems: list[Problem] = []
        self.skipped = sum(len(p.skipped) for p in prepared)
        self._writer: ObjectSendStream[_Op] | None = None
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
                self.sink(FileSkipped(str(source.path)))
        with PartSpool.temporary() as spool:
            return await self._execute(started, spool)

    async def _execute(self, started: float, spool: PartSpool) -> RunSummary:
        error: BatchloadError | None = None
        reconciled: tuple[Reconciliation, ...] = ()
        works = [w for job in self.prepared for w in job.work]
        async with IngestionClient(self.config, max_connections=self.options.concurrency) as client:
            pacer = Pacer(AimdLimit(self.options.concurrency, start=START_CONCURRENCY))
            sender = Sender(
                client,
                policy=self.options.retry,
                pacer=pacer,
                sink=self.sink,
                rng=random.Random(self.options.seed),
            )
            owners = {(j.name, fid): src for j in self.prepared for fid, src in j.owners.items()}
            largest = max((w.source.size for w in works if w.split), default=0)
            uploader = Uploader(
                sender=sender,
                gates=self.gates,
                write=self.write,
                sink=self.sink,
                owners=owners,
                max_request_bytes=self.limit,
                budget_bytes=max(int(self.options.memory_budget_mb * MIB), largest),
                recut=cut_file,
                spool=spool,
            )
            try:
                await self._open_datasets(sender)
                if works:
                    await self._pipeline(uploader)
            except Exception as exc:
                error = _run_stopper(exc)
            if error is None and self.options.reconcile:
                try:
                    reconciled = await reconcile(client, self.manifest)
                except BatchloadError as exc:
                    error = exc
        return self._summary(started, uploader, error, reconciled)

    async def _open_datasets(self, sender: Sender) -> None:
        """Give every dataset a gate: with its id when it exists, else created by a file."""
        for job in self.prepared:
            if job.name in self.gates:
                continue
            record = job.record
            dataset_id = job.job.dataset_id or (record.dataset_id if record else None)
            gate = DatasetGate(job.name, dataset_id, record=self._recorder(job))
            if dataset_id is None:
                await gate.adopt_existing(sender)  # an earlier run (or another tool) made it
            if gate.dataset_id is not None:
                await self._check_locked(sender, job, gate.dataset_id)
                self.manifest.save_dataset(self._dataset_record(job, gate.dataset_id))
                self.sink(DatasetReady(job.name, gate.dataset_id, created=False))
            self.gates[job.name] = gate

    async def _check_locked(self, sender: Sender, job: PreparedJob, dataset_id: str) -> None:
        try:
            answer = await sender.call(lambda: sender.client.get_dataset(dataset_id))
        except AuthError:
            raise
        except ServiceError as exc:
            if exc.status in (404, 405, 501):  # the service cannot say: go on, it will check
                return
            raise
        if answer is None:
            raise UsageError(
                f"dataset {dataset_id} ({job.name}) does not exist at {self.config.endpoint}",
                hint="check --dataset-id, or use a new --manifest if it was deleted",
            )
        locked = answer.get("schema")
        if isinstance(locked, list) and (differences := diff_locked(job.contract, locked)):
            shown = "; ".join(str(d) for d in differences[:5])
            raise UsageError(
                f"contract {job.job.schema} does not match the locked schema of dataset "
                f"{dataset_id}: {shown}",
                hint="fix the contract (batchload schema diff shows every difference)",
            )

    def _dataset_record(self, job: PreparedJob, dataset_id: str | None) -> DatasetRecord:
        return DatasetRecord(
            name=job.name,
            dataset_id=dataset_id,
            state="ready" if dataset_id else "creating",
            endpoint=self.config.endpoint,
            contract=str(job.job.schema),
            file_id_template=job.template.text,
        )

    def _recorder(self, job: PreparedJob) -> Callable[[str | None], Awaitable[None]]:
        async def record(dataset_id: str | None) -> None:
            changes = Changes(datasets=(self._dataset_record(job, dataset_id),))
            await self.write(changes, wait=True)
            if dataset_id is not None:
                self.sink(DatasetReady(job.name, dataset_id, created=True))

        return record

    def keys(self, job: PreparedJob) -> UniqueKeys:
        """The run's cross-file unique-key tracker of ``job``'s dataset, starting from the
        keys of the files earlier runs sent (taken in by the first check, in a thread)."""
        if job.name not in self._keys:
            self._keys[job.name] = UniqueKeys.for_contract(job.contract, known=job.known_keys)
        return self._keys[job.name]

    # --- stages --------------------------------------------------------------------------

    async def _pipeline(self, uploader: Uploader) -> None:
        group_send, group_recv = anyio.create_memory_object_stream[_Group](self.workers * 2)
        ready_send, ready_recv = anyio.create_memory_object_stream[Ready](self.options.concurrency)
        write_send, write_recv = anyio.create_memory_object_stream[_Op](WRITER_BATCH)
        self._writer = write_send
        failure: Exception | None = None
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._write_loop, write_recv)
            try:
                async with write_send, anyio.create_task_group() as stages:
                    stages.start_soon(self._produce, group_send)
                    async with group_recv, ready_send:
                        for _ in range(self.workers):
                            stages.start_soon(
                                self._check_loop, group_recv.clone(), ready_send.clone(), uploader
                            )
                    async with ready_recv:
                        for _ in range(self.options.concurrency):
                            stages.start_soon(uploader.run, ready_recv.clone())
            except Exception as exc:  # the writer drains what it has, then the error goes on
                failure = exc
        self._writer = None
        if failure is not None:
            raise failure

    async def _produce(self, send: ObjectSendStream[_Group]) -> None:
        async with send:
            for job in self.prepared:
                for works in groups(job.work):
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
        split = group.works[0].split
        held = 0
        limit = uploader.max_request_bytes
        need = check_bytes(
            job, group.works, validate=self.options.validate, max_request_bytes=limit
        )
        if need:  # the files are read into memory
            held = await uploader.budget.acquire(need)
        try:
            outcomes = await anyio.to_thread.run_sync(
                functools.partial(
                    check_group,
                    job,
                    group.works,
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
            keep = min(group.works[0].source.size, held) if holds_frame else 0
            await uploader.budget.release(held - keep)
            held = keep
            for outcome in outcomes:
                item = await uploader.accept(job, outcome, held)
                if item is not None:
                    await ready.send(item)
                    held = 0  # the upload task releases it
        finally:
            with anyio.CancelScope(shield=True):
                await uploader.budget.release(held)

    async def write(self, changes: Changes, *, wait: bool = False) -> None:
        """Hand changes to the writer; with ``wait``, return once they are committed."""
        if self._writer is None:  # before the pipeline starts (dataset checks): write now
            await anyio.to_thread.run_sync(self.manifest.apply, [changes], limiter=self.db)
            return
        op = _Op(changes, anyio.Event() if wait else None)
        await self._writer.send(op)
        if op.done is not None:
            await op.done.wait()

    async def _write_loop(self, ops: MemoryObjectReceiveStream[_Op]) -> None:
        async with ops:
            async for op in ops:
                batch = [op]
                while len(batch) < WRITER_BATCH:
                    try:
                        batch.append(ops.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                changes = [o.changes for o in batch]
                await anyio.to_thread.run_sync(self.manifest.apply, changes, limiter=self.db)
                for done in batch:
                    if done.done is not None:
                        done.done.set()

    # --- the result ----------------------------------------------------------------------

    def _summary(
        self,
        started: float,
        uploader: Uploader,
        error: BatchloadError | None,
        reconciled: tuple[Reconciliation, ...],
    ) -> RunSummary:
        datasets = {name: gate.dataset_id for name, gate in self.gates.items()}
        for job in self.prepared:
            datasets.setdefault(job.name, job.job.dataset_id)
        problems = tuple(self.problems + uploader.problems)
        return RunSummary(
            dataset_id=next(iter(datasets.values()), None),
            datasets=datasets,
            uploaded=uploader.uploaded,
            parts_uploaded=uploader.parts_uploaded,
            skipped=self.skipped + uploader.unchanged,
            invalid=sum(1 for p in problems if p.state == "invalid"),
            failed=sum(1 for p in problems if p.state == "failed"),
            bytes_sent=uploader.bytes_sent,
            request_bytes=uploader.request_bytes,
            seconds=time.monotonic() - started,
            manifest=str(self.manifest.path),
            problems=problems,
            reconcile=reconciled,
            stopped=str(error) if error else None,
            error=error,
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


__all__ = ["RunOptions", "UploadJob", "reconcile", "run_upload"]
