"""Check: read, hash and validate files in a worker thread; the stage before upload.

A group of small files costs one pandera call (see :mod:`batchload.check.validate`); a
large CSV is validated block by block, in bounded memory; a file that will be sent
in parts is checked alone and its parts are cut from its rows as they are validated,
into the run's spool (:mod:`batchload.check.spool`): no frame of it is kept. A workbook
keeps its frame, to be sent as parquet. A compressed CSV is decompressed into the spool
once checked, and its text is sent (too large for one request, its rows go in parquet
parts, as a large CSV's do). :func:`check_bytes` says how much memory a
check takes, for the pipeline's byte budget. Each file's sha256 is taken here, and
its ``stat`` checked again after validation, so what was validated is what the hash
describes; the upload re-checks the hash while it streams. A file that an earlier run
sent and that was only touched (same size and sha256) is found ``unchanged`` and not
validated again. A valid file's unique-key hashes come with it (``keys``), for the
manifest to keep beside its done rows, so later runs know them without reading it.
With validation off (``validate=False``), a whole file is hashed and sent unread, and
a file to be split is read (not validated) only to cut its parts. :func:`cut_file`
cuts a checked file's parts again, from the file (after a ``413`` lowered the limit);
:mod:`batchload.check.dryplan` plans a dry run's requests from the same checks.
Everything here blocks: the pipeline runs it with ``anyio.to_thread.run_sync`` under a
CapacityLimiter of the CPU count.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from batchload.cancel import stop_if_cancelled
from batchload.check.crossfile import UniqueKeys
from batchload.check.parts import Part, PartCutter
from batchload.check.spool import PartSpool
from batchload.check.validate import BLOCK_BYTES, BLOCKWISE_MIN_BLOCKS, in_blocks, validate_files
from batchload.contract.model import arrow_schema
from batchload.errors import BatchloadError, FileChanged, FileProblem, UnreadableFile
from batchload.jobs import PreparedJob, Work
from batchload.protocol import MIB, Envelope, raw_budget
from batchload.read.content import DiskSource, Fingerprint, fingerprint_file
from batchload.read.csv import CannotReadInBlocks, read_csv_blocks
from batchload.read.discover import csv_compression
from batchload.read.frames import read_frame
from batchload.read.objects import fetch
from batchload.state.records import FileKeys
from batchload.summary import Problem

if TYPE_CHECKING:
    import polars as pl

    from batchload.check.crossfile import UniqueKeys

GROUP_FILES = 64
GROUP_BYTES = 16 * MIB
"""Small files are read and validated together, up to this many files or bytes."""
CHECK_MEMORY_FACTOR = 4
"""A file read whole to be validated takes about this many times its size in memory at
peak (Arrow buffers, the polars frame, the checks' temporaries: +400 MB measured for
a 100 MB CSV)."""
BLOCKWISE_MEMORY_BLOCKS = 12
"""A CSV validated block by block takes about this many blocks at peak (pyarrow's
read-ahead, a block's Arrow and polars copies, the checks' temporaries), plus half its
size (its key hashes, 8 bytes a row, about a fifth of a CSV's size, sorted once, and
what the allocators keep: +140-175 MB measured for a 100 MB CSV with 8 MiB blocks).
Smaller blocks would take less, but a smaller estimate lets two large files be
checked at once, which costs more than it saves."""
PART_MEMORY_FACTOR = 4
"""Cutting a file's parts takes about this many times a request's size: the rows of the
part being cut (a frame about 2.5 times its parquet), their Arrow copy cast to the
contract's types, and the parquet bytes."""


@dataclass(frozen=True, slots=True)
class Checked:
    """What checking one file found."""

    work: Work
    fingerprint: Fingerprint | None
    file_id: str | None
    rows: int | None = None
    frame: pl.DataFrame | None = None
    """The validated frame, kept only for a workbook (sent as parquet), and for a file
    sent in parts when there is no spool."""
    parts: tuple[Part, ...] | None = None
    """A file sent in parts: its parts, in the spool, cut for ``parts_limit``."""
    parts_limit: int = 0
    """The request limit (bytes) the parts were cut for."""
    plain: DiskSource | None = None
    """A compressed CSV's text, decompressed into the spool: what is sent for it."""
    problem: str | None = None
    problem_state: Literal["invalid", "failed"] = "invalid"
    details: tuple[str, ...] = ()
    unchanged: bool = False
    keys: FileKeys | None = None
    """The valid file's unique-key hashes (None when the contract has no unique key or
    validation is off)."""

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.unchanged


def groups(works: Sequence[Work]) -> Iterator[tuple[Work, ...]]:
    """Works in the order given, small files batched, each file to be split alone."""
    batch: list[Work] = []
    size = 0
    for work in works:
        if work.split:
            yield (work,)
            continue
        batch.append(work)
        size += work.source.size
        if len(batch) >= GROUP_FILES or size >= GROUP_BYTES:
            yield tuple(batch)
            batch, size = [], 0
    if batch:
        yield tuple(batch)


def check_bytes(
    job: PreparedJob, works: Sequence[Work], *, validate: bool, max_request_bytes: int
) -> int:
    """Memory that checking ``works`` takes at its peak (0: the files are only hashed).

    A file sent in parts counts the part being cut (``max_request_bytes``); its parts
    go to the spool, so they hold no memory once checked.
    """
    total = 0
    for work in works:
        size = work.source.size
        if not (validate or work.split):
            continue
        # the size listed decides for a small file, without a stat on the event loop
        if size > BLOCKWISE_MIN_BLOCKS * BLOCK_BYTES and in_blocks(
            work.source.path, job.contract, BLOCK_BYTES
        ):
            total += BLOCKWISE_MEMORY_BLOCKS * BLOCK_BYTES
            total += size // 2 if validate else 0
            total += PART_MEMORY_FACTOR * max_request_bytes if work.split else 0
        else:
            total += CHECK_MEMORY_FACTOR * size
    return total


def check_group(
    job: PreparedJob,
    works: Sequence[Work],
    keys: UniqueKeys | None,
    *,
    validate: bool = True,
    spool: PartSpool | None = None,
    max_request_bytes: int = 0,
) -> list[Checked]:
    """Hash, read and validate ``works`` (one job's); one Checked per work, in order.

    With ``validate=False`` files are only hashed (and read when they must be split).
    With a ``spool``, a file to be split (checked alone) has its parts cut for
    ``max_request_bytes`` while it is read, into the spool; without, it keeps its frame.
    """
    results: dict[int, Checked] = {}
    pending: list[tuple[int, Work, Fingerprint, str]] = []
    for index, named in enumerate(works):
        stop_if_cancelled()
        work = named
        if work.source.url is not None and work.read is None:
            work = read_object(work, spool)
        try:
            fp = work.read if work.read is not None else fingerprint_file(work.source.path)
        except FileProblem as exc:
            fp = str(exc)
        if isinstance(fp, str):
            results[index] = Checked(work, None, work.file_id, problem=fp)
            continue
        if work.decision == "rehash" and all(r.sha256 == fp.sha256 for r in work.previous):
            results[index] = Checked(work, fp, work.file_id, unchanged=True)
            continue
        try:
            file_id = work.file_id or job.template.render(
                stem=work.source.stem, name=work.source.name, sha256=fp.sha256, part=None
            )
        except BatchloadError as exc:
            results[index] = Checked(work, fp, None, problem=str(exc))
            continue
        pending.append((index, work, fp, file_id))
    cut: _SpooledParts | None = None
    if spool is not None and len(pending) == 1 and _spooled(pending[0][1]):
        _, work, fp, _ = pending[0]
        cut = _SpooledParts(job, work, fp, spool, max_request_bytes)
    if pending and not validate:
        for index, work, fp, file_id in pending:
            results[index] = _unvalidated(job, work, fp, file_id, cut)
    elif pending:
        verdicts = validate_files(
            [work.source.path for _, work, _, _ in pending],
            job.contract,
            sheet=job.job.sheet_choice,
            keys=keys,
            keep_frames=any(
                work.split or work.convert or _compressed(work) for _, work, _, _ in pending
            ),
            keep_key_hashes=True,
            on_block=None if cut is None else cut.feed,
            data=[fp.data for _, _, fp, _ in pending],
        )
        for (index, work, fp, file_id), verdict in zip(pending, verdicts, strict=True):
            if not verdict.valid:
                details = tuple(p.message for p in verdict.problems)
                results[index] = Checked(work, fp, file_id, problem=verdict.reason, details=details)
            elif _changed_since(work, fp):
                results[index] = _changed(work, fp, file_id)
            else:
                file_keys = None
                if keys is not None and verdict.key_hashes is not None:
                    file_keys = FileKeys(
                        dataset=job.name,
                        source_path=work.source.key,
                        scheme=keys.scheme,
                        hashes=verdict.key_hashes,
                    )
                checked = Checked(work, fp, file_id, rows=verdict.rows, keys=file_keys)
                if cut is not None:  # its blocks were cut, or its whole frame is cut now
                    checked = cut.checked(checked, verdict.frame)
                elif work.split or work.convert or _compressed(work):
                    checked = replace(checked, frame=verdict.frame)
                results[index] = checked
    if cut is not None and not results[pending[0][0]].parts:
        cut.discard()  # invalid, changed or failed: its parts are not sent
    for index, checked in results.items():
        if checked.ok and _compressed(checked.work) and not checked.work.split:
            results[index] = _as_text(job, checked, spool, max_request_bytes)
    return [results[i] for i in range(len(works))]


def _compressed(work: Work) -> bool:
    return csv_compression(work.source.path) is not None


def _as_text(
    job: PreparedJob, checked: Checked, spool: PartSpool | None, max_request_bytes: int
) -> Checked:
    """A checked compressed CSV, to be sent as the CSV it holds: its text decompressed
    into the spool (streamed, hashed). When the text would not fit in one request (or
    there is no spool) its rows are sent in parquet parts instead, as a large CSV's."""
    work, fp = checked.work, checked.fingerprint
    assert fp is not None and checked.file_id is not None
    codec = csv_compression(work.source.path)
    if spool is not None and codec is not None:
        try:
            plain = spool.decompressed(work.source.path, codec, fp.data)
        except FileProblem as exc:
            return replace(checked, frame=None, problem=str(exc), problem_state="failed")
        envelope = Envelope(
            file_id=checked.file_id,
            file_format="csv",
            name=job.name,
            convert_options=job.convert_options,
        )
        if envelope.request_bytes(plain.size) <= max_request_bytes:
            return replace(checked, frame=None, plain=plain)
        spool.remove(plain)
    try:
        frame = checked.frame if checked.frame is not None else read_whole(work, job)
    except UnreadableFile as exc:
        return replace(checked, problem=str(exc))
    return replace(checked, work=replace(work, split=True), frame=frame)


def read_object(work: Work, spool: PartSpool | None) -> Work:
    """``work``'s object read into the spool, pinned to the version listed (or, rewritten
    since, to its new one): the work then reads the copy, records the version read and
    carries the fingerprint of the bytes read; or it carries why the object could not
    be read. Blocking, and waiting on the network, not the CPU: the pipeline reads a
    group's objects several at once, before the group is checked."""
    source = work.source
    assert source.url is not None
    if spool is None:
        return replace(work, read="an object is read into the run's spool; there is none")
    try:
        path, meta, fp = fetch(source.url, source.etag, source.version, spool.directory)
    except FileProblem as exc:
        return replace(work, read=str(exc))
    read = replace(
        source,
        path=path,
        size=meta.size,
        mtime_ns=meta.mtime_ns,
        etag=meta.etag,
        version=meta.version,
    )
    return replace(work, source=read, read=fp)


def _spooled(work: Work) -> bool:
    """Whether the file's parts go to the spool (a workbook keeps its frame: it may fit
    whole once it is parquet)."""
    return work.split and not work.convert


class _SpooledParts:
    """One file's parts, cut into the spool from its rows as they are read."""

    def __init__(
        self, job: PreparedJob, work: Work, fp: Fingerprint, spool: PartSpool, limit: int
    ) -> None:
        self.job, self.work, self.spool, self.limit = job, work, spool, limit
        self.budget = raw_budget(limit, part_envelope(job, work, fp.sha256, 9999, job.name))
        self.parts: list[Part] = []
        self.error: FileProblem | None = None
        self._cutter = self._new_cutter()

    def _new_cutter(self) -> PartCutter:
        schema, path = arrow_schema(self.job.contract), self.work.source.path
        return PartCutter(
            budget_bytes=self.budget,
            schema=schema,
            path=path,
            write=self.spool.writer(schema, source=path),
        )

    def feed(self, block: pl.DataFrame) -> None:
        """Cut what ``block`` completes. A failure (a row over the limit, a full disk) is
        kept for :meth:`checked`: the reading goes on, and validation says its piece."""
        if self.error is None:
            self._put(self._cutter.feed(block))

    def _put(self, parts: Iterable[Part]) -> None:
        try:
            self.parts.extend(parts)
        except FileProblem as exc:
            self.error = exc

    def restart(self) -> None:
        """Forget what was cut: the file is read again from its start."""
        self.discard()
        self.error = None
        self._cutter = self._new_cutter()

    @property
    def rows(self) -> int:
        return self._cutter.rows

    def checked(self, checked: Checked, frame: pl.DataFrame | None) -> Checked:
        """``checked`` with its parts (cut from ``frame`` when it was read whole), or with
        the problem that kept them from being cut."""
        if frame is not None:
            self.restart()
            self.feed(frame)
        if self.error is None:
            self._put(self._cutter.finish())
        if self.error is not None:
            return replace(checked, problem=str(self.error), problem_state="failed")
        return replace(checked, parts=tuple(self.parts), parts_limit=self.limit)

    def discard(self) -> None:
        self.spool.discard(self.parts)
        self.parts = []


def _changed(work: Work, fp: Fingerprint, file_id: str) -> Checked:
    return Checked(
        work,
        fp,
        file_id,
        problem="file changed on disk while it was being checked; not sent",
        problem_state="failed",
    )


def _unvalidated(
    job: PreparedJob, work: Work, fp: Fingerprint, file_id: str, cut: _SpooledParts | None
) -> Checked:
    """Validation off: a whole file goes unread; a file to split is read for its parts,
    a workbook for the parquet it is sent as."""
    frame = None
    if cut is not None and _cut_blocks(job, work, cut):
        checked = Checked(work, fp, file_id, rows=cut.rows)
    elif work.split or work.convert:
        try:
            frame = read_whole(work, job)
        except UnreadableFile as exc:
            return Checked(work, fp, file_id, problem=str(exc))
        missing = [name for name in job.contract.names if name not in frame.columns]
        if missing:
            return Checked(
                work, fp, file_id, problem=f"cannot cut parts: column {missing[0]!r} is missing"
            )
        checked = Checked(work, fp, file_id, rows=frame.height, frame=frame)
    else:
        checked = Checked(work, fp, file_id)
    if _changed_since(work, fp):
        return _changed(work, fp, file_id)
    if cut is not None:
        return cut.checked(replace(checked, frame=None), frame)
    return checked


def _cut_blocks(job: PreparedJob, work: Work, cut: _SpooledParts) -> bool:
    """Feed a large CSV's blocks to ``cut``; False when it must be read whole."""
    path = work.source.path
    if not in_blocks(path, job.contract, BLOCK_BYTES):
        return False
    try:
        for block in read_csv_blocks(path, job.contract, block_bytes=BLOCK_BYTES):
            cut.feed(block)
    except CannotReadInBlocks:
        cut.restart()
        return False
    return True


def read_whole(work: Work, job: PreparedJob) -> pl.DataFrame:
    """A file's frame, read whole, unvalidated."""
    return read_frame(work.source.path, job.contract, sheet=job.job.sheet_choice)


def cut_file(job: PreparedJob, checked: Checked, budget_bytes: int) -> Iterator[Part]:
    """A checked file's parts, cut again from the file, in memory one at a time (a large
    CSV read block by block): the parts its check cut, when the budget is the same.

    Raises FileChanged when the file is not what was checked. Blocking: run it in a thread.
    """
    work, fp = checked.work, checked.fingerprint
    assert fp is not None
    path = work.source.path
    changed = FileChanged("file changed on disk after it was checked; not sent", path=path)
    if _changed_since(work, fp):
        raise changed
    cutter = PartCutter(budget_bytes=budget_bytes, schema=arrow_schema(job.contract), path=path)
    if in_blocks(path, job.contract, BLOCK_BYTES):
        try:
            for block in read_csv_blocks(path, job.contract, block_bytes=BLOCK_BYTES):
                yield from cutter.feed(block)
        except CannotReadInBlocks:
            if cutter.rows:
                raise changed from None  # it was read so when it was checked
        else:
            yield from cutter.finish()
            return
    yield from cutter.feed(read_whole(work, job))
    yield from cutter.finish()


def _changed_since(work: Work, fp: Fingerprint) -> bool:
    try:
        st = os.stat(work.source.path)
    except OSError:
        return True
    return (st.st_size, st.st_mtime_ns) != (fp.size, fp.mtime_ns)


def part_envelope(
    job: PreparedJob, work: Work, sha256: str, part: int, name: str | None = None
) -> Envelope:
    """The envelope of part ``part`` of a file: parquet, its own file_id."""
    file_id = job.template.render(
        stem=work.source.stem, name=work.source.name, sha256=sha256, part=part
    )
    return Envelope(file_id=file_id, file_format="parquet", name=name)


def problem_of(job: PreparedJob, checked: Checked) -> Problem:
    """The summary's line for a file that checking refused."""
    return Problem(
        path=checked.work.source.key,
        dataset=job.name,
        file_id=checked.file_id,
        state=checked.problem_state,
        reason=checked.problem or "",
        details=checked.details,
    )


def parquet_envelope(file_id: str, name: str | None) -> Envelope:
    """A parquet envelope: a part's, or a converted workbook's (``name`` only when it
    creates the dataset)."""
    return Envelope(file_id=file_id, file_format="parquet", name=name)
