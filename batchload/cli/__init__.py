"""The ``batchload`` command line: a thin layer over the library, one module per verb.

Subcommands are imported only when they run (or when ``--help`` lists them), and a
command module imports only click and the standard library at its top: polars,
pandera and aiohttp cost over a second to import, so they are imported inside the
functions that need them. Errors become one line and an exit code here, in one place.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from batchload.cli.allocators import give_back_freed_memory
from batchload.cli.common import run_command

#: Command name -> "module:attribute", in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "demo": "batchload.cli.demo:demo",
    "upload": "batchload.cli.upload:upload",
    "run": "batchload.cli.upload:run_plan",
    "validate": "batchload.cli.schema:validate",
    "schema": "batchload.cli.schema:schema",
    "manifest": "batchload.cli.manifest:manifest",
    "reconcile": "batchload.cli.manifest:reconcile",
    "ls": "batchload.cli.datasets:ls",
    "rm": "batchload.cli.datasets:rm",
    "dataset": "batchload.cli.datasets:dataset",
    "serve": "batchload.cli.serve:serve",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that command has not been built yet
                return None
            raise
        command = getattr(module, attr, None)
        return command if isinstance(command, click.Command) else None


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="batchload")
@click.option("-v", "--verbose", is_flag=True, help="Show details and tracebacks of errors.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and the final summary.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """Validated, resumable, concurrent bulk loading into a dataset-ingestion API.

    Start with `batchload demo`, which runs a whole backfill against an embedded
    local server. Every command has its own --help with an example.

    \b
    Examples:
      batchload demo
      batchload upload 'data/*.csv' --schema schemas/equity_signals.yaml
      batchload ls equity_signals
    """
    from batchload.cli.common import Output, show_reading_notes

    argv = ctx.obj if isinstance(ctx.obj, tuple) else ()  # set by run_command
    ctx.obj = Output(verbose=verbose, quiet=quiet, argv=argv)
    show_reading_notes()


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: run the CLI, turning errors into exit codes.

    The process is ours here, so the allocators are tuned before pyarrow loads; a
    library import (``import batchload``) leaves its host's allocators alone.
    """
    give_back_freed_memory()
    return run_command(cli, sys.argv[1:] if argv is None else argv)
