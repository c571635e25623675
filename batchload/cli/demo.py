"""``batchload demo``: a thin layer over :mod:`batchload.demo.backfill`.

Only click, the standard library and :mod:`batchload.demo.backfill` (itself standard library
only at its top) are imported here: the upload runs in a child process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from batchload.cli.common import json_option, output, print_json
from batchload.demo.settings import DEFAULT_DAYS, DEFAULT_TICKERS, MIN_DAYS, DemoSettings


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the files, the server's data and the manifest here (a new or empty folder). "
    "Default: a new temporary folder, kept afterwards.",
)
@click.option(
    "--days",
    type=click.IntRange(MIN_DAYS, 5000),
    default=DEFAULT_DAYS,
    show_default=True,
    help="Trading days of signal files to write (504 = two years).",
)
@click.option(
    "--tickers",
    type=click.IntRange(12, 100_000),
    default=DEFAULT_TICKERS,
    show_default=True,
    help="Rows per file: one per ticker.",
)
@json_option
def demo(directory: Path | None, days: int, tickers: int, as_json: bool) -> None:
    """Run a whole backfill end to end against an embedded local server.

    Writes two years of daily signal files (mostly csv, some parquet and xlsx, three
    spoiled on purpose), starts `batchload serve` on a free port, uploads them with
    `batchload upload` and the contract schemas/equity_signals.yaml, shows what was
    sent and what was refused and why, runs the upload again to show that nothing
    is sent twice, and prints the commands for SigTech's API. Exits 0: the refused
    files are the point. Run it from the repository root (it needs schemas/).

    \b
    Example:
      batchload demo --dir /tmp/backfill --days 60
    """
    out = output()

    def say(line: str) -> None:
        if as_json:
            out.info(line)  # stdout is for the JSON document
        elif not out.quiet:
            click.echo(line)
            sys.stdout.flush()  # a line at a time, also into a pipe

    from batchload.demo.backfill import run_demo  # the sample writers load polars and pyarrow

    result = run_demo(
        DemoSettings(directory=directory, days=days, tickers=tickers, quiet=out.quiet),
        say=say,
    )
    if as_json:
        print_json(result.to_dict())
    elif out.quiet:
        click.echo(
            f"demo: sent {result.first['uploaded']} files, refused {result.first['invalid']}; "
            f"second run sent {result.second['uploaded']}; files in {result.directory}"
        )
