"""``batchload upload`` and ``batchload run PLAN``: a thin layer over the pipeline.

Only click and the standard library are imported at the top; the pipeline (polars,
pandera, aiohttp) loads when a command runs. Progress goes to stderr; ``--json``
prints one summary object on stdout. Exit codes: 0 all done, 1 some files invalid
or failed, 2 usage or configuration, 3 authentication, 4 service unreachable, 130
interrupted. The first SIGINT or SIGTERM drains the run (no new files; requests in
flight get a bounded wait) and prints the command that resumes it; the second aborts.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, cast

import click

from batchload.cli.common import (
    connection_config,
    connection_options,
    json_option,
    output,
    print_json,
    require_contracts,
    schema_option,
    sheet_options,
)
from batchload.cli.report import progress_line, report
from batchload.config import DEFAULT_MAX_CONCURRENCY
from batchload.protocol import DEFAULT_MAX_REQUEST_MB

if TYPE_CHECKING:
    from batchload.config import ClientConfig
    from batchload.jobs import UploadJob
    from batchload.pipeline.listing import OnExisting
    from batchload.pipeline.stop import Stop
    from batchload.summary import RunSummary

F = TypeVar("F", bound=Callable[..., Any])
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
                metavar="PATH|URL",
                help="The run's manifest (resume with the same one): a SQLite file, or "
                "postgresql://USER@HOST:PORT/DB to share the run between machines. Every "
                "process started on one manifest takes its share of the files. Default: "
                "$BATCHLOAD_MANIFEST, else .batchload/manifests/<dataset>.sqlite.",
            ),
            click.option(
                "--max-rps",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                metavar="N",
                help="Most requests a second, over every process sharing the manifest "
                "(evenly spaced; a 429 lowers it for all). Default: no budget.",
            ),
            click.option(
                "--lease-s",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                metavar="SECONDS",
                help="How long a process's claims on files outlive it: then another process "
                "on the manifest takes them over. Default: 60.",
            ),
            click.option(
                "--dask",
                "dask_scheduler",
                metavar="ADDRESS",
                help="Run on an existing Dask cluster (tcp://HOST:8786): one worker loop per "
                "Dask worker, each taking files from the manifest as a process would, and "
                "progress read from the manifest. Needs a manifest every worker reaches "
                "(postgresql://, or SQLite with every worker on this machine) and the extra "
                "batchload[dask].",
            ),
            click.option(
                "--workers",
                "loops",
                type=click.IntRange(min=1),
                default=None,
                metavar="N",
                help="With --dask: how many worker loops to start. Default: one per Dask worker.",
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
                "--on-existing",
                type=click.Choice(["fail", "skip", "replace"]),
                default="fail",
                show_default=True,
                help="A file_id the dataset holds from another source: fail (a conflict, "
                "nothing sent), skip it, or replace it. Same bytes are never sent again.",
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
@click.argument("files", nargs=-1)
@click.option(
    "--files-from",
    type=click.File("r", encoding="utf-8"),
    metavar="LIST",
    help="Also upload the paths or URLs in LIST, one a line ('-': stdin); blank lines and "
    "'# comments' are skipped, names are taken literally (no globs).",
)
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Only files that match (repeatable): '*.csv' a name, '2024/*' a path below a FOLDER.",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="GLOB",
    help="Leave out files (and folders) that match (repeatable); as --include.",
)
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
@sheet_options
@run_options
def upload(  # noqa: PLR0917  (click passes each option as an argument)
    files: tuple[str, ...],
    files_from: TextIO | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    schema_path: Path,
    dataset: str | None,
    dataset_id: str | None,
    file_id: str,
    sheet: str | None,
    header_row: int | None,
    **common: Any,
) -> None:
    """Validate files against a contract and upload them: concurrent, resumable, exactly once.

    FILES are paths, folders (every file under them, hidden ones left out) or quoted
    globs ('data/**/*.csv'); --files-from adds a list of them. The token comes from
    $SIGTECH_PLATFORM_TOKEN or --token-file, never from the command line. Re-run the
    same command to resume: done files are skipped without being read.

    \b
    Examples:
      batchload upload 'data/signals/*.csv' --schema schemas/equity_signals.yaml
      batchload upload data/signals --exclude 'archive/*' --schema schemas/equity_signals.yaml
      find data -name '*.csv' -newer last-run | batchload upload --files-from - --schema ...
    """
    from batchload.errors import UsageError
    from batchload.jobs import UploadJob
    from batchload.read.discover import discover, file_list, nothing_named_exists

    if dataset and dataset_id:
        raise UsageError("give --dataset or --dataset-id, not both")
    listed = file_list(files_from) if files_from is not None else ()
    if not files and files_from is None:
        raise UsageError("no files named", hint="give FILES, or --files-from LIST")
    if files_from is not None and not files and not listed:
        raise UsageError(f"{files_from.name} lists no files")
    if nothing_named_exists(files, listed=listed):
        discover(files, listed=listed)  # says which and why, before the pipeline loads
    job = UploadJob(
        files=files,
        listed=listed,
        include=include,
        exclude=exclude,
        schema=schema_path,
        dataset=dataset,
        dataset_id=dataset_id,
        file_id=file_id,
        sheet=sheet,
        header_row=header_row,
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
    manifest_path: str | Path | None,
    max_request_mb: float | None,
    max_rps: float | None,
    lease_s: float | None,
    dask_scheduler: str | None,
    loops: int | None,
    retries: int | None,
    on_existing: str,
    dry_run: bool,
    no_validate: bool,
    as_json: bool,
) -> None:
    require_contracts(*(job.schema for job in jobs))
    if loops is not None and dask_scheduler is None:
        raise click.UsageError("--workers needs --dask ADDRESS")
    if dask_scheduler is not None and dry_run:
        raise click.UsageError("a dry run is made here: leave out --dask")
    config: ClientConfig | None = None
    if not dry_run:  # a missing token answers before the pipeline loads
        config = connection_config(
            endpoint=endpoint,
            token_file=token_file,
            ca_bundle=ca_bundle,
            insecure=insecure,
            timeout_s=timeout_s,
        )
    import anyio

    from batchload.cli.allocators import exempt_start_up_objects
    from batchload.cli.render import progress_sink
    from batchload.config import resolve_manifest
    from batchload.pipeline.run import RunOptions, run_upload
    from batchload.send.retry import RetryPolicy
    from batchload.state.ledger import DEFAULT_LEASE_S

    out = output()
    options = RunOptions(
        concurrency=concurrency or DEFAULT_MAX_CONCURRENCY,
        max_request_mb=max_request_mb or DEFAULT_MAX_REQUEST_MB,
        dry_run=dry_run,
        validate=not no_validate,
        on_existing=cast("OnExisting", on_existing),
        retry=RetryPolicy(attempts=1 + (DEFAULT_RETRIES if retries is None else retries)),
        max_rps=max_rps,
        lease_s=lease_s or DEFAULT_LEASE_S,
    )
    path = resolve_manifest(manifest_path) or default_manifest or _default_manifest(jobs[0])
    if dask_scheduler is not None:
        from batchload.pipeline.dask import run_on_dask

        assert config is not None
        summary = run_on_dask(
            jobs,
            scheduler=dask_scheduler,
            config=config,
            manifest_path=path,
            options=options,
            loops=loops,
            placed=lambda n, workers: out.info(
                f"started {n} worker loop(s) on the Dask cluster at {dask_scheduler} "
                f"({workers} worker(s)); progress from the manifest"
            ),
            report=lambda run: out.info(progress_line(run)),
        )
    else:
        with progress_sink(quiet=out.quiet or dry_run) as sink:

            async def main(stop: Stop) -> RunSummary:
                return await run_upload(
                    jobs, config=config, manifest_path=path, options=options, sink=sink, stop=stop
                )

            exempt_start_up_objects()  # everything the run needs is imported by now
            summary = anyio.run(_stoppable, main, options.stop_grace_s, backend="asyncio")
    resume = _resume_command(out.argv) if summary.interrupted else None
    if as_json:
        print_json({**summary.to_dict(), "resume": resume})
    else:
        report(summary, out)
    if summary.error is not None:
        click.echo(f"error: {summary.error}", err=True)
    if resume is not None:  # printed even with --quiet: it is what to do next
        click.echo(
            f"interrupted: {summary.uploaded} file(s) uploaded, {summary.left} left; "
            f"the manifest is saved: {summary.manifest}\nresume with:\n  {resume}",
            err=True,
        )
    click.get_current_context().exit(summary.exit_code)


async def _stoppable(run: Callable[[Stop], Awaitable[RunSummary]], grace_s: float) -> RunSummary:
    """``run`` with SIGINT and SIGTERM turned into stop requests meanwhile."""
    import anyio

    from batchload.pipeline.stop import Stop

    stop = Stop()
    failure: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(_relay_signals, stop, grace_s)
        try:
            summary = await run(stop)
        except Exception as exc:  # raised below, not wrapped in the group's ExceptionGroup
            failure = exc
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return summary


async def _relay_signals(stop: Stop, grace_s: float) -> None:
    """The first signal drains the run, the second aborts it; a third gets the default
    handling (SIGINT: KeyboardInterrupt), in case the run cannot be reached."""
    import anyio

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            stop.request()
            name = signal.Signals(signum).name
            if stop.requests == 1:
                click.echo(
                    f"{name}: stopping: no new files; requests in flight get up to "
                    f"{grace_s:g}s (Ctrl-C again aborts them)",
                    err=True,
                )
            else:
                click.echo(f"{name}: aborting the requests in flight", err=True)
                return


def _resume_command(argv: Sequence[str]) -> str:
    """The shell command that runs this one again from here: the manifest then skips
    what is done. A list read from stdin must be given again."""
    command = f"cd {shlex.quote(os.getcwd())} && {shlex.join(['batchload', *argv])}"
    if "-" in argv:
        command += "  # with the same list on stdin"
    return command


def _default_manifest(job: UploadJob) -> Path:
    from batchload.contract.model import load_contract
    from batchload.state.manifest import default_manifest_path

    return default_manifest_path(job.dataset or load_contract(job.schema).dataset_name)
