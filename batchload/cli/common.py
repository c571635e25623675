"""What every command shares: output discipline, error-to-exit-code translation, options.

``--json`` output goes to stdout and nothing else does; logs and progress go to
stderr. Every line written for another program is flushed at once.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from batchload.errors import EXIT_INTERRUPTED, EXIT_USAGE, BatchloadError

if TYPE_CHECKING:
    from batchload.config import ClientConfig

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Output:
    """Global output settings, set by ``--verbose`` / ``--quiet`` on the group."""

    verbose: bool = False
    quiet: bool = False
    argv: tuple[str, ...] = ()
    """The command line as given (after ``batchload``): what a resume runs again."""

    def info(self, message: str) -> None:
        """A human-readable line on stderr, unless ``--quiet``."""
        if not self.quiet:
            click.echo(message, err=True)
            sys.stderr.flush()

    def detail(self, message: str) -> None:
        """A line on stderr only with ``--verbose``."""
        if self.verbose:
            click.echo(message, err=True)
            sys.stderr.flush()


class _Stderr(logging.Handler):
    """The library's reading notes (``batchload.read``), one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


_NOTES = _Stderr()


def show_reading_notes() -> None:
    """Print what the readers note (a library's warning said in our words) on stderr."""
    notes = logging.getLogger("batchload.read")
    if _NOTES not in notes.handlers:
        notes.addHandler(_NOTES)
        notes.propagate = False


def require_contracts(*paths: Path) -> None:
    """Refuse an unreadable contract now, before a command loads pandera and polars: a
    mistyped ``--schema`` answers at once (exit 2)."""
    from batchload.contract.reading import contract_text

    for path in paths:
        contract_text(path)


def output(ctx: click.Context | None = None) -> Output:
    """The current command's :class:`Output` (defaults when run outside the group)."""
    ctx = ctx or click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, Output) else Output()


def print_json(payload: Any) -> None:
    """Print one JSON document on stdout and flush it."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


INSECURE_WARNING = (
    "warning: --insecure-skip-tls-verify: https certificates are NOT verified; "
    "anyone on the network path can read the token and the data"
)


def connection_config(
    *,
    endpoint: str | None,
    token_file: Path | None,
    ca_bundle: Path | None,
    insecure: bool,
    timeout_s: float | None,
) -> ClientConfig:
    """The :func:`connection_options` resolved (flags over environment over defaults).

    ``--insecure-skip-tls-verify`` is warned about every time, even with ``--quiet``.
    """
    from batchload.config import client_config

    config = client_config(
        endpoint=endpoint,
        token_file=token_file,
        ca_bundle=ca_bundle,
        insecure=insecure,
        timeout_s=timeout_s,
    )
    if insecure:
        click.echo(INSECURE_WARNING, err=True)
        sys.stderr.flush()
    return config


def fail(message: str, exit_code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit; for checks the CLI layer makes itself."""
    click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


def run_command(command: click.Command, args: list[str]) -> Any:
    """Run a click command, turning every error into one stderr line and an exit code."""
    verbose = "-v" in args or "--verbose" in args
    try:
        return command.main(
            args=args, prog_name="batchload", standalone_mode=False, obj=tuple(args)
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C into Abort; a declined confirmation is an Abort too.
        interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
        click.echo("interrupted" if interrupted else "aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BatchloadError as exc:
        if verbose:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        click.echo(
            f"error: internal error: {type(exc).__name__}: {exc} (run with --verbose for details)",
            err=True,
        )
        sys.exit(70)


# Options several commands share, defined once.
endpoint_option = click.option(
    "--endpoint",
    metavar="URL",
    help="Ingestion API base URL. Default: $BATCHLOAD_ENDPOINT, else https://api.sigtech.com.",
)
token_file_option = click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the API token from this file instead of $SIGTECH_PLATFORM_TOKEN.",
)
ca_bundle_option = click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Verify https certificates against this CA bundle (a private CA).",
)
insecure_option = click.option(
    "--insecure-skip-tls-verify",
    "insecure",
    is_flag=True,
    help="DANGEROUS: do not verify https certificates. Prints a warning.",
)
timeout_option = click.option(
    "--timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Longest wait for an answer to one request before it is retried. Default: 300.",
)
schema_option = click.option(
    "--schema",
    "schema_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The contract the files must pass (a pandera polars YAML, schemas/<dataset>.yaml).",
)


def sheet_options(fn: F) -> F:
    """``--sheet`` and ``--header-row``: where a workbook's rows are (over the contract's)."""
    fn = click.option(
        "--header-row",
        type=click.IntRange(min=1),
        metavar="N",
        help="Excel: the header's row, 1-based as the spreadsheet shows it "
        "(default: the contract's, else the first row with a cell).",
    )(fn)
    return click.option(
        "--sheet",
        metavar="NAME|NUMBER",
        help="Excel: the sheet to read, by name or 1-based number "
        "(default: the contract's, else the first).",
    )(fn)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout; logs go to stderr."
)


def connection_options(fn: F) -> F:
    """Where the service is and how to authenticate, as every remote command takes them."""
    for option in reversed(
        [endpoint_option, token_file_option, ca_bundle_option, insecure_option, timeout_option]
    ):
        fn = option(fn)
    return fn
