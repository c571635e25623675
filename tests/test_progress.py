"""Progress: the tally's arithmetic, and both renderers drawing into a buffer."""

from __future__ import annotations

import io

from batchload.cli.render import LogLines, RichBars
from batchload.progress import (
    DatasetReady,
    FileDone,
    FileFailed,
    FileInvalid,
    PartDone,
    Retrying,
    RunStarted,
    Tally,
    Throttled,
)

MIB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tally_rate_and_eta() -> None:
    clock = Clock()
    tally = Tally(clock=clock)
    tally.update(RunStarted(files=4, bytes=8 * MIB, skipped=3, datasets=("d",)))
    assert tally.eta_s is None
    clock.now += 2.0
    tally.update(FileDone("a", "a", 2 * MIB))
    tally.update(FileInvalid("b", "bad", 2 * MIB))
    tally.update(Retrying("c", "c", 1, 503, 0.1, "503"))
    assert (tally.finished, tally.done, tally.invalid, tally.retries) == (2, 1, 1, 1)
    assert tally.rate_bytes_s == MIB  # what was delivered: the invalid file was not sent
    assert tally.eta_s == 4.0
    assert tally.line() == (
        "2/4 files, 4.0/8.0 MiB, 1.0 MiB/s, ETA 4s, 3 skipped, 1 invalid, 0 failed, 1 retries"
    )


def test_a_large_file_moves_the_rate_part_by_part() -> None:
    clock = Clock()
    tally = Tally(clock=clock)
    tally.update(RunStarted(files=1, bytes=10 * MIB, skipped=0, datasets=("d",)))
    clock.now += 1.0
    assert tally.line() == "0/1 files, 0.0/10.0 MiB, 0.0 KiB/s, ETA -"
    tally.update(PartDone("big", 3 * MIB))
    tally.update(PartDone("big", 3 * MIB))
    assert (tally.bytes_done, tally.rate_bytes_s) == (6 * MIB, 6 * MIB)
    assert tally.line() == "0/1 files, 6.0/10.0 MiB, 6.0 MiB/s, ETA 1s"
    clock.now += 1.0
    tally.update(FileDone("big", "big", 10 * MIB, parts=3))  # the last part: 4 MiB
    assert (tally.bytes_done, tally.sent_bytes) == (10 * MIB, 10 * MIB)
    slow = Tally(clock=clock)
    slow.update(RunStarted(files=2, bytes=MIB, skipped=0, datasets=("d",)))
    clock.now += 2.0
    slow.update(FileDone("a", "a", 60 * 1024))
    assert "30.0 KiB/s" in slow.line()


def test_log_lines_every_few_seconds_and_notable_events_at_once() -> None:
    clock = Clock()
    out = io.StringIO()
    with LogLines(out, every_s=5.0, clock=clock) as sink:
        sink(RunStarted(files=3, bytes=3 * MIB, skipped=0, datasets=("d",)))
        sink(DatasetReady("d", "id-1", created=True))
        sink(FileDone("a", "a", MIB))
        clock.now += 6.0
        sink(FileDone("b", "b", MIB))
        sink(Throttled(concurrency=4, pause_s=1.0))
        sink(FileFailed("c", "c", "HTTP 400: bad", MIB))
    lines = out.getvalue().splitlines()
    assert lines == [
        "created dataset d (id id-1)",
        "2/3 files, 2.0/3.0 MiB, 0.3 MiB/s, ETA 3s",
        "rate limited: pausing 1s, concurrency now 4",
        "failed: c: HTTP 400: bad",
        "3/3 files, 3.0/3.0 MiB, 0.3 MiB/s, ETA 0s, 0 invalid, 1 failed",  # c was not sent
    ]


def test_rich_bars_render_counts() -> None:
    out = io.StringIO()
    with RichBars(out) as sink:
        sink(RunStarted(files=2, bytes=2 * MIB, skipped=1, datasets=("d",)))
        sink(FileDone("a", "a", MIB))
        sink(FileInvalid("b", "bad values", MIB))
    text = out.getvalue()
    assert "invalid: b: bad values" in text
    assert "2/2 files, 1 skipped, 1 invalid, 0 failed" in text


def test_a_reason_that_says_invalid_is_not_said_twice() -> None:
    out = io.StringIO()
    with RichBars(out) as sink:
        sink(RunStarted(files=1, bytes=MIB, skipped=0, datasets=("d",)))
        sink(FileInvalid("b", "invalid: column 'x' is missing", MIB))
    text = out.getvalue()
    assert "invalid: b: column 'x' is missing" in text
    assert "invalid: b: invalid:" not in text
