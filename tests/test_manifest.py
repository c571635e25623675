"""The manifest on a real SQLite file: upserts, resume decisions, reopen, export."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from batchload.check.crossfile import Earlier, UniqueKeys
from batchload.check.validate import validate_files
from batchload.contract.model import load_contract
from batchload.errors import UsageError
from batchload.pipeline.prepare import prepare
from batchload.protocol import max_request_bytes
from batchload.state.export import export
from batchload.state.manifest import BLOB_CHUNK_BYTES, SCHEMA_VERSION, Manifest
from batchload.state.records import (
    Changes,
    DatasetRecord,
    FileKeys,
    FileRecord,
    KeyRun,
    resume_decision,
)
from tests.upload_helpers import HEADER, SIGNALS, job, signal_csv, signal_rows


def record(
    source: str, *, part: int = 0, parts: int = 1, state: str = "done", **kw: object
) -> FileRecord:
    base = {
        "dataset": "prices",
        "source_path": source,
        "part": part,
        "parts": parts,
        "file_id": Path(source).stem + (f".part-{part:04d}" if part else ""),
        "size": 100,
        "mtime_ns": 5,
        "sha256": "ab" * 32,
        "state": state,
    }
    base.update(kw)
    return FileRecord(**base)  # type: ignore[arg-type]


def test_rows_round_trip_and_upsert(tmp_path: Path) -> None:
    path = tmp_path / "m" / "run.sqlite"
    with Manifest.open(path) as manifest:
        manifest.write(
            [
                record("/d/a.csv", state="pending"),
                record("/d/b.csv", state="invalid", last_error="bad"),
            ]
        )
        manifest.write(
            [record("/d/a.csv", attempts=2, last_status=201, receipt={"rows": 3, "id": "ds1"})]
        )
    with Manifest.open(path, create=False) as manifest:
        rows = manifest.rows()
        assert [(r.source_path, r.state) for r in rows] == [
            ("/d/a.csv", "done"),
            ("/d/b.csv", "invalid"),
        ]
        a = rows[0]
        assert a.receipt == {"id": "ds1", "rows": 3}
        assert a.attempts == 2 and a.done_at is not None and a.created_at is not None
        assert manifest.counts()["prices"] == {
            "pending": 0,
            "invalid": 1,
            "sent": 0,
            "done": 1,
            "failed": 0,
        }
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_one_file_id_per_dataset(tmp_path: Path) -> None:
    with Manifest.open(tmp_path / "m.sqlite") as manifest:
        manifest.write([record("/d/a.csv")])
        with pytest.raises(sqlite3.IntegrityError):
            manifest.write([record("/e/a.csv")])  # same file_id "a", other source
        assert len(manifest.rows()) == 1  # the failed batch left nothing behind


def test_forget_and_write_in_one_transaction(tmp_path: Path) -> None:
    with Manifest.open(tmp_path / "m.sqlite") as manifest:
        manifest.write([record("/d/a.csv")])
        parts = [record("/d/a.csv", part=i, parts=2) for i in (1, 2)]
        manifest.write(parts, forget=[("prices", "/d/a.csv", 0)])
        assert [r.file_id for r in manifest.rows()] == ["a.part-0001", "a.part-0002"]
        assert list(manifest.resume_index("prices")) == ["/d/a.csv"]
        assert [r.part for r in manifest.rows_for("prices", ["/d/a.csv"])["/d/a.csv"]] == [1, 2]


def test_datasets(tmp_path: Path) -> None:
    with Manifest.open(tmp_path / "m.sqlite") as manifest:
        assert manifest.dataset("prices") is None
        creating = DatasetRecord(
            name="prices", dataset_id=None, state="creating", endpoint="http://x"
        )
        manifest.save_dataset(creating)
        manifest.save_dataset(replace(creating, dataset_id="ds-1", state="ready"))
        got = manifest.dataset("prices")
        assert got is not None and (got.dataset_id, got.state) == ("ds-1", "ready")
        assert [d.name for d in manifest.datasets()] == ["prices"]


RESUME_TABLE = [
    ("whole file done, unchanged", [record("/a")], 100, 5, "done"),
    ("touched: same size, other mtime", [record("/a")], 100, 6, "rehash"),
    ("grown", [record("/a")], 101, 6, "send"),
    ("failed last time", [record("/a", state="failed")], 100, 5, "send"),
    ("sent, answer never recorded", [record("/a", state="sent")], 100, 5, "send"),
    ("never seen", [], 100, 5, "send"),
    ("all parts done", [record("/a", part=i, parts=3) for i in (1, 2, 3)], 100, 5, "done"),
    ("a part missing", [record("/a", part=i, parts=3) for i in (1, 3)], 100, 5, "send"),
    (
        "a part not done",
        [record("/a", part=1, parts=2), record("/a", part=2, parts=2, state="sent")],
        100,
        5,
        "send",
    ),
    ("stale whole row beside parts", [record("/a"), record("/a", part=1, parts=1)], 100, 5, "send"),
    ("one part", [record("/a", part=1, parts=1)], 100, 5, "done"),
    ("split interrupted: count unknown", [record("/a", part=1, parts=None)], 100, 5, "send"),
]


@pytest.mark.parametrize(("why", "rows", "size", "mtime", "expected"), RESUME_TABLE)
def test_resume_decision(
    why: str, rows: list[FileRecord], size: int, mtime: int, expected: str
) -> None:
    assert resume_decision(rows, size=size, mtime_ns=mtime) == expected, why


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export(tmp_path: Path, fmt: str) -> None:
    with Manifest.open(tmp_path / "m.sqlite") as manifest:
        manifest.write(
            [
                record("/d/a.csv", receipt={"rows": 3}),
                record("/d/b.csv", state="failed", last_status=422),
            ]
        )
        out = tmp_path / f"out.{fmt}"
        assert export(manifest, fmt, out) == 2
    frame = {"csv": pl.read_csv, "json": pl.read_json, "parquet": pl.read_parquet}[fmt](out)
    assert frame["source_path"].to_list() == ["/d/a.csv", "/d/b.csv"]
    assert frame["state"].to_list() == ["done", "failed"]
    assert json.loads(frame["receipt"][0]) == {"rows": 3}


def test_not_a_manifest(tmp_path: Path) -> None:
    bogus = tmp_path / "x.sqlite"
    bogus.write_text("hello, not sqlite" * 100)
    with pytest.raises(UsageError, match="not a usable manifest"):
        Manifest.open(bogus)
    with pytest.raises(UsageError, match="no manifest at"):
        Manifest.open(tmp_path / "missing.sqlite", create=False)


def test_processes_opening_a_new_manifest_at_once_all_get_it(tmp_path: Path) -> None:
    """The processes of a shared backfill start together on a new file. SQLite's locks
    hold between connections in one process as between processes, so threads released
    by a barrier stand in for them (before the fix a quarter of the rounds had one
    refused: "database is locked")."""
    refused: list[Exception] = []
    for n in range(40):
        path = tmp_path / f"m{n}.sqlite"
        start = threading.Barrier(4)

        def open_it(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                Manifest.open(path).close()
            except UsageError as exc:
                refused.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with Manifest.open(path, create=False) as manifest:
            assert manifest.datasets() == []
    assert refused == []


# --- unique-key hashes ---------------------------------------------------------------------------


def keys(source: str, hashes: bytes | None, scheme: str = "s1") -> FileKeys:
    return FileKeys(dataset="prices", source_path=source, scheme=scheme, hashes=hashes)


def stored(manifest: Manifest, dataset: str, scheme: str) -> dict[str, bytes]:
    """Every file's key hashes made with ``scheme``, read as a run reads them: what is
    there first (and how many each), then the hashes of those files."""
    counts = manifest.key_counts(dataset, scheme)
    found = dict(manifest.key_hashes(dataset, scheme, list(counts)))
    assert {path: len(blob) // 8 for path, blob in found.items()} == counts
    return found


def test_key_hashes_are_kept_with_their_files(tmp_path: Path) -> None:
    with Manifest.open(tmp_path / "m.sqlite") as manifest:
        manifest.apply(
            [
                Changes(records=(record("/d/a.csv"),), keys=(keys("/d/a.csv", b"A" * 16),)),
                Changes(records=(record("/d/b.csv"),), keys=(keys("/d/b.csv", b"B" * 8),)),
                Changes(records=(record("/d/c.csv"),), keys=(keys("/d/c.csv", b"C" * 8, "s0"),)),
            ]
        )
        assert stored(manifest, "prices", "s1") == {"/d/a.csv": b"A" * 16, "/d/b.csv": b"B" * 8}
        assert stored(manifest, "prices", "s0") == {"/d/c.csv": b"C" * 8}  # made otherwise
        assert stored(manifest, "other", "s1") == {}
        # re-sent without validation: what was stored is stale, and deleted
        manifest.write([record("/d/b.csv")], keys=[keys("/d/b.csv", None)])
        assert set(stored(manifest, "prices", "s1")) == {"/d/a.csv"}
        # a whole file cut into parts keeps its keys; a file forgotten loses them
        parts = [record("/d/a.csv", part=i, parts=2) for i in (1, 2)]
        manifest.write(parts, forget=[("prices", "/d/a.csv", 0)])
        assert set(stored(manifest, "prices", "s1")) == {"/d/a.csv"}
        manifest.write([], forget=[("prices", "/d/a.csv", 1), ("prices", "/d/a.csv", 2)])
        assert stored(manifest, "prices", "s1") == {}


def test_key_hashes_left_on_disk_are_read_when_stored(tmp_path: Path) -> None:
    """A large file's hashes wait for its upload on disk, and are read when stored."""
    spill = tmp_path / "keys.bin"
    spill.write_bytes(b"x" * 16 + b"B" * 24 + b"y" * 8)
    later = FileKeys(
        dataset="prices", source_path="/d/b.csv", scheme="s1", hashes=KeyRun(spill, 16, 3)
    )
    with Manifest.open(tmp_path / "m.sqlite") as manifest:
        manifest.apply(
            [
                Changes(records=(record("/d/a.csv"),), keys=(keys("/d/a.csv", b"A" * 8),)),
                Changes(records=(record("/d/b.csv"),), keys=(later,)),
            ]
        )
        assert stored(manifest, "prices", "s1") == {"/d/a.csv": b"A" * 8, "/d/b.csv": b"B" * 24}


def test_key_hashes_left_on_disk_are_stored_chunk_by_chunk_and_replace_the_old(
    tmp_path: Path,
) -> None:
    """A large file's hashes go into their row a chunk at a time (here three chunks);
    storing a file's hashes again replaces them whole, from disk or from memory, and a
    spill cut short mid-way changes nothing."""
    rows = BLOB_CHUNK_BYTES // 8 * 2 + 3
    data = bytes(range(256)) * (8 * rows // 256) + b"z" * (8 * rows % 256)
    spill = tmp_path / "keys.bin"
    spill.write_bytes(b"x" * 8 + data)
    on_disk = FileKeys(dataset="prices", source_path="/d/a.csv", scheme="s1", hashes=None)
    with Manifest.open(tmp_path / "m.sqlite") as manifest:
        manifest.write([record("/d/a.csv")], keys=[replace(on_disk, hashes=KeyRun(spill, 8, rows))])
        assert stored(manifest, "prices", "s1") == {"/d/a.csv": data}
        manifest.write([], keys=[keys("/d/a.csv", b"A" * 8)])
        assert stored(manifest, "prices", "s1") == {"/d/a.csv": b"A" * 8}
        manifest.write([], keys=[replace(on_disk, hashes=KeyRun(spill, 0, 2))])
        assert stored(manifest, "prices", "s1") == {"/d/a.csv": b"x" * 8 + data[:8]}
        with pytest.raises(OSError, match="cut short"):
            manifest.write([], keys=[replace(on_disk, hashes=KeyRun(spill, 8, rows + 1))])
        assert stored(manifest, "prices", "s1") == {"/d/a.csv": b"x" * 8 + data[:8]}


def test_key_hashes_cut_short_on_disk_are_an_error(tmp_path: Path) -> None:
    spill = tmp_path / "keys.bin"
    spill.write_bytes(b"B" * 20)
    with pytest.raises(OSError, match="cut short"):
        KeyRun(spill, 0, 3).read()


V1_TABLES = """
    CREATE TABLE datasets (name TEXT PRIMARY KEY, dataset_id TEXT, state TEXT NOT NULL,
        endpoint TEXT NOT NULL, contract TEXT, file_id_template TEXT,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE files (dataset TEXT NOT NULL, source_path TEXT NOT NULL,
        part INTEGER NOT NULL DEFAULT 0, parts INTEGER, file_id TEXT, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, sha256 TEXT, sent_sha256 TEXT, file_format TEXT,
        dataset_id TEXT, rows INTEGER, bytes_sent INTEGER, state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, last_status INTEGER, last_error TEXT,
        receipt TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, done_at TEXT,
        PRIMARY KEY (dataset, source_path, part), UNIQUE (dataset, file_id));
"""
"""A version 1 manifest's tables, as the first batchload made them."""


def test_a_version_1_manifest_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        V1_TABLES
        + """
        INSERT INTO files (dataset, source_path, file_id, size, mtime_ns, state, parts,
            created_at, updated_at) VALUES ('prices', '/d/a.csv', 'a', 100, 5, 'done', 1, 't', 't');
        PRAGMA user_version = 1;
        """
    )
    db.close()
    with Manifest.open(path, create=False) as manifest:
        (kept,) = manifest.rows()
        assert (kept.source_path, kept.converted_from, kept.etag) == ("/d/a.csv", None, None)
        assert stored(manifest, "prices", "s1") == {}  # sent before keys were kept
        manifest.write([record("/d/b.csv")], keys=[keys("/d/b.csv", b"B" * 8)])
        assert stored(manifest, "prices", "s1") == {"/d/b.csv": b"B" * 8}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(UsageError, match="manifest of a newer batchload"):
        Manifest.open(path)


def test_keys_an_older_batchload_kept_still_refuse_a_repeat(tmp_path: Path) -> None:
    """A version 2 manifest (the first to keep key hashes, in the format kept since) is
    upgraded when opened, and the hashes it kept catch a new file that repeats a day,
    though the file they came from is gone from disk."""
    contract = load_contract(SIGNALS)
    monday = tmp_path / "monday.csv"
    monday.write_text(signal_csv(1))
    (sent,) = validate_files(
        [monday], contract, keys=UniqueKeys.for_contract(contract), keep_key_hashes=True
    )
    assert isinstance(sent.key_hashes, bytes | memoryview)
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        V1_TABLES
        + """
        CREATE TABLE file_keys (dataset TEXT NOT NULL, source_path TEXT NOT NULL,
            scheme TEXT NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (dataset, source_path));
        PRAGMA user_version = 2;
        """
    )
    source = str(monday)
    db.execute(
        "INSERT INTO files (dataset, source_path, file_id, size, mtime_ns, state, parts, "
        "created_at, updated_at) VALUES ('equity_signals', ?, 'monday', 1, 1, 'done', 1, 't', 't')",
        (source,),
    )
    scheme = UniqueKeys.for_contract(contract).scheme
    db.execute(
        "INSERT INTO file_keys VALUES ('equity_signals', ?, ?, ?)",
        (source, scheme, bytes(sent.key_hashes)),
    )
    db.commit()
    db.close()
    monday.unlink()
    repeat = tmp_path / "new" / "repeat.csv"
    repeat.parent.mkdir()
    monday_row_2 = signal_rows(1, 2).splitlines(keepends=True)[1]
    repeat.write_text(HEADER + signal_rows(9, 3) + monday_row_2)

    with Manifest.open(path, create=False) as manifest:
        (prepared,) = prepare(
            [job(repeat.parent / "*.csv")],
            manifest=manifest,
            endpoint=None,
            max_request_bytes=max_request_bytes(5),
        )
        assert prepared.earlier_keys == ((source, 20),)
        earlier = Earlier(manifest, prepared.name, prepared.earlier_keys)
        keys = UniqueKeys.for_contract(contract, earlier=earlier)
        (verdict,) = validate_files([repeat], contract, keys=keys)
    assert not verdict.valid
    (problem,) = verdict.problems
    assert problem.rows == (4,)
    assert f"already in {source}, sent by an earlier run" in verdict.reason
