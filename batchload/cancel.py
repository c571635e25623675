"""Cancellation for blocking stage code: a worker thread stops at its next block once its
run is cancelled, so no thread outlives the run.

The pipeline runs checks with ``anyio.to_thread.run_sync`` and, when cancelled, waits
for them; the checks call :func:`stop_if_cancelled` between blocks and files, which
keeps that wait one block long. Outside a run's worker thread (a test, a notebook)
it does nothing.
"""

from __future__ import annotations

import anyio.from_thread

__all__ = ["stop_if_cancelled"]


def stop_if_cancelled() -> None:
    """Raise the run's cancellation here when the task waiting for this thread is cancelled."""
    try:
        anyio.from_thread.check_cancelled()
    except RuntimeError:  # not a worker thread of a run
        return
