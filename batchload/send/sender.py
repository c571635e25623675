"""Send: one request at a time under the retry policy and the pacer; datasets created once.

- :meth:`Sender.call` runs one API call until it succeeds, fails permanently, or its
  attempts run out. The call builds a fresh body each attempt (a body streams once).
  An endpoint that has never answered in this run is not retried (see
  :class:`~batchload.send.retry.RetryPolicy`): a wrong ``--endpoint`` fails at once.
  Each answer's latency feeds the pacer's adaptive limit; a 429 pauses every
  request and lowers it, as does a 5xx.
- :class:`DatasetGate` holds a dataset's id. When the dataset does not exist yet, the
  first file to arrive creates it while every other file waits: with
  ``PUT /ingestion/datasets/{id}`` under an id chosen and recorded (by the ``record``
  callback, which commits it to the manifest) before the request, so that creating
  is idempotent by construction. Only where the service refuses that call does the
  first file create it (``POST /ingestion/datasets``, not idempotent): after an
  ambiguous failure the gate looks the name up before trying again. Processes sharing
  a ledger create it one at a time (``shared``, a lock in the ledger that yields the
  dataset's record as another process left it: made, or begun under an id that a PUT
  can finish).

Nothing here knows about the manifest or progress rendering: attempts and waits are
reported through callbacks.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import anyio

from batchload.errors import ServiceError, TransientError, UsageError
from batchload.progress import DatasetReady, Event, Paced, Retrying, Sink, Throttled
from batchload.send.retry import Pacer, RetryPolicy, Ticket
from batchload.send.transport import IngestionClient
from batchload.state.records import DatasetRecord

T = TypeVar("T")
#: Answers that say the service is overloaded: fewer requests in flight.
OVERLOAD_STATUSES = frozenset({408, 500, 502, 503, 504})
OnAttempt = Callable[[int], Awaitable[None]]


async def _no_attempt_report(attempt: int) -> None:
    """Default ``on_attempt``: nothing to record."""


class Sender:
    """Runs API calls with retries, backoff with full jitter, and the shared pacer."""

    def __init__(
        self,
        client: IngestionClient,
        *,
        policy: RetryPolicy,
        pacer: Pacer,
        sink: Sink,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self.pacer = pacer
        self._sink = sink
        self._rng = rng or random.Random()

    def emit(self, event: Event) -> None:
        """Pass a progress event on to the sink."""
        self._sink(event)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        label: tuple[str, str] = ("", ""),
        on_attempt: OnAttempt = _no_attempt_report,
    ) -> T:
        """Run ``fn`` until it succeeds; re-raise a permanent error or the last transient one."""
        attempt = 0
        while True:
            attempt += 1
            ticket = None
            try:
                async with self.pacer.slot() as ticket:
                    await on_attempt(attempt)  # once it has a place: about to be sent
                    result = await fn()
            except TransientError as exc:
                await self.wait_before_retry(exc, attempt, label, ticket)
                continue
            self.succeeded(ticket)
            return result

    def succeeded(self, ticket: Ticket) -> None:
        """A request succeeded: let the pacer adapt, and say so when it did."""
        if self.pacer.on_success(ticket):
            self.emit(Paced(self.pacer.concurrency))

    async def wait_before_retry(
        self,
        exc: TransientError,
        attempt: int,
        label: tuple[str, str],
        ticket: Ticket | None = None,
    ) -> None:
        """Re-raise ``exc`` if it is final; else report it and wait the policy's delay.

        ``ticket``: the failed request's place, so that the pacer counts only an answer
        to a request sent under its current limit."""
        if exc.status == 429:
            self.pacer.on_throttle(exc.retry_after_s, ticket)
            self.emit(Throttled(self.pacer.concurrency, exc.retry_after_s or 0.0))
        elif exc.status in OVERLOAD_STATUSES and self.pacer.on_overload(ticket):
            self.emit(Paced(self.pacer.concurrency))
        retryable = self.policy.retryable(exc, answered=self.client.answered)
        if not retryable or attempt >= self.policy.attempts:
            raise exc
        delay_s = self.policy.delay_s(attempt, retry_after_s=exc.retry_after_s, rng=self._rng)
        self.emit(Retrying(label[0], label[1], attempt, exc.status, delay_s, exc.message))
        await anyio.sleep(delay_s)


RecordId = Callable[[str | None, bool], Awaitable[None]]
"""Commit a dataset's state: ``(id, False)`` = creation starts (with the id it will have,
or None when the service chooses it); ``(id, True)`` = the dataset exists."""

#: A service that answers these to ``PUT /ingestion/datasets/{id}`` cannot create a dataset
#: by id: fall back to the guide's create with the first file.
NO_PUT_CREATE = frozenset({404, 405, 501})


def new_dataset_id() -> str:
    """An id the client chooses for a dataset it creates (random: never another's)."""
    return uuid.uuid4().hex


SharedCreation = Callable[[], AbstractAsyncContextManager[DatasetRecord | None]]
"""Held while this process creates a dataset; yields the ledger's record of it as
another process may have left it (created, or begun to)."""


class DatasetGate:
    """A dataset's id, and the one creation of it when it does not exist yet.

    Created with ``PUT /ingestion/datasets/{id}`` and the contract's schema, under an id
    chosen here and committed to the manifest before the request: a repeat (a retry, a
    resumed run, another process finishing what a dead one began) finds the dataset
    there and is harmless, however slow the first create was. Only a service that
    refuses the PUT (404, 405, 501) gets the guide's create with the first file, whose
    repeat is not harmless: after an ambiguous failure the name is looked up before
    trying again.
    """

    def __init__(
        self,
        name: str,
        dataset_id: str | None,
        *,
        record: RecordId,
        schema: list[dict[str, str]] | None,
        planned_id: str | None = None,
        shared: SharedCreation | None = None,
    ) -> None:
        self.name = name
        self.dataset_id = dataset_id
        self.planned_id = planned_id
        """The id a create (interrupted, or not started) will give the dataset."""
        self.created = False
        self._record = record
        self._schema = schema
        self._shared = shared
        self._lock = anyio.Lock()

    async def send(
        self,
        sender: Sender,
        make_body: Callable[[str | None], Any],
        *,
        label: tuple[str, str],
        on_attempt: OnAttempt = _no_attempt_report,
    ) -> dict[str, Any]:
        """Send one file: create the dataset first if need be, then add the file.

        ``make_body(name)`` builds a fresh body; ``name`` is the dataset's name when
        the body creates the dataset (the guide's create), else None.
        """
        if self.dataset_id is None:
            async with self._lock:  # the others wait here while the first one creates
                if self.dataset_id is None:
                    receipt = await self._create(sender, make_body, label, on_attempt)
                    if receipt is not None:  # this file made the dataset
                        return receipt
        dataset_id = self.dataset_id
        assert dataset_id is not None
        return await sender.call(
            lambda: sender.client.put_file(dataset_id, make_body(None)),
            label=label,
            on_attempt=on_attempt,
        )

    async def _create(
        self,
        sender: Sender,
        make_body: Callable[[str | None], Any],
        label: tuple[str, str],
        on_attempt: OnAttempt,
    ) -> dict[str, Any] | None:
        """Make the dataset (or take it from the process that made it); the file's receipt
        when the file itself created it."""
        if self._shared is None:
            return await self._put_or_post(sender, make_body, label, on_attempt)
        async with self._shared() as record:  # one process at a time, across machines
            if record is not None and record.dataset_id and record.state == "ready":
                await self._adopt(record.dataset_id)  # another process made it
                return None
            if record is not None and record.state == "creating":
                if record.dataset_id:  # begun under this id: the PUT finishes it
                    self.planned_id = record.dataset_id
                elif (found := await self.lookup(sender)) is not None:  # a POST, maybe landed
                    await self._adopt(found)
                    return None
            return await self._put_or_post(sender, make_body, label, on_attempt)

    async def _put_or_post(
        self,
        sender: Sender,
        make_body: Callable[[str | None], Any],
        label: tuple[str, str],
        on_attempt: OnAttempt,
    ) -> dict[str, Any] | None:
        if await self._put_create(sender, label) is None:
            return await self._create_with_file(sender, make_body, label, on_attempt)
        return None

    async def _put_create(self, sender: Sender, label: tuple[str, str]) -> str | None:
        """Create the dataset under the planned id; None when the service cannot (or there
        is no schema to create it with: the first file's then makes it)."""
        if self._schema is None:
            await self._record(None, False)
            return None
        schema = self._schema
        dataset_id = self.planned_id or new_dataset_id()
        self.planned_id = dataset_id
        await self._record(dataset_id, False)  # the id is durable before the request
        try:
            answer = await sender.call(
                lambda: sender.client.create_dataset_with_schema(
                    dataset_id, name=self.name, schema=schema
                ),
                label=label,
            )
        except ServiceError as exc:
            if exc.status in NO_PUT_CREATE and not isinstance(exc, TransientError):
                await self._record(None, False)
                return None
            raise
        named = answer.get("name")
        if isinstance(named, str) and named != self.name:
            raise ServiceError(
                f"dataset id {dataset_id} is taken by dataset {named!r}, not {self.name!r}"
            )
        await self._adopt(dataset_id, sender=sender)
        return dataset_id

    async def _create_with_file(
        self,
        sender: Sender,
        make_body: Callable[[str | None], Any],
        label: tuple[str, str],
        on_attempt: OnAttempt,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            attempt += 1
            await on_attempt(attempt)
            ticket = None
            try:
                async with sender.pacer.slot() as ticket:
                    receipt = await sender.client.create_dataset(make_body(self.name))
            except TransientError as exc:
                if exc.status != 429:  # no answer or a 5xx: it may have been created
                    found = await self.lookup(sender)
                    if found is not None:  # our create landed: send this file to it
                        await self._adopt(found, sender=sender)
                        return await self.send(
                            sender, make_body, label=label, on_attempt=on_attempt
                        )
                await sender.wait_before_retry(exc, attempt, label, ticket)
                continue
            sender.succeeded(ticket)
            dataset_id = receipt.get("id")
            if not isinstance(dataset_id, str) or not dataset_id:
                raise ServiceError("creating the dataset gave an answer without an 'id'")
            await self._adopt(dataset_id, sender=sender)
            return receipt

    async def _adopt(self, dataset_id: str, *, sender: Sender | None = None) -> None:
        """Record the dataset as there; with ``sender``, this gate created it (and says so)."""
        await self._record(dataset_id, True)
        self.dataset_id = dataset_id
        if sender is not None:
            self.created = True
            sender.emit(DatasetReady(self.name, dataset_id, created=True))

    async def lookup(self, sender: Sender) -> str | None:
        """The id of the one dataset with this gate's name, None if there is none."""
        datasets = await sender.call(sender.client.list_datasets)
        ids = sorted({str(d["id"]) for d in datasets if d.get("name") == self.name and d.get("id")})
        if len(ids) > 1:
            raise UsageError(
                f"{len(ids)} datasets are named {self.name!r}: {', '.join(ids)}",
                hint="pass --dataset-id ID to choose one",
            )
        return ids[0] if ids else None

    async def adopt_existing(self, sender: Sender) -> bool:
        """Take the dataset with this name if the service has one (made by an earlier run
        or by another tool); True when it did."""
        found = await self.lookup(sender)
        if found is not None:
            await self._adopt(found)
        return found is not None


def check_receipt(receipt: Mapping[str, Any], sha256: str) -> None:
    """A receipt that reports a sha256 must report ours (the local server does)."""
    theirs = receipt.get("sha256")
    if isinstance(theirs, str) and theirs and theirs != sha256:
        raise ServiceError(f"the service stored other bytes than were sent (sha256 {theirs[:12]}…)")


def receipt_int(value: object, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
