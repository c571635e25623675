"""``import batchload`` has the C allocators give large freed blocks back to the system."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import sys
import batchload

def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024

first = bytearray(24 << 20)  # freed, it would raise glibc's mmap threshold past 24 MiB
del first
before = rss_mb()
second = bytearray(24 << 20)  # touched: 24 MiB resident while it lives
del second
print(rss_mb() - before)
"""


def _run(code: str, **env: str) -> str:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MIMALLOC_", "MALLOC_"))
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env={**environment, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_a_large_block_freed_is_given_back_to_the_system() -> None:
    assert int(_run(PROBE)) < 8  # MB still resident after the 24 MiB block is freed


def test_pyarrows_pool_returns_pages_at_once_unless_the_user_said_otherwise() -> None:
    show = "import os, batchload; print(os.environ['MIMALLOC_PURGE_DELAY'])"
    assert _run(show) == "0"
    assert _run(show, MIMALLOC_PURGE_DELAY="250") == "250"
