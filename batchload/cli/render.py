"""Progress for people: rich bars on a terminal, a log line every few seconds elsewhere.

Both are sinks for :mod:`batchload.progress` events and draw from its
:class:`~batchload.progress.Tally`; both write to stderr only (stdout is for
``--json``). The clock and the stream are injectable, so tests render into a buffer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from batchload.progress import (
    DatasetReady,
    Event,
    FileConflict,
    FileFailed,
    FileInvalid,
    MissingOnService,
    Tally,
    Throttled,
)

LOG_EVERY_S = 5.0


def _notice(event: Event) -> str | None:
    """The line worth printing at once for an event, if any."""
    match event:
        case DatasetReady(created=True):
            return f"created dataset {event.name} (id {event.dataset_id})"
        case DatasetReady(files=int()):
            return f"adding to dataset {event.name} (id {event.dataset_id}, {event.files} files)"
        case MissingOnService():
            return (
                f"dataset {event.name} (id {event.dataset_id}) lacks {event.files} file(s) "
                "that the manifest has as done: sending them again"
            )
        case FileConflict():
            return event.reason
        case FileInvalid():
            # A verdict's reason may already say "invalid: "; say it once.
            return f"invalid: {event.path}: {event.reason.removeprefix('invalid: ')}"
        case FileFailed():
            return f"failed: {event.path}: {event.reason}"
        case Throttled():
            return f"rate limited: pausing {event.pause_s:g}s, concurrency now {event.concurrency}"
        case _:
            return None


class LogLines:
    """A line on every notable event, and a progress line at most every few seconds."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tally = Tally(clock=clock)
        self._every_s = every_s
        self._clock = clock
        self._last = clock()

    def __call__(self, event: Event) -> None:
        self.tally.update(event)
        if (line := _notice(event)) is not None:
            self._write(line)
        now = self._clock()
        if now - self._last >= self._every_s:
            self._last = now
            self._write(self.tally.line())

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self) -> LogLines:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.tally.files:
            self._write(self.tally.line())


class RichBars:
    """A rich progress bar on a terminal: files, bytes, rate, ETA, failures."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.tally = Tally()
        self.console = Console(file=stream or sys.stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=self.console,
            transient=False,
        )
        self._task: Any = None

    def __call__(self, event: Event) -> None:
        self.tally.update(event)
        if (line := _notice(event)) is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        if self._task is None and self.tally.files:
            self._task = self.progress.add_task(
                "uploading", total=self.tally.bytes or 1, counts=self._counts()
            )
        if self._task is not None:
            self.progress.update(self._task, completed=self.tally.bytes_done, counts=self._counts())

    def _counts(self) -> str:
        t = self.tally
        text = f"{t.finished}/{t.files} files"
        if t.skipped:
            text += f", {t.skipped} skipped"
        if t.invalid or t.failed:
            text += f", {t.invalid} invalid, {t.failed} failed"
        return text

    def __enter__(self) -> RichBars:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()


class Silent:
    """No progress at all (``--quiet``)."""

    def __call__(self, event: Event) -> None:
        pass

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_sink(*, quiet: bool) -> RichBars | LogLines | Silent:
    """The right renderer for stderr: rich on a terminal, log lines otherwise."""
    if quiet:
        return Silent()
    if sys.stderr.isatty():
        return RichBars()
    return LogLines()
