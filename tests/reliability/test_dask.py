"""``batchload upload --dask``: worker loops placed on a real local Dask cluster (worker
processes, not threads) that share one run through the ledger, against the real server.

The cluster is started once for the module; its worker processes are harmed for real
(SIGKILL), and each case ends by asking the *server* what it holds.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from batchload.server.process import ServerProcess
from tests.reliability.helpers import (
    assert_clean_output,
    cli_argv,
    cli_env,
    finish,
    start_cli,
    wait_until,
    write_signals,
)
from tests.reliability.test_shared_ledger import (
    TOKEN,
    assert_once_on_server,
    assert_rows_recorded_by_claim_owner,
    finished_by,
    pid_of,
)
from tests.upload_helpers import upload_args

Factory = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Three worker processes of one thread each, on loopback."""
    with LocalCluster(
        processes=True,
        n_workers=3,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as started:
        yield started


def test_a_run_on_dask_loses_a_worker_and_lands_every_file_once(
    cluster: LocalCluster, server_factory: Factory, tmp_path: Path, postgres_url: str
) -> None:
    server = server_factory("--latency-ms", "20", tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", 300, rows=4)
    args = upload_args(
        "data/*.csv", tmp_path, server.url, "--dask", cluster.scheduler_address, "--lease-s", "2"
    )
    args = tuple(postgres_url if a == str(tmp_path) else a for a in args)
    with Client(cluster.scheduler_address) as client:
        pids = set(client.run(os.getpid).values())
    run = start_cli(*args, token=TOKEN, cwd=tmp_path)

    def working() -> int | None:
        done = finished_by(postgres_url)
        return next((pid for pid in pids if done[pid] >= 5), None)

    wait_until(lambda: working() is not None, what="a worker loop's first files")
    victim = working()
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    result = finish(run)

    assert result.code == 0, result.stderr[-3000:]
    assert_clean_output(result)
    assert TOKEN not in result.stdout + result.stderr
    summary = result.json()
    shared = summary["run"]
    assert (shared["done"], shared["failed"], shared["in_flight"], shared["left"]) == (300, 0, 0, 0)
    assert 5 <= finished_by(postgres_url)[victim] < 300  # killed mid-run
    states = {pid_of(p["owner"]): p["state"] for p in shared["processes"]}
    assert states[victim] == "gone", shared
    assert sum(p["done"] for p in shared["processes"]) == 300
    # the dead loop returned no summary: what it settled is counted as by others
    assert summary["by_others"] == finished_by(postgres_url)[victim], summary
    assert 0 < summary["uploaded"] <= 300 - summary["by_others"], summary
    assert_once_on_server(server, paths)
    assert_rows_recorded_by_claim_owner(postgres_url)


def test_a_run_on_dask_with_a_sqlite_manifest_on_this_machine(
    cluster: LocalCluster, server_factory: Factory, tmp_path: Path
) -> None:
    server = server_factory(tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", 20, rows=4)
    paths[3].write_text(paths[3].read_text().replace(",5\n", ",7\n", 1))  # not a horizon
    args = upload_args(
        "data/*.csv",
        Path("run.sqlite"),  # relative: anchored here, not in the workers' directory
        server.url,
        "--dask",
        cluster.scheduler_address,
        "--workers",
        "2",
    )
    result = finish(start_cli(*(a for a in args if a != "--json"), token=TOKEN, cwd=tmp_path))

    assert result.code == 1, result.stderr[-3000:]  # one file of the run is invalid
    assert_clean_output(result)
    assert result.stdout == ""
    assert "started 2 worker loop(s) on the Dask cluster at tcp://127.0.0.1:" in result.stderr
    assert (
        "the run, over every process on the manifest: 19 done, 1 invalid or failed, 0 left, "
        "by 2 process(es):"
    ) in result.stderr
    assert "invalid: " in result.stderr and "sig_0003.csv" in result.stderr
    assert (tmp_path / "run.sqlite").is_file()
    assert_once_on_server(server, [p for i, p in enumerate(paths) if i != 3])


def test_dask_usage_errors_and_a_missing_extra_are_said_plainly(tmp_path: Path) -> None:
    write_signals(tmp_path / "data", 1, rows=4)
    base = upload_args("data/*.csv", tmp_path / "m.sqlite", "http://127.0.0.1:9")

    workers = finish(start_cli(*base, "--workers", "2", token=TOKEN, cwd=tmp_path))
    assert workers.code == 2
    assert "--workers needs --dask ADDRESS" in workers.stderr

    dry = finish(
        start_cli(*base, "--dask", "tcp://127.0.0.1:9", "--dry-run", token=TOKEN, cwd=tmp_path)
    )
    assert dry.code == 2
    assert "a dry run is made here: leave out --dask" in dry.stderr

    # the extra not installed: a distributed package that cannot be imported comes first
    hidden = tmp_path / "without-dask" / "distributed"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named distributed')\n")
    env = {**cli_env(TOKEN), "PYTHONPATH": str(hidden.parent)}
    missing = subprocess.run(
        cli_argv(*base, "--dask", "tcp://127.0.0.1:9"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert missing.returncode == 2, missing.stderr
    assert missing.stdout == ""
    assert missing.stderr.strip() == (
        "error: --dask needs Dask's distributed scheduler, which is not installed "
        "(pip install 'batchload[dask]')"
    )
