"""Prepare: turn upload jobs into the list of work, before anything is read or sent.

For each job: load the contract, discover the file set, give every file its file_id,
and decide from the manifest what an earlier run already did. Everything that
makes a run impossible is found here and raised as a
:class:`~batchload.errors.UsageError` before a byte is sent: two files mapping to
one file_id (in this run, or against a file the manifest already sent under that
id), a manifest made for another endpoint or with another file_id template, two
jobs that disagree about one dataset. Only ``stat`` and the manifest are read:
that includes, when the contract has a ``unique`` key, which of the dataset's done
files this run does not validate again have key hashes stored (one query; the
hashes are read by the check), so the cross-file check covers what earlier runs
sent.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from batchload.check.crossfile import UniqueKeys
from batchload.contract.model import load_contract
from batchload.errors import UsageError
from batchload.jobs import SENT_AS_PARQUET, PreparedJob, UploadJob, Work
from batchload.protocol import Envelope
from batchload.read.discover import FileSet, Filters, SourceFile, discover
from batchload.read.frames import has_null_columns
from batchload.read.objects import is_url
from batchload.state.fileids import FileIdTemplate, check_unique
from batchload.state.ledger import Ledger
from batchload.state.records import DatasetRecord, FileRecord, Resume, ResumeRow, resume_decision

if TYPE_CHECKING:
    from batchload.contract.model import Contract

_SHA_PLACEHOLDER = "0" * 64


def prepare(
    jobs: Sequence[UploadJob],
    *,
    manifest: Ledger | None,
    endpoint: str | None,
    max_request_bytes: int,
) -> list[PreparedJob]:
    """Prepare every job; raises UsageError (or ContractError) for an impossible run."""
    if not jobs:
        raise UsageError("nothing to upload: no jobs")
    with _no_collection_pauses():
        return _prepare(jobs, manifest, endpoint, max_request_bytes)


@contextlib.contextmanager
def _no_collection_pauses() -> Iterator[None]:
    """Python's cyclic GC off while the bookkeeping of many files is built.

    Its objects all stay alive (rows, paths, decisions), yet allocating them set off
    full collections that rescanned every object of the process (~137,000 once
    pandera and polars are imported): a third of a 10,000-file resume. A cycle made
    meanwhile, if any, is collected once the GC is back on, when this ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _prepare(
    jobs: Sequence[UploadJob],
    manifest: Ledger | None,
    endpoint: str | None,
    max_request_bytes: int,
) -> list[PreparedJob]:
    prepared: list[PreparedJob] = []
    by_name: dict[str, PreparedJob] = {}
    indexes: dict[str, Mapping[str, list[ResumeRow]]] = {}
    for job_index, job in enumerate(jobs):
        contract = load_contract(job.schema)
        name = job.dataset or contract.dataset_name
        template = FileIdTemplate(job.file_id)
        file_set = discover(
            job.files,
            base=job.base,
            listed=job.listed,
            filters=Filters(job.include, job.exclude),
            skip=_manifest_folder(manifest),
        )
        record = manifest.dataset(name) if manifest else None
        _check_record(record, job, name, endpoint, template)
        index = manifest.resume_index(name) if manifest else {}
        indexes[name] = index
        recorded = {r.file_id: r.source_path for rs in index.values() for r in rs if r.file_id}
        owners = dict(recorded)
        if (other := by_name.get(name)) is not None:
            _check_same_dataset(other, job, contract, template, name)
            owners.update(other.owners)
        item = _plan_job(
            job_index,
            job,
            name=name,
            contract=contract,
            template=template,
            file_set=file_set,
            record=record,
            index=index,
            owners=owners,
            max_request_bytes=max_request_bytes,
        )
        item = replace(item, recorded=recorded)
        sent_before = [w.source.key for w in item.work if w.source.key in index]
        if manifest is not None and sent_before:  # full rows only for files to work on
            full = manifest.rows_for(name, sent_before)
            work = tuple(replace(w, previous=tuple(full.get(w.source.key, ()))) for w in item.work)
            item = replace(item, work=work)
        by_name.setdefault(name, item)
        prepared.append(item)
    if manifest is not None:
        prepared = _with_earlier_keys(prepared, manifest, indexes)
    return prepared


def _with_earlier_keys(
    prepared: list[PreparedJob],
    manifest: Ledger,
    indexes: Mapping[str, Mapping[str, list[ResumeRow]]],
) -> list[PreparedJob]:
    """Give each job its dataset's done files that it does not re-send and whose key
    hashes are stored (how many each: the hashes are not read here).

    Nothing is read for a contract without a unique key. A file with a row not done
    (being re-sent, failed, invalid now), one this run sends again (changed) or
    forgets (gone, its id taken over) is left out: its old keys must not count
    against it or its successor.
    """
    known: dict[str, tuple[tuple[str, int], ...]] = {}
    for name in dict.fromkeys(job.name for job in prepared):
        jobs = [job for job in prepared if job.name == name]
        contract = jobs[0].contract
        if not contract.unique:
            continue
        scheme = UniqueKeys.for_contract(contract).scheme
        stored = manifest.key_counts(name, scheme)
        if not stored:
            continue
        index = indexes[name]
        stored = {
            path: count
            for path, count in stored.items()
            if (rows := index.get(path)) and all(r.state == "done" for r in rows)
        }
        for job in jobs:
            for work in job.work:
                if work.decision == "send":
                    stored.pop(work.source.key, None)
            for _, path, _ in job.forget:
                stored.pop(path, None)
        known[name] = tuple(stored.items())
    return [
        replace(job, earlier_keys=known[job.name]) if job.name in known else job for job in prepared
    ]


def _plan_job(
    job_index: int,
    job: UploadJob,
    *,
    name: str,
    contract: Contract,
    template: FileIdTemplate,
    file_set: FileSet,
    record: DatasetRecord | None,
    index: Mapping[str, list[ResumeRow]],
    owners: dict[str, str],
    max_request_bytes: int,
) -> PreparedJob:
    work: list[Work] = []
    skipped: list[SourceFile] = []
    forget: list[tuple[str, str, int]] = []
    taken_over: dict[str, str] = {}
    convert = contract.convert_options()
    ids = {s.key: file_id_for(template, s, None) for s in file_set.files}
    check_unique((i, str(p)) for p, i in ids.items() if i is not None)
    for source in file_set.files:
        path = source.key
        file_id = ids[source.key]
        if file_id is not None:
            owner = owners.get(file_id)
            if owner is not None and owner != path:
                if is_url(owner) or os.path.exists(owner):  # an object's is not checked
                    raise UsageError(
                        f"file_id {file_id!r} of {path} was sent from {owner} in an earlier "
                        "run; sending it would overwrite that file",
                        hint="choose a --file-id template that tells them apart, or a new "
                        "--manifest for a new dataset",
                    )
                forget += [(name, owner, r.part) for r in index.get(owner, [])]
                taken_over.update((r.file_id, owner) for r in index.get(owner, []) if r.file_id)
            owners[file_id] = path
        decision = resume_decision(
            index.get(path, ()), size=source.size, mtime_ns=source.mtime_ns, etag=source.etag
        )
        if decision == "done":
            skipped.append(source)
            continue
        work.append(
            make_work(
                job_index,
                source,
                file_id,
                decision,
                name=name,
                template=template,
                convert=convert,
                max_request_bytes=max_request_bytes,
            )
        )
    return PreparedJob(
        index=job_index,
        job=job,
        name=name,
        contract=contract,
        template=template,
        file_set=file_set,
        work=tuple(work),
        skipped=tuple(skipped),
        record=record,
        owners=owners,
        forget=tuple(forget),
        taken_over=taken_over,
    )


def make_work(
    job_index: int,
    source: SourceFile,
    file_id: str | None,
    decision: Resume,
    *,
    name: str,
    template: FileIdTemplate,
    convert: Mapping[str, object],
    max_request_bytes: int,
    previous: tuple[FileRecord, ...] = (),
) -> Work:
    """One file's work: whether it is split is decided from its size alone."""
    envelope = Envelope(
        file_id=file_id or file_id_for(template, source, _SHA_PLACEHOLDER) or _SHA_PLACEHOLDER,
        file_format=source.file_format,
        name=name,
        convert_options=convert if source.file_format == "csv" else None,
    )
    split = envelope.request_bytes(source.size) > max_request_bytes
    as_parquet = source.file_format in SENT_AS_PARQUET or (
        source.file_format == "parquet"
        and source.url is None  # an object's columns are not known before it is read
        and has_null_columns(source.path)
    )
    return Work(job_index, source, file_id, decision, previous, split, as_parquet)


def _manifest_folder(manifest: Ledger | None) -> tuple[Path, ...]:
    """The folder of a manifest file (a folder walk leaves it out); none for a URL."""
    if manifest is None or is_url(manifest.location):
        return ()
    return (Path(manifest.location).parent,)


def file_id_for(template: FileIdTemplate, source: SourceFile, sha256: str | None) -> str | None:
    """The file's id; None while it depends on the content, or when the file's name
    cannot make a valid one: checking then refuses that file, and the run goes on."""
    if template.needs_hash and sha256 is None:
        return None
    try:
        return template.render(stem=source.stem, name=source.name, sha256=sha256, part=None)
    except UsageError:
        return None


def _check_record(
    record: DatasetRecord | None,
    job: UploadJob,
    name: str,
    endpoint: str | None,
    template: FileIdTemplate,
) -> None:
    if record is None:
        return
    if endpoint is not None and record.endpoint != endpoint:
        raise UsageError(
            f"the manifest's dataset {name!r} lives at {record.endpoint}, not {endpoint}",
            hint="use another --manifest for another endpoint",
        )
    if job.dataset_id and record.dataset_id and job.dataset_id != record.dataset_id:
        raise UsageError(
            f"the manifest records dataset {name!r} as id {record.dataset_id}, "
            f"not {job.dataset_id}",
            hint="use another --manifest for another dataset",
        )
    if record.file_id_template and record.file_id_template != template.text:
        raise UsageError(
            f"the manifest's files of {name!r} were named with --file-id "
            f"{record.file_id_template!r}, not {template.text!r}; mixing them would "
            "duplicate data",
            hint=f"pass --file-id {record.file_id_template!r} or use a new --manifest",
        )


def _check_same_dataset(
    first: PreparedJob, job: UploadJob, contract: Contract, template: FileIdTemplate, name: str
) -> None:
    if first.contract.fingerprint != contract.fingerprint:
        raise UsageError(f"two jobs send dataset {name!r} with different contracts")
    if (first.job.dataset_id or None) != (job.dataset_id or None):
        raise UsageError(f"two jobs send dataset {name!r} to different dataset ids")
    if first.template != template:
        raise UsageError(f"two jobs send dataset {name!r} with different --file-id templates")


def ignored_files(prepared: Sequence[PreparedJob]) -> tuple[tuple[str, str], ...]:
    """Every job's glob matches that are not read, with the reason: listed, not dropped."""
    return tuple((r.path, r.reason) for job in prepared for r in job.file_set.ignored)
