"""Objects as sources, against a real S3 server on loopback (moto, started by the tests):
listed with glob rules, uploaded exactly once, read pinned to the version listed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import obstore
import pytest

from batchload.pipeline.run import RunOptions, run_upload
from batchload.progress import Event, RunStarted
from batchload.server.process import ServerProcess
from batchload.state.manifest import Manifest
from batchload.summary import RunSummary
from tests import services
from tests.test_cli_upload import Cli, cli  # noqa: F401  (the fixture)
from tests.upload_helpers import FAST_RETRY, SIGNALS, ServerView, config, job, signal_csv

SECRET = "s3-SECRET-never-shown-7f3a"


@pytest.fixture
def s3_env(s3_server: services.S3Server, monkeypatch: pytest.MonkeyPatch) -> services.S3Server:
    """The store's standard environment, as a user has it (moto takes any key)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return s3_server


def put(store: object, key: str, text: str) -> str:
    obstore.put(store, key, text.encode())  # type: ignore[arg-type]
    return hashlib.sha256(text.encode()).hexdigest()


def test_two_prefixes_of_objects_upload_once_and_a_rerun_sends_nothing(  # noqa: PLR0917
    cli: Cli,  # noqa: F811
    server: ServerProcess,
    token: str,
    tmp_path: Path,
    s3_env: services.S3Server,
    s3_bucket: str,
) -> None:
    store = s3_env.store(s3_bucket)
    expected = {}
    for i in range(200):
        key = f"{2023 + i % 2}/day-{i:03d}.csv"
        expected[f"day-{i:03d}"] = put(store, key, signal_csv(i, rows=5))
    put(store, "2024/notes.txt", "not data")
    put(store, "2024/.hidden.csv", signal_csv(999, rows=5))
    url = server.url
    args = ("upload", f"s3://{s3_bucket}/**/*.csv", "--schema", str(SIGNALS))
    args += ("--endpoint", url, "--manifest", "m.sqlite", "--json")
    first = cli(*args, cwd=tmp_path, token=token, check=0)
    summary = json.loads(first.stdout)
    assert (summary["uploaded"], summary["invalid"], summary["failed"]) == (200, 0, 0)
    files = ServerView(url, token).files(summary["dataset_id"])
    assert {k: v["sha256"] for k, v in files.items()} == expected

    again = json.loads(cli(*args, cwd=tmp_path, token=token, check=0).stdout)
    assert (again["uploaded"], again["skipped"]) == (0, 200)
    with Manifest.open(tmp_path / "m.sqlite", create=False) as manifest:
        row = next(r for r in manifest.rows() if r.file_id == "day-007")
    assert row.source_path == f"s3://{s3_bucket}/2024/day-007.csv"
    assert row.etag == obstore.head(store, "2024/day-007.csv")["e_tag"]
    assert row.sha256 == expected["day-007"]
    for text in (
        first.stdout,
        first.stderr,
        (tmp_path / "m.sqlite").read_bytes().decode("latin-1"),
    ):
        assert SECRET not in text


def test_an_object_rewritten_after_listing_is_read_as_its_new_version(
    server: ServerProcess, token: str, tmp_path: Path, s3_env: services.S3Server, s3_bucket: str
) -> None:
    store = s3_env.store(s3_bucket)
    for i in range(3):
        put(store, f"in/f{i}.csv", signal_csv(i, rows=5))
    listed_etag = obstore.head(store, "in/f1.csv")["e_tag"]
    newer = signal_csv(1, rows=9)

    def rewrite_after_listing(event: Event) -> None:
        if isinstance(event, RunStarted):  # discovery has listed; nothing is read yet
            put(store, "in/f1.csv", newer)

    async def main() -> RunSummary:
        return await run_upload(
            [job(f"s3://{s3_bucket}/in/*.csv")],
            config=config(server, token),
            manifest_path=tmp_path / "m.sqlite",
            options=RunOptions(retry=FAST_RETRY),
            sink=rewrite_after_listing,
        )

    summary = anyio.run(main)
    assert (summary.uploaded, summary.failed) == (3, 0)
    files = ServerView(server.url, token).files(summary.dataset_id or "")
    assert files["f1"]["sha256"] == hashlib.sha256(newer.encode()).hexdigest()
    assert files["f1"]["rows"] == 9  # all new, not half old and half new
    with Manifest.open(tmp_path / "m.sqlite", create=False) as manifest:
        (row,) = [r for r in manifest.rows() if r.file_id == "f1"]
    assert row.etag != listed_etag and row.etag == obstore.head(store, "in/f1.csv")["e_tag"]


def test_a_groups_objects_are_read_at_once_not_one_after_another(
    server: ServerProcess, token: str, tmp_path: Path, s3_env: services.S3Server, s3_bucket: str
) -> None:
    """Reads wait on the network, not the CPU: with one check thread, the six objects of
    its one group are still read side by side (each request to the store waits 300 ms)."""
    store = s3_env.store(s3_bucket)
    expected = {f"f{i}": put(store, f"in/f{i}.csv", signal_csv(i, rows=5)) for i in range(6)}

    async def main() -> RunSummary:
        return await run_upload(
            [job(f"s3://{s3_bucket}/in/*.csv")],
            config=config(server, token),
            manifest_path=tmp_path / "m.sqlite",
            options=RunOptions(retry=FAST_RETRY, workers=1),
        )

    with s3_env.latency(300):
        summary = anyio.run(main)
        at_once = s3_env.peak_gets()
    assert (summary.uploaded, summary.failed) == (6, 0)
    files = ServerView(server.url, token).files(summary.dataset_id or "")
    assert {k: v["sha256"] for k, v in files.items()} == expected
    assert at_once > 1  # one after another in the check thread, they were one at a time


def test_missing_objects_and_signed_urls_are_refused_with_reasons(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
    s3_env: services.S3Server,
    s3_bucket: str,
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"s3://{s3_bucket}/nope.csv\n")
    result = cli(
        "upload",
        "--files-from",
        str(listing),
        "--schema",
        str(SIGNALS),
        "--dry-run",
        cwd=tmp_path,
        check=2,
    )
    assert f"s3://{s3_bucket}/nope.csv: no such object" in result.stderr
    signed = f"https://example.invalid/x.csv?X-Amz-Signature={SECRET}"
    result = cli("upload", signed, "--schema", str(SIGNALS), "--dry-run", cwd=tmp_path, check=2)
    assert "https://example.invalid/x.csv?<redacted>: URLs with credentials" in result.stderr
    assert SECRET not in result.stderr
