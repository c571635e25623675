"""Encode: request bodies streamed from disk without needless copies, and parts of large files.

- A body is the JSON envelope (``name``, ``file_format``, ``upload_format``,
  ``file_id``, options) with the file's base64 text as the last field. Its exact
  length is known before a byte is read: ``len(head) + 4*ceil(n/3) + len(tail)``,
  so it is sent with ``Content-Length`` (too small a length would silently truncate
  it). The file is read in chunks whose size is a multiple of 3, so each chunk
  encodes on its own and only the last one carries padding; pybase64 releases the
  GIL, so large chunks encode in a worker thread.
- The bytes sent are hashed on the way and compared with the sha256 taken when the
  file was read. A file that changed in between raises
  :class:`~batchload.errors.FileChanged` *before* the closing bytes are sent, so the
  service never receives a complete body that is half old and half new.
- A file whose request would exceed the limit is split by rows into parts written
  as **parquet** from the validated rows, cast to the contract's Arrow types: the
  service parses exactly the validated values, with none of CSV's quoting, float
  formatting or type-inference pitfalls. Parts are cut deterministically (same rows
  and limit, same parts, whether the rows come whole or block by block), so a
  resumed run cuts identical parts.

A :class:`RequestBody` streams once (an async generator cannot be rewound): build a
fresh one for every attempt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import pybase64

from batchload.errors import FileChanged, FileProblem
from batchload.protocol import FileFormat

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

RAW_CHUNK_BYTES = 3 * 1024 * 1024
"""Bytes read and encoded at a time (a multiple of 3: no padding mid-stream)."""
INLINE_CHUNK_BYTES = 256 * 1024
"""Chunks up to this size are read and encoded on the event loop; larger ones in a thread."""
HASH_CHUNK_BYTES = 1024 * 1024
KEEP_BYTES = 64 * 1024
"""A file this small is read once, when it is hashed (:attr:`Fingerprint.data`)."""
MIB = 1024 * 1024
DEFAULT_MAX_REQUEST_MB = 5.0
PART_FILL = 0.9
"""Parts aim at this fraction of the byte budget, so most fit at the first try."""

assert RAW_CHUNK_BYTES % 3 == 0


def b64_len(n: int) -> int:
    """Length of the padded standard base64 text of ``n`` bytes."""
    return 4 * ((n + 2) // 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """Every field of a file body except the file's bytes."""

    file_id: str
    file_format: FileFormat
    name: str | None = None
    read_options: Mapping[str, Any] | None = None
    convert_options: Mapping[str, Any] | None = None

    def head_tail(self) -> tuple[bytes, bytes]:
        """The bytes before and after the base64 text."""
        fields: dict[str, Any] = {}
        if self.name is not None:
            fields["name"] = self.name
        fields["upload_format"] = "base64"
        fields["file_format"] = self.file_format
        fields["file_id"] = self.file_id
        if self.read_options:
            fields["read_options"] = dict(self.read_options)
        if self.convert_options:
            fields["convert_options"] = dict(self.convert_options)
        opening = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
        return (opening[:-1] + ',"file":"').encode("ascii"), b'"}'

    def request_bytes(self, raw_bytes: int) -> int:
        """The exact request body size for a file of ``raw_bytes`` bytes."""
        head, tail = self.head_tail()
        return len(head) + b64_len(raw_bytes) + len(tail)


def raw_budget(max_request_bytes: int, envelope: Envelope) -> int:
    """The most file bytes whose body still fits in ``max_request_bytes``."""
    head, tail = envelope.head_tail()
    return max(0, (max_request_bytes - len(head) - len(tail)) // 4 * 3)


@dataclass(frozen=True, slots=True)
class DiskSource:
    """A file's original bytes, streamed from disk and checked against its sha256; or,
    for a small file, the bytes it was hashed from (``kept``), sent if its stat is still
    the one they were read under (``mtime_ns``)."""

    path: Path
    size: int
    sha256: str
    kept: bytes | None = field(default=None, repr=False, compare=False)
    mtime_ns: int | None = None


@dataclass(frozen=True, slots=True)
class MemorySource:
    """Bytes built in memory (a part, a DataFrame)."""

    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(eq=False)
class RequestBody:
    """One attempt's request body: iterate it once, as aiohttp does when sending."""

    envelope: Envelope
    source: DiskSource | MemorySource
    chunk_bytes: int = RAW_CHUNK_BYTES
    problem: FileChanged | None = field(default=None, init=False)
    """Set when the source changed; the transport raises it instead of a network error."""
    _used: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.chunk_bytes % 3:
            raise ValueError("chunk_bytes must be a multiple of 3")
        self.head, self.tail = self.envelope.head_tail()
        self.content_length = len(self.head) + b64_len(self.source.size) + len(self.tail)

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._used:
            raise RuntimeError("a RequestBody streams once; build a new one for a retry")
        self._used = True
        if isinstance(self.source, MemorySource):
            return self._from_memory(self.source)
        return self._from_disk(self.source)

    async def _from_memory(self, source: MemorySource) -> AsyncIterator[bytes]:
        view = memoryview(source.data)
        yield self.head
        for start in range(0, len(view), self.chunk_bytes):
            yield pybase64.b64encode(view[start : start + self.chunk_bytes])
        yield self.tail

    async def _from_disk(self, source: DiskSource) -> AsyncIterator[bytes]:
        if source.kept is not None:
            self._check_stat(source)
            yield self.head + pybase64.b64encode(source.kept) + self.tail
            return
        digest = hashlib.sha256()
        remaining = source.size
        with open(source.path, "rb") as handle:  # noqa: ASYNC230 - small reads; big ones in a thread
            yield self.head
            while True:
                want = min(self.chunk_bytes, remaining)
                if want > INLINE_CHUNK_BYTES:
                    chunk, encoded = await anyio.to_thread.run_sync(
                        _read_encode, handle, want, digest
                    )
                else:
                    chunk, encoded = _read_encode(handle, want, digest)
                remaining -= len(chunk)
                if remaining == 0 or len(chunk) < want:
                    # Everything read: check before the last bytes go, so that a changed
                    # file never reaches the service as a complete body.
                    self._check_unchanged(handle, source, digest, remaining)
                    yield encoded + self.tail
                    return
                yield encoded

    def _check_unchanged(
        self, handle: io.BufferedReader, source: DiskSource, digest: Any, remaining: int
    ) -> None:
        grew = bool(handle.read(1))
        if remaining or grew or digest.hexdigest() != source.sha256:
            self._changed(source, "shrank" if remaining else "grew" if grew else "changed")

    def _check_stat(self, source: DiskSource) -> None:
        """Kept bytes go only while the file's stat is the one they were read under."""
        try:
            st = os.stat(source.path)
        except OSError:
            self._changed(source, "vanished")
        if (st.st_size, st.st_mtime_ns) != (source.size, source.mtime_ns):
            how = (
                "shrank"
                if st.st_size < source.size
                else "grew"
                if st.st_size > source.size
                else "changed"
            )
            self._changed(source, how)

    def _changed(self, source: DiskSource, how: str) -> NoReturn:
        self.problem = FileChanged(
            f"file {how} on disk after it was read; it was not sent",
            path=source.path,
            hint="re-run once the file is final",
        )
        raise self.problem


def _read_encode(handle: io.BufferedReader, want: int, digest: Any) -> tuple[bytes, bytes]:
    chunk = handle.read(want)
    digest.update(chunk)
    return chunk, pybase64.b64encode(chunk)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What reading a file established: its hash, and the stat it was taken under."""

    sha256: str
    size: int
    mtime_ns: int
    data: bytes | None = field(default=None, repr=False, compare=False)
    """The bytes hashed, kept for a file of at most ``KEEP_BYTES``: it is then parsed
    and sent from them, opened once instead of three times."""


def fingerprint_file(path: Path) -> Fingerprint:
    """sha256 of a file with the stat before and after; raises FileChanged if they differ.

    Blocking: run it in a worker thread (hashlib releases the GIL on large updates).
    """
    try:
        before = os.stat(path)
        digest = hashlib.sha256()
        kept: list[bytes] | None = [] if before.st_size <= KEEP_BYTES else None
        with open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
                if kept is not None:
                    kept.append(chunk)
        after = os.stat(path)
    except OSError as exc:
        raise FileProblem(f"cannot read: {exc.strerror or exc}", path=path) from None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise FileChanged("file changed while it was being read", path=path)
    data = None if kept is None else b"".join(kept)
    return Fingerprint(digest.hexdigest(), after.st_size, after.st_mtime_ns, data)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes in memory."""
    return hashlib.sha256(data).hexdigest()


# --- parts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """One slice of a large file, as parquet ready to send as its own file: bytes in
    memory, or a file of a run's spool (:mod:`batchload.check.spool`)."""

    index: int
    """1-based."""
    first_row: int
    rows: int
    source: MemorySource | DiskSource


def parquet_bytes(frame: pl.DataFrame, schema: pa.Schema | None) -> bytes:
    """A frame written as parquet, cast to ``schema`` when given (the contract's types)."""
    sink = io.BytesIO()
    write_parquet(frame, schema, sink)
    return sink.getvalue()


def write_parquet(frame: pl.DataFrame, schema: pa.Schema | None, where: Any) -> None:
    """Write a frame as parquet to ``where`` (a path or a binary file), cast to ``schema``
    when given: the bytes of :func:`parquet_bytes`."""
    import pyarrow.parquet as pq

    table = frame.to_arrow()
    if schema is not None:
        table = table.select(schema.names).cast(schema)
    pq.write_table(table, where)


PartWriter = Callable[[int, "pl.DataFrame"], "MemorySource | DiskSource"]
"""Writes part ``index`` (its rows given) as parquet, in memory or to a file, again when
it is cut smaller: what :class:`PartCutter` makes its parts' bytes with."""


PROBE_ROWS = 50_000
"""The first part's row count follows the parquet bytes per row of this many first rows
(or all, when fewer), so it is known before the rest of the file is read."""


class PartCutter:
    """Cut rows, fed in order, into parquet parts of at most ``budget_bytes`` each.

    Each part's row count follows the bytes per row of what came before it: the first
    part's, of its first ``PROBE_ROWS`` rows; the next ones', of the part before. A
    part over budget is halved until it fits. So the parts depend only on the rows and
    the budget: a file fed block by block as it is read gives the parts of its whole
    frame fed at once, and a resumed run cuts the same parts. Memory: the rows of one
    part not yet cut, and the block being fed. Blocking: run it in a thread.
    """

    def __init__(
        self,
        *,
        budget_bytes: int,
        schema: pa.Schema | None,
        path: Path | str = "<frame>",
        write: PartWriter | None = None,
    ) -> None:
        self.budget_bytes = budget_bytes
        self.schema = schema
        self.path = path
        self._write = write or self._in_memory
        self.rows = 0
        """Rows fed so far."""
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._next_rows: int | None = None
        self._start = 0
        self._index = 1
        self._empty: pl.DataFrame | None = None

    def feed(self, block: pl.DataFrame) -> Iterator[Part]:
        """Take the next rows; yield the parts they complete."""
        if self._empty is None:
            self._empty = block.clear()
        if block.height:
            self._pending.append(block)
            self._pending_rows += block.height
            self.rows += block.height
        return self._cut(final=False)

    def finish(self) -> Iterator[Part]:
        """Yield the parts of the rows left (one empty part when no row was fed)."""
        yield from self._cut(final=True)
        if self._index == 1 and self._empty is not None:
            yield self._part(self._empty, 0)

    def _cut(self, *, final: bool) -> Iterator[Part]:
        while self._pending_rows:
            if self._next_rows is None:
                if self._pending_rows < PROBE_ROWS and not final:
                    return
                probe = self._frame().head(PROBE_ROWS)
                size = len(parquet_bytes(probe, self.schema))
                self._next_rows = self._rows_for(probe.height, size)
            if self._pending_rows < self._next_rows and not final:
                return
            frame = self._frame()
            count = min(self._next_rows, self._pending_rows)
            source = self._write(self._index, frame.slice(0, count))
            while source.size > self.budget_bytes and count > 1:
                count = max(1, count // 2)
                source = self._write(self._index, frame.slice(0, count))
            if source.size > self.budget_bytes:
                raise FileProblem(
                    f"row {self._start + 1} alone is larger than the request limit allows",
                    path=self.path,
                    hint="raise --max-request-mb",
                )
            rest = frame.slice(count)
            self._pending = [rest] if rest.height else []
            self._pending_rows -= count
            self._next_rows = self._rows_for(count, source.size)
            yield self._part_of(source, count)

    def _frame(self) -> pl.DataFrame:
        import polars as pl

        if len(self._pending) > 1:
            self._pending = [pl.concat(self._pending, rechunk=False)]
        return self._pending[0]

    def _rows_for(self, rows: int, size: int) -> int:
        return max(1, int(self.budget_bytes * PART_FILL * rows / max(size, 1)))

    def _in_memory(self, index: int, frame: pl.DataFrame) -> MemorySource:
        data = parquet_bytes(frame, self.schema)
        return MemorySource(data, sha256_bytes(data))

    def _part(self, frame: pl.DataFrame, count: int) -> Part:
        return self._part_of(self._write(self._index, frame), count)

    def _part_of(self, source: MemorySource | DiskSource, count: int) -> Part:
        part = Part(self._index, self._start, count, source)
        self._start += count
        self._index += 1
        return part


def split_frame(
    frame: pl.DataFrame,
    *,
    budget_bytes: int,
    schema: pa.Schema | None,
    path: Path | str = "<frame>",
) -> Iterator[Part]:
    """Cut a validated frame into parquet parts of at most ``budget_bytes`` each: the
    parts a :class:`PartCutter` cuts from it. Blocking: run it in a thread."""
    cutter = PartCutter(budget_bytes=budget_bytes, schema=schema, path=path)
    yield from cutter.feed(frame)
    yield from cutter.finish()


def max_request_bytes(mb: float) -> int:
    """``--max-request-mb`` in bytes (MiB, as the SDK's 3.8 MB split implies)."""
    if mb <= 0:
        raise ValueError("max request size must be positive")
    return int(mb * MIB)
