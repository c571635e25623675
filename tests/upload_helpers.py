"""What the upload engine's tests share: real files for the example contracts, a view of
what the server holds, and a fast retry policy."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import requests

from batchload.config import ClientConfig, Secret
from batchload.jobs import UploadJob
from batchload.pipeline.run import RunOptions, run_upload
from batchload.progress import Event
from batchload.send.retry import RetryPolicy
from batchload.server.process import ServerProcess
from batchload.summary import RunSummary

ROOT = Path(__file__).resolve().parent.parent
SIGNALS = ROOT / "schemas" / "equity_signals.yaml"
HEADER = "date,ticker,signal,confidence,horizon_days\n"
#: Fast backoff for tests (a 429's Retry-After is still honoured).
FAST_RETRY = RetryPolicy(attempts=12, base_delay_s=0.005, max_delay_s=0.05)


def signal_rows(index: int, rows: int) -> str:
    """Rows valid for equity_signals; ``index`` makes the (date, ticker) keys unique."""
    lines = []
    for r in range(rows):
        day, month, year = 1 + r % 28, 1 + (r // 28) % 12, 2000 + r // 336
        confidence = "" if r % 7 == 0 else f"{(r % 10) / 10:.1f}"
        signal = ((r + index) % 21 - 10) / 10
        lines.append(f"{year}-{month:02d}-{day:02d},T{index}X,{signal:.1f},{confidence},5\n")
    return "".join(lines)


def signal_csv(index: int, rows: int = 20) -> str:
    """A valid equity_signals CSV; ``index`` makes its (date, ticker) keys unique."""
    return HEADER + signal_rows(index, rows)


def write_signals(directory: Path, count: int, *, rows: int = 20, start: int = 0) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = directory / f"sig_{i:04d}.csv"
        path.write_text(signal_csv(i, rows))
        paths.append(path)
    return paths


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ServerView:
    """What a server holds, through plain HTTP with its own token (not through batchload)."""

    def __init__(self, url: str, token: str, *, verify: str | bool = True) -> None:
        self.url = url
        self.token = token
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: no proxy, and no CA bundle from the env
        self.session.verify = verify
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str) -> Any:
        """GET through the server's own faults: 503, 429 and dropped answers are asked again."""
        for _ in range(100):
            try:
                response = self.session.get(self.url + path, timeout=30)
            except requests.ConnectionError:  # --drop-rate drops answers to reads too
                continue
            if response.status_code not in (429, 503):
                response.raise_for_status()
                return response.json()
            retry_after_s = float(response.headers.get("Retry-After", "0.01"))
            time.sleep(retry_after_s)  # the server said how long to wait
        raise AssertionError(f"GET {path} kept failing")

    def datasets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/ingestion/datasets/")
        return result

    def receipts(self, dataset_id: str) -> list[dict[str, Any]]:
        """Every receipt the server lists (a duplicate id would show twice here)."""
        body = self.get(f"/ingestion/datasets/{dataset_id}/files")
        assert len(body["ids"]) == len(body["files"])
        files: list[dict[str, Any]] = body["files"]
        return files

    def files(self, dataset_id: str) -> dict[str, dict[str, Any]]:
        """The receipts by file_id."""
        return {f["file_id"]: f for f in self.receipts(dataset_id)}

    def revoke(self) -> None:
        """This view's token stops working (until the server restarts)."""
        self.session.post(self.url + "/admin/revoke", timeout=30).raise_for_status()


def config(server: ServerProcess, token: str) -> ClientConfig:
    return ClientConfig(endpoint=server.url, token=Secret(token))


def run(
    server: ServerProcess,
    token: str,
    jobs: list[UploadJob],
    manifest: Path | str,
    *,
    sink: Callable[[Event], None] | None = None,
    **options: Any,
) -> RunSummary:
    """One library run against ``server`` with fast retries."""
    options.setdefault("retry", FAST_RETRY)
    opts = RunOptions(**options)

    async def main() -> RunSummary:
        return await run_upload(
            jobs,
            config=config(server, token),
            manifest_path=manifest,
            options=opts,
            sink=sink or (lambda event: None),
        )

    return anyio.run(main)


def job(*patterns: str | Path, **kwargs: Any) -> UploadJob:
    kwargs.setdefault("schema", SIGNALS)
    return UploadJob(files=tuple(str(p) for p in patterns), **kwargs)


def upload_args(
    pattern: str, manifest: Path, endpoint: str, *extra: str, schema: Path = SIGNALS
) -> tuple[str, ...]:
    """``batchload upload`` of ``pattern`` to ``endpoint``, with a manifest and ``--json``."""
    return (
        "upload",
        pattern,
        "--schema",
        str(schema),
        "--endpoint",
        endpoint,
        "--manifest",
        str(manifest),
        "--json",
        *extra,
    )
