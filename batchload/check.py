"""Check: read, hash and validate files in a worker thread; the stage before upload.

A group of small files costs one pandera call (see :mod:`batchload.validate`); a
large CSV is validated block by block, in bounded memory; a file that will be sent
in parts is checked alone and keeps its validated frame (its blocks, not copied),
from which the parts are cut; a workbook keeps its frame too, to be sent as
parquet. :func:`check_bytes` says how much memory a check takes, for the
pipeline's byte budget. Each file's sha256 is taken here, and its ``stat``
checked again after validation, so what was validated is what the hash describes;
the upload re-checks the hash while it streams. A file that an earlier run sent and
that was only touched (same size and sha256) is found ``unchanged`` and not
validated again. A valid file's unique-key hashes come with it (``keys``), for the
manifest to keep beside its done rows, so later runs know them without reading it.
With validation off (``validate=False``), a whole file is hashed
and sent unread, and a file to be split is read (not validated) only to cut its
parts. Everything here blocks: the pipeline runs it with
``anyio.to_thread.run_sync`` under a CapacityLimiter of the CPU count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from batchload.encode import (
    MIB,
    Envelope,
    Fingerprint,
    fingerprint_file,
    parquet_bytes,
    raw_budget,
    split_frame,
)
from batchload.errors import BatchloadError, FileProblem, UnreadableFile
from batchload.manifest import FileKeys
from batchload.prepare import PreparedJob, Work
from batchload.summary import PlannedRequest, Problem

if TYPE_CHECKING:
    import polars as pl

    from batchload.validate import UniqueKeys

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
size (its key hashes, 8 bytes a row, about a fifth of a CSV's size, sorted once and
kept until the file is done, and what the allocators keep: +140-175 MB measured for a
100 MB CSV with 8 MiB blocks) and, when it is sent in parts, its frame (about its
size). Smaller blocks would take less, but a smaller estimate lets two large files be
checked at once, which costs more than it saves."""


@dataclass(frozen=True, slots=True)
class Checked:
    """What checking one file found."""

    work: Work
    fingerprint: Fingerprint | None
    file_id: str | None
    rows: int | None = None
    frame: pl.DataFrame | None = None
    """The validated frame, kept only for a file sent in parts or as parquet."""
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


def check_bytes(job: PreparedJob, works: Sequence[Work], *, validate: bool) -> int:
    """Memory that checking ``works`` takes at its peak (0: the files are only hashed)."""
    from batchload.validate import BLOCK_BYTES, in_blocks

    total = 0
    for work in works:
        size = work.source.size
        if not (validate or work.split):
            continue
        if in_blocks(work.source.path, job.contract, BLOCK_BYTES):
            total += BLOCKWISE_MEMORY_BLOCKS * BLOCK_BYTES
            total += (size // 2 if validate else 0) + (size if work.split else 0)
        else:
            total += CHECK_MEMORY_FACTOR * size
    return total


def check_group(
    job: PreparedJob,
    works: Sequence[Work],
    keys: UniqueKeys | None,
    *,
    validate: bool = True,
) -> list[Checked]:
    """Hash, read and validate ``works`` (one job's); one Checked per work, in order.

    With ``validate=False`` files are only hashed (and read when they must be split).
    """
    from batchload.validate import validate_files

    results: dict[int, Checked] = {}
    pending: list[tuple[int, Work, Fingerprint, str]] = []
    for index, work in enumerate(works):
        try:
            fp = fingerprint_file(work.source.path)
        except FileProblem as exc:
            results[index] = Checked(work, None, work.file_id, problem=str(exc))
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
    if pending and not validate:
        for index, work, fp, file_id in pending:
            results[index] = _unvalidated(job, work, fp, file_id)
    elif pending:
        verdicts = validate_files(
            [work.source.path for _, work, _, _ in pending],
            job.contract,
            sheet=job.job.sheet,
            keys=keys,
            keep_frames=any(work.split or work.convert for _, work, _, _ in pending),
            keep_key_hashes=True,
        )
        for (index, work, fp, file_id), verdict in zip(pending, verdicts, strict=True):
            if not verdict.valid:
                details = tuple(p.message for p in verdict.problems)
                results[index] = Checked(work, fp, file_id, problem=verdict.reason, details=details)
            elif _changed_since(work, fp):
                results[index] = Checked(
                    work,
                    fp,
                    file_id,
                    problem="file changed on disk while it was being checked; not sent",
                    problem_state="failed",
                )
            else:
                frame = verdict.frame if work.split or work.convert else None
                file_keys = None
                if keys is not None and verdict.key_hashes is not None:
                    file_keys = FileKeys(
                        dataset=job.name,
                        source_path=str(work.source.path),
                        scheme=keys.scheme,
                        hashes=verdict.key_hashes,
                    )
                results[index] = Checked(
                    work, fp, file_id, rows=verdict.rows, frame=frame, keys=file_keys
                )
    return [results[i] for i in range(len(works))]


def _unvalidated(job: PreparedJob, work: Work, fp: Fingerprint, file_id: str) -> Checked:
    """Validation off: a whole file goes unread; a file to split is read for its parts,
    a workbook for the parquet it is sent as."""
    frame = None
    if work.split or work.convert:
        try:
            frame = _read_for_parts(work, job)
        except UnreadableFile as exc:
            return Checked(work, fp, file_id, problem=str(exc))
        missing = [name for name in job.contract.names if name not in frame.columns]
        if missing:
            return Checked(
                work, fp, file_id, problem=f"cannot cut parts: column {missing[0]!r} is missing"
            )
    if _changed_since(work, fp):
        return Checked(
            work,
            fp,
            file_id,
            problem="file changed on disk while it was being checked; not sent",
            problem_state="failed",
        )
    return Checked(work, fp, file_id, rows=None if frame is None else frame.height, frame=frame)


def _read_for_parts(work: Work, job: PreparedJob) -> pl.DataFrame:
    """An unvalidated file's frame: a large CSV gathered from its blocks (no whole Arrow
    table beside the frame), anything else read whole."""
    import polars as pl

    from batchload.read import CannotReadInBlocks, read_csv_blocks, read_frame
    from batchload.validate import BLOCK_BYTES, in_blocks

    path = work.source.path
    if in_blocks(path, job.contract, BLOCK_BYTES):
        try:
            blocks = list(read_csv_blocks(path, job.contract, block_bytes=BLOCK_BYTES))
        except CannotReadInBlocks:
            pass
        else:
            return pl.concat(blocks, rechunk=False)
    return read_frame(path, job.contract, sheet=job.job.sheet)


def _changed_since(work: Work, fp: Fingerprint) -> bool:
    try:
        st = os.stat(work.source.path)
    except OSError:
        return True
    return (st.st_size, st.st_mtime_ns) != (fp.size, fp.mtime_ns)


def plan_requests(
    prepared: Sequence[PreparedJob], max_request_bytes: int, *, validate: bool = True
) -> tuple[list[PlannedRequest], list[Problem]]:
    """The dry run: check every file and list the requests a run would send."""
    from batchload.contract import arrow_schema
    from batchload.validate import UniqueKeys

    plan: list[PlannedRequest] = []
    problems: list[Problem] = []
    keys: dict[str, UniqueKeys] = {}
    for job in prepared:
        if job.name not in keys:
            keys[job.name] = UniqueKeys.for_contract(job.contract, known=job.known_keys)
        job_keys = keys[job.name]
        creates = job.job.dataset_id is None and (job.record is None or not job.record.dataset_id)
        for group in groups(job.work):
            for checked in check_group(job, group, job_keys, validate=validate):
                work, path = checked.work, str(checked.work.source.path)
                if checked.problem is not None:
                    problems.append(problem_of(job, checked))
                    continue
                if checked.unchanged or checked.file_id is None or checked.fingerprint is None:
                    continue
                name = job.name if creates and not plan else None
                if checked.frame is not None and not work.split:  # a workbook, as parquet
                    data = parquet_bytes(checked.frame, arrow_schema(job.contract))
                    envelope = Envelope(file_id=checked.file_id, file_format="parquet", name=name)
                    if envelope.request_bytes(len(data)) <= max_request_bytes:
                        plan.append(_planned(path, job, envelope, len(data), checked.rows))
                        continue
                if checked.frame is None:
                    envelope = Envelope(
                        file_id=checked.file_id,
                        file_format=work.source.file_format,
                        name=name,
                        convert_options=job.convert_options
                        if work.source.file_format == "csv"
                        else None,
                    )
                    size = checked.fingerprint.size
                    plan.append(_planned(path, job, envelope, size, checked.rows))
                    continue
                proto = part_envelope(job, work, checked.fingerprint.sha256, 9999, name)
                for part in split_frame(
                    checked.frame,
                    budget_bytes=raw_budget(max_request_bytes, proto),
                    schema=arrow_schema(job.contract),
                    path=path,
                ):
                    envelope = part_envelope(job, work, checked.fingerprint.sha256, part.index)
                    plan.append(
                        _planned(path, job, envelope, part.source.size, part.rows, part=part.index)
                    )
    return plan, problems


def _planned(
    path: str,
    job: PreparedJob,
    envelope: Envelope,
    raw_bytes: int,
    rows: int | None,
    *,
    part: int = 0,
) -> PlannedRequest:
    """The dry run's line for one request: ``envelope`` around ``raw_bytes`` of file."""
    return PlannedRequest(
        path=path,
        dataset=job.name,
        file_id=envelope.file_id,
        file_format=envelope.file_format,
        rows=rows,
        request_bytes=envelope.request_bytes(raw_bytes),
        part=part,
    )


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
        path=str(checked.work.source.path),
        dataset=job.name,
        file_id=checked.file_id,
        state=checked.problem_state,
        reason=checked.problem or "",
        details=checked.details,
    )
