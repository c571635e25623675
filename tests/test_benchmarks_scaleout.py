"""Scenario P (:mod:`benchmarks.scaleout`): processes sharing a manifest, counted at the server.

The window count and the sending rate are checked on constructed arrival times, the
targets and the table on constructed results whose right answers are known; one small
case runs for real on each store (two ``batchload upload`` processes, a real server).
No timing is asserted.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchmarks import scaleout
from benchmarks.report import markdown
from tests import services

# --- what the server saw, on constructed arrivals -------------------------------------------


def test_the_busiest_window_counts_arrivals_less_than_a_second_apart() -> None:
    assert scaleout.busiest_window([]) == 0
    assert scaleout.busiest_window([7.0]) == 1
    # out of order on purpose; [0.5, 1.5) holds 0.5, 0.99, 1.0 and 1.25
    assert scaleout.busiest_window([1.25, 0.0, 5.0, 0.99, 0.5, 1.0]) == 4
    # exactly one second apart: never in one window (it is half-open)
    assert scaleout.busiest_window([0.0, 1.0, 2.0, 3.0]) == 1
    # 8 a second, evenly spaced, for 3 s: 8 in every window, however it is placed
    assert scaleout.busiest_window([n * 0.125 for n in range(24)]) == 8
    # a burst of 5 inside an even 2 a second
    even = [n * 0.5 for n in range(10)]
    assert scaleout.busiest_window([*even, 2.1, 2.2, 2.3, 2.4, 2.45]) == 7
    assert scaleout.busiest_window([0.0, 0.5, 1.0, 1.5], window_s=2.0) == 4


def test_the_rate_counts_only_while_every_process_was_sending() -> None:
    # one process: from its first file to its last, 3 gaps in 2 s
    assert scaleout.overlap_rate([[2.0, 0.0, 0.5, 1.0]]) == 1.5
    # two: from B's first (2.5) to A's last (4.0), 4 files in 1.5 s
    assert scaleout.overlap_rate([[0.0, 1.0, 2.0, 3.0, 4.0], [2.5, 3.5, 5.0, 6.0]]) == 2.0
    assert scaleout.overlap_rate([[0.0, 1.0], [2.0, 3.0]]) is None  # one after the other
    assert scaleout.overlap_rate([[0.0, 1.0, 2.0], []]) == 1.0  # a process with no file
    assert scaleout.overlap_rate([]) is None
    assert scaleout.overlap_rate([[5.0, 5.0]]) is None


def test_a_server_stamp_is_read_as_epoch_seconds() -> None:
    first, later = "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.500Z"
    assert scaleout.moment(later) - scaleout.moment(first) == 1.5
    assert scaleout.moment("1970-01-01T00:00:02.250Z") == 2.25


# --- targets and the table, on constructed results ------------------------------------------


def point(processes: int, files_per_s: float, busiest: int, ledger_ms: float) -> dict[str, Any]:
    return {
        "processes": processes,
        "failed": False,
        "files_per_s": files_per_s,
        "span_files_per_s": files_per_s * 0.75,
        "wall_files_per_s": files_per_s / 2,
        "busiest_1s": busiest,
        "requests": 403,
        "ledger_ms_per_file": ledger_ms,
        "ledger_calls_per_file": 4.1,
        "uploaded_each": [400 // processes] * processes,
        "runs": 2,
    }


@pytest.fixture
def p_result() -> dict[str, Any]:
    """SQLite scales and holds; PostgreSQL scales poorly, then fails at 4 processes."""
    return {
        "files": 400,
        "file_kb": 20,
        "processes": [1, 2, 4],
        "server": "--latency-ms 20 --rate-limit 100",
        "max_rps": 80,
        "concurrency": 1,
        "stores": {
            "sqlite": {
                "points": [
                    point(1, 30.0, 38, 1.0),
                    point(2, 60.0, 70, 1.2),
                    point(4, 72.0, 85, 1.5),
                ]
            },
            "postgres": {
                "points": [
                    point(1, 25.0, 30, 3.0),
                    point(2, 30.0, 40, 2.5),
                    {"processes": 4, "failed": True, "error": "exit 4: lost the ledger", "runs": 1},
                ]
            },
        },
    }


def test_scale_out_targets_compare_with_one_process_and_the_budget(
    p_result: dict[str, Any],
) -> None:
    verdicts = {
        t["target"].split(" (")[0]: (t["measured"], t["met"]) for t in scaleout.targets(p_result)
    }
    assert verdicts == {
        # 60 files/s against 2 × 30; 72 against the budget of 80 (4 × 30 is more)
        "SQLite file: 2 processes ≥ 0.8× the lesser of 2× one process's files/s and the budget": (
            1.0,
            True,
        ),
        "SQLite file: 4 processes ≥ 0.8× the lesser of 4× one process's files/s and the budget": (
            0.9,
            True,
        ),
        "SQLite file: requests in any 1 s at the server ≤ 1.1× --max-rps 80": (85, True),
        "SQLite file: the ledger's own time ≤ 2 ms per file": (1.5, True),
        "PostgreSQL: 2 processes ≥ 0.8× the lesser of 2× one process's files/s and the budget": (
            0.6,  # 30 against 50
            False,
        ),
        # a failed run measured nothing: no target met on it
        "PostgreSQL: 4 processes ≥ 0.8× the lesser of 4× one process's files/s and the budget": (
            None,
            False,
        ),
        "PostgreSQL: requests in any 1 s at the server ≤ 1.1× --max-rps 80": (None, False),
        "PostgreSQL: the ledger's own time ≤ 2 ms per file": (None, False),
    }
    missing = copy.deepcopy(p_result)
    missing["stores"]["postgres"] = {"missing": "PostgreSQL server binaries not found"}
    assert all(t["target"].startswith("SQLite") for t in scaleout.targets(missing))


def test_the_scale_out_table_has_a_row_per_store_and_process_count(
    p_result: dict[str, Any],
) -> None:
    p_result["stores"]["postgres"] = {"missing": "PostgreSQL server binaries not found"}
    results = {
        "quick": False,
        "command": "uv run python -m benchmarks --only P",
        "machine": {"cores": 2, "versions": {p: "1" for p in ("polars", "pandera", "aiohttp")}},
        "load_average_at_start": [3.0],
        "load_average_at_end": [3.5],
        "seconds": 300.0,
        "scenarios": {"P": p_result},
    }
    results["targets"] = scaleout.targets(p_result)
    lines = markdown(results).splitlines()
    assert "**4 of 4 targets met.**" in lines
    # all sending, × 1 process, first to last, whole run, busiest, requests, ledger ms,
    # calls, files each, runs
    row = (
        "| SQLite file | 2 | 60.0 | 2.00× | 45.0 | 30.0 | 70 / 80 | 403 | 1.20 | 4.1 "
        "| 200, 200 | 2 |"
    )
    assert row in lines
    assert (
        "| PostgreSQL | not measured: PostgreSQL server binaries not found |" + " |" * 10 in lines
    )


# --- one small case for real, on each store -------------------------------------------------


@pytest.fixture(params=[("sqlite", 2), ("postgres", 1)], ids=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> tuple[str, scaleout.Manifests, int]:
    """A store's name, its maker of fresh manifests and the processes to start: two on
    SQLite; one on PostgreSQL (the session's server), whose sharing the reliability
    suite covers (a second process would add only its wait for the first)."""
    name, processes = request.param
    if name == "sqlite":
        return name, scaleout.sqlite_manifest, processes
    server: services.PostgresServer = request.getfixturevalue("postgres_server")
    return name, scaleout.postgres_manifests(server), processes


def test_processes_sharing_a_manifest_land_every_file_once(
    store: tuple[str, scaleout.Manifests, int], tmp_path: Path
) -> None:
    """Real ``batchload upload`` processes against a real server: the case fails unless
    each exits 0, the server holds every file once in one dataset and the processes'
    uploads add up to the files."""
    name, manifests, processes = store
    sizes = scaleout.Sizes(files=6, processes=(processes,), repeats=1)
    said: list[str] = []
    result = scaleout.measure(sizes, name, manifests, work=tmp_path, log=said.append)
    (found,) = result["points"]
    assert not found["failed"], found
    assert sum(found["uploaded_each"]) == 6 and len(found["uploaded_each"]) == processes
    assert found["requests"] >= 6  # every upload, and the dataset's create and listings
    assert 1 <= found["busiest_1s"] <= found["requests"]
    assert found["ledger_calls_per_file"] > 0 and found["ledger_ms_per_file"] > 0
    assert said and f"{processes} process(es)" in said[0]
