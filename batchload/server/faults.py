"""Fault knobs of the local server, seeded so that a run's counts repeat.

- ``latency_ms``: added before answering any ingestion request.
- ``spike_rate`` and ``spike_ms``: that share of ingestion requests is answered
  ``spike_ms`` later still (after any upload was stored): latency spikes that outlast
  a client's timeout, so the client sees no answer to a request that did succeed.
- ``fail_rate``: that share of ingestion requests gets ``503`` before anything is stored.
- ``drop_rate``: that share of successful ingestion requests (uploads, creates, listings,
  look-ups, deletes) is carried out, then the connection is closed without an answer
  (the ambiguous failure a client must survive, on reads as on writes).
- ``create_delay_ms``: creating a dataset (``POST`` with a first file, or ``PUT`` with a
  schema of an id not there yet) waits this long *before* it is stored, so a client that
  gave up waiting finds nothing by name yet: the slow create that makes a careless
  client create twice. A repeated ``PUT`` of an id that exists answers at once.
- ``rate_limit``: requests per second (token bucket, burst of one second's worth);
  beyond it ``429`` with ``Retry-After`` in whole seconds.

Each random knob draws from its own generator, seeded from ``seed``: the n-th request
that reaches a knob gets the same verdict in every run with that seed, so counts
repeat even when concurrent requests arrive in a different order.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSettings:
    """What to inject; all zero means a well-behaved server."""

    latency_ms: float = 0.0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    rate_limit: float = 0.0  # requests per second; 0 = unlimited
    spike_rate: float = 0.0
    spike_ms: float = 0.0
    create_delay_ms: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("fail_rate", "drop_rate", "spike_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if min(self.latency_ms, self.rate_limit, self.spike_ms, self.create_delay_ms) < 0:
            raise ValueError(
                "latency_ms, spike_ms, create_delay_ms and rate_limit must not be negative"
            )

    def describe(self) -> str:
        """One log line's worth: the knobs that are on."""
        knobs = [
            f"latency {self.latency_ms:g} ms" if self.latency_ms else "",
            f"fail-rate {self.fail_rate:g}" if self.fail_rate else "",
            f"drop-rate {self.drop_rate:g}" if self.drop_rate else "",
            f"rate-limit {self.rate_limit:g}/s" if self.rate_limit else "",
            f"spikes of {self.spike_ms:g} ms on {self.spike_rate:g}"
            if self.spike_rate and self.spike_ms
            else "",
            f"creates delayed {self.create_delay_ms:g} ms" if self.create_delay_ms else "",
        ]
        active = ", ".join(k for k in knobs if k)
        return f"faults: {active} (seed {self.seed})" if active else "faults: none"


class Faults:
    """The knobs' state: seeded generators and the rate limiter's bucket."""

    def __init__(
        self, settings: FaultSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._fail = random.Random(f"{settings.seed}:fail")
        self._drop = random.Random(f"{settings.seed}:drop")
        self._spike = random.Random(f"{settings.seed}:spike")
        self._clock = clock
        self._capacity = max(1.0, settings.rate_limit)
        self._tokens = self._capacity
        self._refilled_at = clock()

    @property
    def latency_s(self) -> float:
        return self.settings.latency_ms / 1000.0

    @property
    def create_delay_s(self) -> float:
        return self.settings.create_delay_ms / 1000.0

    def retry_after_s(self) -> int | None:
        """None if this request is within the rate limit, else whole seconds to wait."""
        rate = self.settings.rate_limit
        if rate <= 0:
            return None
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self._tokens) / rate))

    def should_fail(self) -> bool:
        """Draw for ``fail_rate`` (no draw when it is off)."""
        rate = self.settings.fail_rate
        return rate > 0 and self._fail.random() < rate

    def should_drop(self) -> bool:
        """Draw for ``drop_rate`` (no draw when it is off)."""
        rate = self.settings.drop_rate
        return rate > 0 and self._drop.random() < rate

    def spike_s(self) -> float:
        """Seconds of spike to add to this answer: ``spike_ms`` on ``spike_rate``, else 0."""
        rate, spike_ms = self.settings.spike_rate, self.settings.spike_ms
        if rate > 0 and spike_ms > 0 and self._spike.random() < rate:
            return spike_ms / 1000.0
        return 0.0
