"""``batchload demo``: a whole backfill, end to end, against an embedded local server.

1. Write two years of daily signal files (:mod:`batchload.demo.samples`): mostly csv, some
   parquet and xlsx, and three files spoiled on purpose.
2. Start ``batchload serve`` on a free loopback port with a random token (passed
   in the environment and a 0600 token file; never printed).
3. Run ``batchload upload`` itself, as a child process, with the contract from
   ``schemas/``: the very command a user runs, with its live progress; its
   ``--json`` summary is what the demo reports.
4. Run the same command again: every file that landed is skipped unread.
5. Print the commands that do the same against SigTech's API.

The bad files are the point, so the demo exits 0 when the uploads did what they
should. The server is stopped however the demo ends (an error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from batchload.demo.samples import DEMO_FORMATS, BadFile, write_bad_files, write_signal_files
from batchload.demo.settings import CONTRACT_NAME, MIN_DAYS, DemoSettings
from batchload.errors import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    AuthError,
    BatchloadError,
    ConfigError,
    ServiceError,
    UsageError,
)
from batchload.server.process import ServerProcess

REAL_ENDPOINT = "https://api.sigtech.com"
MAX_NAMES_SHOWN = 3
MAX_REASON_CHARS = 150
MIB = 1024 * 1024

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Backfill:
    """The files the demo wrote."""

    directory: Path
    files: tuple[Path, ...]
    bad: tuple[BadFile, ...]

    @property
    def by_format(self) -> dict[str, int]:
        return dict(Counter(p.suffix.lstrip(".") for p in self.files))

    @property
    def workbooks(self) -> tuple[Path, ...]:
        """The xlsx and xls files among them."""
        return tuple(p for p in self.files if p.suffix in (".xlsx", ".xls"))

    @property
    def pattern(self) -> str:
        """The glob that selects the backfill, safe for any folder name."""
        return os.path.join(glob.escape(str(self.directory)), "*")


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """What the demo did: the backfill, both runs' ``--json`` summaries, the next commands."""

    directory: Path
    contract: Path
    backfill: Backfill
    first: dict[str, Any]
    second: dict[str, Any]
    commands: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``batchload demo --json``."""
        return {
            "directory": str(self.directory),
            "contract": str(self.contract),
            "files": {"total": len(self.backfill.files), **self.backfill.by_format},
            "deliberate": [
                {"path": str(b.path), "kind": b.kind, "what": b.what} for b in self.backfill.bad
            ],
            "first_run": self.first,
            "second_run": self.second,
            "next_commands": list(self.commands),
        }


# --- finding things ------------------------------------------------------------------------


def find_contract(name: str = CONTRACT_NAME, *, cwd: Path | None = None) -> Path:
    """``schemas/<name>.yaml`` in the working directory, else in batchload's own checkout."""
    here = cwd or Path.cwd()
    candidates = [
        here / "schemas" / f"{name}.yaml",
        Path(__file__).resolve().parents[2] / "schemas" / f"{name}.yaml",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"cannot find the demo's contract schemas/{name}.yaml",
        hint="run `batchload demo` from the root of the batchload repository",
    )


def shown(path: Path, *, cwd: Path | None = None) -> str:
    """``path`` relative to the working directory when inside it (shorter commands)."""
    here = cwd or Path.cwd()
    try:
        return str(path.resolve().relative_to(here.resolve()))
    except ValueError:
        return str(path)


def demo_directory(requested: Path | None) -> Path:
    """A new temporary folder, or ``requested`` if it is new or empty."""
    if requested is None:
        return Path(tempfile.mkdtemp(prefix="batchload-demo-"))
    if requested.exists() and (not requested.is_dir() or any(requested.iterdir())):
        raise UsageError(
            f"--dir {requested} is not an empty folder",
            hint="give a new or empty folder: the demo writes files, a server's data and a "
            "manifest there",
        )
    requested.mkdir(parents=True, exist_ok=True)
    return requested


# --- the steps -----------------------------------------------------------------------------


def make_backfill(directory: Path, *, days: int, tickers: int, seed: int = 0) -> Backfill:
    """Two years (by default) of daily files in ``directory``, three of them spoiled."""
    if days < MIN_DAYS:
        raise UsageError(f"--days must be at least {MIN_DAYS}")
    files = write_signal_files(directory, days, tickers, formats=DEMO_FORMATS, seed=seed)
    bad = write_bad_files(files)
    return Backfill(directory=directory, files=tuple(files), bad=tuple(bad))


def write_token_file(path: Path, token: str) -> None:
    """The demo token, readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")


def upload_args(
    backfill: Backfill, *, contract: Path, endpoint: str, token_file: Path, manifest: Path
) -> list[str]:
    """The ``batchload upload`` arguments the demo runs (and shows)."""
    return [
        "upload",
        backfill.pattern,
        "--schema",
        shown(contract),
        "--endpoint",
        endpoint,
        "--token-file",
        shown(token_file),
        "--manifest",
        shown(manifest),
    ]


def command_line(args: Sequence[str]) -> str:
    """How a person types ``batchload ARGS`` in a shell."""
    return shlex.join(["batchload", *args])


class Interrupts:
    """Ctrl-C and SIGTERM as KeyboardInterrupt, held back while a child process starts.

    An interrupt that lands inside ``subprocess.Popen`` after the fork would leave a
    child nobody holds a handle to (a server left running); :meth:`held` delays it
    until the handle is ours, so ``finally`` blocks can stop the child.
    """

    def __init__(self) -> None:
        self._holding = False
        self._pending = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle SIGINT and SIGTERM meanwhile (only possible in the main thread)."""
        try:
            previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            yield self
            return
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Delay interrupts until the block is done, then raise one if it came."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt


def run_upload(args: Sequence[str], *, quiet: bool, interrupts: Interrupts) -> dict[str, Any]:
    """Run ``batchload upload ARGS --json`` as a child; return its summary.

    Its progress goes straight to our stderr (rich bars on a terminal). Exit 0 and 1
    are results (1: some files were refused); anything else stops the demo with the
    same exit code, the child having printed why. Interrupted, the child is killed
    (its manifest keeps what it did).
    """
    argv = [sys.executable, "-m", "batchload", *(["--quiet"] if quiet else []), *args, "--json"]
    sys.stdout.flush()
    sys.stderr.flush()
    process: subprocess.Popen[bytes] | None = None
    try:
        with interrupts.held():
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        stdout, _ = process.communicate()
    except BaseException:
        if process is not None:
            process.kill()
            process.communicate()
        raise
    if process.returncode == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if process.returncode not in (EXIT_OK, EXIT_INCOMPLETE):
        error = {2: ConfigError, 3: AuthError, 4: ServiceError}.get(process.returncode)
        message = (
            f"the demo's upload stopped with exit code {process.returncode} (its error is above)"
        )
        if error is None:
            raise BatchloadError(message)
        raise error(message)
    try:
        summary = json.loads(stdout)
    except ValueError:
        raise BatchloadError("the demo's upload printed no JSON summary") from None
    if not isinstance(summary, dict):
        raise BatchloadError("the demo's upload printed JSON that is not an object")
    return summary


def run_demo(settings: DemoSettings, *, say: Say) -> DemoResult:
    """Run the whole demo, narrating with ``say``; the server is always stopped."""
    contract = find_contract()
    directory = demo_directory(settings.directory)
    signals = directory / "signals"
    say(
        f"1. Writing {settings.days} trading days of signal files "
        f"({settings.tickers} tickers a day) to {shown(signals)}"
    )
    backfill = make_backfill(
        signals, days=settings.days, tickers=settings.tickers, seed=settings.seed
    )
    for line in backfill_lines(backfill):
        say(line)

    token = secrets.token_urlsafe(24)
    token_file = directory / "token"
    write_token_file(token_file, token)
    manifest = directory / "manifest.sqlite"
    server = ServerProcess(data_dir=directory / "server", tokens=(token,), tokens_in_env=True)
    with Interrupts().installed() as interrupts:
        try:
            with interrupts.held():  # a Ctrl-C now waits until the server can be stopped
                server.start()
            say("")
            data = shown(server.data_dir)
            say(f"2. Started a local ingestion server at {server.url} (data in {data})")
            args = upload_args(
                backfill,
                contract=contract,
                endpoint=server.url,
                token_file=token_file,
                manifest=manifest,
            )
            say("")
            say(f"3. Uploading with the contract {shown(contract)}:")
            say(f"   $ {command_line(args)}")
            first = run_upload(args, quiet=settings.quiet, interrupts=interrupts)
            for line in first_run_lines(first, workbooks=backfill.workbooks):
                say(line)
            say("")
            say("4. The same command again: what landed is not sent twice")
            second = run_upload(args, quiet=True, interrupts=interrupts)
            for line in second_run_lines(second):
                say(line)
        finally:
            with interrupts.held():  # a second Ctrl-C must not leave it running
                server.stop()
    commands = real_api_commands(backfill, contract)
    say("")
    say("5. The same upload against SigTech's API:")
    for command in commands:
        say(f"   {command}")
    say("   (in a clone without an activated virtualenv, run them as `uv run batchload ...`;")
    say(f"    the demo's files stay in {shown(directory)}: delete that folder when done)")
    return DemoResult(
        directory=directory,
        contract=contract,
        backfill=backfill,
        first=first,
        second=second,
        commands=tuple(commands),
    )


# --- what the demo says --------------------------------------------------------------------


def backfill_lines(backfill: Backfill) -> list[str]:
    """The files written, by format, and the three spoiled on purpose."""
    formats = ", ".join(f"{n} {fmt}" for fmt, n in sorted(backfill.by_format.items()))
    lines = [f"   {len(backfill.files)} files: {formats}; spoiled on purpose:"]
    labels = {
        "wrong_type": "wrong type",
        "missing_column": "missing column",
        "duplicate_day": "duplicate day",
    }
    lines += [f"     {labels[b.kind]:<15} {b.path.name}: {b.what}" for b in backfill.bad]
    return lines


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


def first_run_lines(summary: dict[str, Any], *, workbooks: Sequence[Path] = ()) -> list[str]:
    """The first run's result: sent, refused with reasons, throughput, where it all is.

    ``workbooks``: the backfill's Excel files; those that landed went as parquet.
    """
    seconds = max(float(summary.get("seconds") or 0.0), 1e-9)
    uploaded, sent = int(summary["uploaded"]), int(summary["bytes_sent"])
    lines = [
        "",
        f"   sent      {uploaded} files, {_mib(sent)}, in {seconds:.1f} s "
        f"({uploaded / seconds:.0f} files/s, {_mib(sent / seconds)}/s)",
    ]
    problems = summary.get("problems") or []
    if problems:
        lines.append(f"   refused   {len(problems)} files; nothing was sent for them:")
        lines += refused_lines(problems)
    refused = {Path(str(p.get("path", ""))).name for p in problems}
    converted = [p for p in workbooks if p.name not in refused]
    if converted:
        lines.append(
            f"   excel     {len(converted)} workbook(s) read with the contract's types (date "
            "cells as Date, whole\n             numbers as Int64) and sent as parquet, so the "
            "service stores exactly those types"
        )
    for check in summary.get("reconcile") or []:
        state = "all there" if not check.get("missing") else f"{len(check['missing'])} MISSING"
        lines.append(
            f"   service   dataset {check['dataset']} (id {check['dataset_id']}) holds "
            f"{check['on_server']} files: {state}"
        )
    lines.append(f"   manifest  {shown(Path(summary['manifest']))}")
    lines.append(f"             (batchload manifest show {shown(Path(summary['manifest']))})")
    return lines


def refused_lines(problems: Sequence[dict[str, Any]]) -> list[str]:
    """One line per reason: the file, or how many files and the first few names."""
    groups: dict[str, list[str]] = {}
    for problem in sorted(problems, key=lambda p: str(p.get("path"))):
        details = problem.get("details") or [problem.get("reason", "")]
        reason = "; ".join(str(d) for d in details)
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 3] + "..."
        groups.setdefault(reason, []).append(Path(str(problem["path"])).name)
    lines = []
    for reason, names in groups.items():
        if len(names) == 1:
            lines.append(f"     {names[0]}: {reason}")
            continue
        more = f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
        lines.append(f"     {len(names)} files: {reason}")
        lines.append(f"       {', '.join(names[:MAX_NAMES_SHOWN])}{more}")
    return lines


def second_run_lines(summary: dict[str, Any]) -> list[str]:
    """The re-run: nothing sent, what was skipped unread, what was refused again."""
    return [
        f"   sent {summary['uploaded']} files; skipped {summary['skipped']} "
        "(done and unchanged: not even read); "
        f"refused {summary['invalid'] + summary['failed']} again",
    ]


def real_api_commands(backfill: Backfill, contract: Path) -> list[str]:
    """The commands that run the same upload against SigTech's Data Ingestion API."""
    common = [backfill.pattern, "--schema", shown(contract), "--endpoint", REAL_ENDPOINT]
    return [
        "export SIGTECH_PLATFORM_TOKEN=...   # SigTech platform > your profile > Access Tokens",
        command_line(["upload", *common, "--dry-run"]) + "   # validate and plan; sends nothing",
        command_line(["upload", *common]),
        command_line(["ls", CONTRACT_NAME, "--endpoint", REAL_ENDPOINT]),
    ]
