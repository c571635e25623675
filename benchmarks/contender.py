"""One contender's run, alone in its own process, so its memory and CPU are its own.

``python -m benchmarks.contender TASK.json`` reads a :class:`Task`, imports and
prepares everything the contender needs (outside the timed section), runs it
against ``task.endpoint`` and prints one JSON line: files and source bytes that
landed, wall and CPU seconds of the timed section, and the process's peak RSS
(``VmHWM``: imports and preparation included, as a user would see it). Given
several task files it runs them one after another in the same process (the
harness's quick mode: imports paid once, RSS no longer one contender's). The
token comes from ``$SIGTECH_PLATFORM_TOKEN``.

Contenders:

- ``guide``: the guide's ``upload_data_from_file``, one file after another (requests);
- ``pool``: the same function in a thread pool of ``task.threads``, like SigTech's SDK;
- ``batchload``: ``batchload.upload_files`` with full validation, at its default
  concurrency (adaptive) unless the task sets one (a cap);
- ``batchload-novalidate``: the same with ``validate=False``;
- ``ceiling``: the very requests batchload sends (whole files with the contract's
  ``convert_options``, or the same parquet parts), built before the clock starts and
  sent by a bare aiohttp loop at ``task.concurrency``: no reading, validating,
  hashing, retries or manifest.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TOKEN_ENV = "SIGTECH_PLATFORM_TOKEN"
KINDS = ("guide", "pool", "batchload", "batchload-novalidate", "ceiling")
MAX_ERRORS_KEPT = 3
MB = 1_000_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """What one contender run does."""

    kind: str
    endpoint: str
    files: tuple[str, ...]
    schema: str
    dataset: str
    concurrency: int | None = 8
    """Requests in flight: the ceiling's, batchload's cap (None: its default)."""
    threads: int = 8
    max_request_mb: float = 5.0
    work_dir: str = ""


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What a run measured; ``wall_s`` and ``cpu_s`` cover the timed section only."""

    kind: str
    files_ok: int = 0
    files_failed: int = 0
    source_bytes_ok: int = 0
    requests: int = 0
    """Requests sent (the guide's and the ceiling's; batchload's summary does not count them)."""
    request_bytes: int = 0
    """Request body bytes sent (batchload and the ceiling)."""
    concurrency_peak: int | None = None
    """batchload: the highest its adaptive limit on requests in flight went."""
    concurrency_end: int | None = None
    """batchload: that limit when the run ended."""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_before_mb: float = 0.0
    peak_rss_mb: float = 0.0
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.files_failed += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message[:300])


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def peak_rss_mb() -> float:
    """This process's own high-water mark (``VmHWM``).

    Not ``ru_maxrss``: Linux carries that over ``exec`` from the forked parent, so a
    child would report at least its parent's size.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


# --- the guide's function, sequential or in a thread pool ------------------------------


def _guide_answer(outcome: Outcome, path: str, answer: Any) -> str | None:
    """Count one guide call; its dataset id when it succeeded."""
    if isinstance(answer, dict) and "error" not in answer and answer.get("id"):
        outcome.files_ok += 1
        outcome.source_bytes_ok += os.path.getsize(path)
        return str(answer["id"])
    error = answer.get("error") if isinstance(answer, dict) else answer
    outcome.fail(f"{Path(path).name}: {json.dumps(error, default=str)}")
    return None


def _guide(task: Task, outcome: Outcome, threads: int) -> Callable[[], None]:
    from benchmarks.guide_client import upload_data_from_file

    token = os.environ[TOKEN_ENV]

    def one(path: str, dataset_id: str | None) -> Any:
        try:
            return upload_data_from_file(
                token,
                path,
                task.dataset,
                dataset_id=dataset_id,  # type: ignore[arg-type]
                file_id=Path(path).stem,
                base_url=task.endpoint,
            )
        except Exception as exc:  # e.g. the connection reset under a 413
            return {"error": f"{type(exc).__name__}: {exc}"}

    def run() -> None:
        paths = list(task.files)
        dataset_id = None
        while paths and dataset_id is None:  # the first file creates the dataset
            path = paths.pop(0)
            outcome.requests += 1
            dataset_id = _guide_answer(outcome, path, one(path, None))
        if dataset_id is None:
            return
        if threads <= 1:
            for path in paths:
                outcome.requests += 1
                _guide_answer(outcome, path, one(path, dataset_id))
            return
        with ThreadPoolExecutor(threads) as pool:
            answers = pool.map(lambda p: one(p, dataset_id), paths)
            for path, answer in zip(paths, answers, strict=True):
                outcome.requests += 1
                _guide_answer(outcome, path, answer)

    return run


# --- batchload ---------------------------------------------------------------------------


def _batchload(task: Task, outcome: Outcome, validate: bool) -> Callable[[], None]:
    import batchload.check.validate  # noqa: F401  (imported before the clock, as in a warm process)
    from batchload.api import upload_files
    from batchload.cli.allocators import exempt_start_up_objects, give_back_freed_memory
    from batchload.config import START_CONCURRENCY
    from batchload.contract.model import load_contract
    from batchload.errors import BatchloadError
    from batchload.progress import Event, Paced

    give_back_freed_memory()  # as the CLI's entry point does: this process is batchload's
    # The rest of start-up (scenario U measures it): pandera registers its polars backends,
    # importing what they need, when a process first validates (loading a contract does).
    # The run loads and checks its contract again, on the clock.
    load_contract(task.schema)
    exempt_start_up_objects()  # as the CLI does before a run
    manifest = Path(task.work_dir or tempfile.mkdtemp()) / "manifest.sqlite"

    cap = {} if task.concurrency is None else {"concurrency": task.concurrency}

    def paced(event: Event) -> None:
        if isinstance(event, Paced):
            outcome.concurrency_peak = max(outcome.concurrency_peak or 0, event.concurrency)
            outcome.concurrency_end = event.concurrency

    def run() -> None:
        start = min(START_CONCURRENCY, task.concurrency or START_CONCURRENCY)
        outcome.concurrency_peak = outcome.concurrency_end = start  # (no Paced event yet)
        try:
            summary = upload_files(
                task.files,
                schema=task.schema,
                dataset=task.dataset,
                endpoint=task.endpoint,
                manifest=manifest,
                max_request_mb=task.max_request_mb,
                validate=validate,
                sink=paced,
                **cap,
            )
        except BatchloadError as exc:
            outcome.fail(f"run stopped: {exc}")
            return
        outcome.files_ok = summary.uploaded
        # bytes_sent counts a split file's parquet parts; paths are resolved only to leave
        # out refused files (resolving every path is CPU the run would be charged for)
        refused = {os.path.realpath(problem.path) for problem in summary.problems}
        outcome.source_bytes_ok = sum(
            os.path.getsize(p)
            for p in task.files
            if not refused or os.path.realpath(p) not in refused
        )
        outcome.request_bytes = summary.request_bytes
        for problem in summary.problems:
            outcome.fail(f"{Path(problem.path).name}: {problem.state}: {problem.reason}")

    return run


# --- the ceiling: pre-built requests, a bare aiohttp loop --------------------------------


@dataclass(frozen=True, slots=True)
class _Request:
    path: str
    body: bytes
    source_bytes: int
    last_of_file: bool


def _prebuilt(task: Task) -> list[_Request]:
    """batchload's requests for ``task.files``, fully built in memory (untimed)."""
    import pybase64

    from batchload.check.parts import split_frame
    from batchload.contract.model import arrow_schema, load_contract
    from batchload.protocol import Envelope, max_request_bytes, raw_budget
    from batchload.read.frames import read_frame
    from batchload.state.fileids import FileIdTemplate

    contract = load_contract(Path(task.schema))
    template = FileIdTemplate("{stem}")
    limit = max_request_bytes(task.max_request_mb)
    options = {"column_types": contract.column_types()}
    requests: list[_Request] = []
    for raw in task.files:
        path = Path(raw)
        name = task.dataset if not requests else None  # the first request creates the dataset
        data = path.read_bytes()
        stem = path.stem
        whole = Envelope(
            file_id=template.render(stem=stem, name=path.name, sha256=None, part=None),
            file_format="csv",
            name=name,
            convert_options=options,
        )
        if whole.request_bytes(len(data)) <= limit:
            head, tail = whole.head_tail()
            body = head + pybase64.b64encode(data) + tail
            requests.append(_Request(raw, body, len(data), True))
            continue

        def part_envelope(index: int, name: str | None = name, stem: str = stem) -> Envelope:
            file_id = template.render(stem=stem, name=stem, sha256=None, part=index)
            return Envelope(file_id=file_id, file_format="parquet", name=name)

        budget = raw_budget(limit, part_envelope(9999))
        parts = list(
            split_frame(
                read_frame(path, contract),
                budget_bytes=budget,
                schema=arrow_schema(contract),
                path=path,
            )
        )
        for part in parts:
            head, tail = part_envelope(part.index, name if part.index == 1 else None).head_tail()
            body = head + pybase64.b64encode(part.source.data) + tail
            last = part.index == len(parts)
            requests.append(_Request(raw, body, len(data) if last else 0, last))
            name = None
    return requests


def _ceiling(task: Task, outcome: Outcome) -> Callable[[], None]:
    import asyncio

    import aiohttp

    if task.concurrency is None:
        raise SystemExit("the ceiling runs at a fixed concurrency: set one")
    in_flight = task.concurrency
    requests = _prebuilt(task)
    headers = {"Authorization": f"Bearer {os.environ[TOKEN_ENV]}"}
    json_type = {"Content-Type": "application/json"}

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=in_flight)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
        async with aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout
        ) as session:
            failed: set[str] = set()

            async def send(url: str, request: _Request) -> dict[str, Any] | None:
                outcome.requests += 1
                outcome.request_bytes += len(request.body)
                try:
                    async with session.post(url, data=request.body, headers=json_type) as answer:
                        raw = await answer.read()
                        ok = 200 <= answer.status < 300
                except aiohttp.ClientError as exc:
                    raw, ok = f"{type(exc).__name__}: {exc}".encode(), False
                if not ok:
                    if request.path not in failed:
                        failed.add(request.path)
                        outcome.fail(f"{Path(request.path).name}: {raw[:200]!r}")
                    return None
                if request.last_of_file and request.path not in failed:
                    outcome.files_ok += 1
                    outcome.source_bytes_ok += request.source_bytes
                answer_json: dict[str, Any] = json.loads(raw)
                return answer_json

            if not requests:
                return
            created = await send(task.endpoint + "/ingestion/datasets", requests[0])
            if created is None:
                return
            url = f"{task.endpoint}/ingestion/datasets/{created['id']}/files"
            todo = iter(requests[1:])

            async def worker() -> None:
                for request in todo:  # shared iterator: each request is taken once
                    await send(url, request)

            await asyncio.gather(*(worker() for _ in range(in_flight)))

    return lambda: asyncio.run(main())


# --- the run ---------------------------------------------------------------------------


def prepare(task: Task, outcome: Outcome) -> Callable[[], None]:
    """Import and build what the contender needs; return the timed callable."""
    if task.kind == "guide":
        return _guide(task, outcome, threads=1)
    if task.kind == "pool":
        return _guide(task, outcome, threads=task.threads)
    if task.kind == "batchload":
        return _batchload(task, outcome, validate=True)
    if task.kind == "batchload-novalidate":
        return _batchload(task, outcome, validate=False)
    if task.kind == "ceiling":
        return _ceiling(task, outcome)
    raise SystemExit(f"unknown contender {task.kind!r}; one of {', '.join(KINDS)}")


def measure(task: Task) -> Outcome:
    """Prepare, then time the run: wall, CPU and peak memory."""
    if urlsplit(task.endpoint).hostname not in LOOPBACK:
        raise SystemExit(f"benchmarks run against a local server only, not {task.endpoint}")
    outcome = Outcome(kind=task.kind)
    run = prepare(task, outcome)
    outcome.rss_before_mb = round(rss_mb(), 1)
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    run()
    outcome.wall_s = time.perf_counter() - wall0
    outcome.cpu_s = _cpu_s() - cpu0
    outcome.peak_rss_mb = round(peak_rss_mb(), 1)
    return outcome


def main(argv: list[str] | None = None) -> None:
    """Run each task file given, in order; one JSON line each."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m benchmarks.contender TASK.json [TASK.json ...]")
    for arg in args:
        raw = json.loads(Path(arg).read_text())
        task = Task(**{**raw, "files": tuple(raw["files"])})
        print(json.dumps(asdict(measure(task))), flush=True)


if __name__ == "__main__":
    main()
