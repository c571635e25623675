"""The byte budget: how much file data a run holds in memory at once, across checks and uploads.

A check reserves what reading its files takes before it starts; an upload gives it
back when the file is sent, so memory stays bounded however many files there are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    pass


class ByteBudget:
    """Bytes of large files' frames held in memory at once; waiters queue for room."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.used = 0
        self._room = anyio.Condition()

    async def acquire(self, n: int) -> int:
        """Wait until ``n`` bytes (at most the total) fit; return what was taken."""
        n = min(max(n, 1), self.total)
        async with self._room:
            while self.used + n > self.total:
                await self._room.wait()
            self.used += n
        return n

    async def release(self, n: int) -> None:
        """Give back what :meth:`acquire` returned (0 is a no-op)."""
        if n:
            async with self._room:
                self.used -= n
                self._room.notify_all()
