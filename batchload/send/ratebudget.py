"""A request budget shared by every process of a run: ``--max-rps N``.

Never more than N requests in any second, and no bursts: each request asks the ledger
for its moment (GCRA over one row, one round trip: :meth:`Ledger.grant`) and waits for
it, so requests from all processes leave evenly spaced. A ``429`` from the service
lowers the budget for everyone (the interval doubles, and every process's next
request waits out the Retry-After); grants bring it back towards N step by step. The
transport asks before every request, retries and reads included.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from batchload.errors import UsageError
from batchload.state.ledger import Ledger

SLOWEST_INTERVAL_S = 10.0
"""However many 429s, the budget never drops below one request per this many seconds."""
DEFAULT_PAUSE_S = 1.0
"""How long everyone waits after a 429 that says no Retry-After."""


class RateBudget:
    """``max_rps`` requests a second at most, over every process on ``ledger``."""

    def __init__(
        self,
        ledger: Ledger,
        max_rps: float,
        *,
        name: str,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        if not max_rps > 0:
            raise UsageError("--max-rps must be positive")
        self.ledger = ledger
        self.interval_s = 1.0 / max_rps
        self.name = name
        self._limiter = limiter or anyio.CapacityLimiter(1)

    async def _call(self, fn: Callable[[], float | None]) -> float | None:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def take(self) -> None:
        """Wait for this request's moment in the shared budget."""
        wait_s = await self._call(lambda: self.ledger.grant(self.name, self.interval_s))
        if wait_s:
            await anyio.sleep(wait_s)

    async def throttled(self, retry_after_s: float | None) -> None:
        """The service said 429: slow every process down."""
        pause_s = DEFAULT_PAUSE_S if retry_after_s is None else retry_after_s
        await self._call(
            lambda: self.ledger.throttle(
                self.name, pause_s, max_interval_s=max(SLOWEST_INTERVAL_S, self.interval_s)
            )
        )
