"""Spool: the parts of large files, written to disk while the files are checked, until sent.

- A file sent in parts is cut while it is read (:class:`~batchload.check.parts.PartCutter`)
  and each part is written here as the parquet file it is sent as; the upload streams
  it like any file (re-hashed on the way). Memory holds no file's frame nor its parts,
  whatever the files' size or number.
- The directory is the run's own (``tempfile``), made when the first part is written
  and removed with everything in it when the run ends, however it ends (but for a
  SIGKILL); a part's file goes as soon as the part is done.
- Nothing is lost with it: a part is cut again from its source file, identically,
  by the upload after a ``413`` and by a resumed run.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from batchload.check.parts import Part, PartWriter, write_parquet
from batchload.errors import FileProblem
from batchload.read.content import HASH_CHUNK_BYTES, DiskSource

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from batchload.read.discover import SourceFile

__all__ = ["PartSpool"]

SPOOL_PREFIX = "batchload-parts-"


class PartSpool:
    """A directory of parts waiting to be sent, one parquet file each; made when the first
    part is written (a run without large files, or killed, leaves none behind)."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base
        self._directory: Path | None = None
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
                self._directory = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=self.base))
            return self._directory

    def close(self) -> None:
        """Remove the directory and every part in it; nothing is written after."""
        with self._lock:
            self._closed = True
            directory, self._directory = self._directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

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
                if path.is_absolute():
                    path.unlink(missing_ok=True)
                raise FileProblem(
                    f"cannot write part {index} to {where}: {exc.strerror or exc}",
                    path=source,
                    hint="free space there, or point TMPDIR at a larger disk",
                ) from None

        return write

    def discard(self, parts: Iterable[Part]) -> None:
        """Remove the files of ``parts`` that are the spool's (others are left alone)."""
        for part in parts:
            source = part.source
            if isinstance(source, DiskSource) and source.path.parent == self._directory:
                source.path.unlink(missing_ok=True)

    def release(self, source: SourceFile) -> None:
        """Remove the copy an object was read into, once its file is done with (a local
        file, or a copy outside the spool, is left alone)."""
        if source.url is not None and source.path.parent == self._directory:
            source.path.unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
