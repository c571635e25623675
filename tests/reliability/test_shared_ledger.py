"""Several ``batchload upload`` processes on one ledger (SQLite or a real PostgreSQL): one run,
shared by claims, whatever happens to the processes.

Each case starts the real CLI as subprocesses against the real local server, harms one
process (SIGKILL, SIGSTOP past its lease) at a moment read from the ledger, and ends by
asking the *server* what it holds: every file once, byte-identical, in one dataset.
Leases are short (``--lease-s 2``) so that a takeover happens within the test.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import requests

from batchload.server.process import ServerProcess
from benchmarks.scaleout import busiest_window
from tests.reliability.helpers import (
    CliResult,
    ServerView,
    assert_clean_output,
    cli,
    finish,
    sha256,
    start_cli,
    wait_until,
    write_signals,
)
from tests.upload_helpers import upload_args

Factory = Callable[..., ServerProcess]
TOKEN = "shared-ledger-token-4b1d"
LEASE = ("--lease-s", "2")


def ledger_query(location: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read straight from the ledger's database (not through batchload)."""
    if location.startswith("postgresql://"):
        with psycopg.connect(location, autocommit=True) as conn:
            try:
                return conn.execute(sql).fetchall()  # type: ignore[arg-type]
            except psycopg.errors.UndefinedTable:  # not created yet
                return []
    if not Path(location).exists():
        return []
    try:
        with sqlite3.connect(f"file:{location}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def finished_by(location: str) -> Counter[str]:
    """Files settled as done, per process (the pid in the owner name)."""
    rows = ledger_query(
        location, "SELECT owner FROM files WHERE state = 'done' AND parts IS NOT NULL"
    )
    return Counter(pid_of(owner) for (owner,) in rows)


def pid_of(owner: str) -> int:
    return int(owner.split(":")[-2])


def start(args: Sequence[str], cwd: Path) -> subprocess.Popen[str]:
    return start_cli(*args, token=TOKEN, cwd=cwd)


def assert_once_on_server(server: ServerProcess, paths: Sequence[Path]) -> str:
    """One dataset holding every file once, byte-identical; returns its id."""
    view = ServerView(server.url, TOKEN)
    datasets = view.datasets()
    assert len(datasets) == 1, datasets
    receipts = view.receipts(datasets[0]["id"])
    ids = Counter(r["file_id"] for r in receipts)
    assert ids == Counter(p.stem for p in paths), set(ids) ^ {p.stem for p in paths}
    assert {r["file_id"]: r["sha256"] for r in receipts} == {p.stem: sha256(p) for p in paths}
    return str(datasets[0]["id"])


def assert_rows_recorded_by_claim_owner(location: str) -> None:
    """Every row was written by the process that holds (held) its file's claim."""
    mismatched = ledger_query(
        location,
        "SELECT f.source_path, f.owner, c.owner FROM files f JOIN claims c "
        "ON c.dataset = f.dataset AND c.source_path = f.source_path "
        "WHERE f.owner IS DISTINCT FROM c.owner",
    )
    assert not mismatched, mismatched[:5]


def run_killed_and_rerun(
    server: ServerProcess, tmp_path: Path, location: str, *, processes: int, files: int
) -> None:
    """``processes`` uploads of ``files`` files on ``location``: the first is SIGKILLed
    once it has done some files and the others have joined (holding claims and leases
    it still had); the others finish the run; a re-run has nothing left to send.

    The others start once the victim has done files, so that however slowly a loaded
    machine starts them, the victim is sure to be killed mid-run, not idle."""
    paths = write_signals(tmp_path / "data", files, rows=4)
    args = upload_args("data/*.csv", Path(location), server.url, "--concurrency", "2", *LEASE)
    args = tuple(location if a == str(Path(location)) else a for a in args)
    victim = start(args, tmp_path)
    wait_until(lambda: finished_by(location)[victim.pid] >= 5, what="the victim's first files")
    procs = [victim, *(start(args, tmp_path) for _ in range(processes - 1))]
    victim.send_signal(signal.SIGKILL)
    killed = finish(victim)
    assert killed.code == -signal.SIGKILL
    survivors = [finish(p) for p in procs[1:]]
    for result in survivors:
        assert result.code == 0, result.stderr[-3000:]
        assert_clean_output(result)
    summaries = [r.json() for r in survivors]
    # every file counted once over the survivors: theirs, or settled by another process
    victim_done = finished_by(location)[victim.pid]
    assert 5 <= victim_done < files  # killed mid-run
    for summary in summaries:
        assert summary["uploaded"] > 0, summary  # each survivor did work
        assert summary["uploaded"] + summary["by_others"] + summary["skipped"] == files, summary
    # no file uploaded by two processes: the survivors' uploads and the victim's files
    # (done, or in doubt and settled from a survivor's listing) never overlap; a file the
    # victim was killed on between its answer and its bookkeeping is the survivors' again
    settled = ledger_query(
        location,
        "SELECT COUNT(*) FROM files WHERE state = 'done' AND last_error LIKE '%answer was lost%'",
    )[0][0]
    assert sum(s["uploaded"] for s in summaries) + victim_done + settled <= files
    assert_once_on_server(server, paths)
    assert_rows_recorded_by_claim_owner(location)

    rerun = cli(*args, token=TOKEN, cwd=tmp_path)
    assert rerun.code == 0, rerun.stderr[-3000:]
    assert (rerun.json()["uploaded"], rerun.json()["skipped"]) == (0, files)
    assert_once_on_server(server, paths)


def test_two_processes_on_one_sqlite_manifest_one_killed(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = server_factory("--latency-ms", "40", tokens=(TOKEN,))
    manifest = str(tmp_path / "run.sqlite")
    run_killed_and_rerun(server, tmp_path, manifest, processes=3, files=150)


def test_the_last_process_to_finish_prints_the_runs_summary_and_its_exit_code(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = server_factory("--latency-ms", "40", tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", 150, rows=4)
    paths[30].write_text(paths[30].read_text().replace(",5\n", ",7\n", 1))  # not a horizon
    manifest = tmp_path / "run.sqlite"
    args = upload_args("data/*.csv", manifest, server.url, "--concurrency", "2")
    human = [a for a in args if a != "--json"]
    started = [start(args, tmp_path), start(human, tmp_path)]
    shown, told = (finish(p) for p in started)
    for result in (shown, told):
        assert_clean_output(result)
    summary = shown.json()
    run = summary["run"]
    mine = (summary["owner"], summary["uploaded"], summary["invalid"])
    owners = [p["owner"] for p in run["processes"]]
    assert len(owners) == 2 and mine[0] in owners, run
    other = next(o for o in owners if o != mine[0])
    whole = (  # what the process that finished last says of the run
        "the run, finished last by this process: 149 done, 1 invalid or failed, 0 left, "
        "by 2 process(es):"
    )
    if run["last"]:  # the --json one finished last: the run's summary and exit code
        assert (run["done"], run["failed"], run["left"], run["in_flight"]) == (149, 1, 0, 0)
        assert summary["exit_code"] == shown.code == 1, summary
        assert f"the run goes on in 1 other process(es) on the manifest ({mine[0]})" in told.stderr
        own_invalid = " 1 invalid, " in told.stderr
        assert told.code == (1 if own_invalid else 0), told.stderr
    else:  # the other did: it says so, and exits with the run's code
        assert run["running"] == [other], run
        assert shown.code == summary["exit_code"] == (1 if mine[2] else 0)
        assert whole in told.stderr, told.stderr
        assert told.code == 1, told.stderr
        for process in run["processes"]:
            line = f"  {process['owner']}: "
            assert line in told.stderr, told.stderr
    assert summary["uploaded"] > 0, summary  # both processes did work: a shared run
    assert_once_on_server(server, [p for i, p in enumerate(paths) if i != 30])


def test_three_processes_on_postgres_one_killed_then_rerun(
    server_factory: Factory, tmp_path: Path, postgres_url: str
) -> None:
    server = server_factory("--latency-ms", "40", tokens=(TOKEN,))
    run_killed_and_rerun(server, tmp_path, postgres_url, processes=3, files=300)


def test_a_paused_process_cannot_record_what_another_took_over(
    server_factory: Factory, tmp_path: Path, postgres_url: str
) -> None:
    server = server_factory("--latency-ms", "300", tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", 30, rows=4)
    args = upload_args("data/*.csv", tmp_path, server.url, "--concurrency", "2", *LEASE)
    args = tuple(postgres_url if a == str(tmp_path) else a for a in args)
    paused = start(args, tmp_path)
    in_flight = (
        f"SELECT COUNT(*) FROM files f JOIN claims c ON c.source_path = f.source_path "
        f"WHERE f.state = 'sent' AND c.outcome IS NULL AND c.owner LIKE '%:{paused.pid}:%'"
    )
    wait_until(
        lambda: (ledger_query(postgres_url, in_flight) or [(0,)])[0][0] >= 1,
        what="a request of the first process in flight",
    )
    paused.send_signal(signal.SIGSTOP)
    try:
        other = cli(*args, token=TOKEN, cwd=tmp_path)  # waits out the lease, takes over
    finally:
        paused.send_signal(signal.SIGCONT)
    late = finish(paused)

    assert other.code == 0, other.stderr[-3000:]
    assert late.code == 0, late.stderr[-3000:]
    assert_clean_output(late)
    assert late.json()["lost"] >= 1, late.json()
    assert_once_on_server(server, paths)
    assert_rows_recorded_by_claim_owner(postgres_url)
    owners = finished_by(postgres_url)
    assert owners[pid_of_cli(other)] + owners[paused.pid] == len(paths)


def pid_of_cli(result: CliResult) -> int:
    """The pid of a finished run, from the owner name its --json summary gives."""
    return int(result.json()["owner"].split(":")[-2])


def test_three_processes_share_one_request_budget(
    server_factory: Factory, tmp_path: Path, postgres_url: str
) -> None:
    server = server_factory(tokens=(TOKEN,))
    paths = write_signals(tmp_path / "data", 120, rows=4)
    args = upload_args("data/*.csv", tmp_path, server.url, "--max-rps", "30")
    args = tuple(postgres_url if a == str(tmp_path) else a for a in args)
    procs = [start(args, tmp_path) for _ in range(3)]
    results = [finish(p) for p in procs]
    for result in results:
        assert result.code == 0, result.stderr[-3000:]
    assert_once_on_server(server, paths)

    session = requests.Session()
    session.trust_env = False
    answer = session.get(
        server.url + "/admin/requests", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    times = answer.json()["times"]
    assert len(times) >= len(paths)
    busiest = busiest_window(times)
    assert 25 <= busiest <= 33, busiest  # the budget binds, and holds within 10 %
