"""``batchload manifest show|export`` and ``batchload reconcile``: reading a run's manifest.

Only click and the standard library are imported at the top.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchload.cli.common import (
    connection_config,
    connection_options,
    json_option,
    output,
    print_json,
)

if TYPE_CHECKING:
    from batchload.state.ledger import WorkerRow

MAX_FAILURES_SHOWN = 20
STALE_S = 10.0
"""A running process not heard from for this long is shown as silent (paused, cut off)."""
manifest_argument = click.argument("path", metavar="PATH|URL")


@click.group()
def manifest() -> None:
    """Read a run's manifest: what was sent, what is left, why files failed.

    \b
    Examples:
      batchload manifest show .batchload/manifests/equity_signals.sqlite
      batchload manifest show postgresql://batchload@db.internal/backfill
      batchload manifest export .batchload/manifests/equity_signals.sqlite --format csv -o run.csv
    """


@manifest.command()
@manifest_argument
@json_option
def show(path: str, as_json: bool) -> None:
    """Show datasets, counts per state, the processes sharing it and the failures recorded.

    PATH|URL is a SQLite manifest or a postgresql:// ledger (its password is never shown).

    \b
    Example:
      batchload manifest show .batchload/manifests/equity_signals.sqlite
    """
    from batchload.state.stores import open_ledger

    with open_ledger(path, create=False) as opened:
        where = opened.location
        datasets = opened.datasets()
        counts = opened.counts()
        problems = [r for r in opened.rows() if r.state in ("invalid", "failed")]
        progress = opened.progress()
    if as_json:
        print_json(
            {
                "manifest": where,
                "queue": {
                    "done": progress.done,
                    "failed": progress.failed,
                    "in_flight": progress.in_flight,
                    "left": progress.left,
                },
                "processes": [
                    {**asdict(w), "files_per_s": _rate(w.done, w, progress.now)}
                    for w in progress.workers
                ],
                "datasets": [
                    {
                        "name": d.name,
                        "dataset_id": d.dataset_id,
                        "state": d.state,
                        "endpoint": d.endpoint,
                        "contract": d.contract,
                        "file_id_template": d.file_id_template,
                        "files": counts.get(d.name, {}),
                    }
                    for d in datasets
                ],
                "problems": [
                    {
                        "path": r.source_path,
                        "part": r.part,
                        "file_id": r.file_id,
                        "state": r.state,
                        "last_status": r.last_status,
                        "last_error": r.last_error,
                    }
                    for r in problems
                ],
            }
        )
        return
    out = output()
    click.echo(f"manifest {where}")
    for d in datasets:
        states = ", ".join(f"{n} {s}" for s, n in counts.get(d.name, {}).items() if n)
        click.echo(f"  {d.name}: id {d.dataset_id or '-'} ({d.state}) at {d.endpoint}")
        click.echo(f"    rows: {states or 'none'}")
    if progress.workers:
        click.echo(
            f"  files: {progress.done} done, {progress.failed} failed, "
            f"{progress.in_flight} in flight, {progress.left} left"
        )
        for w in progress.workers[-MAX_FAILURES_SHOWN:]:
            state = "finished" if w.finished_at is not None else "running"
            if w.finished_at is None and progress.now - w.seen_at > STALE_S:
                state = f"silent for {progress.now - w.seen_at:.0f}s"
            click.echo(
                f"    {w.owner}: {w.done} done, {w.failed} failed, {w.in_flight} in flight, "
                f"{_rate(w.done, w, progress.now):.1f} files/s ({state})"
            )
    for r in problems[:MAX_FAILURES_SHOWN]:
        part = f" part {r.part}" if r.part else ""
        click.echo(f"  {r.state}: {r.source_path}{part}: {r.last_error}")
    if len(problems) > MAX_FAILURES_SHOWN:
        out.info(f"  ... and {len(problems) - MAX_FAILURES_SHOWN} more")


@manifest.command()
@manifest_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "parquet"]),
    required=True,
    help="Output format: one row per file or part.",
)
@click.option(
    "-o",
    "--output",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write (default: the manifest's name with the format's extension).",
)
def export(path: str, fmt: str, out_path: Path | None) -> None:
    """Export every row of a manifest as csv, json or parquet.

    \b
    Example:
      batchload manifest export .batchload/manifests/equity_signals.sqlite --format parquet
    """
    from batchload.state.export import export
    from batchload.state.ledger import is_url
    from batchload.state.stores import open_ledger

    if out_path is None and is_url(path):
        raise click.UsageError("a postgresql:// manifest needs -o/--output")
    target = out_path or Path(path).with_suffix(f".{fmt}")
    with open_ledger(path, create=False) as opened:
        count = export(opened, fmt, target)
    output().info(f"wrote {count} row(s) to {target}")


@click.command()
@click.option(
    "--manifest",
    "path",
    required=True,
    metavar="PATH|URL",
    help="The manifest of the run(s) to check: a SQLite file or a postgresql:// URL.",
)
@connection_options
@json_option
def reconcile(  # noqa: PLR0917  (click passes each option as an argument)
    path: str,
    endpoint: str | None,
    token_file: Path | None,
    ca_bundle: Path | None,
    insecure: bool,
    timeout_s: float | None,
    as_json: bool,
) -> None:
    """Compare a manifest with the service: files missing there, files unknown here.

    Exit 0 when every file the manifest has as done is on the service, 1 otherwise.

    \b
    Example:
      batchload reconcile --manifest .batchload/manifests/equity_signals.sqlite
    """
    import anyio

    from batchload.pipeline.reconcile import reconcile as compare
    from batchload.send.datasets import reader
    from batchload.send.transport import IngestionClient
    from batchload.state.stores import open_ledger

    with open_ledger(path, create=False) as opened:
        where = opened.location
        endpoints = {d.endpoint for d in opened.datasets()}
        chosen = endpoint or (endpoints.pop() if len(endpoints) == 1 else None)
        config = connection_config(
            endpoint=chosen,
            token_file=token_file,
            ca_bundle=ca_bundle,
            insecure=insecure,
            timeout_s=timeout_s,
        )

        async def check() -> Any:
            async with IngestionClient(config) as client:
                return await compare(reader(client), opened)

        results = anyio.run(check, backend="asyncio")
    if as_json:
        print_json({"manifest": where, "reconcile": [asdict(r) for r in results]})
    else:
        for r in results:
            status = "ok" if r.ok else "NOT OK"
            click.echo(
                f"{r.dataset} ({r.dataset_id}): {status}: {r.expected} done in the manifest, "
                f"{r.on_server} on the service"
            )
            if r.error:
                click.echo(f"  could not list files: {r.error}")
            for file_id in r.missing[:MAX_FAILURES_SHOWN]:
                click.echo(f"  missing: {file_id}")
            for file_id in r.unexpected[:MAX_FAILURES_SHOWN]:
                click.echo(f"  unexpected: {file_id}")
    click.get_current_context().exit(0 if all(r.ok for r in results) else 1)


def _rate(done: int, worker: WorkerRow, now: float) -> float:
    """Files a second a process settled, over its life so far."""
    end = worker.finished_at if worker.finished_at is not None else now
    return done / max(end - worker.started_at, 1e-3)
