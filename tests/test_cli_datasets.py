"""``batchload ls`` and ``batchload rm`` against the real local server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from batchload.api import upload_files
from batchload.demo.samples import write_signal_files
from batchload.server.process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "schemas" / "equity_signals.yaml"
DAYS = 6  # 2023-01-02 .. 2023-01-09


def batchload(
    *args: str, token: str | None, endpoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SIGTECH_PLATFORM_TOKEN", "BATCHLOAD_ENDPOINT")
    }
    if token is not None:
        env["SIGTECH_PLATFORM_TOKEN"] = token
    if endpoint is not None:
        env["BATCHLOAD_ENDPOINT"] = endpoint
    return subprocess.run(
        [sys.executable, "-m", "batchload", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@pytest.fixture
def loaded(server: ServerProcess, token: str, tmp_path: Path) -> str:
    """The server with dataset equity_signals holding six daily files; returns its id."""
    files = write_signal_files(tmp_path / "data", DAYS, 12)
    summary = upload_files(
        files, schema=CONTRACT, endpoint=server.url, token=token, manifest=tmp_path / "m.sqlite"
    )
    assert summary.uploaded == DAYS and summary.dataset_id
    return summary.dataset_id


def file_ids(server: ServerProcess, token: str, dataset_id: str) -> list[str]:
    answer = requests.get(
        f"{server.url}/ingestion/datasets/{dataset_id}/files",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    answer.raise_for_status()
    return sorted(answer.json()["ids"])


def test_ls_lists_datasets_with_their_file_counts(
    server: ServerProcess, token: str, loaded: str
) -> None:
    ran = batchload("ls", "--endpoint", server.url, token=token)
    assert ran.returncode == 0, ran.stderr
    header, row = ran.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "FILES"]
    assert row.split() == [loaded, "equity_signals", str(DAYS)]
    assert ran.stderr == "1 dataset(s)\n"

    ran = batchload("ls", "equity*", "--json", token=token, endpoint=server.url)
    assert ran.returncode == 0, ran.stderr
    (dataset,) = json.loads(ran.stdout)["datasets"]
    assert dataset["id"] == loaded and dataset["name"] == "equity_signals"
    assert dataset["file_count"] == DAYS
    assert json.loads(
        batchload("ls", "nothing*", "--json", token=token, endpoint=server.url).stdout
    ) == {"datasets": []}


def test_ls_lists_a_datasets_files_by_name_or_id_and_pattern(
    server: ServerProcess, token: str, loaded: str
) -> None:
    ran = batchload("ls", "equity_signals/signals_2023-01-0[45]", token=token, endpoint=server.url)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].split() == ["FILE_ID", "ROWS", "BYTES", "RECEIVED"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["signals_2023-01-04", "12"],
        ["signals_2023-01-05", "12"],
    ]
    assert "2 file(s) matching 'signals_2023-01-0[45]' in dataset equity_signals" in ran.stderr

    ran = batchload("ls", loaded, "--json", token=token, endpoint=server.url)
    assert ran.returncode == 0, ran.stderr
    listed = json.loads(ran.stdout)
    assert listed["dataset"]["id"] == loaded
    assert [f["file_id"] for f in listed["files"]] == file_ids(server, token, loaded)
    first = listed["files"][0]
    assert first["rows"] == 12 and first["bytes"] > 0 and first["file_format"] == "csv"
    assert len(first["sha256"]) == 64 and first["received_at"]


def test_ls_of_an_unknown_dataset_says_how_to_find_one(
    server: ServerProcess, token: str, loaded: str
) -> None:
    ran = batchload("ls", "nope/*", token=token, endpoint=server.url)
    assert ran.returncode == 2
    assert ran.stderr == (
        f"error: no dataset with id or name 'nope' at {server.url} "
        "(`batchload ls` lists the datasets)\n"
    )


def test_a_name_two_datasets_share_must_be_given_as_an_id(
    server: ServerProcess, token: str, loaded: str, tmp_path: Path
) -> None:
    body = {
        "name": "equity_signals",
        "file": base64.b64encode(b"a,b\n1,2\n").decode(),
        "upload_format": "base64",
        "file_format": "csv",
        "file_id": "other",
    }
    answer = requests.post(
        f"{server.url}/ingestion/datasets",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 201
    other = answer.json()["id"]
    ran = batchload("ls", "equity_signals", token=token, endpoint=server.url)
    assert ran.returncode == 2
    assert "2 datasets are named 'equity_signals'" in ran.stderr and other in ran.stderr
    assert "(name it by its id)" in ran.stderr
    assert (
        batchload("ls", f"{other}/*", token=token, endpoint=server.url).stdout.split()[4] == "other"
    )


def test_rm_dry_run_lists_and_deletes_nothing(
    server: ServerProcess, token: str, loaded: str
) -> None:
    ran = batchload(
        "rm", "equity_signals/signals_2023-01-0[23]", "--dry-run", token=token, endpoint=server.url
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        f"{loaded}/signals_2023-01-02",
        f"{loaded}/signals_2023-01-03",
    ]
    assert "would delete 2 file(s)" in ran.stderr
    assert len(file_ids(server, token, loaded)) == DAYS


def test_rm_without_a_terminal_needs_yes(server: ServerProcess, token: str, loaded: str) -> None:
    ran = batchload("rm", "equity_signals/*", token=token, endpoint=server.url)
    assert ran.returncode == 2
    assert ran.stderr.startswith(f"error: not deleting {DAYS} file(s) from dataset equity_signals")
    assert ran.stderr.rstrip().endswith("(pass --yes to delete, or --dry-run to list them)")
    assert len(ran.stderr.splitlines()) == 1
    assert len(file_ids(server, token, loaded)) == DAYS


def test_rm_yes_deletes_the_matching_files_only(
    server: ServerProcess, token: str, loaded: str
) -> None:
    ran = batchload(
        "rm", f"{loaded}/signals_2023-01-0[23]", "--yes", "--json", token=token, endpoint=server.url
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["deleted"] == ["signals_2023-01-02", "signals_2023-01-03"]
    assert result["failed"] == []
    assert file_ids(server, token, loaded) == [
        "signals_2023-01-04",
        "signals_2023-01-05",
        "signals_2023-01-06",
        "signals_2023-01-09",
    ]
    ran = batchload(
        "--quiet", "rm", "equity_signals/signals_2023-01-04", "-y", token=token, endpoint=server.url
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == f"deleted 1 file(s) from dataset equity_signals ({loaded})\n"
    assert "signals_2023-01-04" not in file_ids(server, token, loaded)


def test_rm_of_nothing_or_of_a_whole_dataset_is_refused(
    server: ServerProcess, token: str, loaded: str
) -> None:
    ran = batchload(
        "rm", "equity_signals/signals_1999-*", "--yes", token=token, endpoint=server.url
    )
    assert ran.returncode == 2
    assert ran.stderr.startswith(
        f"error: no file of dataset equity_signals ({loaded}) matches 'signals_1999-*'"
    )
    ran = batchload("rm", "equity_signals", "--yes", token=token, endpoint=server.url)
    assert ran.returncode == 2
    assert ran.stderr == (
        "error: 'equity_signals' does not name files "
        "(write DATASET/FILE_ID or DATASET/PATTERN; DATASET/* for every file)\n"
    )
    assert len(file_ids(server, token, loaded)) == DAYS


def test_a_refused_token_is_exit_3(server: ServerProcess, loaded: str) -> None:
    ran = batchload("ls", token="wrong-token", endpoint=server.url)
    assert ran.returncode == 3
    assert "401" in ran.stderr and "wrong-token" not in ran.stderr
    assert len(ran.stderr.splitlines()) == 1
