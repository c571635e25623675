"""A CLI that explains itself: help with a purpose and an example everywhere, the CLI
reference page (docs/cli.md) in step with the real ``--help``, and one documented line for
common mistakes (in the guide's common-errors table)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from batchload.cli.docs import (
    CLI_PAGE,
    HELP_WIDTH,
    REGENERATE,
    commands,
    render_help,
    with_reference,
)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "guide.md"
CONTRACT = "schemas/equity_signals.yaml"
COMMAND_PATHS = [path for path, _ in commands()]


def batchload(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SIGTECH_PLATFORM_TOKEN", "BATCHLOAD_ENDPOINT", "COLUMNS")
    }
    return subprocess.run(
        [sys.executable, "-m", "batchload", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def test_every_command_is_listed() -> None:
    names = {" ".join(path) for path in COMMAND_PATHS}
    for name in (
        "demo",
        "upload",
        "run",
        "validate",
        "schema infer",
        "schema show",
        "schema diff",
        "manifest show",
        "manifest export",
        "reconcile",
        "ls",
        "rm",
        "serve",
    ):
        assert name in names


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "batchload")
def test_help_has_a_purpose_and_an_example(path: tuple[str, ...]) -> None:
    command = dict(commands())[path]
    purpose = (command.help or "").strip().splitlines()[0] if command.help else ""
    assert purpose.endswith("."), f"{path}: the first line of the help must be a one-line purpose"
    assert len(purpose) <= HELP_WIDTH
    text = render_help(path)
    assert "Example" in text, f"batchload {' '.join(path)} --help shows no example"
    usage = " ".join(("batchload", *path))
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith(usage)]
    assert examples, f"no example line starts with {usage!r}"


def test_the_real_help_is_the_rendered_help() -> None:
    """What the CLI reference shows is what a terminal of that width shows."""
    for path in (("upload",), ("schema", "infer"), ("rm",)):
        ran = batchload(*path, "--help", env={"COLUMNS": str(HELP_WIDTH + 2)})
        assert ran.returncode == 0 and ran.stderr == ""
        assert ran.stdout == render_help(path)


def test_the_cli_reference_is_current() -> None:
    assert CLI_PAGE == ROOT / "docs" / "cli.md"
    current = CLI_PAGE.read_text(encoding="utf-8")
    assert with_reference(current) == current, (
        f"the CLI reference in docs/cli.md is stale: run {REGENERATE}"
    )


def test_the_readme_keeps_its_first_commands_and_the_docs_their_regions() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.startswith("# batchload\n")
    assert "uv run batchload demo" in text.split("\n## ")[0]
    assert "uv run pytest" in text.split("\n## ")[0]
    for marker, page in (
        ("performance", "performance"),
        ("reliability", "reliability"),
        ("reference", "cli"),
    ):
        page_text = (ROOT / "docs" / f"{page}.md").read_text(encoding="utf-8")
        assert f"<!-- {marker}:start -->" in page_text and f"<!-- {marker}:end -->" in page_text
        assert f"(docs/{page}.md)" in text, f"the README does not link docs/{page}.md"


def test_help_answers_without_loading_the_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from batchload.cli.docs import commands\n"
        "list(commands())\n"
        "heavy = ('polars', 'pandera', 'aiohttp', 'pyarrow', 'anyio')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ["upload", "data/*.csv", "--schema", "nope.yaml"],
        ["validate", "data/*.csv", "--schema", "nope.yaml"],
        ["schema", "show", "nope.yaml"],
    ],
    ids=["upload", "validate", "schema-show"],
)
def test_a_missing_contract_is_refused_before_the_heavy_libraries_load(
    argv: list[str], tmp_path: Path
) -> None:
    ran = run_and_list_heavy_imports(argv, tmp_path)
    assert ran.stdout.split() == ["2", "[]"], ran.stderr
    assert "error: nope.yaml: no such contract file" in ran.stderr


def run_and_list_heavy_imports(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``argv`` in a fresh interpreter; its stdout is the exit code, then
    which of the heavy libraries the command imported."""
    code = (
        "import sys\n"
        "from batchload.cli import main\n"
        f"try:\n    main({argv!r})\n"
        "except SystemExit as exc:\n    print(exc.code)\n"
        "heavy = ('polars', 'pandera', 'aiohttp', 'pyarrow', 'pandas')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, check=False
    )


@pytest.mark.parametrize(
    ("command", "files", "token", "said"),
    [
        ("upload", ["missing.csv", "gone/b.csv"], "t", "no files matched: gone/b.csv: no such"),
        ("upload", ["signals.csv"], "", "error: no API token: set SIGTECH_PLATFORM_TOKEN"),
        ("validate", ["missing.csv"], "", "error: no files matched: missing.csv: no such file"),
    ],
    ids=["upload-mistyped-paths", "upload-no-token", "validate-mistyped-path"],
)
def test_a_missing_file_or_token_is_refused_before_the_heavy_libraries_load(
    command: str, files: list[str], token: str, said: str, tmp_path: Path
) -> None:
    """A usage error answers at once: the paths are looked at before polars and pandera load."""
    contract = ROOT / "schemas" / "equity_signals.yaml"
    (tmp_path / "signals.csv").write_text("date,ticker,signal,confidence,horizon_days\n")
    argv = [command, *files, "--schema", str(contract)]
    argv += ["--dataset", "d"] if command == "upload" else []
    environment = {**os.environ, "SIGTECH_PLATFORM_TOKEN": token}
    ran = run_and_list_heavy_imports(argv, tmp_path, environment)
    assert ran.stdout.split() == ["2", "[]"], ran.stderr
    assert said in ran.stderr


def test_a_missing_path_beside_one_that_exists_is_the_runs_to_report(
    tmp_path: Path, signal_file: Path
) -> None:
    """Only when nothing named exists is the command refused; else the run goes on and
    reports the missing path as invalid (discovery's rule, unchanged)."""
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchload",
            "upload",
            "missing.csv",
            signal_file.name,
            "--schema",
            str(ROOT / "schemas" / "equity_signals.yaml"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert ran.returncode == 1, ran.stderr
    assert "missing.csv: no such file" in ran.stdout + ran.stderr


# --- common mistakes: the documented line and exit code ------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def signal_file(tmp_path: Path) -> Path:
    path = tmp_path / "signals_2024-01-02.csv"
    path.write_text("date,ticker,signal,confidence,horizon_days\n2024-01-02,AAPL,0.5,0.9,5\n")
    return path


def one_error_line(ran: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in ran.stderr
    lines = ran.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, ran.stderr
    return errors[0]


def assert_documented(message: str) -> None:
    """The common-errors table of the guide shows this message."""
    assert message in GUIDE.read_text(encoding="utf-8"), (
        f"docs/guide.md does not document {message!r}"
    )


def test_missing_token(signal_file: Path) -> None:
    ran = batchload(
        "upload",
        str(signal_file),
        "--schema",
        CONTRACT,
        "--manifest",
        str(signal_file.with_suffix(".db")),
    )
    assert ran.returncode == 2
    line = one_error_line(ran)
    expected = "error: no API token: set SIGTECH_PLATFORM_TOKEN or pass --token-file PATH"
    assert line.startswith(expected)
    assert_documented(expected)
    for command in (
        ("ls",),
        ("rm", "ds/f", "--yes"),
        ("schema", "diff", CONTRACT, "--dataset-id", "x"),
    ):
        ran = batchload(*command)
        assert ran.returncode == 2
        assert one_error_line(ran).startswith(expected)


def test_unknown_schema_file(signal_file: Path) -> None:
    for command in ("upload", "validate"):
        ran = batchload(
            command,
            str(signal_file),
            "--schema",
            "schemas/nope.yaml",
            env={"SIGTECH_PLATFORM_TOKEN": "t"},
        )
        assert ran.returncode == 2
        line = one_error_line(ran)
        assert line.startswith("error: schemas/nope.yaml: no such contract file (check --schema;")
        assert_documented("error: schemas/nope.yaml: no such contract file")


def test_unreachable_endpoint(signal_file: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    env = {"SIGTECH_PLATFORM_TOKEN": "t"}
    manifest = str(signal_file.with_suffix(".db"))
    for command in (
        ("ls", "--endpoint", url),
        ("schema", "diff", CONTRACT, "--dataset-id", "x", "--endpoint", url),
        (
            "upload",
            str(signal_file),
            "--schema",
            CONTRACT,
            "--endpoint",
            url,
            "--retries",
            "0",
            "--manifest",
            manifest,
        ),
    ):
        ran = batchload(*command, env=env)
        assert ran.returncode == 4, (command, ran.stderr)
        line = one_error_line(ran)
        assert line.startswith(f"error: cannot reach {url}: "), line
        assert line.endswith("(check --endpoint and that the service is up)")
    assert_documented("error: cannot reach http://127.0.0.1:9: ")


def test_no_files_matched(tmp_path: Path) -> None:
    pattern = str(tmp_path / "data" / "*.csv")
    env = {"SIGTECH_PLATFORM_TOKEN": "t", "BATCHLOAD_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    for command in ("upload", "validate"):
        ran = batchload(command, pattern, "--schema", CONTRACT, env=env)
        assert ran.returncode == 2
        line = one_error_line(ran)
        assert line.startswith(
            f"error: no files matched: {pattern}: matched no files (check the paths;"
        )
    assert_documented("error: no files matched: data/*.csv: matched no files")


def test_a_usage_mistake_points_at_help() -> None:
    ran = batchload("upload")
    assert ran.returncode == 2
    assert "Try 'batchload upload --help' for help." in ran.stderr
    assert "Traceback" not in ran.stderr


def test_quiet_leaves_only_the_result(tmp_path: Path) -> None:
    ran = batchload(
        "--quiet", "demo", "--dir", str(tmp_path / "demo"), "--days", "8", "--tickers", "12"
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    (line,) = ran.stdout.splitlines()
    assert line.startswith("demo: sent 5 files, refused 3; second run sent 0; files in ")
