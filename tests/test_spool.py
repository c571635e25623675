"""Spools of runs killed outright are removed by the next run; a live run's stay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from batchload.check.spool import PartSpool, sweep_dead

_KILLED = """
import os, sys
from pathlib import Path
from batchload.check.spool import PartSpool
spool = PartSpool(Path(sys.argv[1]))
(spool.directory / "00000001.part-0001.parquet").write_bytes(b"x")
print(spool.directory, flush=True)
os.kill(os.getpid(), 9)  # killed outright: nothing is cleaned up
"""


def test_a_killed_runs_spool_goes_and_a_live_one_stays(tmp_path: Path) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED, str(tmp_path)], capture_output=True, text=True
    )
    assert killed.returncode == -9
    dead = Path(killed.stdout.strip())
    assert dead.is_dir()
    with PartSpool.temporary(tmp_path) as live:
        alive = live.directory
        assert sweep_dead(tmp_path) == [dead]
        assert not dead.exists() and alive.is_dir()
        assert sweep_dead(tmp_path) == []
    assert list(tmp_path.iterdir()) == []
