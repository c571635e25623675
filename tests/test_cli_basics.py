"""The CLI's shell: help, version, and one-line errors with exit codes."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchload", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_purpose() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "bulk loading" in result.stdout
    assert result.stderr == ""


def test_unknown_command_is_a_usage_error() -> None:
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr
