"""Opening a run's datasets: a gate for each, its locked schema checked, its files listed.

An id given (``--dataset-id``) or recorded as ready is checked against the service. A
dataset the manifest does not know is looked up by name and added to when there; else
its first file creates it (:class:`~batchload.send.sender.DatasetGate`). One whose
create was interrupted keeps the id it was given: creating it again is harmless. Each
dataset that exists is listed once, for :mod:`batchload.pipeline.listing` to decide
from.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from batchload.contract.model import diff_locked
from batchload.errors import AuthError, ServiceError, UsageError
from batchload.jobs import PreparedJob
from batchload.pipeline.listing import Listed
from batchload.progress import DatasetReady, Sink
from batchload.send.datasets import list_files
from batchload.send.sender import DatasetGate, Sender
from batchload.state.ledger import Ledger
from batchload.state.records import Changes, DatasetRecord

Write = Callable[..., Awaitable[None]]
"""The run's manifest writer: ``write(changes, wait=True)`` returns once committed."""


async def open_datasets(
    prepared: Sequence[PreparedJob],
    *,
    sender: Sender,
    endpoint: str,
    manifest: Ledger,
    shared: Callable[[str], AbstractAsyncContextManager[DatasetRecord | None]],
    write: Write,
    sink: Sink,
) -> tuple[dict[str, DatasetGate], dict[str, Listed]]:
    """Every dataset's gate, and the files of those that exist (listed once each).

    ``shared(name)`` holds the ledger's lock on creating dataset ``name`` (processes
    sharing the manifest create it once)."""
    gates: dict[str, DatasetGate] = {}
    listed: dict[str, Listed] = {}
    for job in prepared:
        if job.name in gates:
            continue
        record = job.record
        ready = record.dataset_id if record and record.state == "ready" else None
        planned = record.dataset_id if record and record.state == "creating" else None
        gate = DatasetGate(
            job.name,
            job.job.dataset_id or ready,
            record=functools.partial(_record, job, endpoint, write),
            schema=job.contract.locked_schema(),
            planned_id=planned,
            shared=functools.partial(shared, job.name),
        )
        gates[job.name] = gate
        if gate.dataset_id is None and planned is None:
            await gate.adopt_existing(sender)  # an earlier run (or another tool) made it
        if gate.dataset_id is not None:
            await _check_locked(sender, job, gate.dataset_id, endpoint)
            files = await list_files(sender, gate.dataset_id)
            listed[job.name] = Listed(
                name=job.name,
                dataset_id=gate.dataset_id,
                files={f.file_id: f for f in files},
            )
            manifest.save_dataset(dataset_record(job, gate.dataset_id, endpoint, ready=True))
            sink(DatasetReady(job.name, gate.dataset_id, created=False, files=len(files)))
    return gates, listed


def dataset_record(
    job: PreparedJob, dataset_id: str | None, endpoint: str, *, ready: bool
) -> DatasetRecord:
    """The manifest's row of ``job``'s dataset."""
    return DatasetRecord(
        name=job.name,
        dataset_id=dataset_id,
        state="ready" if ready else "creating",
        endpoint=endpoint,
        contract=str(job.job.schema),
        file_id_template=job.template.text,
    )


async def _record(
    job: PreparedJob, endpoint: str, write: Write, dataset_id: str | None, ready: bool
) -> None:
    """A gate's ``record``: the dataset's state, committed before the gate goes on."""
    changes = Changes(datasets=(dataset_record(job, dataset_id, endpoint, ready=ready),))
    await write(changes, wait=True)


async def _check_locked(sender: Sender, job: PreparedJob, dataset_id: str, endpoint: str) -> None:
    """Refuse a dataset that is not there, or whose locked schema the contract differs from."""
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
            f"dataset {dataset_id} ({job.name}) does not exist at {endpoint}",
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
