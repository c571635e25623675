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

import itertools
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from batchload.encode import DiskSource, MemorySource, Part
from batchload.errors import FileProblem

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

    def put(self, part: Part, *, source: Path) -> Part:
        """``part`` written to a file of the spool; it is then sent from there.

        ``source``: the file the part is cut from, named when the part cannot be written.
        """
        if not isinstance(part.source, MemorySource):
            return part
        path = self.directory / f"{next(self._names):08d}.part-{part.index:04d}.parquet"
        try:
            path.write_bytes(part.source.data)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise FileProblem(
                f"cannot write part {part.index} to {self.directory}: {exc.strerror or exc}",
                path=source,
                hint="free space there, or point TMPDIR at a larger disk",
            ) from None
        return replace(part, source=DiskSource(path, part.source.size, part.source.sha256))

    def discard(self, parts: Iterable[Part]) -> None:
        """Remove the files of ``parts`` that are the spool's (others are left alone)."""
        for part in parts:
            source = part.source
            if isinstance(source, DiskSource) and source.path.parent == self.directory:
                source.path.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        """The parts' files still in the spool."""
        return sorted(self.directory.iterdir()) if self.directory.is_dir() else []
