"""Request bodies streamed from disk or memory without needless copies.

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
- A file whose request would exceed the limit is sent in parts
  (:mod:`batchload.check.parts`).

A :class:`RequestBody` streams once (an async generator cannot be rewound): build a
fresh one for every attempt.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import pybase64

from batchload.errors import FileChanged
from batchload.protocol import Envelope, b64_len
from batchload.read.content import DiskSource, MemorySource

if TYPE_CHECKING:
    pass

RAW_CHUNK_BYTES = 3 * 1024 * 1024
"""Bytes read and encoded at a time (a multiple of 3: no padding mid-stream)."""
INLINE_CHUNK_BYTES = 256 * 1024
"""Chunks up to this size are read and encoded on the event loop; larger ones in a thread."""

assert RAW_CHUNK_BYTES % 3 == 0


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

    def inline(self) -> bytes | None:
        """The whole body as bytes when its file is in memory and one chunk (a small
        file's kept bytes, a small part or frame): sent with its headers in one write,
        which costs the event loop less than a stream. None: stream it (iterate the
        body). Raises FileChanged, as streaming would, before a byte is sent."""
        source = self.source
        if isinstance(source, DiskSource):
            data = source.kept
        else:
            data = source.data if source.size <= min(self.chunk_bytes, INLINE_CHUNK_BYTES) else None
        if data is None:
            return None
        self._start()
        if isinstance(source, DiskSource):
            self._check_stat(source)
        return self.head + pybase64.b64encode(data) + self.tail

    def __aiter__(self) -> AsyncIterator[bytes]:
        whole = self.inline()
        if whole is not None:
            return _once(whole)
        self._start()
        if isinstance(self.source, MemorySource):
            return self._from_memory(self.source)
        return self._from_disk(self.source)

    def _start(self) -> None:
        if self._used:
            raise RuntimeError("a RequestBody streams once; build a new one for a retry")
        self._used = True

    async def _from_memory(self, source: MemorySource) -> AsyncIterator[bytes]:
        view = memoryview(source.data)
        yield self.head
        for start in range(0, len(view), self.chunk_bytes):
            yield pybase64.b64encode(view[start : start + self.chunk_bytes])
        yield self.tail

    async def _from_disk(self, source: DiskSource) -> AsyncIterator[bytes]:
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


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _read_encode(handle: io.BufferedReader, want: int, digest: Any) -> tuple[bytes, bytes]:
    chunk = handle.read(want)
    digest.update(chunk)
    return chunk, pybase64.b64encode(chunk)


# --- parts -----------------------------------------------------------------------------
