"""What the manifest records: one row per file or part, per dataset, and the changes a run makes.

Frozen dataclasses shared by every stage that reads or writes the ledger, and the
resume rule (:func:`resume_decision`) that turns a file's rows into what a run does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

State = Literal["pending", "invalid", "sent", "done", "failed"]


STATES: tuple[State, ...] = ("pending", "invalid", "sent", "done", "failed")


DatasetState = Literal["creating", "ready"]


Resume = Literal["done", "rehash", "send"]


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRecord:
    """One manifest row: a whole file (``part == 0``) or one of its parts."""

    dataset: str
    source_path: str
    part: int = 0
    parts: int | None = None
    """How many rows the source has in all (1 for a whole file), once known."""
    file_id: str | None
    size: int
    mtime_ns: int
    etag: str | None = None
    """An object's ETag as read (None for a local file); its source_path is its URL."""
    sha256: str | None = None
    """Of the source file (an object: of the bytes read, whatever its ETag)."""
    sent_sha256: str | None = None
    """Of the bytes sent: the part's parquet, or the file itself."""
    file_format: str | None = None
    """What was sent: the file's own format, or parquet (parts, converted workbooks)."""
    converted_from: str | None = None
    """``xlsx`` or ``xls`` when a workbook was sent as parquet with the contract's types."""
    dataset_id: str | None = None
    rows: int | None = None
    bytes_sent: int | None = None
    state: State
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    receipt: Mapping[str, Any] | None = None
    owner: str | None = None
    """The process that wrote the row (see :mod:`batchload.state.ledger`)."""
    created_at: str | None = None
    updated_at: str | None = None
    done_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as plain data (receipt as an object)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetRecord:
    """One dataset of the run: its name, and its id once created or given."""

    name: str
    dataset_id: str | None
    state: DatasetState
    endpoint: str
    contract: str | None = None
    file_id_template: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True, slots=True)
class KeyRun:
    """Where a large file's key hashes wait on disk, in its run's spill file
    (:mod:`batchload.check.crossfile`): read when the manifest stores them, so a checked
    file waits for its upload without them in memory."""

    path: Path
    offset: int
    """In bytes."""
    rows: int

    def read(self) -> bytes:
        return b"".join(self.chunks(8 * self.rows))

    def chunks(self, size: int) -> Iterator[bytes]:
        """The hashes, ``size`` bytes at a time: stored without being held whole."""
        end = self.offset + 8 * self.rows
        with self.path.open("rb") as spill:
            at = self.offset
            while at < end:
                data = os.pread(spill.fileno(), min(size, end - at), at)
                if not data:
                    raise OSError("the spilled key hashes were cut short")
                yield data
                at += len(data)


KeyHashes = bytes | memoryview | KeyRun
"""A file's key hashes, or what reads them back (see :class:`FileKeys`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileKeys:
    """The unique-key hashes of one validated source file (see :mod:`batchload.check.crossfile`)."""

    dataset: str
    source_path: str
    scheme: str
    """How the hashes were made (key columns and types, hash function and its version):
    hashes made another way are not comparable and are not used."""
    hashes: KeyHashes | None
    """u64 hashes in the machine's byte order, one per row, in no particular order (a view
    of the run's own hashes, not a copy, or where they wait in the run's spill file);
    None deletes what an earlier run stored."""

    def blob(self) -> bytes | memoryview | None:
        """The hashes as stored (read back now when they were left on disk)."""
        return self.hashes.read() if isinstance(self.hashes, KeyRun) else self.hashes


@dataclass(frozen=True, slots=True)
class Changes:
    """One batch of manifest changes, applied together by :meth:`SqlLedger.apply`."""

    records: tuple[FileRecord, ...] = ()
    forget: tuple[tuple[str, str, int], ...] = ()
    """``(dataset, source_path, part)`` rows to delete."""
    datasets: tuple[DatasetRecord, ...] = ()
    keys: tuple[FileKeys, ...] = ()
    """Key hashes to store with the files' rows (their ``done`` state), or to delete."""


class ResumeRow(NamedTuple):
    """The few columns of a row a resume decision needs."""

    source_path: str
    part: int
    parts: int | None
    file_id: str | None
    size: int
    mtime_ns: int
    etag: str | None
    sha256: str | None
    state: State


class RowFacts(Protocol):
    """What resume_decision reads of a row (a FileRecord or a ResumeRow)."""

    @property
    def part(self) -> int: ...
    @property
    def parts(self) -> int | None: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def state(self) -> State: ...


def resume_decision(
    rows: Sequence[RowFacts], *, size: int, mtime_ns: int, etag: str | None = None
) -> Resume:
    """What a re-run does with a source file, from its manifest rows and a fresh ``stat``
    (or an object listing).

    ``done``: every row (the whole file, or all its parts) is done and size and mtime
    (and an object's ETag) are unchanged, so the file is skipped without being read.
    ``rehash``: done, same size, another mtime or ETag (touched, copied, rewritten): hash
    it, skip it if the sha256 is the same.
    ``send``: anything else.
    """
    if not rows or any(r.state != "done" or r.parts is None for r in rows):
        return "send"  # parts is None: a split interrupted before its last part was cut
    expected = rows[0].parts or 1
    numbers = sorted(r.part for r in rows)
    if numbers != ([0] if expected == 1 and numbers == [0] else list(range(1, expected + 1))):
        return "send"
    if any((r.parts or 1) != expected for r in rows):
        return "send"
    if all(r.size == size and r.mtime_ns == mtime_ns and r.etag == etag for r in rows):
        return "done"
    if all(r.size == size and r.sha256 for r in rows):
        return "rehash"
    return "send"
