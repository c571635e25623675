"""Retries as data, backoff with full jitter, and an adaptive (AIMD) concurrency pacer.

- :class:`RetryPolicy` says which faults are retried and how long to wait. It decides
  by exception type and HTTP status, never by message text: a permanent error (400,
  404, 415, 422) fails at once, an auth error stops the run, and only
  :class:`~batchload.errors.TransientError` is tried again. An endpoint that has
  not answered once (refused, unknown name) is not retried: that is a wrong
  ``--endpoint`` or a service that is not running, and waiting does not cure it;
  once the service has answered, losing it (a restart) is waited for like any
  transient fault.
- Waits use exponential backoff with *full jitter* (a uniform draw between zero and
  the capped exponential), so many clients that failed together do not retry
  together. A ``Retry-After`` from the service wins over the computed delay.
- :class:`Pacer` caps requests in flight, and the cap adapts: it starts small and
  grows while answers come back as fast as before (the link's latency, not a queue,
  is the bound), and shrinks when latency rises, on a 5xx, and on a 429, which also
  pauses every request for the Retry-After. Its arithmetic lives in
  :class:`AimdLimit`, a plain class with a table test; ``--concurrency`` is its
  maximum.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import anyio

from batchload.errors import TransientError, UnreachableError

#: Statuses worth another try: timeout, too many requests, and the transient 5xx.
RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
#: Pause after a 429 that carries no Retry-After.
DEFAULT_THROTTLE_PAUSE_S = 1.0
#: A window's median latency above this many times the baseline means a queue.
LATENCY_TOLERANCE = 2.0
#: How far the baseline latency may rise each window (1 %).
BASELINE_DRIFT = 1.01


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently one request is tried again."""

    attempts: int = 8
    """Tries per request, the first one included."""
    base_delay_s: float = 0.5
    """Cap of the first backoff; it doubles each retry up to ``max_delay_s``."""
    max_delay_s: float = 30.0
    retry_statuses: frozenset[int] = RETRY_STATUSES
    honour_retry_after: bool = True
    max_retry_after_s: float = 300.0
    """A Retry-After longer than this is cut to it (a misconfigured proxy can say a day)."""
    retry_before_first_answer: bool = False
    """Retry an unreachable endpoint that has not answered once yet (off: fail fast)."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def retryable(self, exc: BaseException, *, answered: bool = True) -> bool:
        """True when ``exc`` is a fault this policy retries (by type and status only).

        ``answered``: whether the service has answered any request yet; until it
        has, an :class:`~batchload.errors.UnreachableError` is final.
        """
        if not isinstance(exc, TransientError):
            return False
        if isinstance(exc, UnreachableError) and not answered:
            return self.retry_before_first_answer
        return exc.status is None or exc.status in self.retry_statuses

    def delay_s(self, retry: int, *, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if self.honour_retry_after and retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_retry_after_s)
        cap = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(retry - 1, 0))
        return rng.uniform(0.0, cap)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds (``0`` included) or an HTTP date.

    A date in the past gives ``0.0``; an absent or unreadable value gives ``None``.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)


MIN_WINDOW = 4
"""Fewest answers a slow-start window judges latency on."""


class AimdLimit:
    """How many requests may be in flight: found by probing the link, not configured.

    - It starts at ``start`` and, while a window's latency holds (its median within
      ``tolerance`` × the link's baseline), doubles after each window (slow start)
      until the first sign of a queue; from then on it grows by one a window
      (additive increase). A window is ``value`` answers, about one round trip of
      requests, as TCP's congestion window; in slow start it is half that (at least
      ``MIN_WINDOW``), the answers to the places the last doubling opened, which come
      back one round trip after it (a full window would wait for the requests sent
      before it too: two round trips a doubling). A window grows the limit only if
      the limit was reached in it: a limit nothing uses says nothing about the link.
    - A window whose latency rose past the tolerance scales the limit down by
      baseline × tolerance / latency (at most halving it); a 429 or a 5xx halves it
      (multiplicative decrease).
    - Only answers to requests sent under the current limit count (``epoch``, which
      every change moves on): the answers still on their way from before a change say
      nothing about it, so one overload cuts once, not once per request in flight.
    - The baseline is the lowest window latency seen, let rise 1 % a window, so that
      a link that became slower for good is learnt again.

    Without latencies (``success()`` alone) it is plain AIMD on throttling.
    """

    def __init__(
        self,
        maximum: int,
        *,
        start: int | None = None,
        minimum: int = 1,
        tolerance: float = LATENCY_TOLERANCE,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        if tolerance <= 1.0:
            raise ValueError("the latency tolerance must be above 1")
        self.minimum = minimum
        self.maximum = maximum
        self.tolerance = tolerance
        self.value = maximum if start is None else min(max(start, minimum), maximum)
        self.epoch = 0
        """Moves on at every change of the limit."""
        self.baseline_s: float | None = None
        self._slow_start = True
        self._latencies: list[float] = []
        self._answers = 0
        self._reached = False

    def success(
        self, latency_s: float | None = None, *, reached: bool = True, epoch: int | None = None
    ) -> bool:
        """Record an answer: its latency, whether the limit was reached when its request
        was sent, and the epoch it was sent in (None: the current one). True when the
        limit changed."""
        if epoch is not None and epoch != self.epoch:
            return False
        self._answers += 1
        self._reached |= reached
        if latency_s is not None:
            self._latencies.append(latency_s)
        if self._answers < self._window():
            return False
        latency = statistics.median(self._latencies) if self._latencies else None
        reached = self._reached
        self._new_window()
        if latency is not None:
            baseline = self.baseline_s
            baseline = latency if baseline is None else min(latency, baseline * BASELINE_DRIFT)
            self.baseline_s = baseline
            if latency > baseline * self.tolerance:  # a queue is building somewhere
                self._slow_start = False
                scaled = int(self.value * baseline * self.tolerance / latency)
                return self._set(min(max(scaled, self.value // 2), self.value - 1))
        if not reached:
            return False
        return self._set(self.value * 2 if self._slow_start else self.value + 1)

    def throttled(self, *, epoch: int | None = None) -> bool:
        """Record a 429 or a 5xx to a request sent in ``epoch`` (None: the current one);
        True when the limit went down."""
        self._slow_start = False
        if epoch is not None and epoch != self.epoch:
            return False
        return self._set(self.value // 2)

    def _window(self) -> int:
        """Answers a window takes: half the limit in slow start, but never fewer than
        ``MIN_WINDOW`` (or the limit): one slow answer must not cut a small limit."""
        if not self._slow_start:
            return self.value
        return max(min(self.value, MIN_WINDOW), self.value // 2)

    def _new_window(self) -> None:
        self._latencies.clear()
        self._answers = 0
        self._reached = False

    def _set(self, value: int) -> bool:
        value = min(max(value, self.minimum), self.maximum)
        if value == self.value:
            return False
        self.value = value
        self.epoch += 1
        self._new_window()
        return True


@dataclass(frozen=True, slots=True)
class Ticket:
    """One request's place under the pacer: when it was sent, under which limit
    (:attr:`AimdLimit.epoch`), and whether every place was taken then."""

    sent_at: float
    epoch: int
    reached: bool


class Pacer:
    """Admits requests under an :class:`AimdLimit`, and holds them all during a 429 pause."""

    def __init__(self, limit: AimdLimit, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._limiter = anyio.CapacityLimiter(limit.value)
        self._resume_at = 0.0

    @property
    def concurrency(self) -> int:
        """The current cap on requests in flight."""
        return self.limit.value

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Ticket]:
        """Hold one of the ``concurrency`` places for the duration of a request."""
        async with self._limiter:
            # Checked after the place is won: a 429 may have arrived while we queued.
            # A loop, not an Event: another 429 may move the deadline while we wait.
            while (wait_s := self._resume_at - self._clock()) > 0:  # noqa: ASYNC110
                await anyio.sleep(wait_s)
            full = self._limiter.borrowed_tokens >= self._limiter.total_tokens
            yield Ticket(self._clock(), self.limit.epoch, full)

    def on_success(self, ticket: Ticket | None = None) -> bool:
        """A request succeeded: maybe raise the cap (or lower it, if latency rose).
        True when the cap changed."""
        if ticket is None:
            return self._apply(self.limit.success())
        latency_s = self._clock() - ticket.sent_at
        return self._apply(
            self.limit.success(latency_s, reached=ticket.reached, epoch=ticket.epoch)
        )

    def on_overload(self, ticket: Ticket | None = None) -> bool:
        """A 5xx or a timeout status: lower the cap; True when it changed."""
        return self._apply(self.limit.throttled(epoch=None if ticket is None else ticket.epoch))

    def on_throttle(self, retry_after_s: float | None, ticket: Ticket | None = None) -> None:
        """A 429: lower the cap and pause every request until Retry-After has passed."""
        self._apply(self.limit.throttled(epoch=None if ticket is None else ticket.epoch))
        pause_s = DEFAULT_THROTTLE_PAUSE_S if retry_after_s is None else retry_after_s
        self._resume_at = max(self._resume_at, self._clock() + pause_s)

    def _apply(self, changed: bool) -> bool:
        if changed:
            self._limiter.total_tokens = self.limit.value
        return changed
