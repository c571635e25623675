"""File identity against the real local server: the service is the truth about what is there.

Each case is a user's step outside "one folder, one manifest, one process": a second
folder with the same stems, an edited file under ``{sha8}``, a slow create, files
deleted on the service, listings under faults. What the user sees is checked exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from batchload.errors import UsageError
from batchload.progress import DatasetReady, Event, MissingOnService
from batchload.server.process import ServerProcess
from batchload.state.manifest import Manifest
from tests.test_cli_upload import Cli, cli  # noqa: F401  (the CLI fixture, shared)
from tests.upload_helpers import (
    ServerView,
    job,
    run,
    sha256,
    signal_csv,
    upload_args,
    write_signals,
)

Factory = Callable[..., ServerProcess]


def _folders(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """Two folders whose files share stems, with different content."""
    first = write_signals(tmp_path / "a", 3)
    second = write_signals(tmp_path / "b", 3)
    for i, path in enumerate(second):
        path.write_text(signal_csv(100 + i))
    return first, second


def test_a_second_folder_with_the_same_stems_is_a_conflict_not_an_overwrite(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    first, second = _folders(tmp_path)
    one = run(server, token, [job(tmp_path / "a" / "*.csv")], tmp_path / "a.sqlite")
    dataset_id = one.dataset_id or ""
    view = ServerView(server.url, token)

    fresh = run(server, token, [job(tmp_path / "b" / "*.csv")], tmp_path / "b.sqlite")

    assert (fresh.uploaded, fresh.conflicts, fresh.exit_code) == (0, 3, 1)
    assert fresh.dataset_id == dataset_id  # added to the same dataset, not a second one
    problem = fresh.problems[0]
    assert problem.state == "conflict"
    received = view.files(dataset_id)["sig_0000"]["received_at"]
    assert problem.reason == (
        f"conflict: file_id 'sig_0000' in dataset equity_signals (id {dataset_id}) was put "
        f"there by another source (not recorded in this manifest; received {received}); "
        f"this run would send {second[0]}. Use --on-existing skip|replace to decide."
    )
    assert {k: v["sha256"] for k, v in view.files(dataset_id).items()} == {
        p.stem: sha256(p) for p in first
    }

    skipped = run(
        server, token, [job(tmp_path / "b" / "*.csv")], tmp_path / "b.sqlite", on_existing="skip"
    )
    assert (skipped.uploaded, skipped.skipped, skipped.conflicts, skipped.exit_code) == (0, 3, 0, 0)
    assert view.files(dataset_id)["sig_0001"]["sha256"] == sha256(first[1])

    replaced = run(
        server,
        token,
        [job(tmp_path / "b" / "*.csv")],
        tmp_path / "b.sqlite",
        on_existing="replace",
    )
    assert (replaced.uploaded, replaced.exit_code) == (3, 0)
    assert {k: v["sha256"] for k, v in view.files(dataset_id).items()} == {
        p.stem: sha256(p) for p in second
    }
    assert len(view.datasets()) == 1


def test_a_second_folder_with_the_same_manifest_is_refused_before_sending(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    _folders(tmp_path)
    manifest = tmp_path / "m.sqlite"
    run(server, token, [job(tmp_path / "a" / "*.csv")], manifest)
    with pytest.raises(UsageError, match=r"was sent from .*/a/sig_0000\.csv in an earlier run"):
        run(server, token, [job(tmp_path / "b" / "*.csv")], manifest)


def test_the_cli_says_it_adds_to_an_existing_dataset_and_names_both_sources(
    cli: Cli,  # noqa: F811
    server: ServerProcess,
    token: str,
    tmp_path: Path,
) -> None:
    _, second = _folders(tmp_path)
    a_args = upload_args(str(tmp_path / "a" / "*.csv"), tmp_path / "a.sqlite", server.url)
    first = json.loads(cli(*a_args, cwd=tmp_path, token=token, check=0).stdout)
    dataset_id = first["dataset_id"]

    b_args = upload_args(str(tmp_path / "b" / "*.csv"), tmp_path / "b.sqlite", server.url)
    ran = cli(*b_args, "--dataset", "equity_signals", cwd=tmp_path, token=token, check=1)

    assert f"adding to dataset equity_signals (id {dataset_id}, 3 files)" in ran.stderr
    assert "created dataset" not in ran.stderr
    summary = json.loads(ran.stdout)
    assert (summary["conflicts"], summary["uploaded"]) == (3, 0)
    assert f"this run would send {second[2]}. Use --on-existing skip|replace" in ran.stderr


def test_the_same_bytes_from_another_manifest_are_recorded_not_sent(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    write_signals(tmp_path / "a", 3)
    run(server, token, [job(tmp_path / "a" / "*.csv")], tmp_path / "one.sqlite")

    other = run(server, token, [job(tmp_path / "a" / "*.csv")], tmp_path / "two.sqlite")
    assert (other.uploaded, other.found_on_service, other.skipped, other.exit_code) == (0, 3, 3, 0)
    with Manifest.open(tmp_path / "two.sqlite") as manifest:
        assert {r.state for r in manifest.rows()} == {"done"}
    again = run(server, token, [job(tmp_path / "a" / "*.csv")], tmp_path / "two.sqlite")
    assert (again.uploaded, again.skipped, again.found_on_service) == (0, 3, 0)


def test_an_edited_file_under_sha8_replaces_its_old_version(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    paths = write_signals(tmp_path / "a", 2)
    manifest = tmp_path / "m.sqlite"
    upload = job(tmp_path / "a" / "*.csv", file_id="{stem}-{sha8}")
    first = run(server, token, [upload], manifest)
    view = ServerView(server.url, token)
    before = set(view.files(first.dataset_id or ""))

    paths[0].write_text(signal_csv(50))
    second = run(server, token, [upload], manifest)

    assert (second.uploaded, second.skipped) == (1, 1)
    after = view.files(first.dataset_id or "")
    new_id = f"sig_0000-{sha256(paths[0])[:8]}"
    assert set(after) == (before - {f"sig_0000-{min(before)[9:]}"}) | {new_id}
    assert len(after) == 2  # the old version is gone: the dataset mirrors its sources


def test_a_slow_create_makes_one_dataset(
    server_factory: Factory, token: str, tmp_path: Path
) -> None:
    from batchload.config import ClientConfig, Secret

    server = server_factory("--create-delay-ms", "1000")
    write_signals(tmp_path / "a", 3)

    import anyio

    from batchload.pipeline.run import RunOptions, run_upload
    from tests.upload_helpers import FAST_RETRY

    async def main() -> object:
        return await run_upload(
            [job(tmp_path / "a" / "*.csv")],
            config=ClientConfig(endpoint=server.url, token=Secret(token), timeout_s=0.3),
            manifest_path=tmp_path / "m.sqlite",
            options=RunOptions(retry=FAST_RETRY),
        )

    summary = anyio.run(main)
    assert summary.uploaded == 3  # type: ignore[attr-defined]
    datasets = ServerView(server.url, token).datasets()
    assert [d["name"] for d in datasets] == ["equity_signals"]  # once, though it was slow
    assert datasets[0]["file_count"] == 3


def test_files_lost_on_the_service_are_sent_again(
    cli: Cli,  # noqa: F811
    server: ServerProcess,
    token: str,
    tmp_path: Path,
) -> None:
    paths = write_signals(tmp_path / "a", 4)
    manifest = tmp_path / "m.sqlite"
    first = run(server, token, [job(tmp_path / "a" / "*.csv")], manifest)
    dataset_id = first.dataset_id or ""
    view = ServerView(server.url, token)
    for path in paths[:3]:
        response = view.session.delete(
            f"{server.url}/ingestion/datasets/{dataset_id}/files/{path.stem}", timeout=30
        )
        assert response.status_code == 204

    events: list[Event] = []
    again = run(server, token, [job(tmp_path / "a" / "*.csv")], manifest, sink=events.append)

    assert (again.uploaded, again.skipped, again.resent) == (3, 1, 3)
    assert MissingOnService("equity_signals", dataset_id, 3) in events
    assert DatasetReady("equity_signals", dataset_id, created=False, files=1) in events
    assert set(view.files(dataset_id)) == {p.stem for p in paths}

    view.session.delete(f"{server.url}/ingestion/datasets/{dataset_id}/files/sig_0003")
    args = upload_args(str(tmp_path / "a" / "*.csv"), manifest, server.url)
    ran = cli(*(a for a in args if a != "--json"), cwd=tmp_path, token=token, check=0)
    assert (
        f"dataset equity_signals (id {dataset_id}) lacks 1 file(s) that the manifest has as "
        "done: sending them again"
    ) in ran.stderr
    assert "3 skipped, 0 invalid, 0 failed, re-sent 1 files missing on the service" in ran.stderr


def test_listings_are_retried_under_faults(
    cli: Cli,  # noqa: F811
    server_factory: Factory,
    token: str,
    tmp_path: Path,
) -> None:
    server = server_factory("--fail-rate", "0.3", "--drop-rate", "0.1", "--seed", "4")
    write_signals(tmp_path / "a", 6)
    manifest = tmp_path / "m.sqlite"
    summary = run(server, token, [job(tmp_path / "a" / "*.csv")], manifest)
    assert (summary.uploaded, summary.exit_code) == (6, 0)
    assert all(r.ok and r.on_server == 6 for r in summary.reconcile)

    listed = cli(
        "ls",
        "equity_signals",
        "--endpoint",
        server.url,
        "--json",
        cwd=tmp_path,
        token=token,
        check=0,
    )
    assert len(json.loads(listed.stdout)["files"]) == 6
    checked = cli(
        "reconcile", "--manifest", str(manifest), "--json", cwd=tmp_path, token=token, check=0
    )
    [result] = json.loads(checked.stdout)["reconcile"]
    assert (result["missing"], result["on_server"]) == ([], 6)


ODD_NAMES = [
    b"caf\xe9 latin1.csv",  # not UTF-8
    b"with spaces.csv",
    "café.csv".encode(),
    ("x" * 200 + ".csv").encode(),
    b"-leading.csv",
    b"sub/deeper.csv",
]


def test_odd_names_land_under_valid_stable_ids(
    cli: Cli,  # noqa: F811
    server: ServerProcess,
    token: str,
    tmp_path: Path,
) -> None:
    import os

    root = os.fsencode(tmp_path / "odd")
    for i, name in enumerate(ODD_NAMES):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(signal_csv(i))
    args = upload_args(str(tmp_path / "odd" / "**" / "*.csv"), tmp_path / "m.sqlite", server.url)
    first = json.loads(cli(*args, cwd=tmp_path, token=token, check=0).stdout)
    assert first["uploaded"] == len(ODD_NAMES)
    ids = set(ServerView(server.url, token).files(first["dataset_id"]))
    long_id = next(i for i in ids if i.startswith("xxx"))
    assert len(long_id) == 100
    assert ids == {"caf_latin1", "with_spaces", "cafe", long_id, "leading", "deeper"}

    again = json.loads(cli(*args, cwd=tmp_path, token=token, check=0).stdout)
    assert (again["uploaded"], again["skipped"]) == (0, len(ODD_NAMES))

    (tmp_path / "odd" / "日本.csv").write_text(signal_csv(99))  # no character an id can hold
    third = cli(*args, cwd=tmp_path, token=token, check=1)
    [problem] = json.loads(third.stdout)["problems"]
    assert problem["path"].endswith("日本.csv")
    assert problem["reason"] == (
        "file name '日本.csv' has no letter or digit a file_id can hold (rename the file, "
        "or use a --file-id template such as '{stem}-{sha8}')"
    )
