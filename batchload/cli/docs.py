"""The CLI reference page, ``docs/cli.md``, generated from the commands' own ``--help``.

``uv run python -m batchload.cli.docs`` rewrites ``docs/cli.md`` between
``<!-- reference:start -->`` and ``<!-- reference:end -->``; ``--check`` only says
whether it is up to date (exit 1 when not), which a test runs. Help is rendered at
a fixed width, so the text does not depend on the terminal it is run in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

HELP_WIDTH = 88
START = "<!-- reference:start -->"
END = "<!-- reference:end -->"
CLI_PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
REGENERATE = "uv run python -m batchload.cli.docs"


def commands() -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and subcommand, depth first, in the order ``--help`` lists them."""
    from batchload.cli import cli

    def walk(
        path: tuple[str, ...], command: click.Command
    ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            context = click.Context(command, info_name=path[-1] if path else "batchload")
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                if sub is not None and not sub.hidden:
                    yield from walk((*path, name), sub)

    yield from walk((), cli)


def render_help(path: tuple[str, ...], *, width: int = HELP_WIDTH) -> str:
    """``batchload PATH --help`` as printed on a terminal ``width`` columns wide."""
    from batchload.cli import cli

    def context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
        settings = {**command.context_settings, "terminal_width": width, "max_content_width": width}
        return click.Context(command, info_name=name, parent=parent, **settings)

    command: click.Command = cli
    ctx = context(cli, "batchload", None)
    for name in path:
        sub = command.get_command(ctx, name) if isinstance(command, click.Group) else None
        if sub is None:
            raise KeyError(f"no command {' '.join(path)!r}")
        command = sub
        ctx = context(command, name, ctx)
    return command.get_help(ctx).rstrip() + "\n"


def reference() -> str:
    """The CLI reference: each command's help in a text block."""
    parts = [
        "",
        "## CLI reference",
        "",
        f"Generated from `--help` by `{REGENERATE}`; a test fails when it is out of date.",
        "",
    ]
    for path, _ in commands():
        name = " ".join(("batchload", *path))
        parts += [f"### `{name}`", "", "```text", render_help(path).rstrip(), "```", ""]
    return "\n".join(parts)


def with_reference(page: str) -> str:
    """``page`` with the region between the markers replaced by :func:`reference`."""
    start, end = page.find(START), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{CLI_PAGE.name} has no {START} ... {END} region")
    return page[: start + len(START)] + "\n" + reference() + page[end:]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the CLI reference page, or with ``--check`` report whether it is current."""
    args = sys.argv[1:] if argv is None else argv
    current = CLI_PAGE.read_text(encoding="utf-8")
    wanted = with_reference(current)
    if "--check" in args:
        if current != wanted:
            print(
                f"{CLI_PAGE}: the CLI reference is out of date; run {REGENERATE}", file=sys.stderr
            )
            return 1
        return 0
    if current != wanted:
        CLI_PAGE.write_text(wanted, encoding="utf-8")
        print(f"rewrote the CLI reference in {CLI_PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
