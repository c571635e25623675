"""The dry run's plan: every file checked as a run checks it, and the requests a run
would send listed (a file's parts cut as a run cuts them, then removed), nothing sent."""

from __future__ import annotations

from collections.abc import Sequence

from batchload.check.checker import check_group, groups, part_envelope, problem_of
from batchload.check.crossfile import Earlier, UniqueKeys
from batchload.check.parts import parquet_bytes, split_frame
from batchload.check.spool import PartSpool
from batchload.contract.model import arrow_schema
from batchload.jobs import PreparedJob
from batchload.protocol import Envelope, raw_budget
from batchload.state.ledger import Ledger
from batchload.summary import PlannedRequest, Problem

__all__ = ["plan_requests"]


def plan_requests(
    prepared: Sequence[PreparedJob],
    max_request_bytes: int,
    *,
    validate: bool = True,
    manifest: Ledger | None = None,
) -> tuple[list[PlannedRequest], list[Problem]]:
    """The dry run: check every file and list the requests a run would send (a file's
    parts are cut as a run cuts them, and their files removed once listed). The
    ``manifest`` keeps the key hashes of the files earlier runs sent."""
    with PartSpool.temporary() as spool:
        return _plan(prepared, max_request_bytes, spool, validate=validate, manifest=manifest)


def _plan(
    prepared: Sequence[PreparedJob],
    max_request_bytes: int,
    spool: PartSpool,
    *,
    validate: bool,
    manifest: Ledger | None,
) -> tuple[list[PlannedRequest], list[Problem]]:
    plan: list[PlannedRequest] = []
    problems: list[Problem] = []
    keys: dict[str, UniqueKeys] = {}
    for job in prepared:
        if job.name not in keys:
            earlier = Earlier(manifest, job.name, job.earlier_keys) if manifest else None
            keys[job.name] = UniqueKeys.for_contract(job.contract, earlier=earlier)
        job_keys = keys[job.name]
        creates = job.job.dataset_id is None and (job.record is None or not job.record.dataset_id)
        for group in groups(job.work):
            checks = check_group(
                job,
                group,
                job_keys,
                validate=validate,
                spool=spool,
                max_request_bytes=max_request_bytes,
            )
            for checked in checks:
                work, path = checked.work, checked.work.source.key
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
                if checked.parts is not None:
                    for part in checked.parts:
                        envelope = part_envelope(job, work, checked.fingerprint.sha256, part.index)
                        size = part.source.size
                        plan.append(_planned(path, job, envelope, size, part.rows, part=part.index))
                    spool.discard(checked.parts)
                    continue
                if checked.plain is not None:  # a compressed CSV, sent as its text
                    envelope = Envelope(
                        file_id=checked.file_id,
                        file_format="csv",
                        name=name,
                        convert_options=job.convert_options,
                    )
                    plan.append(_planned(path, job, envelope, checked.plain.size, checked.rows))
                    spool.remove(checked.plain)
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
                proto = part_envelope(job, work, checked.fingerprint.sha256, 9999, job.name)
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
