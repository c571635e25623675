"""Where files come from, as a user names them: folders, --include/--exclude, --files-from."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from batchload.server.process import ServerProcess
from tests.test_cli_upload import Cli, cli  # noqa: F401  (the fixture)
from tests.upload_helpers import SIGNALS, ServerView, sha256, write_signals


def upload(*args: str, endpoint: str) -> tuple[str, ...]:
    return ("upload", *args, "--schema", str(SIGNALS), "--endpoint", endpoint, "--json")


def on_server(server: ServerProcess, token: str, summary: dict[str, object]) -> dict[str, str]:
    files = ServerView(server.url, token).files(str(summary["dataset_id"]))
    return {file_id: receipt["sha256"] for file_id, receipt in files.items()}


def test_a_folder_with_include_and_exclude(
    cli: Cli,  # noqa: F811
    server: ServerProcess,
    token: str,
    tmp_path: Path,
) -> None:
    kept = write_signals(tmp_path / "data" / "2024", 3)
    write_signals(tmp_path / "data" / "archive", 2, start=10)
    write_signals(tmp_path / "data" / ".staging", 1, start=20)
    write_signals(tmp_path / "data" / "state", 1, start=30)  # beside the manifest: skipped
    (tmp_path / "data" / "README.md").write_text("not data\n")
    args = upload("data", "--exclude", "archive", "--include", "*.csv", endpoint=server.url)
    # the manifest lives in the folder uploaded: the walk leaves it alone
    result = cli(*args, "--manifest", "data/state/m.sqlite", cwd=tmp_path, token=token, check=0)
    summary = json.loads(result.stdout)
    assert (summary["uploaded"], summary["invalid"]) == (3, 0)
    assert on_server(server, token, summary) == {p.stem: sha256(p) for p in kept}


def test_files_from_a_list_and_from_stdin_beside_files(
    cli: Cli,  # noqa: F811
    server: ServerProcess,
    token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = write_signals(tmp_path / "data", 5)
    listing = tmp_path / "todo.txt"
    listing.write_text(f"# nightly export\n\n{paths[0]}\n  data/{paths[1].name}\n")
    args = upload("--files-from", "todo.txt", "--manifest", "m.sqlite", endpoint=server.url)
    summary = json.loads(cli(*args, cwd=tmp_path, token=token, check=0).stdout)
    assert summary["uploaded"] == 2

    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(f"data/{p.name}" for p in paths[2:4])))
    args = upload(str(paths[4]), "--files-from", "-", "--manifest", "m.sqlite", endpoint=server.url)
    summary = json.loads(cli(*args, cwd=tmp_path, token=token, check=0).stdout)
    assert (summary["uploaded"], summary["skipped"]) == (3, 0)
    assert on_server(server, token, summary) == {p.stem: sha256(p) for p in paths}


def test_no_files_and_an_empty_list_are_usage_errors(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    result = cli("upload", "--schema", str(SIGNALS), cwd=tmp_path, token="t", check=2)
    assert "error: no files named (give FILES, or --files-from LIST)" in result.stderr
    (tmp_path / "empty.txt").write_text("# nothing today\n")
    result = cli(
        "upload", "--files-from", "empty.txt", "--schema", str(SIGNALS), cwd=tmp_path, check=2
    )
    assert "error: empty.txt lists no files" in result.stderr
