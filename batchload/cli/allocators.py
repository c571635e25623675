"""Have the C allocators give freed memory back, so a long run's peak stays that of one file.

A large file's check allocates arrays of tens of MB (its key hashes, Arrow blocks) and
frees them when the file is done. Two allocators keep such memory by default:

- glibc ``malloc`` raises its mmap threshold to the size of the largest block freed,
  up to 32 MiB: after the first large array, later ones come from its heap and stay
  there once freed. A fixed threshold (``M_MMAP_THRESHOLD``) keeps blocks of 8 MiB and
  more in mappings of their own, returned to the system when freed.
- pyarrow's mimalloc pool waits before it returns freed pages (``MIMALLOC_PURGE_DELAY``);
  read at its start, so set before pyarrow is first used.

On 4 CSV files of 100 MB checked and sent (scenario L), this lowered the client's peak
by 70-110 MB at the same CPU. Either setting is left alone when the environment already
sets it; elsewhere than glibc, the first does nothing.

Python's own collector is told the same kind of thing (:func:`exempt_start_up_objects`):
what imports made lives as long as the process.
"""

from __future__ import annotations

import gc
import os

__all__ = ["exempt_start_up_objects", "give_back_freed_memory"]

MMAP_THRESHOLD_BYTES = 8 << 20
_M_MMAP_THRESHOLD = -3  # glibc malloc.h


def give_back_freed_memory() -> None:
    """Apply both settings to this process (the CLI's entry point does, first thing).

    A program that embeds batchload may call it too; ``import batchload`` does not.
    """
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def exempt_start_up_objects() -> None:
    """Put every object alive now out of the cyclic collector's reach (``gc.freeze``),
    once a command has imported what it runs with.

    Modules, classes and functions of polars, pyarrow and pandera are ~140,000 objects,
    and every full collection during a run scanned them all again (~0.1 s each, a run
    of 1,000 small files has one or two) for garbage they never are. Objects made
    later are collected as before. The CLI calls it before a run; a program that embeds
    batchload may too.
    """
    gc.freeze()
