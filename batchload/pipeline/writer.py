"""The manifest's one writer during a run: changes from every task, committed in batches.

Tasks hand :class:`~batchload.state.records.Changes` to :meth:`ManifestWriter.write`
(waiting for the commit when the next step relies on it); one task commits them, up to
``WRITER_BATCH`` in one transaction, in a worker thread, a group commit: once a batch's
first change is in, the writer lets ``WRITER_LINGER_S`` pass for others to join it, as
a file's changes come one or two at a time and a transaction (with its thread hop)
costs several rows' worth whatever its size. Outside :meth:`running` (the
dataset checks before the stages start) a write is committed at once. Every write goes
through the run's claims (:mod:`batchload.pipeline.claims`): a change for a file that
another process sharing the manifest took over raises
:class:`~batchload.errors.ClaimLost`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchload.pipeline.claims import Claims
from batchload.state.records import Changes

WRITER_BATCH = 512
WRITER_LINGER_S = 0.01
"""How long a batch waits for more changes before it is committed (a file waiting for
its commit waits this much longer: a few percent of a request's round trip)."""


@dataclass(frozen=True, slots=True)
class _Op:
    """One writer instruction; ``done`` is set once it is committed."""

    changes: Changes
    done: anyio.Event | None = None


class ManifestWriter:
    """Commits a run's manifest changes; one per run."""

    def __init__(self, claims: Claims) -> None:
        self.claims = claims
        self._stream: MemoryObjectSendStream[_Op] | None = None

    async def write(self, changes: Changes, *, wait: bool = False) -> None:
        """Hand changes to the writer; with ``wait``, return once they are committed.

        Raises :class:`~batchload.errors.ClaimLost` for a file another process took over:
        before the changes are handed on when that is known already, after the commit
        (``wait``) when the ledger refused them.
        """
        self.claims.check(changes)
        if self._stream is None:
            await self.claims.call(self.claims.apply, [changes])
        else:
            op = _Op(changes, anyio.Event() if wait else None)
            await self._stream.send(op)
            if op.done is None:
                return
            await op.done.wait()
        self.claims.check(changes)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Writes go through the writer task meanwhile. When the block ends, however it
        ends, everything handed over is committed before this returns (then an error of
        the block goes on)."""
        send, receive = anyio.create_memory_object_stream[_Op](WRITER_BATCH)
        self._stream = send
        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._loop, receive)
            try:
                async with send:
                    yield
            except Exception as exc:  # the writer drains what it has, then the error goes on
                failure = exc
        self._stream = None
        if failure is not None:
            raise failure

    async def _loop(self, ops: MemoryObjectReceiveStream[_Op]) -> None:
        """Commit ops in batches until the stream ends. Shielded: what the stages handed
        over is committed even when they are cancelled (a stop's abort)."""
        with anyio.CancelScope(shield=True):
            async with ops:
                async for op in ops:
                    batch = [op]
                    if ops.statistics().current_buffer_used < WRITER_BATCH - 1:
                        await anyio.sleep(WRITER_LINGER_S)  # let other changes join
                    while len(batch) < WRITER_BATCH:
                        try:
                            batch.append(ops.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    await self.claims.call(self.claims.apply, [o.changes for o in batch])
                    for done in batch:
                        if done.done is not None:
                            done.done.set()
