"""``batchload ls``, ``rm`` and ``dataset create|show|rm``: datasets and their files.

A thin layer over :mod:`batchload.send.datasets`; only click and the standard library
are imported at the top (aiohttp loads when a command runs).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from batchload.cli.common import (
    connection_config,
    connection_options,
    json_option,
    output,
    print_json,
    schema_option,
)

if TYPE_CHECKING:
    from batchload.config import ClientConfig
    from batchload.schemadiff import SchemaDifference
    from batchload.send.datasets import DatasetDetail, DatasetInfo, FileInfo
    from batchload.send.sender import Sender

T = TypeVar("T")
MAX_SHOWN = 10


def _with_client(config: ClientConfig, work: Callable[[Sender], Awaitable[T]]) -> T:
    """Run ``work`` with a client of ``config`` (its calls retried) in a fresh event loop."""
    import anyio

    from batchload.send.datasets import reader
    from batchload.send.transport import IngestionClient

    async def main() -> T:
        async with IngestionClient(config) as client:
            return await work(reader(client))

    return anyio.run(main, backend="asyncio")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned on the widest cell; numbers right-aligned; None shown as ``-``."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int) or row[i] is None for row in rows) for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(c) for c in cells)])


def _dataset_json(d: DatasetInfo) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "file_count": d.file_count,
        "rows": d.rows,
        "bytes": d.bytes,
    }


def _file_json(f: FileInfo) -> dict[str, Any]:
    return {
        "file_id": f.file_id,
        "rows": f.rows,
        "bytes": f.bytes,
        "received_at": f.received_at,
        "file_format": f.file_format,
        "sha256": f.sha256,
    }


@click.command()
@click.argument("target", required=False, metavar="[DATASET[/PATTERN]]")
@connection_options
@json_option
def ls(target: str | None, as_json: bool, **connection: Any) -> None:
    """List datasets, or a dataset's files.

    With no argument, every dataset (id, name, file count); with a glob, the
    datasets whose id or name match it. DATASET (an id, or a name only one dataset
    has) lists its files (file_id, rows, bytes, received); DATASET/PATTERN only the
    files whose file_id matches the glob PATTERN. Quote globs from the shell.

    \b
    Examples:
      batchload ls
      batchload ls equity_signals
      batchload ls 'equity_signals/signals_2024-*' --json
    """
    from batchload.send.datasets import parse_target

    parsed = parse_target(target)
    config = connection_config(**connection)
    if parsed.dataset is None or parsed.dataset_is_glob:
        _ls_datasets(config, parsed.dataset, as_json=as_json)
    else:
        _ls_files(config, parsed.dataset, parsed.pattern or None, as_json=as_json)


def _ls_datasets(config: ClientConfig, pattern: str | None, *, as_json: bool) -> None:
    from batchload.send.datasets import list_datasets

    async def datasets(sender: Sender) -> list[DatasetInfo]:
        return await list_datasets(sender, pattern)

    found = _with_client(config, datasets)
    if as_json:
        print_json({"datasets": [_dataset_json(d) for d in found]})
        return
    if found:
        click.echo(_table(("ID", "NAME", "FILES"), [(d.id, d.name, d.file_count) for d in found]))
    output().info(f"{len(found)} dataset(s)" + (f" matching {pattern!r}" if pattern else ""))


def _ls_files(config: ClientConfig, key: str, pattern: str | None, *, as_json: bool) -> None:
    from batchload.send.datasets import find_dataset, list_files

    async def files(sender: Sender) -> tuple[DatasetInfo, list[FileInfo]]:
        dataset = await find_dataset(sender, key)
        return dataset, await list_files(sender, dataset.id, pattern)

    dataset, found = _with_client(config, files)
    if as_json:
        print_json({"dataset": _dataset_json(dataset), "files": [_file_json(f) for f in found]})
        return
    if found:
        rows = [(f.file_id, f.rows, f.bytes, f.received_at) for f in found]
        click.echo(_table(("FILE_ID", "ROWS", "BYTES", "RECEIVED"), rows))
    matching = f" matching {pattern!r}" if pattern else ""
    output().info(f"{len(found)} file(s){matching} in dataset {dataset.label()}")


@click.command()
@click.argument("target", metavar="DATASET/FILE_ID_OR_PATTERN")
@click.option(
    "--dry-run", is_flag=True, help="List the files that would be deleted; delete nothing."
)
@click.option(
    "-y", "--yes", is_flag=True, help="Delete without asking (needed without a terminal)."
)
@connection_options
@json_option
def rm(target: str, dry_run: bool, yes: bool, as_json: bool, **connection: Any) -> None:
    """Delete files from a dataset: one file_id, or every file whose id matches a glob.

    Lists what matches first and asks before deleting, unless --yes; without a
    terminal to ask on, it refuses (exit 2) unless --yes. DATASET/* deletes every
    file of the dataset; the dataset itself and its locked schema stay. Exit 0 when
    every matched file is gone, 1 when some could not be deleted, 2 when nothing matched.

    \b
    Examples:
      batchload rm equity_signals/signals_2023-01-02
      batchload rm 'equity_signals/signals_2023-*' --dry-run
      batchload rm 'equity_signals/*.part-*' --yes
    """
    from batchload.errors import UsageError
    from batchload.send.datasets import (
        Deleted,
        delete_files,
        find_dataset,
        is_glob,
        list_files,
        parse_target,
    )

    parsed = parse_target(target)
    if parsed.dataset is None or parsed.dataset_is_glob or not parsed.pattern:
        raise UsageError(
            f"{target!r} does not name files",
            hint="write DATASET/FILE_ID or DATASET/PATTERN; DATASET/* for every file",
        )
    key, pattern = parsed.dataset, parsed.pattern
    out = output()

    config = connection_config(**connection)

    async def matching(sender: Sender) -> tuple[DatasetInfo, list[str]]:
        dataset = await find_dataset(sender, key)
        return dataset, [f.file_id for f in await list_files(sender, dataset.id, pattern)]

    dataset, matched = _with_client(config, matching)
    if not matched:
        what = "matches" if is_glob(pattern) else "is"
        raise UsageError(
            f"no file of dataset {dataset.label()} {what} {pattern!r}",
            hint=f"`batchload ls {key}` lists its files",
        )
    if dry_run or not _confirmed(dataset, matched, yes=yes):
        if as_json:
            print_json(
                {
                    "dataset": _dataset_json(dataset),
                    "dry_run": dry_run,
                    "matched": matched,
                    "deleted": [],
                }
            )
        else:
            for file_id in matched:
                click.echo(f"{dataset.id}/{file_id}")
        if dry_run:
            out.info(f"dry run: would delete {len(matched)} file(s) from dataset {dataset.label()}")
            return
        out.info("nothing deleted")
        sys.exit(1)

    async def delete(sender: Sender) -> Deleted:
        return await delete_files(sender, dataset.id, matched)

    result = _with_client(config, delete)
    if as_json:
        print_json(
            {
                "dataset": _dataset_json(dataset),
                "dry_run": False,
                "matched": matched,
                "deleted": list(result.deleted),
                "failed": [{"file_id": f, "error": e} for f, e in result.failed],
            }
        )
    else:
        for file_id in result.deleted:
            out.detail(f"deleted {dataset.id}/{file_id}")
        for file_id, error in result.failed[:MAX_SHOWN]:
            click.echo(f"  failed: {file_id}: {error}", err=True)
    click.echo(  # the final summary: printed even with --quiet
        f"deleted {len(result.deleted)} file(s) from dataset {dataset.label()}"
        + (f"; {len(result.failed)} failed" if result.failed else ""),
        err=True,
    )
    if result.failed:
        sys.exit(1)


def _confirmed(dataset: DatasetInfo, matched: Sequence[str], *, yes: bool) -> bool:
    """``--yes``, or the person at the terminal says yes; with no terminal, refuse."""
    shown = ", ".join(matched[:MAX_SHOWN])
    more = f" and {len(matched) - MAX_SHOWN} more" if len(matched) > MAX_SHOWN else ""
    return _ask(
        f"{len(matched)} file(s) from dataset {dataset.label()}",
        f"{len(matched)} file(s) of dataset {dataset.label()}: {shown}{more}",
        f"Delete these {len(matched)} file(s)?",
        yes=yes,
        hint="pass --yes to delete, or --dry-run to list them",
    )


def _ask(what: str, listing: str, question: str, *, yes: bool, hint: str) -> bool:
    """``--yes``, or the person at the terminal answers yes to ``question``; with no
    terminal to ask on, a UsageError: nothing is deleted unconfirmed."""
    from batchload.errors import UsageError

    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            f"not deleting {what} without confirmation: there is no terminal to ask on",
            hint=hint,
        )
    click.echo(listing, err=True)
    return click.confirm(question, default=False, err=True)


# --- batchload dataset ---------------------------------------------------------------------


@click.group()
def dataset() -> None:
    """Create, show and delete datasets (`ls` and `rm` list and delete their files).

    \b
    Examples:
      batchload dataset create equity_signals --schema schemas/equity_signals.yaml
      batchload dataset show equity_signals --schema schemas/equity_signals.yaml
      batchload dataset rm equity_signals --yes
    """


@dataset.command("create")
@click.argument("name")
@schema_option
@click.option("--id", "dataset_id", metavar="ID", help="The dataset's id. Default: NAME.")
@connection_options
@json_option
def dataset_create(
    name: str, schema_path: Path, dataset_id: str | None, as_json: bool, **connection: Any
) -> None:
    """Create dataset NAME with the contract's columns as its locked schema.

    The service's PUT with an explicit schema, as SigTech's SDK does: the schema is
    the contract's, not whatever a first file would make it. Creating a dataset that
    exists with the same schema does nothing (exit 0); another schema, or another
    dataset of the same name, is refused (exit 2).

    \b
    Example:
      batchload dataset create equity_signals --schema schemas/equity_signals.yaml
    """
    from batchload.contract.model import load_contract
    from batchload.send.datasets import Created, create_dataset

    contract = load_contract(schema_path)
    config = connection_config(**connection)

    async def create(sender: Sender) -> Created:
        return await create_dataset(sender, name, contract.locked_schema(), dataset_id=dataset_id)

    result = _with_client(config, create)
    if as_json:
        print_json({"dataset": _dataset_json(result.info), "created": result.created})
    verb = "created" if result.created else "exists already, with this schema:"
    click.echo(
        f"{verb} dataset {result.info.label()}, {len(contract.columns)} column(s) from "
        f"{schema_path}",
        err=True,
    )


@dataset.command("show")
@click.argument("name", metavar="DATASET")
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also compare this contract with the dataset's locked schema (exit 1 if they differ).",
)
@connection_options
@json_option
def dataset_show(name: str, schema_path: Path | None, as_json: bool, **connection: Any) -> None:
    """Show a dataset: its id, locked schema, file count and rows.

    DATASET is an id, or a name only one dataset has. With --schema, the contract is
    compared with the locked schema column by column (as `batchload schema diff`).

    \b
    Example:
      batchload dataset show equity_signals --schema schemas/equity_signals.yaml
    """
    from batchload.send.datasets import schema_differences, show_dataset

    contract = None
    if schema_path is not None:
        from batchload.contract.model import load_contract

        contract = load_contract(schema_path)
    config = connection_config(**connection)

    async def show(sender: Sender) -> tuple[DatasetDetail, dict[str, Any]]:
        return await show_dataset(sender, name)

    detail, answer = _with_client(config, show)
    differences = None if contract is None else schema_differences(answer, contract.locked_schema())
    if as_json:
        print_json(_detail_json(detail, schema_path, differences))
    else:
        _print_detail(detail, schema_path, differences)
    if differences:
        sys.exit(1)


def _detail_json(
    detail: DatasetDetail, schema_path: Path | None, differences: list[SchemaDifference] | None
) -> dict[str, Any]:
    data = {
        **_dataset_json(detail.info),
        "file_count": detail.file_count,
        "rows": detail.rows,
        "schema": list(detail.schema),
    }
    if differences is not None:
        data["contract"] = str(schema_path)
        data["matches"] = not differences
        data["differences"] = [d.to_dict() for d in differences]
    return data


def _print_detail(
    detail: DatasetDetail, schema_path: Path | None, differences: list[SchemaDifference] | None
) -> None:
    info = detail.info
    click.echo(f"dataset {info.label()}: {detail.file_count} file(s), {_shown(detail.rows)} rows")
    click.echo(_table(("COLUMN", "TYPE"), [(c["name"], c["type"]) for c in detail.schema]))
    if differences is None:
        return
    if not differences:
        click.echo(f"{schema_path} matches the locked schema")
        return
    click.echo(f"{schema_path} differs from the locked schema:")
    for difference in differences:
        click.echo(f"  {difference.kind:<9} {difference}")


def _shown(value: int | None) -> str:
    return "?" if value is None else str(value)


@dataset.command("rm")
@click.argument("name", metavar="DATASET")
@click.option(
    "-y", "--yes", is_flag=True, help="Delete without asking (needed without a terminal)."
)
@connection_options
@json_option
def dataset_rm(name: str, yes: bool, as_json: bool, **connection: Any) -> None:
    """Delete a dataset and every file in it.

    Says what it holds and asks first, unless --yes; without a terminal to ask on,
    it refuses (exit 2) unless --yes. A manifest that sent files to it is stale
    afterwards: upload again with a new --manifest.

    \b
    Example:
      batchload dataset rm equity_signals --yes
    """
    from batchload.send.datasets import delete_dataset, show_dataset

    config = connection_config(**connection)

    async def show(sender: Sender) -> tuple[DatasetDetail, dict[str, Any]]:
        return await show_dataset(sender, name)

    detail, _ = _with_client(config, show)
    label = detail.info.label()
    holds = f"{detail.file_count} file(s), {_shown(detail.rows)} rows"
    if not _ask(
        f"dataset {label} ({holds})",
        f"dataset {label} holds {holds}",
        f"Delete dataset {label} and all its files?",
        yes=yes,
        hint="pass --yes to delete it",
    ):
        output().info("nothing deleted")
        sys.exit(1)

    async def delete(sender: Sender) -> None:
        await delete_dataset(sender, detail.info.id)

    _with_client(config, delete)
    if as_json:
        print_json({"dataset": _dataset_json(detail.info), "deleted": True})
    click.echo(f"deleted dataset {label} and its {holds}", err=True)
