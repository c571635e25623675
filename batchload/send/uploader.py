"""Upload: the stage that sends checked files, whole or in parts, and records each outcome.

- A file is sent as its original bytes, streamed from disk and re-hashed on the
  way. A file over the request limit is sent as the parquet parts its check cut into
  the run's spool (:mod:`batchload.check.spool`), one after another, each part's file
  removed once it is done; each part is a row of its own in the manifest. A part
  an earlier, interrupted run has done (same file, same bytes) is not sent again. A
  workbook is sent as parquet made from its validated frame with the contract's
  Arrow schema, under its own file_id (the API would guess other types from the
  workbook); its row records ``converted_from``. A compressed CSV is sent as the text
  its check decompressed into the spool (``converted_from``: ``csv.gz``, ...).
- A ``413`` halves the request limit for the rest of the run and the file is cut
  again into smaller parts, read again from its source one part at a time (a part
  that fitted before is re-sent under its same file_id, an overwrite).
- Once every part of a file is done, what the source had on the service before and
  no longer has is deleted from the service and the manifest: rows an earlier run
  left that the new cut does not have (a file that was whole and is now split, or had
  more parts), and file_ids an earlier content gave (a ``{sha8}`` template). The
  dataset mirrors its sources. The file's
  unique-key hashes are committed with its done rows, in the same transaction.
- Permanent refusals and exhausted retries fail the file and the run goes on; a
  refused token, an unreachable service or an ambiguous dataset stop the run.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import ObjectReceiveStream

from batchload.check.checker import Checked, parquet_envelope, part_envelope, problem_of
from batchload.check.parts import Part, parquet_bytes, split_frame
from batchload.check.spool import PartSpool
from batchload.contract.model import arrow_schema
from batchload.errors import (
    AuthError,
    ClaimLost,
    ConfigError,
    FileProblem,
    PayloadTooLarge,
    ServiceError,
    UnreachableError,
    UsageError,
)
from batchload.jobs import PreparedJob
from batchload.progress import FileDone, FileFailed, FileInvalid, FileSkipped, PartDone, Sink
from batchload.protocol import Envelope, raw_budget
from batchload.read.content import DiskSource, MemorySource, sha256_bytes
from batchload.send.body import RequestBody
from batchload.send.budget import ByteBudget
from batchload.send.pending import pending_row
from batchload.send.sender import DatasetGate, Sender, check_receipt, receipt_int
from batchload.state.records import Changes, FileKeys, FileRecord
from batchload.summary import Problem

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

MAX_SPLITS = 8
"""How often a 413 may halve the limit for one file before it fails."""
MIN_REQUEST_BYTES = 1024
#: Errors that end the whole run, not one file.
RUN_STOPPERS = (AuthError, UnreachableError, ConfigError, UsageError)


class Write(Protocol):
    """Hands changes to the manifest's writer; with ``wait``, returns once committed
    (raising :class:`ClaimLost` if the ledger refused them)."""

    def __call__(self, changes: Changes, *, wait: bool = False) -> Awaitable[None]: ...


Cut = Callable[[int], Iterator[Part]]
Recut = Callable[[PreparedJob, Checked, int], Iterator[Part]]
"""Cuts a checked file's parts again for a byte budget: the check stage's own cutter,
handed down by the pipeline, which a 413 asks again for smaller parts."""
"""A file's parts for a byte budget (of file bytes per part)."""


@dataclass(frozen=True, slots=True)
class Ready:
    """A checked file on its way to the service, with the budget it holds."""

    job: PreparedJob
    checked: Checked
    held: int = 0


class Uploader:
    """Sends Ready files; one instance shared by all upload tasks of a run."""

    def __init__(
        self,
        *,
        sender: Sender,
        gates: Mapping[str, DatasetGate],
        write: Write,
        sink: Sink,
        owners: dict[tuple[str, str], str],
        max_request_bytes: int,
        budget_bytes: int,
        recut: Recut,
        spool: PartSpool | None = None,
        finished: Callable[[], None] = lambda: None,
    ) -> None:
        self.sender = sender
        self.finished = finished
        """Told when a file is finished with (sent, failed or refused)."""
        self.recut = recut
        self.gates = gates
        self.write = write
        self.sink = sink
        self.owners = owners
        self.max_request_bytes = max_request_bytes
        self.budget = ByteBudget(budget_bytes)
        self.spool = spool
        self.problems: list[Problem] = []
        self.uploaded = self.parts_uploaded = self.unchanged = self.lost = 0
        self.bytes_sent = self.request_bytes = 0

    # --- intake: what checking found ---------------------------------------------------

    async def accept(self, job: PreparedJob, checked: Checked, held: int) -> Ready | None:
        """A Ready to send, or None when the outcome was recorded here and then."""
        path = checked.work.source.key
        if checked.unchanged and checked.fingerprint is not None:
            mtime = checked.fingerprint.mtime_ns
            await self.write(
                Changes(
                    records=tuple(
                        replace(r, mtime_ns=mtime, etag=checked.work.source.etag)
                        for r in checked.work.previous
                    )
                )
            )
            self.unchanged += 1
            self.sink(FileSkipped(path))
            return None
        if checked.ok and checked.file_id and not self.claim(job.name, checked.file_id, path):
            checked = replace(
                checked,
                problem=f"file_id {checked.file_id!r} is taken by another file of the dataset",
                problem_state="failed",
            )
        if checked.problem is not None:
            file_id = (
                checked.file_id
                if checked.file_id and self.claim(job.name, checked.file_id, path)
                else None
            )
            await self._record_problem(job, replace(checked, file_id=file_id), None, None)
            return None
        return Ready(job, checked, held)

    def release(self, checked: Checked) -> None:
        """The file is done with: an object's copy in the spool goes."""
        if self.spool is not None:
            self.spool.release(checked.work.source)

    def claim(self, dataset: str, file_id: str, path: str) -> bool:
        """Take ``file_id`` for ``path``; False when another source already holds it."""
        owner = self.owners.setdefault((dataset, file_id), path)
        return owner == path

    # --- sending -------------------------------------------------------------------------

    async def run(self, items: ObjectReceiveStream[Ready], stop: anyio.Event | None = None) -> None:
        """One upload task: send items until the stream ends; once ``stop`` is set, items
        still queued are let go unsent (a resume sends them)."""
        async with items:
            async for item in items:
                try:
                    if stop is None or not stop.is_set():
                        await self._one(item)
                finally:
                    self.finished()
                    self.release(item.checked)
                    with anyio.CancelScope(shield=True):
                        await self.budget.release(item.held)
                # a split file's frame must not stay alive while this task waits for the next
                del item

    async def _one(self, item: Ready) -> None:
        job, checked = item.job, item.checked
        try:
            if checked.parts is not None:
                await self._spooled(job, checked, checked.parts)
            elif checked.frame is None:
                await self._whole(job, checked)
            elif checked.work.split:
                await self._parts(job, checked, self._frame_cut(job, checked, checked.frame))
            else:
                await self._converted(job, checked, checked.frame)
        except RUN_STOPPERS:
            raise
        except ClaimLost:
            self.lost += 1  # another process took it over: its outcome is theirs to record
        except (ServiceError, FileProblem) as exc:
            status = exc.status if isinstance(exc, ServiceError) else None
            self.problems.append(
                replace(problem_of(job, checked), state="failed", reason=str(exc), status=status)
            )
            source = checked.work.source
            self.sink(FileFailed(source.key, checked.file_id, str(exc), source.size))

    async def _whole(self, job: PreparedJob, checked: Checked) -> None:
        """A file as its own bytes, or a compressed CSV as its text (``checked.plain``)."""
        work, fp = checked.work, checked.fingerprint
        assert fp is not None and checked.file_id is not None
        file_format = work.source.file_format
        options = job.convert_options if file_format == "csv" else None
        file_id = checked.file_id
        source = checked.plain or DiskSource(
            work.source.path, fp.size, fp.sha256, fp.data, fp.mtime_ns
        )
        row = pending_row(
            self.gates,
            job,
            checked,
            part=0,
            file_id=file_id,
            sent_sha256=source.sha256,
            rows=checked.rows,
        )
        touched: dict[int, FileRecord] = {}
        try:
            done = await self._send(
                job,
                row,
                lambda name: Envelope(
                    file_id=file_id, file_format=file_format, name=name, convert_options=options
                ),
                source,
                touched,
                finished_next=not work.previous,
            )
        except PayloadTooLarge:
            await self._parts(job, checked, functools.partial(self.recut, job, checked), touched)
            return
        finally:
            if checked.plain is not None and self.spool is not None:
                self.spool.remove(checked.plain)
        await self._finish(job, checked, [replace(done, parts=1)], touched)

    async def _spooled(self, job: PreparedJob, checked: Checked, parts: tuple[Part, ...]) -> None:
        """A file whose check cut its parts into the spool: send them, or, when the limit
        is no longer the one they were cut for, cut the file again."""

        first = True

        def cut(budget_bytes: int) -> Iterator[Part]:
            nonlocal first
            fresh, first = first, False
            if fresh and self.max_request_bytes == checked.parts_limit:
                return iter(parts)
            return self.recut(job, checked, budget_bytes)

        try:
            await self._parts(job, checked, cut)
        finally:
            self._discard(parts)

    def _discard(self, parts: tuple[Part, ...]) -> None:
        if self.spool is not None:
            self.spool.discard(parts)

    def _frame_cut(self, job: PreparedJob, checked: Checked, frame: pl.DataFrame) -> Cut:
        schema, path = arrow_schema(job.contract), checked.work.source.key
        return lambda budget: split_frame(frame, budget_bytes=budget, schema=schema, path=path)

    async def _converted(self, job: PreparedJob, checked: Checked, frame: pl.DataFrame) -> None:
        """A workbook: its validated frame as one parquet file (in parts if too large)."""
        assert checked.file_id is not None
        schema = arrow_schema(job.contract)
        source = await anyio.to_thread.run_sync(_parquet_source, frame, schema)
        envelope = functools.partial(parquet_envelope, checked.file_id)
        touched: dict[int, FileRecord] = {}
        if envelope(job.name).request_bytes(source.size) > self.max_request_bytes:
            await self._parts(job, checked, self._frame_cut(job, checked, frame), touched)
            return
        row = pending_row(
            self.gates,
            job,
            checked,
            part=0,
            file_id=checked.file_id,
            sent_sha256=source.sha256,
            rows=checked.rows,
            file_format="parquet",
        )
        first = not checked.work.previous
        try:
            done = await self._send(job, row, envelope, source, touched, finished_next=first)
        except PayloadTooLarge:
            await self._parts(job, checked, self._frame_cut(job, checked, frame), touched)
            return
        await self._finish(job, checked, [replace(done, parts=1)], touched)

    async def _parts(
        self,
        job: PreparedJob,
        checked: Checked,
        cut: Cut,
        touched: dict[int, FileRecord] | None = None,
    ) -> None:
        """Send the parts ``cut`` gives, one after another (cut in a thread as they go);
        after a 413, cut again for the lowered limit."""
        work, fp = checked.work, checked.fingerprint
        assert fp is not None
        path = work.source.key
        touched = {} if touched is None else touched
        earlier = {r.part: r for r in work.previous}
        for _ in range(MAX_SPLITS):
            proto = part_envelope(job, work, fp.sha256, 9999, job.name)
            parts = cut(raw_budget(self.max_request_bytes, proto))
            done: list[FileRecord] = []
            try:
                while (part := await anyio.to_thread.run_sync(next, parts, None)) is not None:
                    file_id = part_envelope(job, work, fp.sha256, part.index).file_id
                    if not self.claim(job.name, file_id, path):
                        raise FileProblem(
                            f"file_id {file_id!r} is taken by another file", path=path
                        )
                    # an earlier run's part, unless this run sent that part number
                    old = None if part.index in touched else earlier.get(part.index)
                    if old and self._landed(job, old, file_id, fp.sha256, part.source.sha256):
                        kept = replace(old, size=fp.size, mtime_ns=fp.mtime_ns, parts=None)
                        touched[part.index] = kept
                        done.append(kept)
                        self._discard((part,))
                        self.sink(PartDone(path, part.source.size))
                        continue
                    row = pending_row(
                        self.gates,
                        job,
                        checked,
                        part=part.index,
                        file_id=file_id,
                        sent_sha256=part.source.sha256,
                        rows=part.rows,
                        file_format="parquet",
                    )
                    done.append(
                        await self._send(
                            job,
                            row,
                            functools.partial(parquet_envelope, file_id),
                            part.source,
                            touched,
                        )
                    )
                    self._discard((part,))
                    self.parts_uploaded += 1
                    self.sink(PartDone(path, part.source.size))
            except PayloadTooLarge:
                continue  # _send lowered the limit: cut again, smaller
            await self._finish(job, checked, [replace(r, parts=len(done)) for r in done], touched)
            return
        raise PayloadTooLarge(f"parts still too large after {MAX_SPLITS} halvings", status=413)

    def _halve(self, failed_request_bytes: int) -> None:
        """A 413: aim below half of the request that was refused, for the rest of the run."""
        limit = min(self.max_request_bytes, failed_request_bytes) // 2
        self.max_request_bytes = max(limit, MIN_REQUEST_BYTES)

    def _landed(
        self, job: PreparedJob, old: FileRecord, file_id: str, sha256: str, sent_sha256: str
    ) -> bool:
        """Whether ``old`` (an earlier run's row of a part) says the service already holds
        this very part: done, under this file_id, in this dataset, with the same bytes
        cut from the same file."""
        dataset_id = self.gates[job.name].dataset_id
        return (
            old.state == "done"
            and old.file_id == file_id
            and old.sha256 == sha256
            and old.sent_sha256 == sent_sha256
            and dataset_id is not None
            and old.dataset_id == dataset_id
        )

    async def _send(
        self,
        job: PreparedJob,
        row: FileRecord,
        envelope: Callable[[str | None], Envelope],
        source: DiskSource | MemorySource,
        touched: dict[int, FileRecord],
        *,
        finished_next: bool = False,
    ) -> FileRecord:
        """Send one whole file or part; return its done row (failed row written on error).

        ``touched`` collects the last row written for each part number of the file, so
        that what a refused (413) cut left behind can be cleared when the file is done.
        ``finished_next``: :meth:`_finish` writes the done row next, with nothing to
        delete first (a whole file with no earlier rows): it is not written here too.
        """
        gate = self.gates[job.name]
        attempts = 0
        length = 0

        async def on_attempt(attempt: int) -> None:
            nonlocal attempts
            attempts = attempt
            touched[row.part] = replace(row, state="sent", attempts=attempt)
            await self.write(Changes(records=(touched[row.part],)))

        def make_body(name: str | None) -> RequestBody:
            nonlocal length
            body = RequestBody(envelope(name), source)
            length = body.content_length
            return body

        try:
            receipt = await gate.send(
                self.sender,
                make_body,
                label=(row.source_path, row.file_id or ""),
                on_attempt=on_attempt,
            )
            check_receipt(receipt, source.sha256)
        except PayloadTooLarge:
            self._halve(length)  # not the file's failure: the caller cuts it smaller
            raise
        except (AuthError, UsageError):
            raise  # the run stops; the row stays "sent" and a resume sends it again
        except ClaimLost:
            raise  # another process holds the file now: nothing of it is ours to write
        except Exception as exc:
            status = exc.status if isinstance(exc, ServiceError) else None
            failed = replace(
                row, state="failed", attempts=attempts, last_status=status, last_error=str(exc)
            )
            touched[row.part] = failed
            with anyio.CancelScope(shield=True):
                await self.write(Changes(records=(failed,)))
            raise
        self.bytes_sent += source.size
        self.request_bytes += length
        done = replace(
            row,
            state="done",
            attempts=attempts,
            dataset_id=gate.dataset_id,
            rows=receipt_int(receipt.get("rows"), row.rows),
            bytes_sent=length,
            receipt=receipt,
            last_status=None,
            last_error=None,
        )
        touched[row.part] = done
        if not finished_next:
            await self.write(Changes(records=(done,)))
        return done

    async def _finish(
        self,
        job: PreparedJob,
        checked: Checked,
        rows: list[FileRecord],
        touched: Mapping[int, FileRecord],
    ) -> None:
        """Mark the file done (all parts counted), and clear rows no longer part of it.

        Stale rows are those of an earlier run's cut (the file was whole and is now in
        parts, or had more parts) and of a cut this run abandoned after a 413.
        """
        keep = {r.part for r in rows}
        known = {r.part: r for r in checked.work.previous} | dict(touched)
        stale = [r for part, r in sorted(known.items()) if part not in keep]
        # what the source had on the service before and no longer has: the parts of an
        # older cut, and ids an earlier content gave ({sha8}); gone once the new file landed
        now = {r.file_id for r in rows}
        sent = [*checked.work.previous, *stale]
        gone = {r.file_id for r in sent if r.state in ("done", "sent") and r.file_id} - now
        dataset_id = self.gates[job.name].dataset_id
        for file_id in sorted(gone):
            if dataset_id is None:
                break
            delete = functools.partial(self.sender.client.delete_file, dataset_id, file_id)
            try:
                await self.sender.call(delete)
            except ServiceError as exc:
                if exc.status != 404 or isinstance(exc, UnreachableError):
                    raise
        forget = tuple((job.name, r.source_path, r.part) for r in stale)
        path, size = checked.work.source.key, checked.work.source.size
        keys: tuple[FileKeys, ...] = ()
        if checked.keys is not None:
            keys = (checked.keys,)
        elif checked.work.previous:  # sent unvalidated: what an earlier run stored is stale
            keys = (FileKeys(dataset=job.name, source_path=path, scheme="", hashes=None),)
        # waited for: a file counts as uploaded here only if its claim was still ours
        await self.write(Changes(records=tuple(rows), forget=forget, keys=keys), wait=True)
        self.uploaded += 1
        parts = len(rows) if rows[0].part else 0
        self.sink(FileDone(path, rows[0].file_id or "", size, parts))

    # --- records ---------------------------------------------------------------------------

    async def _record_problem(
        self, job: PreparedJob, checked: Checked, status: int | None, attempts: int | None
    ) -> None:
        row = pending_row(
            self.gates,
            job,
            checked,
            part=0,
            file_id=checked.file_id,
            sent_sha256=None,
            rows=checked.rows,
        )
        state = checked.problem_state
        await self.write(
            Changes(
                records=(
                    replace(
                        row,
                        state=state,
                        last_status=status,
                        last_error=checked.problem,
                        attempts=attempts or 0,
                    ),
                )
            )
        )
        self.problems.append(problem_of(job, checked))
        path, size = checked.work.source.key, checked.work.source.size
        if state == "invalid":
            self.sink(FileInvalid(path, checked.problem or "", size))
        else:
            self.sink(FileFailed(path, checked.file_id, checked.problem or "", size))


def _parquet_source(frame: pl.DataFrame, schema: pa.Schema) -> MemorySource:
    """A workbook's validated frame as parquet bytes with their hash (blocking: a thread)."""
    data = parquet_bytes(frame, schema)
    return MemorySource(data, sha256_bytes(data))
