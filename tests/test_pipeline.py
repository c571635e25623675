"""The pipeline against a real server: exactly once, resume, bad files, datasets, ids."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchload.check.crossfile import UniqueKeys
from batchload.contract.model import arrow_schema, load_contract
from batchload.demo.samples import write_xlsx
from batchload.errors import UsageError
from batchload.pipeline.prepare import prepare
from batchload.progress import DatasetReady, Event, FileDone, FileSkipped, RunStarted
from batchload.protocol import max_request_bytes
from batchload.server.process import ServerProcess
from batchload.state.manifest import Manifest
from batchload.state.records import FileKeys, FileRecord
from tests.upload_helpers import (
    HEADER,
    SIGNALS,
    ServerView,
    job,
    run,
    sha256,
    signal_csv,
    write_signals,
)


def test_many_files_land_once_each_and_a_rerun_sends_nothing(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    paths = write_signals(tmp_path / "data", 150)
    manifest = tmp_path / "m.sqlite"
    events: list[Event] = []
    first = run(server, token, [job(tmp_path / "data" / "*.csv")], manifest, sink=events.append)

    assert (first.uploaded, first.skipped, first.invalid, first.failed) == (150, 0, 0, 0)
    assert first.exit_code == 0
    view = ServerView(server.url, token)
    datasets = view.datasets()
    assert [d["name"] for d in datasets] == ["equity_signals"]
    assert first.dataset_id == datasets[0]["id"]
    on_server = view.files(first.dataset_id)
    assert sorted(on_server) == sorted(p.stem for p in paths)
    for path in paths:  # the bytes the server stored are the file's bytes
        assert on_server[path.stem]["sha256"] == sha256(path)
        assert on_server[path.stem]["rows"] == 20
    assert first.bytes_sent == sum(p.stat().st_size for p in paths)
    assert [r.missing for r in first.reconcile] == [()]
    assert isinstance(events[0], RunStarted)
    assert sum(isinstance(e, FileDone) for e in events) == 150
    assert next(e for e in events if isinstance(e, DatasetReady)).created

    with Manifest.open(manifest) as opened:
        rows = opened.rows()
        assert {r.state for r in rows} == {"done"}
        assert {r.sha256 for r in rows} == {sha256(p) for p in paths}
        assert all(r.receipt and r.receipt["sha256"] == r.sha256 for r in rows)
        record = opened.dataset("equity_signals")
        assert record is not None and record.dataset_id == first.dataset_id

    again: list[Event] = []
    second = run(server, token, [job(tmp_path / "data" / "*.csv")], manifest, sink=again.append)
    assert (second.uploaded, second.skipped, second.request_bytes) == (0, 150, 0)
    assert sum(isinstance(e, FileSkipped) for e in again) == 150
    assert len(view.datasets()) == 1


def test_changed_and_touched_files_on_rerun(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    paths = write_signals(tmp_path / "data", 4)
    manifest = tmp_path / "m.sqlite"
    first = run(server, token, [job(tmp_path / "data" / "*.csv")], manifest)
    changed, touched = paths[0], paths[1]
    changed.write_text(signal_csv(0, rows=25))  # new content: re-sent under the same file_id
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes, new mtime

    second = run(server, token, [job(tmp_path / "data" / "*.csv")], manifest)
    assert (second.uploaded, second.skipped) == (1, 3)
    on_server = ServerView(server.url, token).files(first.dataset_id or "")
    assert on_server[changed.stem]["rows"] == 25
    assert on_server[changed.stem]["sha256"] == sha256(changed)
    assert len(on_server) == 4
    with Manifest.open(manifest) as opened:
        row = next(r for r in opened.rows() if r.file_id == touched.stem)
        assert row.mtime_ns == touched.stat().st_mtime_ns  # the re-hash recorded the new mtime


def test_bad_files_fail_and_good_ones_land(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_signals(data, 5)
    (data / "out_of_range.csv").write_text(HEADER + "2024-01-02,AAA,5.0,0.5,5\n")
    (data / "not_a_date.csv").write_text(HEADER + "yesterday,AAA,0.5,0.5,5\n")
    (data / "zz_repeat.csv").write_text(signal_csv(0, rows=3))  # sig_0000 came first
    (data / "notes.txt").write_text("ignored by the glob")

    summary = run(server, token, [job(data / "*", data / "missing.csv")], tmp_path / "m.sqlite")
    assert summary.uploaded + summary.invalid == 9
    assert summary.invalid == 4  # three bad files and a missing one
    assert summary.exit_code == 1
    reasons = {Path(p.path).name: p.reason for p in summary.problems}
    assert "in_range" in reasons["out_of_range.csv"]
    assert "missing.csv" in reasons and reasons["missing.csv"] == "no such file"
    assert "not_a_date.csv" in reasons
    assert "repeat a (date, ticker) key" in reasons["zz_repeat.csv"]
    assert "sig_0000.csv" in reasons["zz_repeat.csv"]
    landed = set(ServerView(server.url, token).files(summary.dataset_id or ""))
    assert {f"sig_{i:04d}" for i in range(5)} <= landed
    assert "out_of_range" not in landed and "not_a_date" not in landed
    with Manifest.open(tmp_path / "m.sqlite") as opened:
        states = {Path(r.source_path).name: r.state for r in opened.rows()}
    assert states["out_of_range.csv"] == "invalid"


def test_two_files_one_file_id_is_refused_before_sending(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    write_signals(tmp_path / "a", 1)
    write_signals(tmp_path / "b", 1, start=1)
    (tmp_path / "b" / "sig_0001.csv").rename(tmp_path / "b" / "sig_0000.csv")
    with pytest.raises(UsageError, match="two files map to one file_id"):
        run(server, token, [job(tmp_path / "*" / "*.csv")], tmp_path / "m.sqlite")
    assert ServerView(server.url, token).datasets() == []
    ok = run(
        server,
        token,
        [job(tmp_path / "*" / "*.csv", file_id="{stem}-{sha8}")],
        tmp_path / "n.sqlite",
    )
    assert ok.uploaded == 2


def test_prepare_gives_the_garbage_collector_back(tmp_path: Path) -> None:
    """prepare pauses the cyclic GC while it builds its bookkeeping; it is on again
    afterwards, also when prepare refuses the run, and stays off if it was off."""
    import gc

    write_signals(tmp_path / "a", 1)
    write_signals(tmp_path / "b", 1, start=1)
    (tmp_path / "b" / "sig_0001.csv").rename(tmp_path / "b" / "sig_0000.csv")
    clash = [job(tmp_path / "*" / "*.csv")]
    fine = [job(tmp_path / "a" / "*.csv")]
    options = {"manifest": None, "endpoint": None, "max_request_bytes": max_request_bytes(5)}
    assert gc.isenabled()
    assert len(prepare(fine, **options)[0].work) == 1
    assert gc.isenabled()
    with pytest.raises(UsageError, match="two files map to one file_id"):
        prepare(clash, **options)
    assert gc.isenabled()
    gc.disable()
    try:
        prepare(fine, **options)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_existing_dataset_by_id_and_by_name(
    server_factory: Callable[..., ServerProcess], token: str, tmp_path: Path
) -> None:
    server = server_factory()
    write_signals(tmp_path / "one", 2)
    write_signals(tmp_path / "two", 2, start=2)
    first = run(server, token, [job(tmp_path / "one" / "*.csv")], tmp_path / "m1.sqlite")
    # A new manifest naming the same dataset adopts it instead of creating a twin.
    by_name = run(server, token, [job(tmp_path / "two" / "*.csv")], tmp_path / "m2.sqlite")
    assert by_name.dataset_id == first.dataset_id
    by_id = run(
        server,
        token,
        [job(tmp_path / "two" / "*.csv", dataset_id=first.dataset_id)],
        tmp_path / "m3.sqlite",
    )
    assert by_id.dataset_id == first.dataset_id
    view = ServerView(server.url, token)
    assert len(view.datasets()) == 1
    assert len(view.files(first.dataset_id or "")) == 4


def test_a_contract_unlike_the_locked_schema_is_refused(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    write_signals(tmp_path / "data", 1)
    first = run(server, token, [job(tmp_path / "data" / "*.csv")], tmp_path / "m.sqlite")
    prices = Path(__file__).resolve().parent.parent / "schemas" / "market_prices.yaml"
    refused = run(
        server,
        token,
        [job(tmp_path / "data" / "*.csv", schema=prices, dataset_id=first.dataset_id)],
        tmp_path / "other.sqlite",
    )
    assert isinstance(refused.error, UsageError)
    assert "does not match the locked schema" in str(refused.error)
    assert (refused.uploaded, refused.exit_code) == (0, 2)


def test_unknown_dataset_id_is_a_usage_error(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    write_signals(tmp_path / "data", 1)
    summary = run(
        server, token, [job(tmp_path / "data" / "*.csv", dataset_id="nope")], tmp_path / "m.sqlite"
    )
    assert isinstance(summary.error, UsageError)
    assert "does not exist" in str(summary.error)
    assert summary.exit_code == 2


# --- unique keys across runs -----------------------------------------------------------------


def test_a_day_sent_by_an_earlier_run_is_refused_in_a_new_file(
    server: ServerProcess, token: str, tmp_path: Path, manifest_location: str
) -> None:
    """The cross-file unique check spans runs, though done files are skipped unread, on
    either store of the manifest."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "signals_X.csv").write_text(signal_csv(7))
    (data / "signals_Y.csv").write_text(signal_csv(8))
    manifest = manifest_location
    first = run(server, token, [job(data / "*.csv")], manifest)
    assert (first.uploaded, first.invalid) == (2, 0)

    (data / "signals_X_resend.csv").write_text(signal_csv(7))  # the same days, again
    second = run(server, token, [job(data / "*.csv")], manifest)
    assert (second.uploaded, second.skipped, second.invalid) == (0, 2, 1)
    (problem,) = second.problems
    assert Path(problem.path).name == "signals_X_resend.csv"
    assert "repeat a (date, ticker) key" in problem.reason
    assert f"already in {data / 'signals_X.csv'}, sent by an earlier run" in problem.reason
    assert "signals_X_resend" not in ServerView(server.url, token).files(first.dataset_id or "")

    # named alone (the others not in this run's file set), and in a dry run: still refused
    alone = run(server, token, [job(data / "signals_X_resend.csv")], manifest)
    assert (alone.uploaded, alone.invalid) == (0, 1)
    dry = run(server, token, [job(data / "*.csv")], manifest, dry_run=True)
    assert dry.invalid == 1 and "signals_X.csv" in dry.problems[0].reason


def test_a_file_sent_again_does_not_repeat_its_own_keys(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    """Changed (new size, or same size and new bytes) and re-sent: its old keys are its own."""
    data = tmp_path / "data"
    grown, edited, touched = write_signals(data, 3)
    manifest = tmp_path / "m.sqlite"
    first = run(server, token, [job(data / "*.csv")], manifest)
    assert first.uploaded == 3

    grown.write_text(signal_csv(0, rows=25))  # the same 20 days and 5 more
    text = signal_csv(1)
    edited.write_text(text.replace(",5\n", ",1\n", 1))  # same size, one value changed
    stat = edited.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    stat = touched.stat()  # same bytes, new mtime: re-hashed, not re-read
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = run(server, token, [job(data / "*.csv")], manifest)
    assert (second.uploaded, second.skipped, second.invalid) == (2, 1, 0), second.problems

    (data / "repeat_of_touched.csv").write_text(signal_csv(2, rows=3))
    added_days = signal_csv(0, rows=25).splitlines(keepends=True)[-2:]  # new in the grown file
    (data / "repeat_of_grown.csv").write_text(HEADER + "".join(added_days))
    third = run(server, token, [job(data / "*.csv")], manifest)
    reasons = {Path(p.path).name: p.reason for p in third.problems}
    assert third.uploaded == 0 and set(reasons) == {"repeat_of_touched.csv", "repeat_of_grown.csv"}
    assert "sig_0002.csv, sent by an earlier run" in reasons["repeat_of_touched.csv"]
    assert "sig_0000.csv, sent by an earlier run" in reasons["repeat_of_grown.csv"]


# --- workbooks ---------------------------------------------------------------------------------


def test_a_workbook_lands_as_parquet_with_the_contract_types(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    """Date cells and whole numbers pass a Date/Int64 contract; the service gets parquet
    with exactly those types (the workbook's own bytes would be read as doubles and
    timestamps), the manifest says so, and a re-run skips it."""
    data = tmp_path / "data"
    data.mkdir()
    header = HEADER.strip().split(",")
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    write_xlsx(data / "book.xlsx", [header, *[[d, "AAPL", 0.25, 0.5, 21] for d in days]])
    write_xlsx(data / "half.xlsx", [header, [dt.date(2024, 1, 4), "AAPL", 0.1, None, 2.5]])
    manifest = tmp_path / "m.sqlite"

    dry = run(server, token, [job(data / "*.xlsx")], manifest, dry_run=True)
    assert [(r.file_id, r.file_format, r.rows) for r in dry.plan] == [("book", "parquet", 2)]
    summary = run(server, token, [job(data / "*.xlsx")], manifest)
    assert (summary.uploaded, summary.invalid) == (1, 1), summary.problems
    (problem,) = summary.problems
    assert "horizon_days: 1 value(s) are not int64 (rows 2: 2.5)" in problem.reason  # sheet row

    stored = ServerView(server.url, token).files(summary.dataset_id or "")
    assert list(stored) == ["book"] and stored["book"]["rows"] == 2
    with Manifest.open(manifest) as opened:
        (row,) = [r for r in opened.rows() if r.state == "done"]
    assert (row.file_format, row.converted_from, row.file_id) == ("parquet", "xlsx", "book")
    assert row.sent_sha256 == stored["book"]["sha256"] != sha256(data / "book.xlsx")
    assert row.sha256 == sha256(data / "book.xlsx")  # resume still decides from the source
    (landed,) = (server.data_dir / "files").rglob("book.*")
    table = pq.read_table(landed)
    assert table.schema.remove_metadata() == arrow_schema(load_contract(SIGNALS))
    assert table.column("date").to_pylist() == days
    assert table.column("horizon_days").to_pylist() == [21, 21]

    again = run(server, token, [job(data / "*.xlsx")], manifest)
    assert (again.uploaded, again.skipped, again.invalid) == (0, 1, 1)


def test_a_rerun_starts_from_the_keys_of_every_done_file_it_does_not_send_again(
    tmp_path: Path,
) -> None:
    """Done files (in this run's file set or not) count; a file not done, or being sent
    again, does not."""
    skipped, changed, elsewhere, failed = write_signals(tmp_path / "data", 4)
    scheme = UniqueKeys.for_contract(load_contract(SIGNALS)).scheme
    with Manifest.open(tmp_path / "m.sqlite") as manifest:
        for path in (skipped, changed, elsewhere, failed):
            st = path.stat()
            state = "failed" if path == failed else "done"
            row = FileRecord(
                dataset="equity_signals",
                source_path=str(path.resolve()),
                parts=1,
                file_id=path.stem,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                sha256=sha256(path),
                state=state,
            )
            blob = FileKeys(
                dataset=row.dataset, source_path=row.source_path, scheme=scheme, hashes=b"k" * 8
            )
            manifest.write([row], keys=[blob])
        changed.write_text(signal_csv(1, rows=21))
        (prepared,) = prepare(
            [job(skipped, changed)],
            manifest=manifest,
            endpoint=None,
            max_request_bytes=max_request_bytes(5),
        )
    assert [s.path.name for s in prepared.skipped] == [skipped.name]
    known = sorted((Path(p).name, count) for p, count in prepared.earlier_keys)
    assert known == sorted([(elsewhere.name, 1), (skipped.name, 1)])
