"""Scenario P: one run spread over 1, 2 and 4 ``batchload upload`` processes that share
its manifest and one ``--max-rps`` budget (issue 17).

- Each case gets a fresh local server (``--latency-ms 20 --rate-limit 100``) and a fresh
  manifest: a SQLite file, and a database of a PostgreSQL server started from the
  machine's binaries (:mod:`benchmarks.services`; when it cannot start, the report
  says why). N copies of the same ``batchload upload`` command then share the files,
  each with ``--max-rps 80`` and one request in flight (``--concurrency 1``), so that
  one process alone stays under the budget, as a process bound by its validation CPU
  would: throughput should grow with processes until the budget binds.
- Measured at the server: every file once in one dataset; files/s while every process
  was sending (each file's ``received_at``, its sender from the manifest); and the
  most requests in any 1-second window, from the arrival times ``GET
  /admin/requests`` lists, against the budget. From the processes' ``--json``
  summaries: the ledger's own time (``ledger_s``: claims, writes, heartbeats,
  grants) per file, over all the processes.
- Beside it, files/s from the first file to the last (the processes come up one by
  one, and the last ones finish the files they hold alone) and over the whole run,
  launch to the last exit (start-up, and the wait of those that finish first for the
  others, included).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from batchload.server.process import ServerProcess
from batchload.state.stores import open_ledger
from benchmarks.contender import TOKEN_ENV
from benchmarks.data import ROOT, SCHEMA, write_files
from benchmarks.services import PostgresServer, ServiceError, start_postgres
from benchmarks.targets import target

LATENCY_MS = 20
RATE_LIMIT = 100
"""The server's own limit (429 beyond it): the budget stays under it."""
MAX_RPS = 80
CONCURRENCY = 1
"""Requests in flight per process: one process alone stays under the budget."""
FILE_BYTES = 20_000
BUDGET_SLACK = 1.1
"""The budget holds if no 1-second window at the server has more than this × it."""
LEDGER_MS_PER_FILE = 2.0
SCALING = 0.8
"""N processes should reach this share of N × one process's files/s, or of the budget."""
TOKEN = "scale-out-benchmark-token"
DATASET = "bench_p"
RUN_TIMEOUT_S = 900.0
STORES = {"sqlite": "SQLite file", "postgres": "PostgreSQL"}
Manifests = Callable[[Path], contextlib.AbstractContextManager[str]]
"""Gives each case (its work directory) a fresh manifest location."""
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """How big scenario P is: files per run, the process counts, runs of each."""

    files: int
    processes: tuple[int, ...]
    repeats: int


# --- what the server saw ------------------------------------------------------------------


def busiest_window(times: Iterable[float], window_s: float = 1.0) -> int:
    """The most of ``times`` in any half-open window of ``window_s`` seconds: what a
    budget of N a second must keep to N (two pointers over the sorted times)."""
    ordered = sorted(times)
    most = first = 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def moment(stamp: str) -> float:
    """An ISO 8601 stamp (the server's ``received_at``) in epoch seconds."""
    return datetime.fromisoformat(stamp).timestamp()


def overlap_rate(arrivals: Iterable[Sequence[float]]) -> float | None:
    """Files/s while every process was sending: given each process's files' arrival
    times, the arrivals from the last process's first file to the first process's last
    file, over that time. For one process, its first file to its last. None when the
    processes never overlapped by two files (a process with no file is left out)."""
    spans = [sorted(times) for times in arrivals if times]
    if not spans:
        return None
    start, end = max(s[0] for s in spans), min(s[-1] for s in spans)
    if end <= start:
        return None
    inside = sum(1 for times in spans for t in times if start <= t <= end)
    return (inside - 1) / (end - start)


def _get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with _OPENER.open(request, timeout=60) as answer:
        return json.load(answer)


def _received(url: str) -> dict[str, float]:
    """When the server received each file of the one dataset the run made, by file_id
    (ValueError if there is not exactly one dataset, or a file_id is listed twice)."""
    datasets = _get(f"{url}/ingestion/datasets/")
    if len(datasets) != 1:
        raise ValueError(f"{len(datasets)} datasets on the server, not one")
    listing = _get(f"{url}/ingestion/datasets/{datasets[0]['id']}/files")["files"]
    received = {receipt["file_id"]: moment(receipt["received_at"]) for receipt in listing}
    if len(received) != len(listing):
        raise ValueError("a file_id listed twice on the server")
    return received


def _senders(manifest: str) -> dict[str | None, str | None]:
    """Which process settled each file (its owner in the ledger), by file_id."""
    with open_ledger(manifest, create=False) as ledger:
        return {row.file_id: row.owner for row in ledger.rows(dataset=DATASET)}


# --- one case: N processes, one manifest, one fresh server ---------------------------------


def run_case(data: Path, files: int, processes: int, manifest: str, work: Path) -> dict[str, Any]:
    """N ``batchload upload`` processes on ``manifest`` against a fresh server; what the
    server and the processes' summaries say (``failed`` with the reason, if anything
    is off: a process that did not exit 0, a file missing or twice)."""
    knobs = ["--latency-ms", str(LATENCY_MS), "--rate-limit", str(RATE_LIMIT)]
    with ServerProcess(data_dir=work / "server", tokens=(TOKEN,), knobs=knobs) as server:
        argv = [sys.executable, "-m", "batchload", "upload", str(data), "--schema", str(SCHEMA)]
        argv += ["--dataset", DATASET, "--endpoint", server.url, "--manifest", manifest]
        argv += ["--max-rps", str(MAX_RPS), "--concurrency", str(CONCURRENCY), "--json"]
        wall_s, summaries, errors = _uploads(argv, processes, work)
        if errors:
            return {"processes": processes, "failed": True, "error": errors[0]}
        times = _get(f"{server.url}/admin/requests")["times"]  # before our own listings
        try:
            received = _received(server.url)
        except ValueError as exc:
            return {"processes": processes, "failed": True, "error": str(exc)}
    uploaded = [s["uploaded"] for s in summaries]
    if sum(uploaded) != files or len(received) != files:
        error = f"{sum(uploaded)} uploaded and {len(received)} on the server, of {files}"
        return {"processes": processes, "failed": True, "error": error}
    by_sender: dict[str | None, list[float]] = {}
    for file_id, sender in _senders(manifest).items():
        if file_id in received:
            by_sender.setdefault(sender, []).append(received[file_id])
    return {
        "processes": processes,
        "failed": False,
        "files_per_s": overlap_rate(by_sender.values()),
        "span_files_per_s": overlap_rate([list(received.values())]),
        "wall_s": wall_s,
        "busiest_1s": busiest_window(times),
        "requests": len(times),
        "ledger_ms_per_file": 1000 * sum(s["ledger_s"] for s in summaries) / files,
        "ledger_calls_per_file": sum(s["ledger_calls"] for s in summaries) / files,
        "uploaded_each": sorted(uploaded, reverse=True),
    }


def _uploads(
    argv: list[str], processes: int, work: Path
) -> tuple[float, list[dict[str, Any]], list[str]]:
    """Start ``processes`` copies of ``argv`` at once and wait for them all: the wall time,
    the ``--json`` summaries of those that exited 0, and why the others did not."""
    env = {**os.environ, TOKEN_ENV: TOKEN}
    started = time.monotonic()
    with contextlib.ExitStack() as outputs:
        children = []
        try:
            for number in range(processes):  # files, not pipes: nobody reads them meanwhile
                out = outputs.enter_context(open(work / f"{number}.out", "w+"))
                err = outputs.enter_context(open(work / f"{number}.err", "w+"))
                child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)
                children.append((child, out, err))
            codes = [child.wait(timeout=RUN_TIMEOUT_S) for child, _, _ in children]
        finally:  # a timeout, an interrupt: none of them outlives the case
            for child, _, _ in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        wall_s = time.monotonic() - started
        summaries, errors = [], []
        for code, (_, out, err) in zip(codes, children, strict=True):
            out.seek(0)
            err.seek(0)
            text = out.read()
            if code != 0 or not text.startswith("{"):
                tail = err.read().strip().splitlines()[-2:]
                errors.append(f"exit {code}: {' | '.join(tail)}"[:300])
            else:
                summaries.append(json.loads(text))
    return wall_s, summaries, errors


def summarise(processes: int, runs: Sequence[dict[str, Any]], files: int) -> dict[str, Any]:
    """Medians over the runs of one process count; the busiest window is the highest of
    any run; failed if any run failed."""
    if any(run["failed"] for run in runs):
        error = next(run["error"] for run in runs if run["failed"])
        return {"processes": processes, "failed": True, "error": error, "runs": len(runs)}

    def median(key: str) -> float:
        return float(statistics.median(run[key] for run in runs))

    def rate(key: str) -> float | None:
        rates = [run[key] for run in runs if run[key] is not None]
        return round(statistics.median(rates), 1) if rates else None

    return {
        "processes": processes,
        "failed": False,
        "files_per_s": rate("files_per_s"),
        "span_files_per_s": rate("span_files_per_s"),
        "wall_files_per_s": round(statistics.median(files / run["wall_s"] for run in runs), 1),
        "busiest_1s": max(run["busiest_1s"] for run in runs),
        "requests": round(median("requests")),
        "ledger_ms_per_file": round(median("ledger_ms_per_file"), 3),
        "ledger_calls_per_file": round(median("ledger_calls_per_file"), 1),
        "uploaded_each": runs[-1]["uploaded_each"],
        "runs": len(runs),
    }


# --- the scenario -------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_manifest(work: Path) -> Iterator[str]:
    """A new SQLite file in the case's own directory."""
    yield str(work / "manifest.sqlite")


def postgres_manifests(server: PostgresServer) -> Manifests:
    """A fresh database of ``server`` for each case, dropped after it."""

    @contextlib.contextmanager
    def fresh(_: Path) -> Iterator[str]:
        with server.database() as name:
            yield server.url(name)

    return fresh


def measure(
    sizes: Sizes,
    store: str,
    manifests: Manifests,
    *,
    work: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every process count ``sizes.repeats`` times on ``store``, in rounds (a noisy
    neighbour hits them all alike), each on a fresh manifest from ``manifests``."""
    data = write_files(work / "data" / "P", sizes.files, FILE_BYTES).paths[0].parent
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes.processes}
    for round_number in range(sizes.repeats):
        for n in sizes.processes:
            case = work / "cases" / f"{store}-{n}-{round_number}"
            case.mkdir(parents=True)
            with manifests(case) as manifest:
                run = run_case(data, sizes.files, n, manifest, case)
            runs[n].append(run)
            log(f"P: {STORES[store]:12} {n} process(es): {_brief(run)}")
    return {"points": [summarise(n, runs[n], sizes.files) for n in sizes.processes]}


def _brief(run: dict[str, Any]) -> str:
    if run["failed"]:
        return f"FAILED: {run['error'][:160]}"
    return (
        f"{run['files_per_s'] or 0:6.1f} files/s all sending, {run['wall_s']:5.1f} s in all, "
        f"busiest second {run['busiest_1s']} requests, ledger "
        f"{run['ledger_ms_per_file']:.2f} ms/file, each sent {run['uploaded_each']}"
    )


def run(sizes: Sizes, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Scenario P on a SQLite manifest, then on PostgreSQL if a server can be started."""
    stores: dict[str, Any] = {
        "sqlite": measure(sizes, "sqlite", sqlite_manifest, work=work, log=log)
    }
    try:
        server = start_postgres()
    except (ServiceError, ImportError) as exc:
        reason = str(exc).strip().splitlines()[0]
        log(f"P: no PostgreSQL here: {reason}")
        stores["postgres"] = {"missing": reason}
    else:
        try:
            manifests = postgres_manifests(server)
            stores["postgres"] = measure(sizes, "postgres", manifests, work=work, log=log)
        finally:
            server.stop()
    return {
        "files": sizes.files,
        "file_kb": FILE_BYTES // 1000,
        "processes": list(sizes.processes),
        "server": f"--latency-ms {LATENCY_MS} --rate-limit {RATE_LIMIT}",
        "max_rps": MAX_RPS,
        "concurrency": CONCURRENCY,
        "stores": stores,
    }


# --- the report ---------------------------------------------------------------------------


def targets(p: dict[str, Any]) -> list[dict[str, Any]]:
    """Per store: throughput grows with processes until the budget binds, the budget
    holds at the server within 10 %, the ledger's own time per file."""
    out = []
    budget = p["max_rps"]
    for store, result in p["stores"].items():
        points = {point["processes"]: point for point in result.get("points", [])}
        if not points:
            continue  # not measured here: the table says why
        name = STORES[store]
        one = points.get(1, {}).get("files_per_s")
        for n, point in points.items():
            if n == 1:
                continue
            expected = None if one is None else min(n * one, budget)
            measured = point.get("files_per_s")
            ratio = None if measured is None or not expected else round(measured / expected, 2)
            out.append(
                target(
                    "P",
                    f"{name}: {n} processes ≥ {SCALING:g}× the lesser of {n}× one process's "
                    f"files/s and the budget ({budget}/s)",
                    ratio,
                    SCALING,
                    note=f"{_num(measured)} files/s against {_num(expected)}",
                )
            )
        good = [point for point in points.values() if not point["failed"]]
        busiest = max((point["busiest_1s"] for point in good), default=None)
        ledger = max((point["ledger_ms_per_file"] for point in good), default=None)
        complete = len(good) == len(points)
        out.append(
            target(
                "P",
                f"{name}: requests in any 1 s at the server ≤ {BUDGET_SLACK:g}× --max-rps "
                f"{budget} (= {budget * BUDGET_SLACK:g})",
                busiest if complete else None,
                budget * BUDGET_SLACK,
                at_most=True,
                note=_each(good, "busiest_1s", "{:d}"),
            )
        )
        per_call = ", ".join(
            f"{point['ledger_calls_per_file']:g} × "
            f"{point['ledger_ms_per_file'] / point['ledger_calls_per_file']:.2f} ms"
            for point in good
        )
        out.append(
            target(
                "P",
                f"{name}: the ledger's own time ≤ {LEDGER_MS_PER_FILE:g} ms per file "
                "(every process's, over the files)",
                ledger if complete else None,
                LEDGER_MS_PER_FILE,
                at_most=True,
                note=_each(good, "ledger_ms_per_file", "{:.2f} ms")
                + f"; transactions per file × each: {per_call}",
            )
        )
    return out


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _each(points: Sequence[dict[str, Any]], key: str, fmt: str) -> str:
    """``1 process: 39, 2 processes: 69, ...``"""
    return ", ".join(
        f"{p['processes']} process{'es' if p['processes'] > 1 else ''}: {fmt.format(p[key])}"
        for p in points
    )


def markdown(p: dict[str, Any], made: str) -> list[str]:
    """Scenario P's table, one row per store and process count."""
    lines = [
        f"**P** (one run shared by N processes): {p['files']:,} CSV files of "
        f"~{p['file_kb']} KB, a fresh server `{p['server']}` and a fresh manifest for each "
        f"row; every process `--max-rps {p['max_rps']} --concurrency {p['concurrency']}`.",
        "",
        "| manifest | processes | files/s, all sending | × 1 process | files/s, first to "
        "last | files/s, whole run | busiest 1 s at the server | requests | ledger ms/file "
        "| ledger calls/file | files each | runs |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for store, result in p["stores"].items():
        if "missing" in result:
            lines.append(f"| {STORES[store]} | not measured: {result['missing']} |" + " |" * 10)
            continue
        points = result["points"]
        one = points[0].get("files_per_s") if points[0]["processes"] == 1 else None
        for point in points:
            if point["failed"]:
                lines.append(
                    f"| {STORES[store]} | {point['processes']} | **fails**: "
                    f"{point['error'].replace('|', '/')[:100]} |" + " |" * 9
                )
                continue
            rate = point["files_per_s"]
            scale = f"{rate / one:.2f}×" if one and rate else "–"
            lines.append(
                f"| {STORES[store]} | {point['processes']} | {_num(rate)} | {scale} "
                f"| {_num(point['span_files_per_s'])} | {_num(point['wall_files_per_s'])} "
                f"| {point['busiest_1s']} / {p['max_rps']} | {point['requests']:,} "
                f"| {point['ledger_ms_per_file']:.2f} | {point['ledger_calls_per_file']:g} "
                f"| {', '.join(map(str, point['uploaded_each']))} | {point['runs']} |"
            )
    return [
        *lines,
        made,
        "",
        "*all sending* is the files/s the server received while every process was sending "
        "(from the last process's first file to the first process's last; each file's "
        "sender from the manifest), the medians of the runs: the rate the targets compare. "
        "*first to last* adds the start, when the processes come up one by one, and the "
        "end, when the last ones finish the files they hold; *whole run* is from the "
        "launch to the last exit, start-up and each process's wait for the others "
        "included. *busiest 1 s* is the most requests the server saw in any 1-second "
        "window (the highest of the runs); *ledger ms/file* is the time every process "
        "spent in the manifest's transactions (`ledger_s` in `--json`), over the files.",
        "",
    ]
