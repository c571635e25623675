"""Scenario K: the memory of a run that checks new files against a long history of keys.

A dataset's history is ``history`` files of ``rows`` rows that earlier runs sent: the
manifest holds a done row for each and its unique-key hashes, made as a run makes
them (the files themselves are gone from disk, as a year of daily files would be). A
run then checks and uploads ``new`` files of ``rows`` rows with keys never sent, and
one more file that repeats a key of the history's first file, which must be refused
and named. The run is ``batchload.upload_files`` in a process of its own (against the
real local server, a fresh one each time, on a fresh copy of the manifest), so its
peak RSS (``VmHWM``, imports included) is the run's own; the figure is the highest
over ``repeats`` runs, with the RSS after the imports beside it, so that what the
history costs reads as the difference.

Run: ``uv run python -m benchmarks.history [--quick]`` (prints JSON). ``run(...)``
returns the numbers as a dict.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.contender import peak_rss_mb, rss_mb
from benchmarks.data import ROOT, SCHEMA, frame

DATASET = "equity_signals"
DATASET_ID = "feedfacefeedfacefeedfacefeedface"
TOKEN = "history-benchmark-token"
HISTORY_DIR = "/history"  # where the history's files were; not on this machine
WRITE_BATCH = 100  # history files written to the manifest per transaction
CHILD_TIMEOUT_S = 900


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """What the run's own process does (``--child TASK.json``)."""

    endpoint: str
    manifest: str
    files: tuple[str, ...]


def history_path(number: int) -> str:
    return f"{HISTORY_DIR}/h_{number:05d}.csv"


def build_manifest(path: Path, *, history: int, rows: int, endpoint: str) -> None:
    """A manifest whose dataset holds ``history`` done files and their key hashes.

    File ``i`` held rows ``i * rows ..`` of the benchmark's global sequence (a date and
    ticker each: no two rows share a key), hashed as a run hashes them.
    """
    from batchload.check.crossfile import UniqueKeys
    from batchload.contract.model import load_contract
    from batchload.state.fileids import DEFAULT_TEMPLATE
    from batchload.state.manifest import Manifest
    from batchload.state.records import DatasetRecord, FileKeys, FileRecord

    contract = load_contract(SCHEMA)
    keys = UniqueKeys.for_contract(contract)
    types = contract.polars_schema()
    with Manifest.open(path) as manifest:
        manifest.save_dataset(
            DatasetRecord(
                name=DATASET,
                dataset_id=DATASET_ID,
                state="ready",
                endpoint=endpoint,
                contract=str(SCHEMA),
                file_id_template=DEFAULT_TEMPLATE,
            )
        )
        for start in range(0, history, WRITE_BATCH):
            records, stored = [], []
            for number in range(start, min(history, start + WRITE_BATCH)):
                source = history_path(number)
                key = frame(number * rows, rows).select(contract.unique)
                hashes = keys.hashes(key.cast({c: types[c] for c in contract.unique}))
                records.append(
                    FileRecord(
                        dataset=DATASET,
                        source_path=source,
                        parts=1,
                        file_id=Path(source).stem,
                        size=rows * 40,
                        mtime_ns=1,
                        sha256="0" * 64,
                        sent_sha256="0" * 64,
                        file_format="csv",
                        dataset_id=DATASET_ID,
                        rows=rows,
                        state="done",
                    )
                )
                stored.append(
                    FileKeys(
                        dataset=DATASET,
                        source_path=source,
                        scheme=keys.scheme,
                        hashes=bytes(UniqueKeys.to_bytes(hashes)),
                    )
                )
            manifest.write(records, keys=stored)


def write_new_files(directory: Path, *, history: int, new: int, rows: int) -> list[Path]:
    """``new`` files of keys never sent, and ``repeat.csv``: a new key and one of ``h_00000``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(new):
        path = directory / f"n_{number:03d}.csv"
        frame((history + number) * rows, rows).write_csv(path)
        paths.append(path)
    repeat = directory / "repeat.csv"
    frame((history + new) * rows, 1).vstack(frame(rows - 1, 1)).write_csv(repeat)
    return [*paths, repeat]


def start_server(data_dir: Path) -> Any:
    """A local server whose store holds the (empty) dataset of the history."""
    from batchload.contract.model import load_contract
    from batchload.server.parse import canonical_schema
    from batchload.server.process import ServerProcess
    from batchload.server.store import NewDataset, Store

    schema = canonical_schema(load_contract(SCHEMA).locked_schema())
    store = Store(data_dir)
    store.create_dataset(NewDataset(id=DATASET_ID, name=DATASET, schema=schema))
    store.close()
    return ServerProcess(data_dir=data_dir, tokens=(TOKEN,))


def child(task: Task) -> dict[str, Any]:
    """The run, in this process: imports first, then ``upload_files``; its figures."""
    import batchload
    import batchload.pipeline.run  # the stages' libraries, imported before the clock

    before = rss_mb()
    started = time.perf_counter()
    summary = batchload.upload_files(
        list(task.files), schema=SCHEMA, endpoint=task.endpoint, token=TOKEN, manifest=task.manifest
    )
    return {
        "uploaded": summary.uploaded,
        "invalid": summary.invalid,
        "reasons": {Path(p.path).name: p.reason for p in summary.problems},
        "seconds": round(time.perf_counter() - started, 3),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_once(work: Path, manifest: Path, files: list[Path]) -> dict[str, Any]:
    """One run against a fresh server, on a fresh copy of ``manifest``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    copy = work / "manifest.sqlite"
    shutil.copyfile(manifest, copy)
    with start_server(work / "server") as server:
        _retarget(copy, server.url)
        task = work / "task.json"
        task.write_text(
            json.dumps(
                asdict(Task(endpoint=server.url, manifest=str(copy), files=tuple(map(str, files))))
            )
        )
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.history", "--child", str(task)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the run failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _retarget(manifest: Path, endpoint: str) -> None:
    """Point the manifest's dataset at this run's server (its port is new each time)."""
    import sqlite3

    with sqlite3.connect(manifest) as db:
        db.execute("UPDATE datasets SET endpoint = ?", (endpoint,))
    db.close()


def run(history: int = 2_000, rows: int = 5_000, new: int = 10, repeats: int = 3) -> dict[str, Any]:
    """Build the history, run ``repeats`` times; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="batchload-history-") as tmp:
        root = Path(tmp)
        manifest = root / "history.sqlite"
        started = time.perf_counter()
        build_manifest(manifest, history=history, rows=rows, endpoint="http://127.0.0.1:1")
        built_s = time.perf_counter() - started
        files = write_new_files(root / "new", history=history, new=new, rows=rows)
        runs = [run_once(root / "run", manifest, files) for _ in range(repeats)]
        manifest_mb = manifest.stat().st_size / 1e6
    for result in runs:
        reason = result["reasons"].get("repeat.csv", "")
        expected = f"already in {history_path(0)}, sent by an earlier run"
        if (result["uploaded"], result["invalid"]) != (new, 1) or expected not in reason:
            raise AssertionError(f"expected {new} uploaded and repeat.csv refused, got {result}")
    return {
        "history_files": history,
        "rows_per_file": rows,
        "history_rows": history * rows,
        "new_files": new,
        "manifest_mb": round(manifest_mb, 1),
        "history_built_s": round(built_s, 1),
        "runs": len(runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "rss_before_mb": statistics.median(r["rss_before_mb"] for r in runs),
        "seconds": statistics.median(r["seconds"] for r in runs),
        "repeat_reason": runs[0]["reasons"]["repeat.csv"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 files of 5,000 rows, one run")
    parser.add_argument("--history", type=int, default=None, help="files in the history")
    parser.add_argument("--rows", type=int, default=5_000, help="rows per file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Task(**json.loads(args.child.read_text())))))
        return
    history = args.history or (200 if args.quick else 2_000)
    print(json.dumps(run(history, args.rows, repeats=1 if args.quick else 3)))


if __name__ == "__main__":
    main()
