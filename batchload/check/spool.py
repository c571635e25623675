"""Spool: the parts of large files, written to disk while the files are checked, until sent.

- A file sent in parts is cut while it is read (:class:`~batchload.check.parts.PartCutter`)
  and each part is written here as the parquet file it is sent as; the upload streams
  it like any file (re-hashed on the way). Memory holds no file's frame nor its parts,
  whatever the files' size or number.
- The directory is the run's own (``tempfile``), made when the first part is written
  and removed with everything in it when the run ends, however it ends; a part's file
  goes as soon as the part is done. A run killed outright (SIGKILL, power loss) leaves
  it behind: each spool holds a lock on its ``owner.lock`` for as long as its process
  lives, so the next run's :func:`sweep_dead` takes the lock of a dead run's spool and
  removes it, and leaves a live run's alone.
- A compressed CSV is decompressed here (:meth:`PartSpool.decompressed`), streamed and
  hashed, and its text is sent as the CSV it is.
- Nothing is lost with it: a part is cut again from its source file, identically,
  by the upload after a ``413`` and by a resumed run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from batchload.check.parts import Part, PartWriter, write_parquet
from batchload.errors import FileProblem
from batchload.read.content import HASH_CHUNK_BYTES, DiskSource, MemorySource

if TYPE_CHECKING:
    import polars as pl

    from batchload.read.discover import SourceFile

__all__ = ["PartSpool", "sweep_dead"]

SPOOL_PREFIX = "batchload-parts-"
_MAKING_PREFIX = "batchload-making-"  # not swept: a spool being made, not yet locked
LOCK_NAME = "owner.lock"


def sweep_dead(base: Path | None = None) -> list[Path]:
    """Remove the spools that dead runs left under ``base`` (default the system's temporary
    directory); returns them. A live run's spool is locked and stays."""
    root = Path(base or tempfile.gettempdir())
    removed = []
    for directory in sorted(root.glob(f"{SPOOL_PREFIX}*")):
        try:
            # no lock file: a batchload from before the lock made it, perhaps running still
            fd = os.open(directory / LOCK_NAME, os.O_RDWR)
        except OSError:
            continue  # not ours to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its run is alive
        finally:
            os.close(fd)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _locked_directory(base: Path | None) -> tuple[Path, int]:
    """A new spool directory, locked by this process before it takes its swept name."""
    making = Path(tempfile.mkdtemp(prefix=_MAKING_PREFIX, dir=base))
    fd = os.open(making / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and ours: never held by another
    directory = making.with_name(SPOOL_PREFIX + making.name.removeprefix(_MAKING_PREFIX))
    making.rename(directory)
    return directory, fd


class PartSpool:
    """A directory of parts waiting to be sent, one parquet file each; made when the first
    part is written (a run without large files, or killed, leaves none behind)."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base
        self._directory: Path | None = None
        self._lock_fd: int | None = None
        self._closed = False
        self._lock = threading.Lock()  # parts are written from the check threads
        self._names = itertools.count(1)

    @classmethod
    @contextmanager
    def temporary(cls, base: Path | None = None) -> Iterator[PartSpool]:
        """A spool in a new temporary directory (under ``base``, default the system's),
        removed with its files on exit."""
        spool = cls(base)
        try:
            yield spool
        finally:
            spool.close()

    @property
    def directory(self) -> Path:
        """The spool's directory (made now if it was not yet); OSError once closed."""
        with self._lock:
            if self._closed:
                # a check abandoned by a cancelled run may still be cutting: no new dir
                raise OSError("the run's spool was removed")
            if self._directory is None:
                self._directory, self._lock_fd = _locked_directory(self.base)
            return self._directory

    def close(self) -> None:
        """Remove the directory and every part in it; nothing is written after."""
        with self._lock:
            self._closed = True
            directory, self._directory = self._directory, None
            fd, self._lock_fd = self._lock_fd, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def writer(self, schema: pa.Schema | None, *, source: Path) -> PartWriter:
        """What writes the parts of ``source`` into the spool, for a PartCutter: each part
        straight to its own file (no copy of its bytes in memory), hashed from there."""
        stem = f"{next(self._names):08d}"

        def write(index: int, frame: pl.DataFrame) -> DiskSource:
            path = Path(f"{stem}.part-{index:04d}.parquet")
            try:
                path = self.directory / path
                write_parquet(frame, schema, path)
                return DiskSource(path, path.stat().st_size, _sha256_file(path))
            except OSError as exc:
                where = path.parent if path.is_absolute() else "the run's spool"
                raise _spool_failure(
                    path, source, f"cannot write part {index} to {where}: {exc.strerror or exc}"
                ) from None

        return write

    def discard(self, parts: Iterable[Part]) -> None:
        """Remove the files of ``parts`` that are the spool's (others are left alone)."""
        for part in parts:
            self.remove(part.source)

    def remove(self, source: DiskSource | MemorySource) -> None:
        """Remove ``source``'s file if it is the spool's (others are left alone)."""
        if isinstance(source, DiskSource) and source.path.parent == self._directory:
            source.path.unlink(missing_ok=True)

    def release(self, source: SourceFile) -> None:
        """Remove the copy an object was read into, once its file is done with (a local
        file, or a copy outside the spool, is left alone)."""
        if source.url is not None and source.path.parent == self._directory:
            source.path.unlink(missing_ok=True)

    def decompressed(self, source: Path, codec: str, kept: bytes | None = None) -> DiskSource:
        """A compressed CSV's text, decompressed into the spool as it is read (in bounded
        memory) and hashed on the way: what is sent for it. ``kept``: the compressed
        bytes when the caller holds them (a small file, parsed from them too)."""
        path = Path(f"{next(self._names):08d}.csv")
        digest = hashlib.sha256()
        try:
            path = self.directory / path
            raw = pa.BufferReader(kept) if kept is not None else str(source)
            with pa.input_stream(raw, compression=codec) as text, open(path, "wb") as out:
                while chunk := text.read(HASH_CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
            return DiskSource(path, path.stat().st_size, digest.hexdigest())
        except (OSError, pa.ArrowException) as exc:
            raise _spool_failure(
                path, source, f"cannot decompress into the run's spool: {str(exc).splitlines()[0]}"
            ) from None


def _spool_failure(path: Path, source: Path, message: str) -> FileProblem:
    """A spool file that could not be written: removed (when it was begun), and why."""
    if path.is_absolute():  # still relative: the spool's directory itself failed
        path.unlink(missing_ok=True)
    return FileProblem(
        message, path=source, hint="free space there, or point TMPDIR at a larger disk"
    )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
