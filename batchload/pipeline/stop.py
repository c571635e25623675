"""Stopping a run early, the way a person or a supervisor asks: drain first, abort second.

- The first :meth:`Stop.request` (a Ctrl-C, a SIGTERM from Kubernetes or CI) *drains*:
  no new file is started (files queued for checking or sending are left for a resume),
  the requests in flight may finish or fail within a bounded wait
  (``RunOptions.stop_grace_s``), the manifest writer commits everything it was given,
  and the run returns its summary, marked ``interrupted``.
- The second *aborts*: the requests in flight are cancelled at once; their rows stay
  ``sent``, so a resume sends them again (an overwrite under the same file_id).

The library only reacts to requests; who makes them (a signal handler) is the CLI's
business.
"""

from __future__ import annotations

import anyio

DEFAULT_STOP_GRACE_S = 30.0
"""How long requests in flight may take to finish once a stop is asked."""


class Stop:
    """Requests to stop one run; create it inside the event loop that runs it."""

    def __init__(self) -> None:
        self.draining = anyio.Event()
        """Set by the first request: start nothing new."""
        self.aborting = anyio.Event()
        """Set by the second request (or when the grace is over): cancel what is in flight."""
        self.requests = 0

    def request(self) -> None:
        """Ask the run to stop: drain the first time, abort the next."""
        self.requests += 1
        (self.draining if self.requests == 1 else self.aborting).set()

    @property
    def requested(self) -> bool:
        return self.draining.is_set()

    async def watch(self, grace_s: float, *scopes: anyio.CancelScope) -> None:
        """On the first request wait out ``grace_s`` (or a second request), then abort:
        cancel ``scopes`` (what sends)."""
        await self.draining.wait()
        with anyio.move_on_after(grace_s):
            await self.aborting.wait()
        self.aborting.set()
        for scope in scopes:
            scope.cancel()
