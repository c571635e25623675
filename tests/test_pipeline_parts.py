"""Large files in parts, a 413 from a smaller server limit, stale parts, the dry run, the
spool the parts wait in, and a resume that sends no part twice."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from batchload.check.spool import LOCK_NAME, SPOOL_PREFIX
from batchload.errors import AuthError
from batchload.progress import DatasetReady, Event, FileDone, PartDone
from batchload.server.process import ServerProcess
from batchload.state.manifest import Manifest
from tests.upload_helpers import ServerView, job, run, sha256, signal_csv, write_signals

BIG_ROWS = 6000  # about 190 kB of CSV


def make_big(directory: Path, rows: int = BIG_ROWS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "big.csv"
    path.write_text(signal_csv(999, rows=rows))
    return path


def assert_parts_hold_every_row(view: ServerView, dataset_id: str, path: Path, rows: int) -> int:
    files = view.files(dataset_id)
    parts = {k: v for k, v in files.items() if k.startswith(f"{path.stem}.part-")}
    assert f"{path.stem}" not in files  # no whole file beside its parts
    assert sorted(parts) == [f"{path.stem}.part-{i:04d}" for i in range(1, len(parts) + 1)]
    assert sum(p["rows"] for p in parts.values()) == rows
    assert {p["file_format"] for p in parts.values()} == {"parquet"}
    return len(parts)


def test_a_file_over_the_limit_lands_every_row_in_parts(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    big = make_big(tmp_path / "data")
    small = write_signals(tmp_path / "data", 2)
    manifest = tmp_path / "m.sqlite"
    summary = run(server, token, [job(tmp_path / "data" / "*.csv")], manifest, max_request_mb=0.03)
    assert (summary.uploaded, summary.failed) == (3, 0)
    assert summary.parts_uploaded > 1
    view = ServerView(server.url, token)
    count = assert_parts_hold_every_row(view, summary.dataset_id or "", big, BIG_ROWS)
    assert count == summary.parts_uploaded
    files = view.files(summary.dataset_id or "")
    assert all(files[p.stem]["sha256"] == sha256(p) for p in small)  # small files go whole
    with Manifest.open(manifest) as opened:
        rows = [r for r in opened.rows() if r.source_path == str(big)]
    assert [r.part for r in rows] == list(range(1, count + 1))
    assert {r.parts for r in rows} == {count}
    assert {r.state for r in rows} == {"done"}
    assert all(files[r.file_id or ""]["sha256"] == r.sent_sha256 for r in rows)
    assert all(r.bytes_sent and r.bytes_sent <= 0.03 * 1024 * 1024 for r in rows)

    again = run(server, token, [job(tmp_path / "data" / "*.csv")], manifest, max_request_mb=0.03)
    assert (again.uploaded, again.skipped) == (0, 3)


def test_a_413_halves_the_request_size_until_parts_fit(
    server_factory: Callable[..., ServerProcess], token: str, tmp_path: Path
) -> None:
    server = server_factory("--max-body-mb", "0.03")
    big = make_big(tmp_path / "data")
    summary = run(server, token, [job(big)], tmp_path / "m.sqlite")  # client limit: 5 MB
    assert (summary.uploaded, summary.failed) == (1, 0), summary.problems
    view = ServerView(server.url, token)
    assert_parts_hold_every_row(view, summary.dataset_id or "", big, BIG_ROWS)
    with Manifest.open(tmp_path / "m.sqlite") as opened:
        rows = opened.rows()
    assert 0 not in {r.part for r in rows}  # the refused whole-file attempt left no row
    assert {r.state for r in rows} == {"done"}


def test_a_file_that_grows_past_the_limit_replaces_its_whole_copy(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    big = make_big(tmp_path / "data", rows=500)
    manifest = tmp_path / "m.sqlite"
    first = run(server, token, [job(big)], manifest, max_request_mb=0.03)
    view = ServerView(server.url, token)
    assert list(view.files(first.dataset_id or "")) == ["big"]
    make_big(tmp_path / "data")  # now 6000 rows: too big for one request
    second = run(server, token, [job(big)], manifest, max_request_mb=0.03)
    assert second.uploaded == 1
    assert_parts_hold_every_row(view, first.dataset_id or "", big, BIG_ROWS)
    make_big(tmp_path / "data", rows=3000)  # fewer parts: the extra ones go
    run(server, token, [job(big)], manifest, max_request_mb=0.03)
    assert_parts_hold_every_row(view, first.dataset_id or "", big, 3000)
    with Manifest.open(manifest) as opened:
        assert all(r.parts == len(opened.rows()) for r in opened.rows())


def test_dry_run_plans_parts_and_sizes_and_sends_nothing(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    make_big(tmp_path / "data")
    write_signals(tmp_path / "data", 2)
    manifest = tmp_path / "m.sqlite"
    summary = run(
        server,
        token,
        [job(tmp_path / "data" / "*.csv")],
        manifest,
        max_request_mb=0.03,
        dry_run=True,
    )
    assert summary.dry_run and summary.uploaded == 0
    parts = [p for p in summary.plan if p.part]
    whole = [p for p in summary.plan if not p.part]
    assert [p.file_id for p in whole] == ["sig_0000", "sig_0001"]
    assert len(parts) > 1 and sum(p.rows or 0 for p in parts) == BIG_ROWS
    assert all(p.request_bytes <= 0.03 * 1024 * 1024 for p in summary.plan)
    assert summary.request_bytes == sum(p.request_bytes for p in summary.plan)
    assert ServerView(server.url, token).datasets() == []
    assert not manifest.exists()


def test_parts_keep_the_contract_types(server: ServerProcess, token: str, tmp_path: Path) -> None:
    big = make_big(tmp_path / "data")
    summary = run(server, token, [job(big)], tmp_path / "m.sqlite", max_request_mb=0.03)
    view = ServerView(server.url, token)
    response = view.session.get(f"{view.url}/ingestion/datasets/{summary.dataset_id}", timeout=30)
    schema = {c["name"]: c["type"] for c in response.json()["schema"]}
    assert schema == {
        "date": "date32[day]",
        "ticker": "string",
        "signal": "double",
        "confidence": "double",
        "horizon_days": "int64",
    }


def spools(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{SPOOL_PREFIX}*"))


def file_posts(server: ServerProcess) -> int:
    """File uploads the server has answered, from its access log."""
    assert server.stderr_path is not None
    text = server.stderr_path.read_text(errors="replace")
    return len(re.findall(r'"POST /ingestion/datasets/\w+/files HTTP/1.1" 20\d ', text))


def test_parts_wait_in_a_spool_on_disk_that_the_run_removes(
    server: ServerProcess, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the run's spool goes
    big = make_big(tmp_path / "data")
    seen: dict[str, list[Path]] = {}
    landed: list[int] = []

    def sink(event: Event) -> None:
        if isinstance(event, PartDone):
            landed.append(event.bytes)
        if isinstance(event, DatasetReady | FileDone):
            [spool] = spools(temp)
            # the first part is in, the others wait on disk; each goes once it is done
            parts = sorted(p for p in spool.iterdir() if p.name != LOCK_NAME)
            seen["waiting" if isinstance(event, DatasetReady) else "done"] = parts

    summary = run(server, token, [job(big)], tmp_path / "m.sqlite", max_request_mb=0.03, sink=sink)

    assert (summary.uploaded, summary.failed) == (1, 0)
    assert (len(landed), sum(landed)) == (summary.parts_uploaded, summary.bytes_sent)  # progress
    assert len(seen["waiting"]) >= summary.parts_uploaded - 1 >= 1
    assert all(p.suffix == ".parquet" for p in seen["waiting"])
    assert seen["done"] == []  # each part's file goes once the part is done
    assert spools(temp) == []  # and the spool with the run

    dry = run(server, token, [job(big)], tmp_path / "new.sqlite", max_request_mb=0.01, dry_run=True)
    assert len([p for p in dry.plan if p.part]) > summary.parts_uploaded
    assert spools(temp) == []

    small = write_signals(tmp_path / "small", 3)
    during: list[list[Path]] = []
    whole = run(
        server,
        token,
        [job(tmp_path / "small" / "*.csv")],
        tmp_path / "m.sqlite",
        sink=lambda event: during.append(spools(temp)) if isinstance(event, FileDone) else None,
    )
    assert whole.uploaded == len(small) == len(during)
    assert during == [[]] * len(small)  # no large file: no spool made


def test_a_resumed_split_file_sends_no_part_twice(
    server_factory: Callable[..., ServerProcess], token: str, tmp_path: Path
) -> None:
    # a service without the PUT create: the first part creates the dataset
    server = server_factory("--no-dataset-put", tokens=(token, "observer-token"))
    big = make_big(tmp_path / "data")
    manifest = tmp_path / "m.sqlite"

    def revoke_after_the_first_part(event: Event) -> None:
        if isinstance(event, DatasetReady):  # the first part created the dataset
            ServerView(server.url, token).revoke()

    first = run(
        server,
        token,
        [job(big)],
        manifest,
        max_request_mb=0.015,
        sink=revoke_after_the_first_part,
    )
    assert isinstance(first.error, AuthError) and first.uploaded == 0
    view = ServerView(server.url, "observer-token")
    before = view.files(first.dataset_id or "")
    assert list(before) == [f"{big.stem}.part-0001"]
    server.restart()  # revocations last until a restart
    posts = file_posts(server)

    resumed = run(server, token, [job(big)], manifest, max_request_mb=0.015)

    assert (resumed.uploaded, resumed.failed) == (1, 0)
    count = assert_parts_hold_every_row(view, first.dataset_id or "", big, BIG_ROWS)
    assert resumed.parts_uploaded == count - 1
    assert file_posts(server) - posts == count - 1  # the server saw no part twice
    after = view.files(first.dataset_id or "")
    assert after[f"{big.stem}.part-0001"] == before[f"{big.stem}.part-0001"]
    with Manifest.open(manifest) as opened:
        rows = opened.rows()
    assert [r.part for r in rows] == list(range(1, count + 1))
    assert {(r.state, r.parts) for r in rows} == {("done", count)}


def test_parts_refused_by_a_smaller_server_limit_are_cut_again_from_the_file(
    server_factory: Callable[..., ServerProcess],
    token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    server = server_factory("--max-body-mb", "0.012")
    big = make_big(tmp_path / "data")
    # cut for 0.03 MB while checked: the first part is refused, and the file cut again
    summary = run(server, token, [job(big)], tmp_path / "m.sqlite", max_request_mb=0.03)
    assert (summary.uploaded, summary.failed) == (1, 0), summary.problems
    view = ServerView(server.url, token)
    count = assert_parts_hold_every_row(view, summary.dataset_id or "", big, BIG_ROWS)
    assert count > 2
    with Manifest.open(tmp_path / "m.sqlite") as opened:
        rows = opened.rows()
    assert all(r.bytes_sent and r.bytes_sent <= 0.012 * 1024 * 1024 for r in rows)
    assert {r.state for r in rows} == {"done"}
    assert spools(temp) == []


def test_the_dry_run_plans_the_parts_a_run_sends(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    big = make_big(tmp_path / "data", rows=20_000)
    manifest = tmp_path / "m.sqlite"
    dry = run(server, token, [job(big)], manifest, max_request_mb=0.03, dry_run=True)
    planned = [(p.file_id, p.rows) for p in dry.plan]
    summary = run(server, token, [job(big)], manifest, max_request_mb=0.03)
    assert summary.parts_uploaded == len(planned) > 3
    with Manifest.open(manifest) as opened:
        assert [(r.file_id, r.rows) for r in opened.rows()] == planned
