"""``batchload upload`` and ``batchload run PLAN``: a thin layer over the pipeline.

Only click and the standard library are imported at the top; the pipeline (polars,
pandera, aiohttp) loads when a command runs. Progress goes to stderr; ``--json``
prints one summary object on stdout. Exit codes: 0 all done, 1 some files invalid
or failed, 2 usage or configuration, 3 authentication, 4 service unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from batchload.cli.common import (
    Output,
    connection_config,
    connection_options,
    json_option,
    output,
    print_json,
    schema_option,
)
from batchload.config import DEFAULT_MAX_CONCURRENCY
from batchload.protocol import DEFAULT_MAX_REQUEST_MB

if TYPE_CHECKING:
    from batchload.config import ClientConfig
    from batchload.jobs import UploadJob
    from batchload.summary import RunSummary

F = TypeVar("F", bound=Callable[..., Any])
MAX_LINES_SHOWN = 20
DEFAULT_RETRIES = 7


def run_options(fn: F) -> F:
    """The options ``upload`` and ``run`` share."""
    for option in reversed(
        [
            click.option(
                "--concurrency",
                type=click.IntRange(1, 256),
                default=None,
                help="Most requests in flight. Uploads start with a few and adapt to the "
                "link: more while answers come as fast, fewer when latency rises or on "
                f"429/5xx. Default: {DEFAULT_MAX_CONCURRENCY}.",
            ),
            click.option(
                "--manifest",
                "manifest_path",
                type=click.Path(dir_okay=False, path_type=Path),
                help="The run's SQLite manifest (resume with the same one). "
                "Default: .batchload/manifests/<dataset>.sqlite.",
            ),
            click.option(
                "--max-request-mb",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                help="Largest request body after base64, in MiB; larger files are sent in "
                f"parts. Default: {DEFAULT_MAX_REQUEST_MB:g}.",
            ),
            click.option(
                "--retries",
                type=click.IntRange(0, 100),
                default=None,
                help="Retries per request after a transient failure (timeouts, 429, 5xx). "
                f"Default: {DEFAULT_RETRIES}.",
            ),
            click.option(
                "--dry-run",
                is_flag=True,
                help="Validate and plan (datasets, file ids, parts, request sizes); send nothing.",
            ),
            click.option(
                "--no-validate",
                "no_validate",
                is_flag=True,
                help="Send files without validating them against the contract (the service "
                "still parses them). For trusted files; files to split are still read.",
            ),
            json_option,
        ]
    ):
        fn = option(fn)
    return connection_options(fn)  # first in --help


@click.command()
@click.argument("files", nargs=-1, required=True)
@schema_option
@click.option("--dataset", metavar="NAME", help="Dataset name (default: the contract's name).")
@click.option("--dataset-id", metavar="ID", help="Add to this existing dataset.")
@click.option(
    "--file-id",
    "file_id",
    default="{stem}",
    show_default=True,
    metavar="TEMPLATE",
    help="file_id of each file: {stem}, {name}, {sha8}, {part}. Deterministic, so a re-run "
    "overwrites instead of duplicating.",
)
@click.option("--sheet", metavar="NAME", help="Excel sheet to read (default: the first).")
@run_options
def upload(  # noqa: PLR0917  (click passes each option as an argument)
    files: tuple[str, ...],
    schema_path: Path,
    dataset: str | None,
    dataset_id: str | None,
    file_id: str,
    sheet: str | None,
    **common: Any,
) -> None:
    """Validate files against a contract and upload them: concurrent, resumable, exactly once.

    FILES are paths or quoted globs ('data/**/*.csv'). The token comes from
    $SIGTECH_PLATFORM_TOKEN or --token-file, never from the command line. Re-run the
    same command to resume: done files are skipped without being read.

    \b
    Example:
      batchload upload 'data/signals/*.csv' --schema schemas/equity_signals.yaml
    """
    from batchload.errors import UsageError
    from batchload.jobs import UploadJob

    if dataset and dataset_id:
        raise UsageError("give --dataset or --dataset-id, not both")
    job = UploadJob(
        files=files,
        schema=schema_path,
        dataset=dataset,
        dataset_id=dataset_id,
        file_id=file_id,
        sheet=sheet,
    )
    _execute([job], default_manifest=None, **common)


@click.command("run")
@click.argument("plan", type=click.Path(dir_okay=False, path_type=Path))
@run_options
def run_plan(plan: Path, **common: Any) -> None:
    """Run a plan: several uploads, to one or more datasets, from a TOML file.

    Paths in the plan are relative to it. Flags given here win over its [run] table.

    \b
    Example (backfill.toml):
      [[upload]]
      schema = "schemas/equity_signals.yaml"
      files = ["data/signals/*.csv"]
      [[upload]]
      schema = "schemas/market_prices.yaml"
      files = ["data/prices/**/*.parquet"]
    \b
      batchload run backfill.toml
    """
    from batchload.pipeline.plan import load_plan
    from batchload.state.manifest import default_manifest_path

    loaded = load_plan(plan)
    for key in ("concurrency", "max_request_mb"):
        if common[key] is None:
            common[key] = getattr(loaded, key)
    common["manifest_path"] = common["manifest_path"] or loaded.manifest
    _execute(list(loaded.jobs), default_manifest=default_manifest_path(plan.stem), **common)


def _execute(
    jobs: Sequence[UploadJob],
    *,
    default_manifest: Path | None,
    endpoint: str | None,
    token_file: Path | None,
    ca_bundle: Path | None,
    insecure: bool,
    timeout_s: float | None,
    concurrency: int | None,
    manifest_path: Path | None,
    max_request_mb: float | None,
    retries: int | None,
    dry_run: bool,
    no_validate: bool,
    as_json: bool,
) -> None:
    import anyio

    from batchload.cli.render import progress_sink
    from batchload.pipeline.run import RunOptions, run_upload
    from batchload.send.retry import RetryPolicy

    out = output()
    config: ClientConfig | None = None
    if not dry_run:
        config = connection_config(
            endpoint=endpoint,
            token_file=token_file,
            ca_bundle=ca_bundle,
            insecure=insecure,
            timeout_s=timeout_s,
        )
    options = RunOptions(
        concurrency=concurrency or DEFAULT_MAX_CONCURRENCY,
        max_request_mb=max_request_mb or DEFAULT_MAX_REQUEST_MB,
        dry_run=dry_run,
        validate=not no_validate,
        retry=RetryPolicy(attempts=1 + (DEFAULT_RETRIES if retries is None else retries)),
    )
    path = manifest_path or default_manifest or _default_manifest(jobs[0])
    with progress_sink(quiet=out.quiet or dry_run) as sink:
        summary = anyio.run(
            lambda: run_upload(jobs, config=config, manifest_path=path, options=options, sink=sink),
            backend="asyncio",
        )
    if as_json:
        print_json(summary.to_dict())
    else:
        _report(summary, out)
    if summary.error is not None:
        click.echo(f"error: {summary.error}", err=True)
    click.get_current_context().exit(summary.exit_code)


def _default_manifest(job: UploadJob) -> Path:
    from batchload.contract.model import load_contract
    from batchload.state.manifest import default_manifest_path

    return default_manifest_path(job.dataset or load_contract(job.schema).dataset_name)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.2f} MiB"


def _report(summary: RunSummary, out: Output) -> None:
    """The human summary, on stderr."""
    names = ", ".join(f"{name} ({i or 'not created'})" for name, i in summary.datasets.items())
    if summary.dry_run:
        out.info(
            f"dry run: would send {len(summary.plan)} request(s), "
            f"{_mib(summary.request_bytes)} after base64, to {names}"
        )
        for request in summary.plan[:MAX_LINES_SHOWN]:
            part = f" part {request.part}" if request.part else ""
            out.info(
                f"  {request.file_id}  {request.file_format}  {request.rows} rows  "
                f"{request.request_bytes} bytes{part}  <- {request.path}"
            )
        if len(summary.plan) > MAX_LINES_SHOWN:
            out.info(f"  ... and {len(summary.plan) - MAX_LINES_SHOWN} more")
    else:
        parts = (
            f" ({summary.parts_uploaded} parts of large files)" if summary.parts_uploaded else ""
        )
        click.echo(  # the final summary: printed even with --quiet
            f"uploaded {summary.uploaded} file(s){parts}, {_mib(summary.bytes_sent)}, to {names} "
            f"in {summary.seconds:.1f}s; {summary.skipped} skipped, {summary.invalid} invalid, "
            f"{summary.failed} failed",
            err=True,
        )
    for problem in summary.problems[:MAX_LINES_SHOWN]:  # errors: printed even with --quiet
        click.echo(f"  {problem.state}: {problem.path}: {problem.reason}", err=True)
    if len(summary.problems) > MAX_LINES_SHOWN:
        click.echo(f"  ... and {len(summary.problems) - MAX_LINES_SHOWN} more problems", err=True)
    for result in summary.reconcile:
        line = f"reconcile {result.dataset}: {result.on_server} file(s) on the service"
        if result.error:
            line += f"; could not list: {result.error}"
        if result.missing:
            line += f"; MISSING {len(result.missing)}: {', '.join(result.missing[:5])}"
        if result.unexpected:
            line += f"; {len(result.unexpected)} not from this manifest"
        out.info(line)
    out.info(f"manifest: {summary.manifest}")
