"""What the reliability tests share: the CLI as a subprocess, the server seen over plain
HTTP, generated files, the exactly-once check, and the ledger of figures the suite writes.

Every fault case ends with :func:`assert_exactly_once`, which asks the *server* (not
batchload) what it holds and compares it with the files on disk and the manifest.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchload.server.process import ServerProcess
from tests import upload_helpers
from tests.upload_helpers import ServerView, sha256

CLI_TIMEOUT_S = 180.0
WAIT_TIMEOUT_S = 90.0


# --- files -----------------------------------------------------------------------------


def signal_csv(index: int, rows: int = 6) -> str:
    """A small valid equity_signals CSV (the suite's files are small: many, fast)."""
    return upload_helpers.signal_csv(index, rows)


def write_signals(directory: Path, count: int, *, rows: int = 6) -> list[Path]:
    """``count`` small valid CSV files ``sig_0000.csv``...; returns their paths in order."""
    return upload_helpers.write_signals(directory, count, rows=rows)


# --- the CLI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        """stdout as the one JSON document ``--json`` promises."""
        value: dict[str, Any] = json.loads(self.stdout)
        return value


def cli_env(token: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SIGTECH_PLATFORM_TOKEN", "BATCHLOAD_ENDPOINT", "BATCHLOAD_SERVER_TOKENS")
    }
    if token is not None:
        env["SIGTECH_PLATFORM_TOKEN"] = token
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchload", *args]


def cli(*args: str, token: str | None, cwd: Path) -> CliResult:
    """Run ``batchload ARGS`` to the end."""
    done = subprocess.run(
        cli_argv(*args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=cli_env(token),
        timeout=CLI_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def start_cli(*args: str, token: str | None, cwd: Path) -> subprocess.Popen[str]:
    """Start ``batchload ARGS`` in the background (to be killed or waited for)."""
    return subprocess.Popen(
        cli_argv(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=cli_env(token),
        stdin=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[str]) -> CliResult:
    stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT_S)
    return CliResult(proc.returncode, stdout, stderr)


def assert_clean_output(result: CliResult) -> None:
    """No traceback and no internal error, whatever happened."""
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text, text[-3000:]
        assert "internal error" not in text, text[-3000:]


def assert_reconciled(summary: dict[str, Any]) -> None:
    """The run's own reconcile (``--json``) found nothing missing or unexpected."""
    assert summary["reconcile"], summary
    for result in summary["reconcile"]:
        assert (result["missing"], result["unexpected"], result["error"]) == ([], [], None)


# --- waiting for a condition (polling real state, never sleeping blind) ------------------


def wait_until(
    condition: Callable[[], bool], *, what: str, timeout_s: float = WAIT_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    delay_s = 0.002
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay_s)  # polling the condition with backoff
        delay_s = min(delay_s * 2, 0.02)


def manifest_states(path: Path) -> Counter[str]:
    """Rows per state, read-only (the run may be writing: WAL readers never block it)."""
    if not path.exists():
        return Counter()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            rows = db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return Counter()
    return Counter({state: count for state, count in rows})


def manifest_finished(path: Path) -> int:
    """Files the manifest has as done with every part counted (what a resume skips);
    0 while the manifest does not exist yet."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            query = "SELECT COUNT(*) FROM files WHERE state = 'done' AND parts IS NOT NULL"
            return int(db.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def manifest_rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM files ORDER BY source_path, part")]


def manifest_integrity(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


# --- the server, seen over plain HTTP ------------------------------------------------------


def injected_faults(server: ServerProcess) -> Counter[str]:
    """Faults the server injected, counted from its log: 503, 429, drops, spikes."""
    assert server.stderr_path is not None
    text = server.stderr_path.read_text(errors="replace")
    statuses = Counter(re.findall(r'" (\d{3}) ', text))
    return Counter(
        {
            "503": statuses["503"],
            "429": statuses["429"],
            "dropped": text.count("dropping the connection after answering"),
            "spiked": text.count("(--spike-rate)"),
        }
    )


# --- the exactly-once check -------------------------------------------------------------


@dataclass
class Landed:
    """What :func:`assert_exactly_once` found, for the ledger."""

    files: int
    lost: int
    duplicated: int


def assert_exactly_once(
    view: ServerView,
    expected: dict[str, Path | str],
    manifest: Path,
) -> Landed:
    """The server holds every expected file exactly once, byte-identical, in one dataset;
    the manifest agrees with it, and reconcile (the code ``batchload reconcile`` runs,
    with the view's endpoint and token) finds nothing missing or unexpected.

    ``expected`` maps file_id to the local file (or to the sha256 it must have).
    """
    datasets = view.datasets()
    assert len(datasets) == 1, f"{len(datasets)} datasets: {datasets}"
    dataset_id = datasets[0]["id"]
    receipts = view.receipts(dataset_id)
    ids = Counter(r["file_id"] for r in receipts)
    duplicated = sum(n - 1 for n in ids.values())
    want = {
        file_id: (source if isinstance(source, str) else sha256(source))
        for file_id, source in expected.items()
    }
    have = {r["file_id"]: r["sha256"] for r in receipts}
    lost = sorted(set(want) - set(have))
    assert not lost, f"{len(lost)} file(s) lost: {lost[:10]}"
    assert duplicated == 0 and set(have) == set(want), sorted(set(have) - set(want))[:10]
    wrong = sorted(f for f in want if have[f] != want[f])
    assert not wrong, f"bytes differ on the server for {wrong[:10]}"

    rows = manifest_rows(manifest)
    done = {r["file_id"]: r for r in rows if r["state"] == "done"}
    assert set(done) == set(want), sorted(set(done) ^ set(want))[:10]
    assert all(r["sent_sha256"] == have[f] for f, r in done.items())
    assert {r["dataset_id"] for r in done.values()} == {dataset_id}
    assert manifest_integrity(manifest) == "ok"

    [result] = reconcile(manifest, endpoint=view.url, token=view.token)
    assert (result.missing, result.unexpected, result.error) == ((), (), None)
    assert result.on_server == result.expected == len(want)
    return Landed(files=len(want), lost=len(lost), duplicated=duplicated)


def reconcile(manifest: Path, *, endpoint: str, token: str) -> tuple[Any, ...]:
    """What ``batchload reconcile --manifest`` computes, in this process (no CLI start-up)."""
    import anyio

    from batchload.config import ClientConfig, Secret
    from batchload.pipeline.run import reconcile as compare
    from batchload.send.datasets import reader
    from batchload.send.transport import IngestionClient
    from batchload.state.manifest import Manifest

    config = ClientConfig(endpoint=endpoint, token=Secret(token))

    async def check() -> tuple[Any, ...]:
        with Manifest.open(manifest, create=False) as opened:
            async with IngestionClient(config) as client:
                return await compare(reader(client), opened)

    return anyio.run(check)


# --- the ledger: figures the suite writes for docs/reliability.md -------------------------


@dataclass
class Ledger:
    """Figures gathered while the suite runs; written at the end of the session."""

    fault_cases: dict[str, dict[str, int]] = field(default_factory=dict)
    hostile_files: set[str] = field(default_factory=set)
    hostile_http: Counter[str] = field(default_factory=Counter)

    def fault(self, case: str, landed: Landed, injected: Iterable[tuple[str, int]]) -> None:
        entry = {"files": landed.files, "lost": landed.lost, "duplicated": landed.duplicated}
        entry.update({k: v for k, v in injected if v})
        self.fault_cases[case] = entry

    def raw(self) -> dict[str, Any]:
        """What a pytest-xdist worker hands its controller (JSON-safe)."""
        return {
            "fault_cases": self.fault_cases,
            "hostile_files": sorted(self.hostile_files),
            "hostile_http": dict(self.hostile_http),
        }

    def merge(self, raw: dict[str, Any]) -> None:
        """Add a worker's figures (each test ran on exactly one worker)."""
        self.fault_cases.update(raw["fault_cases"])
        self.hostile_files.update(raw["hostile_files"])
        self.hostile_http.update(raw["hostile_http"])

    def summary(self) -> dict[str, Any]:
        cases = self.fault_cases.values()
        injected = Counter[str]()
        for entry in cases:
            injected.update(
                {k: v for k, v in entry.items() if k not in ("files", "lost", "duplicated")}
            )
        return {
            "fault_cases": dict(sorted(self.fault_cases.items())),
            "faults_injected": dict(sorted(injected.items())),
            "files_checked_on_server": sum(e["files"] for e in cases),
            "lost": sum(e["lost"] for e in cases),
            "duplicated": sum(e["duplicated"] for e in cases),
            "hostile_files_tried": len(self.hostile_files),
            "hostile_requests_sent": dict(sorted(self.hostile_http.items())),
        }


LEDGER = Ledger()


def file_ids(paths: Sequence[Path]) -> dict[str, Path | str]:
    """The default ``{stem}`` file_ids of ``paths``."""
    return {p.stem: p for p in paths}
