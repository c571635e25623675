"""``validate=False`` (``--no-validate``): files go unvalidated, large ones are still split."""

from __future__ import annotations

from pathlib import Path

from batchload.server.process import ServerProcess
from tests.upload_helpers import HEADER, ServerView, job, run, sha256, write_signals


def test_without_validation_a_file_breaking_a_check_is_sent(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    good = write_signals(data, 3)
    bad = data / "sig_bad.csv"  # signal 7.5 breaks in_range(-1, 1); the types are fine
    bad.write_text(HEADER + "2001-01-01,TBAD,7.5,0.5,5\n")

    checked = run(server, token, [job(data / "*.csv")], tmp_path / "on.sqlite")
    assert (checked.uploaded, checked.invalid) == (3, 1)

    sent = run(server, token, [job(data / "*.csv")], tmp_path / "off.sqlite", validate=False)
    # the good files are on the service already, same bytes: recorded, not sent again
    assert (sent.uploaded, sent.invalid, sent.failed, sent.found_on_service) == (1, 0, 0, 3)
    assert sent.dataset_id is not None
    on_server = ServerView(server.url, token).files(sent.dataset_id)
    assert {p.stem: sha256(p) for p in [*good, bad]} == {
        k: v["sha256"] for k, v in on_server.items()
    }


def test_without_validation_a_large_file_is_still_sent_in_parts(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    (path,) = write_signals(tmp_path / "data", 1, rows=20_000)
    summary = run(
        server,
        token,
        [job(path)],
        tmp_path / "m.sqlite",
        validate=False,
        max_request_mb=0.1,
    )
    assert (summary.uploaded, summary.failed) == (1, 0)
    assert summary.parts_uploaded > 1
    assert summary.dataset_id is not None
    files = ServerView(server.url, token).files(summary.dataset_id)
    assert sum(f["rows"] for f in files.values()) == 20_000
