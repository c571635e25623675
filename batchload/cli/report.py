"""What a run prints for people when it ends, on stderr: the summary of this process's
part, its problems, and, when processes shared the run through the manifest, the run.

Only click and the standard library are imported at the top (``--help`` stays fast).
"""

from __future__ import annotations

import click

from batchload.cli.common import Output
from batchload.summary import RunSummary, SharedRun, drift_line

MAX_LINES_SHOWN = 20
#: Validation details shown under one problem (the rest are counted).
MAX_DETAILS_SHOWN = 8


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.2f} MiB"


def _on_service(summary: RunSummary) -> str:
    """What the start-of-run listing changed, for the summary line."""
    said = [
        f"{summary.conflicts} conflict(s)" if summary.conflicts else "",
        f"re-sent {summary.resent} files missing on the service" if summary.resent else "",
        f"{summary.found_on_service} already on the service" if summary.found_on_service else "",
    ]
    return "".join(f", {s}" for s in said if s)


def report(summary: RunSummary, out: Output) -> None:
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
            f"{summary.failed} failed{_on_service(summary)}",
            err=True,
        )
        if summary.by_others or summary.lost:
            click.echo(
                f"{summary.by_others} file(s) settled by other processes on the manifest"
                + (
                    f"; {summary.lost} taken over by another process after this one's lease "
                    "ran out (their outcome is recorded by it)"
                    if summary.lost
                    else ""
                ),
                err=True,
            )
        if summary.run is not None:
            _shared(summary.run, summary.owner)
    for problem in summary.problems[:MAX_LINES_SHOWN]:  # errors: printed even with --quiet
        if problem.state == "conflict":  # the reason says it all, both sources included
            click.echo(f"  {problem.reason}", err=True)
        else:
            click.echo(f"  {problem.state}: {problem.path}: {problem.reason}", err=True)
        if len(problem.details) > 1:  # as validate shows them: the reason only counts them
            for detail in problem.details[:MAX_DETAILS_SHOWN]:
                click.echo(f"      {detail}", err=True)
            if len(problem.details) > MAX_DETAILS_SHOWN:
                more = len(problem.details) - MAX_DETAILS_SHOWN
                click.echo(f"      ... and {more} more problem(s)", err=True)
    if len(summary.problems) > MAX_LINES_SHOWN:
        click.echo(f"  ... and {len(summary.problems) - MAX_LINES_SHOWN} more problems", err=True)
    drift = drift_line(p.details for p in summary.problems)
    if drift:
        click.echo(f"  {drift}", err=True)
    for path, reason in summary.ignored[:MAX_LINES_SHOWN]:
        click.echo(f"  ignored: {path}: {reason}", err=True)
    if len(summary.ignored) > MAX_LINES_SHOWN:
        click.echo(f"  ... and {len(summary.ignored) - MAX_LINES_SHOWN} more ignored", err=True)
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


def _shared(run: SharedRun, me: str | None) -> None:
    """The whole run, when processes shared it: from the one that finished it last (or
    from the Dask client, ``me`` None); the others say where it goes on. A run of one
    process says nothing more."""
    if not run.last:
        others = ", ".join(run.running[:MAX_LINES_SHOWN])
        click.echo(
            f"the run goes on in {len(run.running)} other process(es) on the manifest "
            f"({others}); the last to finish prints the run's summary",
            err=True,
        )
        return
    if [p.owner for p in run.processes] == [me]:
        return
    who = "finished last by this process" if me else "over every process on the manifest"
    click.echo(
        f"the run, {who}: {run.done} done, {run.failed} invalid or failed, "
        f"{run.in_flight + run.left} left, by {len(run.processes)} process(es):",
        err=True,
    )
    for process in run.processes[:MAX_LINES_SHOWN]:
        state: str = "this one" if process.owner == me else process.state
        if state == "gone":
            state = "gone: not heard from for longer than its lease"
        click.echo(
            f"  {process.owner}: {process.done} done, {process.failed} failed ({state})",
            err=True,
        )
    if len(run.processes) > MAX_LINES_SHOWN:
        click.echo(f"  ... and {len(run.processes) - MAX_LINES_SHOWN} more", err=True)


def progress_line(run: SharedRun) -> str:
    """The run's progress as the manifest has it, while processes elsewhere work on it."""
    states = [p.state for p in run.processes]
    gone = f", {states.count('gone')} gone" if "gone" in states else ""
    return (
        f"run: {run.done} done, {run.failed} invalid or failed, {run.in_flight} in flight, "
        f"{run.left} left; {states.count('running')} process(es) running{gone}"
    )
