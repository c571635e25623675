"""Issue 18's figures for object-store sources: one large object streams from S3 in
bounded client memory, and many small objects are read while others upload.

- A moto S3 server (:mod:`benchmarks.s3server`) and a ``batchload serve`` run on
  loopback. The large CSV (valid under ``schemas/equity_signals.yaml``) is generated
  block by block and streamed into the bucket with a multipart upload, the same bytes
  written to a local file beside it, so the generator holds one block at a time.
- Each upload is the real CLI in a child process, ``batchload upload SOURCE --schema
  ... --json``: the object's ``s3://`` URL, then the local file, into fresh datasets.
  The child's peak RSS is its own ``VmHWM`` read as it exits (not ``ru_maxrss``, which
  Linux carries over ``exec`` from the forked parent); wall time is the whole process,
  start-up included; MB/s is the source's size over that time.
- The small-object scenario uploads ``files`` objects across two prefixes, then the
  same files from a local folder: what reading the objects costs beside reading files.
- Nothing here asserts a time or a size: the report says what was measured and whether
  the peak RSS target (``PEAK_RSS_TARGET_MB``) is met. A full run writes
  ``benchmarks/results/objects.{json,md}``; ``--quick`` (a 50 MB object, 40 small
  ones) writes to ``benchmarks/results/scratch``.

Run: ``uv run python -m benchmarks.objects [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import obstore

from batchload.server.process import ServerProcess
from benchmarks.contender import TOKEN_ENV
from benchmarks.data import SCHEMA, frame, rows_for
from benchmarks.harness import RESULTS_DIR, SCRATCH_DIR, machine
from benchmarks.install import measured_cli
from benchmarks.s3server import S3Server, env_without_proxies, start_s3

TOKEN = "objects-benchmark-token"
BUCKET = "bench"
S3, LOCAL = "s3", "local"
MB = 1_000_000
PEAK_RSS_TARGET_MB = 400
"""Issue 18: a 500 MB object streams with a client peak RSS at most this."""
BLOCK_ROWS = 200_000
"""Rows generated (and put) at a time: about 8 MB of CSV."""
PUT_CHUNK_BYTES = 16 * 1024 * 1024
PUT_THREADS = 16
CHILD_TIMEOUT_S = 1800.0
S3_LATENCY_MS = 20.0
"""Each request to the S3 server waits this long by default, as one to a bucket in the
same region (``--s3-latency-ms``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    big_bytes: int
    small_files: int
    small_bytes: int


FULL = Plan(big_bytes=500 * MB, small_files=200, small_bytes=20_000)
QUICK = Plan(big_bytes=50 * MB, small_files=40, small_bytes=20_000)


def csv_blocks(first_row: int, rows: int) -> Iterator[bytes]:
    """Rows ``first_row ..`` of the benchmark's sequence as CSV, a block at a time."""
    for start in range(first_row, first_row + rows, BLOCK_ROWS):
        block = frame(start, min(BLOCK_ROWS, first_row + rows - start))
        yield block.write_csv(include_header=start == first_row).encode()


def put_object(store: Any, key: str, local: Path, target_bytes: int, first_row: int = 0) -> int:
    """A CSV of about ``target_bytes`` into ``key`` (multipart, streamed) and ``local``."""
    local.parent.mkdir(parents=True, exist_ok=True)
    with local.open("wb") as out:

        def tee() -> Iterator[bytes]:
            for block in csv_blocks(first_row, rows_for(target_bytes)):
                out.write(block)
                yield block

        obstore.put(store, key, tee(), chunk_size=PUT_CHUNK_BYTES, max_concurrency=4)
    size = local.stat().st_size
    if obstore.head(store, key)["size"] != size:
        raise SystemExit(f"{key}: the object's size differs from the local copy's")
    return size


def upload(source: str, dataset: str, *, endpoint: str, s3: S3Server, work: Path) -> dict[str, Any]:
    """``batchload upload SOURCE`` in a child: its summary, wall time, CPU and peak RSS."""
    work.mkdir(parents=True, exist_ok=True)
    peak = work / "peak-kb"
    args = ["upload", source, "--schema", str(SCHEMA), "--dataset", dataset]
    args += ["--endpoint", endpoint, "--manifest", str(work / "m.sqlite"), "--json"]
    env = env_without_proxies(**s3.env, **{TOKEN_ENV: TOKEN})
    started = time.monotonic()
    proc = subprocess.Popen(
        measured_cli(sys.executable, peak, args),
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    wall_s = time.monotonic() - started
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(f"upload {source} exited {proc.returncode}: " + " | ".join(tail))
    summary = json.loads(stdout)
    return {
        "uploaded": summary["uploaded"],
        "parts": summary["parts_uploaded"],
        "failed": summary["failed"] + summary["invalid"],
        "wall_s": round(wall_s, 2),
        "peak_rss_mb": round(int(peak.read_text()) * 1024 / MB, 1),
    }


def _rate(result: dict[str, Any], size: int, files: int) -> dict[str, Any]:
    return {
        **result,
        "mb_per_s": round(size / MB / result["wall_s"], 1),
        "files_per_s": round(files / result["wall_s"], 1),
    }


SCENARIOS = ("large", "small")


def run(
    plan: Plan, work: Path, scenarios: Sequence[str] = SCENARIOS, latency_ms: float = S3_LATENCY_MS
) -> dict[str, Any]:
    log(f"starting moto S3 ({latency_ms:g} ms a request) and batchload serve under {work}")
    s3 = start_s3(work, latency_ms=latency_ms)
    try:
        s3.create_bucket(BUCKET)
        with ServerProcess(data_dir=work / "server", tokens=(TOKEN,)) as server:
            results: dict[str, Any] = {
                "machine": machine(),
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                "plan": asdict(plan),
                "s3_latency_ms": latency_ms,
            }
            for name in scenarios:
                scenario = large if name == "large" else small
                results[name] = scenario(plan, work, s3, server.url)
            results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            return results
    finally:
        s3.stop()


def large(plan: Plan, work: Path, s3: S3Server, endpoint: str) -> dict[str, Any]:
    """One large CSV object, uploaded from the store and then from a local copy."""
    local = work / "data" / "big.csv"
    log(f"putting a {plan.big_bytes / MB:.0f} MB CSV object (multipart) and its local copy")
    size = put_object(s3.store(BUCKET), "big/big.csv", local, plan.big_bytes)
    results: dict[str, Any] = {"bytes": size}
    for name, source in ((S3, f"s3://{BUCKET}/big/big.csv"), (LOCAL, str(local))):
        log(f"large: uploading {source}")
        outcome = upload(source, f"big_{name}", endpoint=endpoint, s3=s3, work=work / f"big-{name}")
        results[name] = _rate(outcome, size, 1)
        log(f"large {name}: {json.dumps(results[name])}")
    local.unlink()
    return results


def small(plan: Plan, work: Path, s3: S3Server, endpoint: str) -> dict[str, Any]:
    """Many small objects across two prefixes, then the same files from a local folder."""
    folder = work / "data" / "small"
    store = s3.store(BUCKET)
    rows = rows_for(plan.small_bytes)
    log(f"putting {plan.small_files} small objects across two prefixes")

    def put(i: int) -> int:
        key = f"small/{2023 + i % 2}/s_{i:04d}.csv"
        return put_object(store, key, folder / key, plan.small_bytes, first_row=i * rows)

    with ThreadPoolExecutor(PUT_THREADS) as pool:  # each put waits for the latency
        total = sum(pool.map(put, range(plan.small_files)))
    results: dict[str, Any] = {"files": plan.small_files, "bytes": total}
    for name, source in ((S3, f"s3://{BUCKET}/small/**/*.csv"), (LOCAL, str(folder))):
        log(f"small: uploading {source}")
        outcome = upload(
            source, f"small_{name}", endpoint=endpoint, s3=s3, work=work / f"small-{name}"
        )
        results[name] = _rate(outcome, total, plan.small_files)
        log(f"small {name}: {json.dumps(results[name])}")
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Object-store sources (issue 18)",
        "",
        f"`{results['command']}` on {results['machine']['cores']} cores, against moto's S3",
        f"server ({results['s3_latency_ms']:g} ms a request) and `batchload serve` on loopback;",
        "each upload is the CLI in its own process (git "
        f"{results['machine'].get('git', '?')}, load average "
        f"{results['load_average_at_start'][0]} at the start, "
        f"{results['load_average_at_end'][0]} at the end).",
        "",
        "| source | bytes | files | parts | wall s | MB/s | files/s | client peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label in (label for label in SCENARIOS if label in results):
        scenario = results[label]
        for name in (S3, LOCAL):
            r = scenario[name]
            lines.append(
                f"| {label}, {name} | {scenario['bytes']:,} | {scenario.get('files', 1)} "
                f"| {r['parts']} | {r['wall_s']} | {r['mb_per_s']} "
                f"| {r['files_per_s'] if 'files' in scenario else '-'} "
                f"| {r['peak_rss_mb']} |"
            )
    if "large" in results:
        peak = results["large"][S3]["peak_rss_mb"]
        met = "met" if peak <= PEAK_RSS_TARGET_MB else "NOT met"
        lines += ["", f"The large object's peak RSS target (≤ {PEAK_RSS_TARGET_MB} MB): {met}."]
    return "\n".join([*lines, ""])


def log(message: str) -> None:
    print(f"[objects {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.objects", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a 50 MB object, 40 small ones")
    parser.add_argument("--out", type=Path, default=None, help="where objects.* go")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: tmp)")
    parser.add_argument("--only", choices=SCENARIOS, help="one scenario (written to scratch)")
    parser.add_argument(
        "--s3-latency-ms", type=float, default=S3_LATENCY_MS, help="each S3 request waits this long"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    scenarios = [args.only] if args.only else list(SCENARIOS)
    committed = not (args.quick or args.only or args.s3_latency_ms != S3_LATENCY_MS)
    out = args.out or (RESULTS_DIR if committed else SCRATCH_DIR)
    with tempfile.TemporaryDirectory(prefix="batchload-objects-", dir=args.work) as work:
        results = run(plan, Path(work), scenarios, args.s3_latency_ms)
    flags = [*(["--quick"] if args.quick else []), *(["--only", args.only] if args.only else [])]
    if args.s3_latency_ms != S3_LATENCY_MS:
        flags += ["--s3-latency-ms", f"{args.s3_latency_ms:g}"]
    results["command"] = " ".join(["uv run python -m benchmarks.objects", *flags])
    out.mkdir(parents=True, exist_ok=True)
    (out / "objects.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "objects.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
