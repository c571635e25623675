"""The benchmark harness: every scenario, every contender, side by side, in one run.

- Each contender run gets a fresh local server (``batchload serve`` on loopback with
  the scenario's knobs) and its own process (:mod:`benchmarks.contender`), so its
  peak RSS and CPU seconds are its own. Contenders take turns: one round of all of
  them, then more rounds for those whose run was short, and each figure is the
  median of its runs, so a noisy neighbour on the machine hits them all alike.
- Scenarios: S (many small files over a 20 ms link), S1 (one of them: the memory
  floor), W (the same files over a 150 ms link, as a remote service is), M (1 MB
  files), L (100 MB files, no body cap), L16 (the same against a 16 MiB body cap),
  V (validation alone, :mod:`benchmarks.validation`), R (resume,
  :mod:`benchmarks.resume`), U (start-up: CPU before the first request, and
  ``--help``), C (a concurrency sweep at 20 ms) and P (one run shared by 1, 2 and 4
  processes under one ``--max-rps`` budget, :mod:`benchmarks.scaleout`).
- batchload runs at its defaults (the requests in flight adapt to the link), but in P,
  where each process keeps one in flight; the ceiling runs at the scenario's fixed
  concurrency, the thread pool with 8 threads.
- A full run of every scenario writes ``latest.json``, ``latest.md`` and
  ``latest.png`` to ``benchmarks/results``, the committed results; ``--quick`` and
  ``--only`` write to ``benchmarks/results/scratch`` (not committed) unless ``--out``
  says otherwise. Nothing here asserts a time: the report says what was measured
  and which targets it meets.

Run: ``uv run python -m benchmarks [--quick] [--only S,M,...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from batchload.config import DEFAULT_MAX_CONCURRENCY, START_CONCURRENCY
from batchload.server.process import ServerProcess
from benchmarks import scaleout
from benchmarks.contender import KINDS, TOKEN_ENV, Task
from benchmarks.data import ROOT, SCHEMA, write_files
from benchmarks.install import (
    IMPORT_BATCHLOAD,
    Interpreters,
    default_install,
    dev_only,
    measured_cli,
)

RESULTS_DIR = ROOT / "benchmarks" / "results"
SCRATCH_DIR = RESULTS_DIR / "scratch"
TOKEN = "benchmark-token"
SCENARIOS = ("S", "S1", "W", "M", "L", "L16", "V", "R", "U", "C", "P")
ALIASES = {"L": ("L", "L16"), "S": ("S", "S1")}
SHORT_RUN_S = 20.0
"""A contender whose run took less than this is run again (up to the scenario's repeats)."""
CHILD_TIMEOUT_S = 1800.0
MB = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Upload:
    """An upload scenario: a file set, server knobs, and how the clients are set."""

    key: str
    what: str
    """What sets the scenario apart (latency, body cap), after its files in the title."""
    files: int
    file_bytes: int
    knobs: tuple[str, ...] = ()
    concurrency: int = 8
    """The ceiling's requests in flight (batchload runs at its defaults)."""
    threads: int = 8
    max_request_mb: float = 5.0
    repeats: int = 3
    data: str = ""
    """Data directory name (scenarios sharing files share it); default the key."""
    guide_files: int | None = None
    """Send only this many of the files with the sequential guide client (its files/s is
    a steady per-file rate), when all of them would take minutes."""

    @property
    def title(self) -> str:
        """The files as they are, then what sets the scenario apart."""
        files = f"{self.files:,} CSV file{'s' if self.files != 1 else ''}"
        return f"{files} of ~{_size(self.file_bytes)}" + (f", {self.what}" if self.what else "")


def _size(n: int) -> str:
    for unit, scale in (("MB", MB), ("KB", 1000)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Sizes for one harness run (full or quick)."""

    quick: bool
    uploads: dict[str, Upload]
    sweep: tuple[int, ...]
    sweep_files: int
    sweep_repeats: int
    resume_files: int
    resume_done: int
    scale: scaleout.Sizes


NO_CAP = ("--max-body-mb", "4096")


def full_plan() -> Plan:
    s = Upload(
        key="S",
        what="20 ms latency",
        files=1_000,
        file_bytes=20_000,
        knobs=("--latency-ms", "20"),
        concurrency=32,
    )
    large = Upload(
        key="L",
        what="no body cap",
        files=4,
        file_bytes=100_000_000,
        knobs=NO_CAP,
        max_request_mb=4096,
    )
    return Plan(
        quick=False,
        uploads={
            "S": s,
            "S1": replace(s, key="S1", what="20 ms latency (the memory floor)", files=1, data="S"),
            "W": replace(
                s,
                key="W",
                what="150 ms latency (a remote service)",
                knobs=("--latency-ms", "150"),
                concurrency=DEFAULT_MAX_CONCURRENCY,  # the ceiling's: batchload's cap
                guide_files=100,
                data="S",
            ),
            "M": Upload(key="M", what="", files=200, file_bytes=1_000_000),
            "L": large,
            "L16": replace(
                large,
                key="L16",
                what="against a 16 MiB body cap",
                knobs=("--max-body-mb", "16"),
                max_request_mb=16,
                data="L",
            ),
        },
        sweep=(1, 2, 4, 8, 16, 32, 64),
        sweep_files=400,
        sweep_repeats=2,
        resume_files=10_000,
        resume_done=9_000,
        scale=scaleout.Sizes(files=400, processes=(1, 2, 4), repeats=2),
    )


def quick_plan() -> Plan:
    """Tiny sizes, one run each: seconds, for the test that keeps the harness alive."""
    full = full_plan()
    sizes = {
        "S": (24, 20_000),
        "S1": (1, 20_000),
        "W": (24, 20_000),
        "M": (6, 200_000),
        "L": (2, 1_500_000),
        "L16": (2, 1_500_000),
    }
    uploads = {
        key: replace(spec, files=sizes[key][0], file_bytes=sizes[key][1], repeats=1)
        for key, spec in full.uploads.items()
    }
    uploads["S"] = replace(uploads["S"], concurrency=8)
    uploads["W"] = replace(uploads["W"], guide_files=4)
    uploads["L16"] = replace(
        uploads["L16"],
        knobs=("--max-body-mb", "0.5"),
        max_request_mb=0.5,
        what="against a 0.5 MiB body cap",
    )
    return Plan(
        quick=True,
        uploads=uploads,
        sweep=(1, 4),
        sweep_files=12,
        sweep_repeats=1,
        resume_files=500,
        resume_done=450,
        scale=scaleout.Sizes(files=12, processes=(1, 2), repeats=1),
    )


# --- running one contender -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """One contender run to make: which contender, at which concurrency (or thread count;
    None: batchload's default), on how many of the files (None: all)."""

    kind: str
    concurrency: int | None
    threads: int
    files: int | None = None


class Runner:
    """Runs contenders against local servers under ``work``; logs progress to stderr.

    A full run gives every contender run a fresh server and a process of its own. A
    quick run (``shared``) gives a scenario one server and runs a batch of jobs in
    one process, so that imports are paid once: seconds, not minutes, and its RSS
    figures mean nothing. Every run creates its own dataset either way.
    """

    def __init__(self, work: Path, *, shared: bool = False) -> None:
        self.work = work
        self.shared = shared
        self.python: Interpreters = dev_only()
        """Who runs which contender (:mod:`benchmarks.install`)."""
        self.count = 0

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def server(self, spec: Upload) -> Iterator[ServerProcess]:
        """A fresh local server with the scenario's knobs; its data is deleted after."""
        self.count += 1
        data_dir = self.work / "servers" / f"{self.count:04d}-{spec.key}" / "data"
        try:
            with ServerProcess(data_dir=data_dir, tokens=(TOKEN,), knobs=list(spec.knobs)) as srv:
                yield srv
        finally:
            shutil.rmtree(data_dir.parent, ignore_errors=True)

    def run(
        self, spec: Upload, jobs: Sequence[Job], files: Sequence[Path]
    ) -> Iterator[dict[str, Any]]:
        """Run ``jobs`` in order; yield one outcome each, as it is measured (with the
        speed probe timed before its server started: nothing else runs then)."""
        for batch in [jobs] if self.shared else [[job] for job in jobs]:
            probe_ms = speed_probe_ms()
            with self.server(spec) as server:
                outcomes = self._child(spec, batch, files, server)
            for outcome in outcomes:
                outcome["probe_ms"] = probe_ms
            yield from outcomes

    def _child(
        self, spec: Upload, jobs: Sequence[Job], files: Sequence[Path], server: ServerProcess
    ) -> list[dict[str, Any]]:
        """Run ``jobs`` in one child process; an outcome per job (``crashed`` if none)."""
        self.count += 1
        run_dir = self.work / "runs" / f"{self.count:04d}-{spec.key}"
        paths = []
        for number, job in enumerate(jobs):
            task = Task(
                kind=job.kind,
                endpoint=server.url,
                files=tuple(str(p) for p in files[: job.files]),
                schema=str(SCHEMA),
                dataset=f"bench_{spec.key.lower()}_{self.count}_{number}",  # fresh every run
                concurrency=job.concurrency,
                threads=job.threads,
                max_request_mb=spec.max_request_mb,
                work_dir=str(run_dir / str(number)),
            )
            Path(task.work_dir).mkdir(parents=True)
            paths.append(run_dir / f"task-{number}.json")
            paths[-1].write_text(json.dumps(asdict(task)))
        server_cpu_before = process_cpu_s(server.proc.pid if server.proc else None)
        try:
            proc = subprocess.run(
                [
                    self.python.for_kinds({job.kind for job in jobs}),
                    "-m",
                    "benchmarks.contender",
                    *map(str, paths),
                ],
                cwd=ROOT,
                env={**os.environ, TOKEN_ENV: TOKEN},
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT_S,
            )
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        server_cpu_after = process_cpu_s(server.proc.pid if server.proc else None)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        outcomes: list[dict[str, Any]] = [json.loads(line) for line in lines]
        if len(jobs) == 1 and outcomes and None not in (server_cpu_before, server_cpu_after):
            assert server_cpu_before is not None and server_cpu_after is not None
            outcomes[0]["server_cpu_s"] = round(server_cpu_after - server_cpu_before, 3)
        if len(outcomes) < len(jobs):
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[:500]
            outcomes += [
                {"kind": job.kind, "crashed": True, "errors": [tail or f"exit {proc.returncode}"]}
                for job in jobs[len(outcomes) :]
            ]
        return outcomes


PROBE_STEPS = 300_000


def speed_probe_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop, timed before a contender's run.

    This shared machine's speed drifts by tens of percent within minutes (other tenants,
    throttling under sustained load): ratios between contenders run minutes apart move
    with it. The probe makes that drift a measured figure of each run.
    """
    started = time.process_time()
    total = 0
    for step in range(PROBE_STEPS):
        total += step * step
    return round(1000 * (time.process_time() - started), 1)


def process_cpu_s(pid: int | None) -> float | None:
    """User+system CPU seconds of a running process so far (Linux ``/proc``), else None.

    For the local server: it shares the machine's cores with the contender, so its
    CPU next to the client's says which of the two a run was waiting for.
    """
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- upload scenarios ------------------------------------------------------------------------


def _ok(run: dict[str, Any], expected: int) -> bool:
    return (
        not run.get("crashed") and run.get("files_failed", 1) == 0 and run["files_ok"] == expected
    )


def _expected(job: Job, paths: Sequence[Path]) -> int:
    return len(paths[: job.files])


def summarise(runs: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """Medians over a contender's runs (peak RSS: the highest); failed if any run failed."""
    if not all(_ok(r, expected) for r in runs):
        bad = next(r for r in runs if not _ok(r, expected))
        return {
            "failed": True,
            "files_ok": bad.get("files_ok", 0),
            "files_failed": bad.get("files_failed", 0),
            "error": (bad.get("errors") or ["crashed"])[0],
            "runs": len(runs),
        }

    def median(fn: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(fn(r) for r in runs)

    return {
        "failed": False,
        "files_per_s": round(median(lambda r: r["files_ok"] / r["wall_s"]), 2),
        "mb_per_s": round(median(lambda r: r["source_bytes_ok"] / MB / r["wall_s"]), 2),
        "wall_s": round(median(lambda r: r["wall_s"]), 3),
        "cpu_s": round(median(lambda r: r["cpu_s"]), 3),
        "server_cpu_s": (
            round(median(lambda r: r["server_cpu_s"]), 3)
            if all("server_cpu_s" in r for r in runs)
            else None
        ),
        "cpu_ms_per_file": round(median(lambda r: 1000 * r["cpu_s"] / r["files_ok"]), 3),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "rss_before_mb": round(median(lambda r: r["rss_before_mb"]), 1),
        "files": runs[0]["files_ok"],
        "concurrency_peak": max((r.get("concurrency_peak") or 0 for r in runs), default=0) or None,
        "concurrency_end": runs[-1].get("concurrency_end"),
        "runs": len(runs),
    }


def run_upload(spec: Upload, plan: Plan, runner: Runner) -> dict[str, Any]:
    """Every contender on one scenario, in rounds; medians and ratios."""
    data = write_files(runner.work / "data" / (spec.data or spec.key), spec.files, spec.file_bytes)
    runner.log(f"{spec.key}: {spec.title} ({data.bytes / MB:.1f} MB in {len(data.paths)} files)")
    jobs = {kind: _job(kind, spec) for kind in KINDS}
    runs = _rounds(
        spec, jobs, data.paths, repeats=spec.repeats, runner=runner, label=lambda job: job.kind
    )
    contenders = {kind: summarise(runs[kind], _expected(jobs[kind], data.paths)) for kind in KINDS}
    _ratios(contenders)
    return {
        "title": spec.title,
        "files": spec.files,
        "guide_files": len(data.paths[: spec.guide_files]),
        "source_mb": round(data.bytes / MB, 2),
        "largest_file_mb": round(data.largest / MB, 2),
        "server": " ".join(spec.knobs) or "(defaults)",
        "concurrency": spec.concurrency,
        "start": START_CONCURRENCY,
        "threads": spec.threads,
        "max_request_mb": spec.max_request_mb,
        "contenders": contenders,
        "runs": runs,
    }


def _job(kind: str, spec: Upload) -> Job:
    """batchload at its defaults, the ceiling at the scenario's concurrency, the guide on
    its subset of the files."""
    concurrency = None if kind.startswith("batchload") else spec.concurrency
    return Job(kind, concurrency, spec.threads, spec.guide_files if kind == "guide" else None)


def _rounds(
    spec: Upload,
    jobs: dict[str, Job],
    paths: Sequence[Path],
    *,
    repeats: int,
    runner: Runner,
    label: Callable[[Job], str],
) -> dict[str, list[dict[str, Any]]]:
    """Run every job once, then again those whose run was short, up to ``repeats`` runs."""
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in jobs}
    for round_number in range(repeats):
        todo = [
            key
            for key in jobs
            if not round_number
            or (
                _ok(runs[key][0], _expected(jobs[key], paths))
                and runs[key][0]["wall_s"] < SHORT_RUN_S
            )
        ]
        if not todo:
            break
        outcomes = runner.run(spec, [jobs[key] for key in todo], paths)
        for key, outcome in zip(todo, outcomes, strict=True):  # logged as each one ends
            runs[key].append(outcome)
            brief = _brief(outcome, _expected(jobs[key], paths))
            runner.log(f"{spec.key}: {label(jobs[key]):24} {brief}")
    return runs


def _brief(outcome: dict[str, Any], expected: int) -> str:
    if not _ok(outcome, expected):
        return f"FAILED: {(outcome.get('errors') or ['?'])[0][:160]}"
    peak = outcome.get("concurrency_peak")
    return (
        f"{outcome['files_ok'] / outcome['wall_s']:9.1f} files/s  "
        f"{outcome['source_bytes_ok'] / MB / outcome['wall_s']:7.1f} MB/s  "
        f"cpu {outcome['cpu_s']:6.2f} s  peak {outcome['peak_rss_mb']:7.1f} MB"
        + (f"  in flight up to {peak}" if peak else "")
    )


def _ratios(contenders: dict[str, dict[str, Any]]) -> None:
    """Each contender's files/s over the guide client's, the thread pool's and the
    ceiling's."""
    for base, name in (("guide", "vs_guide"), ("pool", "vs_pool"), ("ceiling", "vs_ceiling")):
        reference = contenders[base]
        for result in contenders.values():
            if result["failed"] or reference["failed"]:
                result[name] = None
            else:
                result[name] = round(result["files_per_s"] / reference["files_per_s"], 2)


# --- the sweep, validation, resume -----------------------------------------------------------

SWEEP_KINDS = ("pool", "batchload", "ceiling")


def run_sweep(plan: Plan, runner: Runner) -> dict[str, Any]:
    """Files/s at each concurrency (thread count for the pool) over a 20 ms link."""
    spec = replace(
        plan.uploads["S"],
        key="C",
        what="20 ms latency: a concurrency sweep",
        files=plan.sweep_files,
    )
    data = write_files(runner.work / "data" / "S", plan.sweep_files, spec.file_bytes)
    runner.log(f"C: {len(data.paths)} files of ~{spec.file_bytes // 1000} KB at {plan.sweep}")
    jobs = {f"{kind}@{n}": Job(kind, n, n) for n in plan.sweep for kind in SWEEP_KINDS}
    runs = _rounds(
        spec,
        jobs,
        data.paths,
        repeats=plan.sweep_repeats,
        runner=runner,
        label=lambda job: f"{job.kind} N={job.concurrency}",
    )
    points = {
        kind: [
            {"concurrency": n, **summarise(runs[f"{kind}@{n}"], len(data.paths))}
            for n in plan.sweep
        ]
        for kind in SWEEP_KINDS
    }
    return {
        "title": spec.title,
        "files": len(data.paths),
        "server": " ".join(spec.knobs),
        "contenders": points,
    }


def run_validation(plan: Plan, runner: Runner) -> dict[str, Any]:
    """Scenario V, from :mod:`benchmarks.validation` (tiny sizes when quick)."""
    from benchmarks import validation

    runner.log("V: validation alone (pandera vs hand-written Polars; grouped small files)")
    if not plan.quick:
        return validation.run(quick=False)
    contract = validation.bench_contract()
    return {
        "large": validation.bench_large(contract, 20_000, 1),
        "small_files": validation.bench_small_files(contract, 40, 200, 1),
    }


def run_resume(plan: Plan, runner: Runner) -> dict[str, Any]:
    """Scenario R, from :mod:`benchmarks.resume`."""
    from benchmarks import resume

    runner.log(f"R: resume, {plan.resume_files:,} files with {plan.resume_done:,} done")
    return resume.run(plan.resume_files, plan.resume_done, repeats=3 if plan.quick else 5)


def run_scaleout(plan: Plan, runner: Runner) -> dict[str, Any]:
    """Scenario P, from :mod:`benchmarks.scaleout`."""
    sizes = plan.scale
    runner.log(f"P: {sizes.files:,} files over {sizes.processes} processes sharing a manifest")
    return scaleout.run(sizes, runner.work / "scaleout", runner.log)


STARTUP_RUNS = 5
"""Runs of each start-up command (one when quick)."""


def run_startup(plan: Plan, runner: Runner) -> dict[str, Any]:
    """Scenario U: CPU seconds of whole CLI processes (median of a few): ``--help``, a
    usage error, and ``upload`` of one small file against a local server, which bounds
    the CPU spent before its first request; and that upload's peak RSS, the one-file
    peak a user sees."""
    data = write_files(runner.work / "data" / "S", 1, 20_000)
    spec = replace(plan.uploads["S1"], key="U", knobs=())
    runner.log("U: start-up, CPU of whole CLI processes")
    runs = 1 if plan.quick else STARTUP_RUNS
    commands = {
        "help": ["--help"],
        "usage_error": ["upload", str(runner.work / "missing.csv"), "--schema", str(SCHEMA)],
    }
    out: dict[str, Any] = {"runs": runs}
    python = runner.python.batchload
    for name, args in commands.items():
        out[f"{name}_cpu_s"], _ = _median_usage(python, lambda a=args: a, runs, runner.work)
    with runner.server(spec) as server:
        count = iter(range(runs))

        def upload() -> list[str]:
            n = next(count)
            return [
                "upload",
                str(data.paths[0]),
                "--schema",
                str(SCHEMA),
                "--dataset",
                f"bench_u_{n}",
                "--endpoint",
                server.url,
                "--manifest",
                str(runner.work / f"startup-{n}.sqlite"),
                "--json",
            ]

        cpu_s, peak_mib = _median_usage(python, upload, runs, runner.work)
        out["upload_one_file_cpu_s"], out["upload_one_file_peak_mib"] = cpu_s, peak_mib
    return out


def _median_usage(
    python: str, args: Callable[[], list[str]], runs: int, work: Path
) -> tuple[float, float]:
    """Median user+system CPU seconds and peak RSS (MiB) of ``batchload ARGS`` run with
    ``python`` (fresh arguments each run), each process's own."""
    import resource

    spent, peaks = [], []
    peak_file = work / "peak-kib"
    for _ in range(runs):
        peak_file.unlink(missing_ok=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            measured_cli(python, peak_file, args()),
            cwd=ROOT,
            env={**os.environ, TOKEN_ENV: TOKEN},
            capture_output=True,
            timeout=CHILD_TIMEOUT_S,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        peaks.append(int(peak_file.read_text()) / 1024)
    return round(statistics.median(spent), 3), round(statistics.median(peaks), 1)


# --- the run ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, Python and library versions, git revision."""
    from importlib.metadata import version

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu"] = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), ""
        )
    except (OSError, ValueError):
        pass
    info["versions"] = {p: version(p) for p in ("polars", "pandera", "aiohttp", "pyarrow")}
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        info["git"] = rev.stdout.strip()
    except OSError:
        pass
    return info


def selected(only: str | None) -> list[str]:
    if not only:
        return list(SCENARIOS)
    wanted = []
    for item in only.upper().split(","):
        key = item.strip()
        if key not in SCENARIOS:
            raise SystemExit(f"unknown scenario {key!r}; choose from {', '.join(SCENARIOS)}")
        wanted += ALIASES.get(key, (key,))
    return [s for s in SCENARIOS if s in wanted]


@contextlib.contextmanager
def bytecode_cache(work: Path) -> Iterator[None]:
    """Let the child processes cache compiled bytecode, in a directory of their own.

    With ``PYTHONDONTWRITEBYTECODE`` set (as on the machine these were first run on)
    every process compiles every module it imports from source, and a module imported
    lazily during a timed run (pandera's backends, pyarrow's CSV reader, the server's
    parsers) costs tenths of a second it never costs an installed package. The cache
    lives under ``work``, so nothing is written into the environment or the checkout;
    this process's own environment is restored afterwards.
    """
    saved = {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def warm_up(plan: Plan, runner: Runner) -> None:
    """One untimed, unreported run of each contender on two small files, to fill that cache."""
    spec = replace(plan.uploads["S"], key="warm", knobs=(), repeats=1)
    data = write_files(runner.work / "data" / "S", 2, spec.file_bytes)
    runner.log("warming up: every contender once on 2 files (not reported)")
    shared, runner.shared = runner.shared, True
    try:
        for batch in (IMPORT_BATCHLOAD, set(KINDS) - IMPORT_BATCHLOAD):  # one per interpreter
            jobs = [Job(kind, 2, 2) for kind in KINDS if kind in batch]
            list(runner.run(spec, jobs, data.paths))
    finally:
        runner.shared = shared


def run_all(plan: Plan, keys: Sequence[str], work: Path) -> dict[str, Any]:
    with bytecode_cache(work):
        return _run_all(plan, keys, work)


def _run_all(plan: Plan, keys: Sequence[str], work: Path) -> dict[str, Any]:
    runner = Runner(work, shared=plan.quick)
    if not plan.quick:  # a quick run's memory and start-up figures mean nothing anyway
        runner.python = default_install(work / "default-install", runner.log)
    warm_up(plan, runner)
    started = time.time()
    results: dict[str, Any] = {
        "quick": plan.quick,
        "machine": {**machine(), "batchload_environment": runner.python.environment},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "scenarios": {},
    }
    for key in keys:
        if key in plan.uploads:
            results["scenarios"][key] = run_upload(plan.uploads[key], plan, runner)
        elif key == "C":
            results["scenarios"][key] = run_sweep(plan, runner)
        elif key == "V":
            results["scenarios"][key] = run_validation(plan, runner)
        elif key == "R":
            results["scenarios"][key] = run_resume(plan, runner)
        elif key == "U":
            results["scenarios"][key] = run_startup(plan, runner)
        elif key == "P":
            results["scenarios"][key] = run_scaleout(plan, runner)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    return results


def results_dir(*, quick: bool, keys: Sequence[str]) -> Path:
    """The committed results for a full run of every scenario; a scratch folder else."""
    return RESULTS_DIR if not quick and list(keys) == list(SCENARIOS) else SCRATCH_DIR


def main(argv: Sequence[str] | None = None) -> None:
    from benchmarks.report import write_reports

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each: seconds")
    parser.add_argument("--only", metavar="S,M,...", help=f"scenarios ({','.join(SCENARIOS)})")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where latest.* go (default: benchmarks/results for a full run of every "
        "scenario, the committed results; benchmarks/results/scratch otherwise)",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch directory, made if missing (default: tmp)"
    )
    args = parser.parse_args(argv)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    plan = quick_plan() if args.quick else full_plan()
    keys = selected(args.only)
    out = args.out or results_dir(quick=args.quick, keys=keys)
    command = "uv run python -m benchmarks" + " ".join(
        ["", *(["--quick"] if args.quick else []), *(["--only", args.only] if args.only else [])]
    )
    with tempfile.TemporaryDirectory(prefix="batchload-bench-", dir=args.work) as work:
        results = run_all(plan, keys, Path(work))
    results["command"] = command
    print(write_reports(results, out))
    print(f"[bench] results in {out}", file=sys.stderr)
