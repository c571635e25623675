"""Spool: the parts of large files, written to disk while the files are checked, until sent.

- A file sent in parts is cut while it is read (:class:`~batchload.encode.PartCutter`)
  and each part is written here as the parquet file it is sent as; the upload streams
  it like any file (re-hashed on the way). Memory holds no file's frame nor its parts,
  whatever the files' size or number.
- The directory is the run's own (``tempfile``), removed with everything in it when
  the run ends, however it ends; a part's file goes as soon as the part is done.
- Nothing is lost with it: a part is cut again from its source file, identically,
  by the upload after a ``413`` and by a resumed run.
"""

from __future__ import annotations

import hashlib
import itertools
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from batchload.encode import HASH_CHUNK_BYTES, DiskSource, Part, PartWriter, write_parquet
from batchload.errors import FileProblem

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

__all__ = ["PartSpool"]

SPOOL_PREFIX = "batchload-parts-"


class PartSpool:
    """A directory of parts waiting to be sent, one parquet file each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._names = itertools.count(1)  # thread-safe: next() holds the GIL

    @classmethod
    @contextmanager
    def temporary(cls, base: Path | None = None) -> Iterator[PartSpool]:
        """A spool in a new temporary directory (under ``base``, default the system's),
        removed with its files on exit."""
        # a check abandoned by a cancelled run may still be writing a part into it
        with tempfile.TemporaryDirectory(
            prefix=SPOOL_PREFIX, dir=base, ignore_cleanup_errors=True
        ) as name:
            yield cls(Path(name))

    def writer(self, schema: pa.Schema | None, *, source: Path) -> PartWriter:
        """What writes the parts of ``source`` into the spool, for a PartCutter: each part
        straight to its own file (no copy of its bytes in memory), hashed from there."""
        stem = f"{next(self._names):08d}"

        def write(index: int, frame: pl.DataFrame) -> DiskSource:
            path = self.directory / f"{stem}.part-{index:04d}.parquet"
            try:
                write_parquet(frame, schema, path)
                return DiskSource(path, path.stat().st_size, _sha256_file(path))
            except OSError as exc:
                path.unlink(missing_ok=True)
                raise FileProblem(
                    f"cannot write part {index} to {self.directory}: {exc.strerror or exc}",
                    path=source,
                    hint="free space there, or point TMPDIR at a larger disk",
                ) from None

        return write

    def discard(self, parts: Iterable[Part]) -> None:
        """Remove the files of ``parts`` that are the spool's (others are left alone)."""
        for part in parts:
            source = part.source
            if isinstance(source, DiskSource) and source.path.parent == self.directory:
                source.path.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        """The parts' files still in the spool."""
        return sorted(self.directory.iterdir()) if self.directory.is_dir() else []


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
