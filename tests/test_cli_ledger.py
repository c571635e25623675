"""The CLI on a PostgreSQL ledger: upload, ``manifest show``/``export`` and ``reconcile`` take
the URL; a password in it is never printed."""

from __future__ import annotations

from pathlib import Path

from batchload.server.process import ServerProcess
from tests.reliability.helpers import assert_clean_output, cli, write_signals
from tests.upload_helpers import upload_args

PASSWORD = "s3cret-pw-0451"


def test_a_postgres_manifest_through_every_command(
    server: ServerProcess, token: str, postgres_url: str, tmp_path: Path
) -> None:
    write_signals(tmp_path / "data", 5, rows=3)
    url = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth ignores it
    args = [
        a if a != str(tmp_path) else url for a in upload_args("data/*.csv", tmp_path, server.url)
    ]

    upload = cli(*args, token=token, cwd=tmp_path)
    assert upload.code == 0, upload.stderr[-2000:]
    summary = upload.json()
    assert (summary["uploaded"], summary["by_others"], summary["lost"]) == (5, 0, 0)
    assert summary["manifest"] == url.replace(PASSWORD, "***")
    assert summary["ledger_calls"] > 0 and summary["ledger_s"] > 0  # the ledger's own time

    show = cli("manifest", "show", url, token=token, cwd=tmp_path)
    assert show.code == 0, show.stderr
    assert show.stdout.splitlines()[0] == f"manifest {url.replace(PASSWORD, '***')}"
    assert "  files: 5 done, 0 failed, 0 in flight, 0 left" in show.stdout
    assert "5 done, 0 failed, 0 in flight" in show.stdout.splitlines()[-1]

    shown = cli("manifest", "show", url, "--json", token=token, cwd=tmp_path).json()
    assert shown["queue"] == {"done": 5, "failed": 0, "in_flight": 0, "left": 0}
    assert [p["done"] for p in shown["processes"]] == [5]

    exported = cli(
        "manifest", "export", url, "--format", "csv", "-o", "rows.csv", token=token, cwd=tmp_path
    )
    assert exported.code == 0, exported.stderr
    assert len((tmp_path / "rows.csv").read_text().splitlines()) == 1 + 5

    checked = cli(
        "reconcile", "--manifest", url, "--endpoint", server.url, token=token, cwd=tmp_path
    )
    assert checked.code == 0, checked.stderr
    for result in (upload, show, exported, checked):
        assert_clean_output(result)
        assert PASSWORD not in result.stdout + result.stderr

    missing = cli(
        "manifest",
        "show",
        "postgresql://postgres:" + PASSWORD + "@127.0.0.1:1/none",
        token=token,
        cwd=tmp_path,
    )
    assert missing.code == 4
    assert PASSWORD not in missing.stderr
    assert missing.stderr.startswith("error: cannot use the ledger at postgresql://postgres:***@")
