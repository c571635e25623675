"""The CLI tunes the C allocators to give large freed blocks back; ``import batchload`` does not.

glibc says where a block lives: ``mallinfo2().hblkhd`` counts the bytes in blocks of
their own mapping, which go back to the system when freed. After a 24 MiB block is
freed, glibc's dynamic threshold would put the next one on its heap; with the CLI's
fixed threshold it gets a mapping of its own.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes
{setup}

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
first = bytearray(24 << 20)  # freed, it raises glibc's dynamic mmap threshold past 24 MiB
del first
second = bytearray(24 << 20)
import os
print(libc.mallinfo2().hblkhd >= 24 << 20, os.environ.get("MIMALLOC_PURGE_DELAY"))
"""

AS_CLI = """
from batchload.cli import main
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["--version"])
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallinfo2"
)


def _probe(setup: str, **env: str) -> list[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MIMALLOC_", "MALLOC_"))
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)],
        env={**environment, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@glibc_only
def test_the_cli_puts_large_blocks_in_mappings_that_go_back_when_freed() -> None:
    assert _probe(AS_CLI) == ["True", "0"]


@glibc_only
def test_importing_the_library_leaves_the_hosts_allocators_alone() -> None:
    assert _probe("import batchload, batchload.api") == ["False", "None"]


@glibc_only
def test_the_users_own_settings_win() -> None:
    assert _probe(AS_CLI, MIMALLOC_PURGE_DELAY="250", MALLOC_MMAP_THRESHOLD_="67108864") == [
        "False",
        "250",
    ]
