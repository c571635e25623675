"""The interpreter batchload's contenders run with: a default install, as a user has it.

The project's own environment has the dev dependencies, and one of them changes what
batchload costs: pandera imports pandas whenever it is installed (~55-65 MiB more at
every point, ~0.4 CPU s more start-up), though no contract needs it. So a full run
makes a default install (``uv sync --no-dev --frozen``, with the project itself
installed editable from this checkout) under its scratch directory, from uv's cache
(a fraction of a second), and runs everything that imports batchload with it:
batchload with and without validation, the ceiling (it builds its requests with
batchload), and scenario U's commands. The guide's contenders need ``requests`` (a dev
dependency) and run with the benchmarks' own interpreter; they never import pandas.

Where the install cannot be made (no uv, or its cache is cold and the registry out of
reach) the run says so and goes on in the dev environment: the report then says where
its figures come from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import ROOT

#: Contenders that import batchload, and so run with :attr:`Interpreter.batchload`.
IMPORT_BATCHLOAD = frozenset({"batchload", "batchload-novalidate", "ceiling"})
DEFAULT_INSTALL = "default install (uv sync --no-dev)"
DEV_ENVIRONMENT = "dev environment (pandas installed: pandera imports it)"
SYNC_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Interpreters:
    """Which Python runs what, and what the batchload one is (for the report)."""

    batchload: str
    environment: str
    dev: str = sys.executable

    def for_kinds(self, kinds: set[str]) -> str:
        """The interpreter for one process running contenders of ``kinds`` (a quick run
        mixes them in one process: then the dev one, which has everything)."""
        return self.batchload if kinds <= IMPORT_BATCHLOAD else self.dev


def dev_only() -> Interpreters:
    """Everything in the benchmarks' own environment (quick runs)."""
    return Interpreters(batchload=sys.executable, environment=DEV_ENVIRONMENT)


def default_install(where: Path, log: Callable[[str], None]) -> Interpreters:
    """Make a default install at ``where`` and run batchload with it; the dev
    environment, said so, when it cannot be made."""
    uv = os.environ.get("UV") or shutil.which("uv")
    problem = "uv not found"
    if uv:
        try:
            done = subprocess.run(
                [uv, "sync", "--no-dev", "--frozen", "--quiet"],
                cwd=ROOT,
                env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(where)},
                capture_output=True,
                text=True,
                timeout=SYNC_TIMEOUT_S,
            )
            python = where / "bin" / "python"
            if done.returncode == 0 and python.exists():
                return Interpreters(batchload=str(python), environment=DEFAULT_INSTALL)
            problem = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = str(exc)
    log(f"no default install ({problem}): batchload runs in the dev environment")
    return dev_only()


_MEASURED_CLI = """
import atexit, sys
from pathlib import Path

def peak():
    status = Path("/proc/self/status").read_text().splitlines()
    kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    Path(sys.argv[1]).write_text(kb)

atexit.register(peak)
from batchload.cli import main
sys.exit(main(sys.argv[2:]))
"""


def measured_cli(python: str, peak_file: Path, args: Sequence[str]) -> list[str]:
    """The command that runs ``batchload ARGS`` with ``python`` and, as it exits, writes its
    own peak RSS (``VmHWM``, KiB) to ``peak_file``. ``wait4``'s ``ru_maxrss`` cannot say
    it: a child's counts the memory of the parent it was forked from."""
    return [python, "-c", _MEASURED_CLI, str(peak_file), *args]
