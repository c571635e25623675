"""The one-call API, for notebooks and services: ``upload_files`` and ``upload_dataframe``.

Each call resolves its configuration once (arguments over environment over
defaults), runs the pipeline (or, for a DataFrame, one request per part) and returns
a frozen result. Files that are invalid or fail do not raise: the summary lists
them and its ``exit_code`` says whether everything landed. A run that cannot go
on (a refused token, an unreachable service, a usage mistake) raises the matching
:class:`~batchload.errors.BatchloadError`; the manifest keeps what was done.

In a notebook (a running event loop) use the ``*_async`` twins with ``await``.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio
import polars as pl
import pyarrow as pa

from batchload.check.parts import split_frame
from batchload.check.validate import validate_frame
from batchload.config import (
    DEFAULT_MAX_CONCURRENCY,
    ClientConfig,
    Secret,
    resolve_endpoint,
    resolve_token,
)
from batchload.contract.model import Contract, arrow_schema, load_contract
from batchload.errors import FileProblem, UsageError
from batchload.jobs import UploadJob
from batchload.lazy import lazy_module
from batchload.pipeline.run import RunOptions, run_upload
from batchload.progress import Sink, null_sink
from batchload.protocol import DEFAULT_MAX_REQUEST_MB, Envelope, max_request_bytes, raw_budget
from batchload.read.content import DiskSource, MemorySource, sha256_bytes
from batchload.read.frames import typed_nulls
from batchload.send.body import RequestBody
from batchload.send.retry import AimdLimit, Pacer, RetryPolicy
from batchload.send.sender import DatasetGate, Sender
from batchload.send.transport import IngestionClient
from batchload.state.fileids import DEFAULT_TEMPLATE, part_label
from batchload.state.manifest import default_manifest_path
from batchload.summary import RunSummary

if TYPE_CHECKING:
    import pyarrow.parquet as pq
else:
    pq = lazy_module("pyarrow.parquet")  # only for DataFrames: a file upload never needs it

__all__ = [
    "DataFrameUpload",
    "upload_dataframe",
    "upload_dataframe_async",
    "upload_files",
    "upload_files_async",
]

DATAFRAME_ID_PREFIX = "df-"

P = ParamSpec("P")
R = TypeVar("R")


def _blocking(function: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """The blocking twin of an ``*_async`` function: same arguments, run in a new loop."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return anyio.run(functools.partial(function, *args, **kwargs), backend="asyncio")

    run.__name__ = run.__qualname__ = function.__name__.removesuffix("_async")
    run.__doc__ = f"Blocking twin of :func:`{function.__name__}`.\n\n{function.__doc__ or ''}"
    return run


def _config(
    endpoint: str | None,
    token: str | Secret | None,
    *,
    ca_bundle: Path | None = None,
    verify_tls: bool = True,
) -> ClientConfig:
    secret = token if isinstance(token, Secret) else Secret(token) if token else None
    return ClientConfig(
        endpoint=resolve_endpoint(endpoint),
        token=secret or resolve_token(None),
        ca_bundle=ca_bundle,
        verify_tls=verify_tls,
    )


def _default_manifest(job: UploadJob) -> Path:
    name = job.dataset or load_contract(job.schema).dataset_name
    return default_manifest_path(name)


# --- files ---------------------------------------------------------------------------------


async def upload_files_async(
    files: Sequence[str | Path],
    *,
    schema: str | Path,
    dataset: str | None = None,
    dataset_id: str | None = None,
    endpoint: str | None = None,
    token: str | Secret | None = None,
    file_id: str = DEFAULT_TEMPLATE,
    manifest: str | Path | None = None,
    concurrency: int = DEFAULT_MAX_CONCURRENCY,
    max_request_mb: float = DEFAULT_MAX_REQUEST_MB,
    dry_run: bool = False,
    sheet: str | None = None,
    header_row: int | None = None,
    retry: RetryPolicy | None = None,
    sink: Sink = null_sink,
    ca_bundle: Path | None = None,
    verify_tls: bool = True,
    validate: bool = True,
) -> RunSummary:
    """Validate ``files`` (paths or globs) against ``schema`` and upload them; resumable.

    The manifest (default ``.batchload/manifests/<dataset>.sqlite``) makes a re-run
    skip what is done. ``sheet`` and ``header_row`` (1-based) say where a workbook's
    rows are, over the contract's. ``validate=False`` sends files without validating them (see
    :class:`~batchload.pipeline.run.RunOptions`). Raises when the run cannot go on (see
    the module docstring).
    """
    if dataset and dataset_id:
        raise UsageError("give dataset or dataset_id, not both")
    job = UploadJob(
        files=tuple(str(f) for f in files),
        schema=Path(schema),
        dataset=dataset,
        dataset_id=dataset_id,
        file_id=file_id,
        sheet=sheet,
        header_row=header_row,
    )
    options = RunOptions(
        concurrency=concurrency,
        max_request_mb=max_request_mb,
        dry_run=dry_run,
        retry=retry or RetryPolicy(),
        validate=validate,
    )
    config = (
        None if dry_run else _config(endpoint, token, ca_bundle=ca_bundle, verify_tls=verify_tls)
    )
    path = Path(manifest) if manifest else await anyio.to_thread.run_sync(_default_manifest, job)
    summary = await run_upload([job], config=config, manifest_path=path, options=options, sink=sink)
    if summary.error is not None:
        raise summary.error
    return summary


upload_files = _blocking(upload_files_async)


# --- a DataFrame ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFrameUpload:
    """What :func:`upload_dataframe` sent: where it landed and under which id."""

    dataset_id: str
    file_id: str
    """The id of the file, or the stem of its parts' ids (``<file_id>.part-0001``, ...)."""
    rows: int
    parts: int
    """0 when the frame went as one file."""
    created: bool
    """True when this call created the dataset."""
    receipts: tuple[dict[str, Any], ...]


def _arrow_table(df: Any) -> Any:
    if hasattr(df, "to_arrow") and type(df).__module__.startswith("polars"):
        return df.to_arrow()
    if type(df).__module__.startswith("pandas"):
        return pa.Table.from_pandas(df)  # as the guide's function does
    raise UsageError(
        f"upload_dataframe takes a pandas or polars DataFrame, not {type(df).__name__}"
    )


def _prepare_frame(df: Any, schema: str | Path | None) -> tuple[Any, Contract | None]:
    """(polars frame cast to the contract, the contract) after validating; blocking."""
    table = _arrow_table(df)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if schema is None:
        return frame, None

    contract = load_contract(schema)
    frame = typed_nulls(frame, contract)
    verdict = validate_frame(frame, contract, path="<dataframe>")
    if not verdict.valid:
        raise FileProblem(
            f"the DataFrame does not pass {schema}: {verdict.reason}", path="<dataframe>"
        )
    cast = pl.from_arrow(frame.to_arrow().select(contract.names).cast(arrow_schema(contract)))
    assert isinstance(cast, pl.DataFrame)
    return cast, contract


def _parquet(frame: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(frame.to_arrow(), sink)
    return sink.getvalue()


async def upload_dataframe_async(
    df: Any,
    *,
    dataset: str | None = None,
    dataset_id: str | None = None,
    schema: str | Path | None = None,
    endpoint: str | None = None,
    token: str | Secret | None = None,
    file_id: str | None = None,
    max_request_mb: float = DEFAULT_MAX_REQUEST_MB,
    retry: RetryPolicy | None = None,
) -> DataFrameUpload:
    """Send a pandas or polars DataFrame as parquet (in parts when large).

    With ``schema`` (a contract file) the frame is validated first and sent with the
    contract's Arrow types. With ``dataset_id`` the file is added to that dataset;
    with ``dataset`` (a name) it goes to the one dataset of that name, which the
    first upload creates. ``file_id`` defaults to a hash of the content, so sending
    the same frame twice overwrites instead of duplicating.
    """
    if dataset and dataset_id:
        raise UsageError("give dataset or dataset_id, not both")
    frame, contract = await anyio.to_thread.run_sync(_prepare_frame, df, schema)
    name = dataset or (contract.dataset_name if contract else None)
    if not dataset_id and not name:
        raise UsageError("name the dataset: pass dataset=NAME, dataset_id=ID or a schema")
    data = await anyio.to_thread.run_sync(_parquet, frame)
    base_id = file_id or DATAFRAME_ID_PREFIX + sha256_bytes(data)[:16]
    limit = max_request_bytes(max_request_mb)
    whole = Envelope(file_id=base_id, file_format="parquet", name=name)
    if whole.request_bytes(len(data)) <= limit:
        pieces: list[tuple[str, MemorySource | DiskSource]] = [
            (base_id, MemorySource(data, sha256_bytes(data)))
        ]
    else:
        proto = Envelope(file_id=f"{base_id}.{part_label(9999)}", file_format="parquet", name=name)
        parts = await anyio.to_thread.run_sync(
            lambda: list(split_frame(frame, budget_bytes=raw_budget(limit, proto), schema=None))
        )
        pieces = [(f"{base_id}.{part_label(p.index)}", p.source) for p in parts]
    config = _config(endpoint, token)
    receipts = []
    async with IngestionClient(config) as client:
        sender = Sender(
            client,
            policy=retry or RetryPolicy(),
            pacer=Pacer(AimdLimit(1)),
            sink=null_sink,
            rng=random.Random(),
        )

        async def record(_: str | None, ready: bool) -> None:
            """No manifest for a single DataFrame: the content-hash file_id is the resume."""

        # with a contract, created by id with its schema (a repeat is harmless); without
        # one, by the first part, as the guide does
        locked = contract.locked_schema() if contract else None
        gate = DatasetGate(name or "", dataset_id, record=record, schema=locked)
        if dataset_id is None:
            await gate.adopt_existing(sender)
        for piece_id, source in pieces:

            def body(
                dataset_name: str | None, piece_id: str = piece_id, source: Any = source
            ) -> RequestBody:
                envelope = Envelope(file_id=piece_id, file_format="parquet", name=dataset_name)
                return RequestBody(envelope, source)

            receipts.append(await gate.send(sender, body, label=("<dataframe>", piece_id)))
    assert gate.dataset_id is not None
    return DataFrameUpload(
        dataset_id=gate.dataset_id,
        file_id=base_id,
        rows=frame.height,
        parts=0 if len(pieces) == 1 else len(pieces),
        created=gate.created,
        receipts=tuple(receipts),
    )


upload_dataframe = _blocking(upload_dataframe_async)
