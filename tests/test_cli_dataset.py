"""``batchload dataset create|show|rm`` against the real local server."""

from __future__ import annotations

import json
from pathlib import Path

from batchload.server.process import ServerProcess
from tests.test_cli_upload import PRICES, Cli, cli  # noqa: F401  (the fixture)
from tests.upload_helpers import SIGNALS, ServerView, upload_args, write_signals


def test_create_upload_show_and_remove_a_dataset(
    cli: Cli,  # noqa: F811
    server: ServerProcess,
    token: str,
    tmp_path: Path,
) -> None:
    endpoint = ("--endpoint", server.url)
    created = cli(
        "dataset",
        "create",
        "signals",
        "--schema",
        str(SIGNALS),
        *endpoint,
        "--json",
        cwd=tmp_path,
        token=token,
        check=0,
    )
    assert json.loads(created.stdout)["created"] is True
    assert "created dataset signals, 5 column(s) from" in created.stderr
    view = ServerView(server.url, token)
    (locked,) = view.datasets()
    assert (locked["id"], locked["name"]) == ("signals", "signals")
    assert [c["name"] for c in locked["schema"]] == [
        "date",
        "ticker",
        "signal",
        "confidence",
        "horizon_days",
    ]
    # the same create again does nothing; another schema for it is refused
    again = cli(
        "dataset",
        "create",
        "signals",
        "--schema",
        str(SIGNALS),
        *endpoint,
        cwd=tmp_path,
        token=token,
        check=0,
    )
    assert "exists already, with this schema: dataset signals" in again.stderr
    other = cli(
        "dataset",
        "create",
        "signals",
        "--schema",
        str(PRICES),
        *endpoint,
        cwd=tmp_path,
        token=token,
        check=2,
    )
    assert "error: dataset signals exists with another locked schema: column" in other.stderr

    # an upload by name finds it instead of creating another
    write_signals(tmp_path / "data", 3, rows=10)
    args = upload_args("data", Path("m.sqlite"), server.url, "--dataset", "signals")
    summary = json.loads(cli(*args, cwd=tmp_path, token=token, check=0).stdout)
    assert summary["dataset_id"] == "signals" and len(view.datasets()) == 1

    shown = cli("dataset", "show", "signals", *endpoint, cwd=tmp_path, token=token, check=0)
    lines = shown.stdout.splitlines()
    assert lines[0] == "dataset signals: 3 file(s), 30 rows"
    assert lines[1].split() == ["COLUMN", "TYPE"] and lines[2].split() == ["date", "date32[day]"]
    diff = cli(
        "dataset",
        "show",
        "signals",
        "--schema",
        str(PRICES),
        *endpoint,
        "--json",
        cwd=tmp_path,
        token=token,
        check=1,
    )
    detail = json.loads(diff.stdout)
    assert (detail["file_count"], detail["rows"], detail["matches"]) == (3, 30, False)
    assert {d["kind"] for d in detail["differences"]} >= {"missing", "extra"}

    refused = cli("dataset", "rm", "signals", *endpoint, cwd=tmp_path, token=token, check=2)
    assert "error: not deleting dataset signals (3 file(s), 30 rows) without confirmation" in (
        refused.stderr
    )
    assert len(view.datasets()) == 1
    removed = cli(
        "dataset", "rm", "signals", "--yes", *endpoint, cwd=tmp_path, token=token, check=0
    )
    assert "deleted dataset signals and its 3 file(s), 30 rows" in removed.stderr
    assert view.datasets() == []
    gone = cli("dataset", "show", "signals", *endpoint, cwd=tmp_path, token=token, check=2)
    assert "error: no dataset with id or name 'signals'" in gone.stderr


def test_create_refuses_a_name_that_is_no_id_or_is_taken(
    cli: Cli,  # noqa: F811
    server: ServerProcess,
    token: str,
    tmp_path: Path,
) -> None:
    endpoint = ("--endpoint", server.url)
    bad = cli(
        "dataset",
        "create",
        "equity signals",
        "--schema",
        str(SIGNALS),
        *endpoint,
        cwd=tmp_path,
        token=token,
        check=2,
    )
    assert "cannot be a dataset id" in bad.stderr and "(pass --id ID)" in bad.stderr
    cli(
        "dataset",
        "create",
        "equity signals",
        "--id",
        "eq-1",
        "--schema",
        str(SIGNALS),
        *endpoint,
        cwd=tmp_path,
        token=token,
        check=0,
    )
    taken = cli(
        "dataset",
        "create",
        "equity signals",
        "--id",
        "eq-2",
        "--schema",
        str(SIGNALS),
        *endpoint,
        cwd=tmp_path,
        token=token,
        check=2,
    )
    assert "a dataset named 'equity signals' exists already (id eq-1)" in taken.stderr
