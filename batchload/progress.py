"""Progress: the events a run reports, the sink it reports them to, and a tally of them.

The library never prints. The pipeline calls a sink (any callable taking an
:data:`Event`) from the event loop; the CLI's sinks render with rich on a terminal
or as a log line every few seconds elsewhere, and tests collect the events in a
list. :class:`Tally` is the state those renderers share, with the clock injected
so that rates and ETAs are testable without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RunStarted:
    """The plan is made: how much there is to do and what is already done."""

    files: int
    bytes: int
    skipped: int
    datasets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatasetReady:
    """A dataset's id is known (and recorded in the manifest): this run created it, or it
    was there already, holding ``files`` files (when the service listed them)."""

    name: str
    dataset_id: str
    created: bool
    files: int | None = None


@dataclass(frozen=True, slots=True)
class MissingOnService:
    """Files the manifest has as done that the service does not list: sent again."""

    name: str
    dataset_id: str
    files: int


@dataclass(frozen=True, slots=True)
class FileSkipped:
    """Done in an earlier run and unchanged: not read, not sent."""

    path: str


@dataclass(frozen=True, slots=True)
class FileConflict:
    """Not sent: the service holds the file's id from another source (``reason`` says which)."""

    path: str
    file_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class FileInvalid:
    """Refused on this side (unreadable, failed its contract): not sent."""

    path: str
    reason: str
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Retrying:
    """A request failed in a way worth another try."""

    path: str
    file_id: str
    attempt: int
    status: int | None
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Throttled:
    """A 429: every request pauses and concurrency drops."""

    concurrency: int
    pause_s: float


@dataclass(frozen=True, slots=True)
class Paced:
    """The cap on requests in flight adapted to the link (grew, or shrank on a queue)."""

    concurrency: int


@dataclass(frozen=True, slots=True)
class FileDone:
    """A file (all its parts) landed."""

    path: str
    file_id: str
    bytes: int
    """Source bytes of the file (what progress counts, not the base64 on the wire)."""
    parts: int = 0


@dataclass(frozen=True, slots=True)
class PartDone:
    """One part of a large file landed; the file's FileDone follows its last part."""

    path: str
    bytes: int
    """Bytes of the part as sent (its parquet, before base64)."""


@dataclass(frozen=True, slots=True)
class FileFailed:
    """A file could not be sent: a permanent refusal, or retries ran out."""

    path: str
    file_id: str | None
    reason: str
    bytes: int = 0


Event = (
    RunStarted
    | DatasetReady
    | MissingOnService
    | FileSkipped
    | FileConflict
    | FileInvalid
    | Retrying
    | Throttled
    | Paced
    | FileDone
    | PartDone
    | FileFailed
)
Sink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    """A sink that ignores everything."""


@dataclass
class Tally:
    """Counts and rates from the events so far; what progress renderers draw."""

    clock: Callable[[], float] = time.monotonic
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    done: int = 0
    invalid: int = 0
    failed: int = 0
    retries: int = 0
    finished_bytes: int = 0
    """Source bytes of the files with a verdict (done, invalid or failed)."""
    sent_bytes: int = 0
    """Bytes delivered to the service: whole files, and parts as they land."""
    concurrency: int | None = None
    started_at: float = field(default=0.0)
    _partial: dict[str, int] = field(default_factory=dict, repr=False)
    """Bytes of the parts landed so far, per large file not done yet."""

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    def update(self, event: Event) -> None:
        """Fold one event into the counts."""
        match event:
            case RunStarted():
                self.files, self.bytes, self.skipped = event.files, event.bytes, event.skipped
                self.started_at = self.clock()
            case PartDone():
                self._partial[event.path] = self._partial.get(event.path, 0) + event.bytes
                self.sent_bytes += event.bytes
            case FileDone():
                self.done += 1
                self.finished_bytes += event.bytes
                self.sent_bytes += max(event.bytes - self._partial.pop(event.path, 0), 0)
            case FileInvalid():
                self.invalid += 1
                self.finished_bytes += event.bytes
            case FileFailed():
                self.failed += 1
                self.finished_bytes += event.bytes
                self._partial.pop(event.path, None)
            case Retrying():
                self.retries += 1
            case Throttled() | Paced():
                self.concurrency = event.concurrency
            case _:
                pass

    @property
    def finished(self) -> int:
        """Files with a verdict in this run (done, invalid or failed)."""
        return self.done + self.invalid + self.failed

    @property
    def elapsed_s(self) -> float:
        return max(self.clock() - self.started_at, 0.0)

    @property
    def bytes_done(self) -> int:
        """Source bytes finished, and the parts landed of large files still going (a part
        counts what it weighed as sent, so a large file's progress moves as it goes)."""
        return self.finished_bytes + sum(self._partial.values())

    @property
    def rate_bytes_s(self) -> float:
        """Bytes delivered to the service per second so far (refused files do not count)."""
        elapsed = self.elapsed_s
        return self.sent_bytes / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far, or None before there is a rate."""
        rate = self.rate_bytes_s
        if rate <= 0:
            return None
        return max(self.bytes - self.bytes_done, 0) / rate

    def line(self) -> str:
        """One log line: files, bytes, rate, ETA, failures."""
        eta = self.eta_s
        parts = [
            f"{self.finished}/{self.files} files",
            f"{_mib(self.bytes_done)}/{_mib(self.bytes)} MiB",
            _rate(self.rate_bytes_s),
            f"ETA {eta:.0f}s" if eta is not None else "ETA -",
        ]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.invalid or self.failed:
            parts.append(f"{self.invalid} invalid, {self.failed} failed")
        if self.retries:
            parts.append(f"{self.retries} retries")
        return ", ".join(parts)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}"


def _rate(bytes_s: float) -> str:
    """MiB/s, or KiB/s below 0.1 MiB/s (a run of small files is not "0.0 MiB/s")."""
    if bytes_s >= 0.1 * 1024 * 1024:
        return f"{bytes_s / (1024 * 1024):.1f} MiB/s"
    return f"{bytes_s / 1024:.1f} KiB/s"
