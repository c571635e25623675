"""Send: one request at a time under the retry policy and the pacer; datasets created once.

- :meth:`Sender.call` runs one API call until it succeeds, fails permanently, or its
  attempts run out. The call builds a fresh body each attempt (a body streams once).
  An endpoint that has never answered in this run is not retried (see
  :class:`~batchload.send.retry.RetryPolicy`): a wrong ``--endpoint`` fails at once.
  Each answer's latency feeds the pacer's adaptive limit; a 429 pauses every
  request and lowers it, as does a 5xx.
- :class:`DatasetGate` holds a dataset's id. When it is not known yet, the first
  file to arrive creates the dataset (``POST /ingestion/datasets``) while every other
  file waits; the new id is recorded (by the ``record`` callback, which commits it
  to the manifest) before anyone sends. Creating is not idempotent, so after an
  ambiguous failure (no answer, a 5xx) the gate looks the name up before trying
  again, and adopts the dataset if the first attempt did create it.

Nothing here knows about the manifest or progress rendering: attempts and waits are
reported through callbacks.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio

from batchload.errors import ServiceError, TransientError, UsageError
from batchload.progress import Event, Paced, Retrying, Sink, Throttled
from batchload.send.retry import Pacer, RetryPolicy, Ticket
from batchload.send.transport import IngestionClient

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
            await on_attempt(attempt)
            ticket = None
            try:
                async with self.pacer.slot() as ticket:
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


RecordId = Callable[[str | None], Awaitable[None]]
"""Commit a dataset's state: ``None`` = creation starts, an id = the dataset exists."""


class DatasetGate:
    """A dataset's id, and the one creation of it when it does not exist yet."""

    def __init__(self, name: str, dataset_id: str | None, *, record: RecordId) -> None:
        self.name = name
        self.dataset_id = dataset_id
        self.created = False
        self._record = record
        self._lock = anyio.Lock()

    async def send(
        self,
        sender: Sender,
        make_body: Callable[[str | None], Any],
        *,
        label: tuple[str, str],
        on_attempt: OnAttempt = _no_attempt_report,
    ) -> dict[str, Any]:
        """Send one file: create the dataset with it, or add it once the id is known.

        ``make_body(name)`` builds a fresh body; ``name`` is the dataset's name when
        the body creates the dataset, else None.
        """
        if self.dataset_id is None:
            async with self._lock:  # the others wait here while the first one creates
                if self.dataset_id is None:
                    return await self._create(sender, make_body, label, on_attempt)
        dataset_id = self.dataset_id
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
    ) -> dict[str, Any]:
        await self._record(None)  # "creating" is durable before the first POST
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
                    if found is not None:
                        await self._adopt(found)  # then send this file to it, as any other
                        return await self.send(
                            sender, make_body, label=label, on_attempt=on_attempt
                        )
                await sender.wait_before_retry(exc, attempt, label, ticket)
                continue
            sender.succeeded(ticket)
            dataset_id = receipt.get("id")
            if not isinstance(dataset_id, str) or not dataset_id:
                raise ServiceError("creating the dataset gave an answer without an 'id'")
            self.created = True
            await self._adopt(dataset_id)
            return receipt

    async def _adopt(self, dataset_id: str) -> None:
        await self._record(dataset_id)
        self.dataset_id = dataset_id

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

    async def adopt_existing(self, sender: Sender) -> None:
        """Resume an interrupted creation: take the dataset if the last run made it."""
        found = await self.lookup(sender)
        if found is not None:
            await self._adopt(found)


def check_receipt(receipt: Mapping[str, Any], sha256: str) -> None:
    """A receipt that reports a sha256 must report ours (the local server does)."""
    theirs = receipt.get("sha256")
    if isinstance(theirs, str) and theirs and theirs != sha256:
        raise ServiceError(f"the service stored other bytes than were sent (sha256 {theirs[:12]}…)")


def receipt_int(value: object, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
