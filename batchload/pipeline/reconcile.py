"""Reconcile: compare what the manifest says was sent with what the service lists.

For each dataset of the manifest: files *missing* on the service (done here, absent
there: data that did not land) and *unexpected* ones (there, unknown here: sent by
something else, or by a run with another manifest). Run after every upload and as
``batchload reconcile --manifest PATH``. Listings are retried as uploads are (a flaky
service must not report files as missing); only a listing that still fails after
every retry is reported, as an error, not as missing files.
"""

from __future__ import annotations

from batchload.errors import AuthError, ServiceError
from batchload.send.datasets import list_files
from batchload.send.sender import Sender
from batchload.state.ledger import Ledger
from batchload.summary import Reconciliation


async def reconcile(sender: Sender, manifest: Ledger) -> tuple[Reconciliation, ...]:
    """Compare each dataset's done files in the manifest with the files the service lists."""
    results = []
    for dataset in manifest.datasets():
        if not dataset.dataset_id:
            continue
        rows = [r for rs in manifest.resume_index(dataset.name).values() for r in rs]
        done = {r.file_id for r in rows if r.state == "done" and r.file_id}
        known = {r.file_id for r in rows if r.file_id}
        try:
            listed = await list_files(sender, dataset.dataset_id)
        except AuthError:
            raise
        except ServiceError as exc:
            results.append(
                Reconciliation(
                    dataset=dataset.name,
                    dataset_id=dataset.dataset_id,
                    expected=len(done),
                    on_server=0,
                    error=str(exc),
                )
            )
            continue
        on_server = {f.file_id for f in listed}
        results.append(
            Reconciliation(
                dataset=dataset.name,
                dataset_id=dataset.dataset_id,
                expected=len(done),
                on_server=len(on_server),
                missing=tuple(sorted(done - on_server)),
                unexpected=tuple(sorted(on_server - known)),
            )
        )
    return tuple(results)
