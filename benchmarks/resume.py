"""Scenario R: how fast a resumed run skips what an earlier run already sent.

A backfill of ``files`` small CSV files was interrupted after ``done`` of them: the
manifest holds a done row for each (with the receipt, hashes and sizes a real run
records) and the dataset's id. Re-running the same upload first *prepares*: it
discovers the file set (one ``stat`` a file), reads the manifest in one query and
decides per file, from size and mtime alone, that it is done; then it lists the
dataset's files on the service (the real local server, holding the ``done`` files) and
checks that none of the skipped ones is missing there. Preparation and the listing are
the whole cost of skipping; this times them together (median of ``repeats`` runs) and
checks that exactly ``done`` files are skipped and the rest are left to send. Beside the
wall time it gives this process's CPU seconds (the local server's answer to the listing
not included): on a busy machine the wall time says more about the neighbours.

Run: ``uv run python -m benchmarks.resume [--quick]`` (prints JSON). ``run(...)``
returns the numbers as a dict for the harness.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.data import SCHEMA, frame

DATASET_ID = "0123456789abcdef0123456789abcdef"
TOKEN = "resume-benchmark-token"
TARGET_FILES_PER_S = 20_000
STORE_THREADS = 16  # commits are grouped: many at once share their fsyncs


def write_files(directory: Path, files: int) -> list[Path]:
    """``files`` tiny valid CSV files under ``directory/data`` (kept when already there)."""
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    text = frame(0, 2).write_csv()
    paths = []
    for i in range(files):
        path = data / f"r_{i:05d}.csv"
        if not path.exists():
            path.write_text(text.replace("T00000", f"R{i:05d}").replace("T00001", f"S{i:05d}"))
        paths.append(path.resolve())
    return paths


def build(directory: Path, files: int, done: int, endpoint: str) -> tuple[list[Path], Path]:
    """``files`` tiny valid CSV files and a manifest in which the first ``done`` are done."""
    from batchload.state.fileids import DEFAULT_TEMPLATE
    from batchload.state.manifest import Manifest
    from batchload.state.records import DatasetRecord, FileRecord

    paths = write_files(directory, files)
    manifest_path = directory / "manifest.sqlite"
    manifest_path.unlink(missing_ok=True)
    records = []
    for path in paths[:done]:
        st = path.stat()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        receipt = {
            "id": DATASET_ID,
            "file_id": path.stem,
            "rows": 2,
            "bytes": st.st_size,
            "sha256": sha,
            "file_format": "csv",
            "received_at": "2026-01-01T00:00:00.000+00:00",
            "raw_file_key": f"{DATASET_ID}/{path.stem}",
            "tags": None,
            "overwritten": False,
        }
        records.append(
            FileRecord(
                dataset="equity_signals",
                source_path=str(path),
                part=0,
                parts=1,
                file_id=path.stem,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                sha256=sha,
                sent_sha256=sha,
                file_format="csv",
                dataset_id=DATASET_ID,
                rows=2,
                bytes_sent=st.st_size * 4 // 3 + 200,
                state="done",
                attempts=1,
                receipt=receipt,
            )
        )
    with Manifest.open(manifest_path) as manifest:
        dataset = DatasetRecord(
            name="equity_signals",
            dataset_id=DATASET_ID,
            state="ready",
            endpoint=endpoint,
            contract=str(SCHEMA),
            file_id_template=DEFAULT_TEMPLATE,
        )
        manifest.write(records, datasets=[dataset])
    return paths, manifest_path


def store(data_dir: Path, paths: list[Path]) -> None:
    """The service's side: the dataset holding ``paths`` (stored before the server starts)."""
    from concurrent.futures import ThreadPoolExecutor

    from batchload.contract.model import load_contract
    from batchload.server.parse import canonical_schema
    from batchload.server.store import FileRecord as Stored
    from batchload.server.store import NewDataset, Store, utc_now

    schema = canonical_schema(load_contract(SCHEMA).locked_schema())
    service = Store(data_dir)
    service.create_dataset(NewDataset(id=DATASET_ID, name="equity_signals", schema=schema))

    def put(path: Path) -> None:
        staged = service.stage(path.read_bytes())
        file = Stored(
            dataset_id=DATASET_ID,
            file_id=path.stem,
            rows=2,
            bytes=staged.bytes,
            sha256=staged.sha256,
            file_format="csv",
            received_at=utc_now(),
        )
        service.commit_file(file, staged, schema=schema)

    with ThreadPoolExecutor(STORE_THREADS) as pool:
        list(pool.map(put, paths))
    service.close()


def resume_once(job: Any, manifest_path: Path, endpoint: str) -> tuple[float, float, Any]:
    """One resume's skip decision: prepare, then the start-of-run listing; (seconds, this
    process's CPU seconds, job)."""
    import anyio

    from batchload.config import ClientConfig, Secret
    from batchload.pipeline.listing import Listed, decide
    from batchload.pipeline.prepare import prepare
    from batchload.protocol import max_request_bytes
    from batchload.send.datasets import list_files, reader
    from batchload.send.transport import IngestionClient
    from batchload.state.manifest import Manifest

    limit = max_request_bytes(5)
    config = ClientConfig(endpoint=endpoint, token=Secret(TOKEN))

    listed: dict[str, Listed] = {}

    async def listing() -> None:  # it returns nothing: asyncio's runner, as it ends,
        # formats its main task with its result (3.11), here every file listed
        async with IngestionClient(config) as client:
            files = await list_files(reader(client), DATASET_ID)
        listed["equity_signals"] = Listed(
            name="equity_signals", dataset_id=DATASET_ID, files={f.file_id: f for f in files}
        )

    with Manifest.open(manifest_path) as manifest:
        start, cpu = time.perf_counter(), time.process_time()
        prepared = prepare([job], manifest=manifest, endpoint=endpoint, max_request_bytes=limit)
        anyio.run(listing)
        (decided,) = decide(
            prepared,
            listed,
            manifest=manifest,
            on_existing="fail",
            max_request_bytes=limit,
        ).prepared
        return time.perf_counter() - start, time.process_time() - cpu, decided


def run(files: int = 10_000, done: int = 9_000, repeats: int = 5) -> dict[str, Any]:
    """Time the skip decision for ``done`` of ``files``; see the module docstring."""
    from batchload.jobs import UploadJob
    from batchload.server.process import ServerProcess

    with tempfile.TemporaryDirectory(prefix="batchload-resume-") as tmp:
        server = ServerProcess(data_dir=Path(tmp) / "server", tokens=(TOKEN,))
        paths = write_files(Path(tmp), files)
        store(server.data_dir, paths[:done])
        with server:
            _, manifest_path = build(Path(tmp), files, done, server.url)
            job = UploadJob(files=(str(Path(tmp) / "data" / "*.csv"),), schema=SCHEMA)
            times, cpus = [], []
            skipped = to_send = 0
            for _ in range(repeats):
                seconds, cpu, prepared = resume_once(job, manifest_path, server.url)
                times.append(seconds)
                cpus.append(cpu)
                skipped, to_send = len(prepared.skipped), len(prepared.work)
    if (skipped, to_send) != (done, files - done):
        raise AssertionError(
            f"expected {done} skipped and {files - done} to send, got {skipped}, {to_send}"
        )
    seconds = statistics.median(times)
    return {
        "files": files,
        "done": done,
        "skipped": skipped,
        "to_send": to_send,
        "seconds": round(seconds, 4),
        "runs": len(times),
        "skipped_per_s": round(skipped / seconds),
        "cpu_seconds": round(statistics.median(cpus), 4),
        "target_skipped_per_s": TARGET_FILES_PER_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 files, 900 done")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--done", type=int, default=None)
    args = parser.parse_args()
    files = args.files or (1_000 if args.quick else 10_000)
    done = args.done if args.done is not None else files * 9 // 10
    print(json.dumps(run(files, done, repeats=3 if args.quick else 5)))


if __name__ == "__main__":
    main()
