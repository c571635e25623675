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
- :class:`Pacer` caps requests in flight. A 429 halves the cap and pauses every
  request for the Retry-After; successes raise it again one step at a time
  (additive increase, multiplicative decrease). Its arithmetic lives in
  :class:`AimdLimit`, a plain class with a table test.
"""

from __future__ import annotations

import random
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


class AimdLimit:
    """A concurrency limit: halved on throttling, raised by one after a window of successes.

    The window is the current limit, so the limit grows by about one per round of
    requests (as TCP's congestion window does per round trip).
    """

    def __init__(self, maximum: int, *, minimum: int = 1) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.value = maximum
        self._successes = 0

    def success(self) -> bool:
        """Record a success; True when the limit went up."""
        if self.value >= self.maximum:
            return False
        self._successes += 1
        if self._successes < self.value:
            return False
        self._successes = 0
        self.value += 1
        return True

    def throttled(self) -> bool:
        """Record a 429; True when the limit went down."""
        self._successes = 0
        lowered = max(self.minimum, self.value // 2)
        changed = lowered != self.value
        self.value = lowered
        return changed


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
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``concurrency`` places for the duration of a request."""
        async with self._limiter:
            # Checked after the place is won: a 429 may have arrived while we queued.
            # A loop, not an Event: another 429 may move the deadline while we wait.
            while (wait_s := self._resume_at - self._clock()) > 0:  # noqa: ASYNC110
                await anyio.sleep(wait_s)
            yield

    def on_success(self) -> None:
        """A request succeeded: maybe raise the cap."""
        if self.limit.success():
            self._limiter.total_tokens = self.limit.value

    def on_throttle(self, retry_after_s: float | None) -> None:
        """A 429: lower the cap and pause every request until Retry-After has passed."""
        if self.limit.throttled():
            self._limiter.total_tokens = self.limit.value
        pause_s = DEFAULT_THROTTLE_PAUSE_S if retry_after_s is None else retry_after_s
        self._resume_at = max(self._resume_at, self._clock() + pause_s)
