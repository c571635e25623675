"""Where a file's bytes come from, and what they are: a path or bytes in memory, sized and hashed.

A :class:`Fingerprint` is taken once, when a file is first read: its size, mtime and
sha256 (and, for a small file, the bytes themselves, so it is parsed and sent from
what was hashed). Later stages compare against it instead of hashing again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchload.errors import FileChanged, FileProblem

if TYPE_CHECKING:
    pass


HASH_CHUNK_BYTES = 1024 * 1024


KEEP_BYTES = 64 * 1024
"""A file this small is read once, when it is hashed (:attr:`Fingerprint.data`)."""


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
