"""``batchload schema infer|show|diff`` and ``batchload validate``: contracts and checking files.

Only click and the standard library are imported at the top: polars, pandera and
aiohttp load when a command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchload.cli.common import (
    endpoint_option,
    json_option,
    output,
    print_json,
    require_contracts,
    schema_option,
    sheet_options,
    token_file_option,
)
from batchload.summary import drift_groups, drift_line

if TYPE_CHECKING:
    from batchload.check.verdict import FileVerdict
    from batchload.contract.model import Contract

#: Files handed to one validate_files call (one pandera call per layout within it).
VALIDATE_BATCH_FILES = 500


@click.group()
def schema() -> None:
    """Contracts: infer one from sample files, show it, compare it with a dataset.

    A contract is a pandera polars schema in YAML, one file per dataset in schemas/.

    \b
    Examples:
      batchload schema infer data/2024-01-*.csv --name equity_signals -o schemas/equity_signals.yaml
      batchload schema show schemas/equity_signals.yaml
      batchload schema diff schemas/equity_signals.yaml --dataset-id ds-123
    """


@schema.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--name", required=True, help="Dataset name written into the contract.")
@click.option(
    "-o",
    "--output",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the contract here (default: print it on stdout).",
)
@sheet_options
@json_option
def infer(  # noqa: PLR0917  (click passes each option as an argument)
    files: tuple[str, ...],
    name: str,
    out_path: Path | None,
    sheet: str | None,
    header_row: int | None,
    as_json: bool,
) -> None:
    """Infer a contract from sample files: ordered columns, dtypes, nullability.

    Columns with no null in any sample are written `nullable: false`; no value
    checks are written (add them). When the samples disagree (a column empty in one
    file, ints in one and floats in another, moved or missing columns) each
    disagreement is reported, the widest type is written, and the exit code is 1.

    \b
    Example:
      batchload schema infer data/2024-01-*.csv --name equity_signals -o schemas/equity_signals.yaml
    """
    from batchload.errors import UsageError
    from batchload.read.discover import discover

    found = discover(files)  # (only stat: a mistyped path answers before polars loads)
    if found.rejected:
        raise UsageError(f"{found.rejected[0].path}: {found.rejected[0].reason}")
    from batchload.contract.infer import infer_contract
    from batchload.contract.model import contract_to_yaml, dump_contract
    from batchload.contract.reading import SheetChoice
    from batchload.read.frames import read_samples

    out = output()
    choice = SheetChoice(sheet=sheet, header_row=header_row)
    samples = read_samples([f.path for f in found.files], sheet=choice)
    contract, drift = infer_contract(samples, name)
    if out_path is not None:
        dump_contract(contract, out_path)
    if as_json:
        print_json(
            {
                "path": str(out_path) if out_path else None,
                "contract": contract.describe(),
                "drift": [d.to_dict() for d in drift],
            }
        )
    elif out_path is None:
        click.echo(contract_to_yaml(contract), nl=False)
    for finding in drift:
        out.info(f"drift: {finding}")
    if out_path is not None:
        out.info(
            f"wrote {out_path}: {len(contract.columns)} columns from {len(found.files)} file(s)"
        )
    if drift:
        out.info(f"the samples disagree in {len(drift)} way(s): review the contract")
        sys.exit(1)


@schema.command()
@click.argument("path", type=click.Path(path_type=Path))
@json_option
def show(path: Path, as_json: bool) -> None:
    """Show a contract: dataset, columns with dtype, Arrow type, nullability and checks.

    \b
    Example:
      batchload schema show schemas/equity_signals.yaml
    """
    require_contracts(path)
    from batchload.contract.model import load_contract

    contract = load_contract(path)
    if as_json:
        print_json(contract.describe())
        return
    click.echo(_describe_text(contract))


def _describe_text(contract: Contract) -> str:
    info = contract.describe()
    lines = [
        f"contract    {info['path']}",
        f"dataset     {info['dataset']}",
        f"fingerprint {info['fingerprint']}",
        f"unique      {', '.join(info['unique']) or '(none)'}",
        "",
    ]
    rows = [("column", "dtype", "sent as", "nulls", "checks")]
    rows += [
        (
            c["name"],
            c["dtype"],
            c["type"],
            "yes" if c["nullable"] else "no",
            "; ".join(c["checks"]) or "-",
        )
        for c in info["columns"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines)


@schema.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--dataset-id", required=True, metavar="ID", help="The dataset to compare with.")
@endpoint_option
@token_file_option
@json_option
def diff(
    path: Path, dataset_id: str, endpoint: str | None, token_file: Path | None, as_json: bool
) -> None:
    """Compare a contract with a dataset's locked schema on the server.

    Lists, column by column, what is missing, extra, reordered or of another type.
    Exit 0 when they match, 1 when they differ, 2 for a bad contract or usage,
    3 when the token is refused, 4 when the service fails.

    \b
    Example:
      batchload schema diff schemas/equity_signals.yaml --dataset-id ds-123 \\
          --endpoint http://127.0.0.1:8765
    """
    require_contracts(path)
    import anyio

    from batchload.config import client_config
    from batchload.contract.model import diff_locked, load_contract
    from batchload.errors import ServiceError, UsageError
    from batchload.send.transport import IngestionClient

    contract = load_contract(path)
    config = client_config(endpoint=endpoint, token_file=token_file)

    async def fetch() -> dict[str, Any] | None:
        async with IngestionClient(config) as client:
            return await client.get_dataset(dataset_id)

    dataset = anyio.run(fetch)
    if dataset is None:
        raise UsageError(f"no dataset {dataset_id!r} at {config.endpoint}")
    locked = dataset.get("schema")
    if not isinstance(locked, list) or not all(isinstance(c, dict) for c in locked):
        raise ServiceError(f"dataset {dataset_id!r} came back without a schema list")
    differences = diff_locked(contract, locked)
    if as_json:
        print_json(
            {
                "contract": str(path),
                "dataset_id": dataset_id,
                "dataset": dataset.get("name"),
                "matches": not differences,
                "differences": [d.to_dict() for d in differences],
            }
        )
    elif differences:
        click.echo(f"{path} differs from dataset {dataset_id} ({dataset.get('name')}):")
        for difference in differences:
            click.echo(f"  {difference.kind:<9} {difference}")
    else:
        click.echo(f"{path} matches dataset {dataset_id} ({dataset.get('name')})")
    if differences:
        sys.exit(1)


@click.command()
@click.argument("files", nargs=-1, required=True)
@schema_option
@sheet_options
@json_option
def validate(
    files: tuple[str, ...],
    schema_path: Path,
    sheet: str | None,
    header_row: int | None,
    as_json: bool,
) -> None:
    """Validate files against a contract before anything is sent.

    Reads each file with the contract's types, as it would be sent (CSV as the API
    parses it, parquet, xlsx/xls cells cast strictly), runs the pandera checks
    collecting every failure, checks the
    contract's unique key across all the files, and prints per file: valid, or
    invalid with a capped summary (column, check, failing rows, the first rows and
    values; rows are data rows, 1 = the first row under the header, but a workbook's
    are its sheet rows, as the spreadsheet shows them). Exit 0 when
    all are valid, 1 when some are invalid or unreadable, 2 for usage or contract
    errors (including no file matched).

    \b
    Examples:
      batchload validate 'data/*.csv' --schema schemas/equity_signals.yaml
      batchload validate prices.xlsx --sheet Daily --header-row 3 \\
        --schema schemas/market_prices.yaml
    """
    require_contracts(schema_path)
    from batchload.read.discover import discover

    found = discover(files)  # (only stat: a mistyped path answers before polars loads)
    from batchload.check.crossfile import UniqueKeys
    from batchload.check.validate import validate_files
    from batchload.check.verdict import FileVerdict, group_by_fingerprint
    from batchload.contract.model import load_contract
    from batchload.contract.reading import SheetChoice

    choice = SheetChoice(sheet=sheet, header_row=header_row)
    contract = load_contract(schema_path)
    keys = UniqueKeys.for_contract(contract)
    verdicts: list[FileVerdict] = [
        FileVerdict(path=Path(r.path), status="unreadable", error=r.reason) for r in found.rejected
    ]
    paths = [f.path for f in found.files]
    for start in range(0, len(paths), VALIDATE_BATCH_FILES):
        batch = paths[start : start + VALIDATE_BATCH_FILES]
        verdicts.extend(validate_files(batch, contract, sheet=choice, keys=keys))
    verdicts.sort(key=lambda v: str(v.path))
    layouts = group_by_fingerprint(verdicts, contract)
    drift = drift_groups(_messages(verdicts))
    counts = {
        status: sum(v.status == status for v in verdicts)
        for status in ("valid", "invalid", "unreadable")
    }
    if as_json:
        print_json(
            {
                "schema": str(schema_path),
                "dataset": contract.dataset_name,
                "fingerprint": contract.fingerprint,
                "files": [v.to_dict() for v in verdicts],
                "layouts": [g.to_dict() for g in layouts],
                "drift": [{"problem": m, "files": n} for m, n in drift],
                "ignored": [{"path": r.path, "reason": r.reason} for r in found.ignored],
                "summary": {"files": len(verdicts), **counts},
            }
        )
    else:
        click.echo(_verdicts_text(verdicts, layouts, contract, quiet=output().quiet))
        if drift:
            click.echo(drift_line(_messages(verdicts)))
        for ignored in found.ignored:
            click.echo(f"ignored: {ignored.path}: {ignored.reason}", err=True)
        if found.unmatched:
            output().info(f"matched nothing: {', '.join(found.unmatched)}")
    if counts["invalid"] or counts["unreadable"]:
        sys.exit(1)


def _messages(verdicts: list[FileVerdict]) -> list[list[str]]:
    return [[p.message for p in v.problems] for v in verdicts]


def _verdicts_text(
    verdicts: list[FileVerdict], layouts: list[Any], contract: Contract, *, quiet: bool
) -> str:
    """Each file's verdict (with ``quiet``, only the files with problems), then the totals."""
    lines: list[str] = []
    for verdict in verdicts:
        if quiet and verdict.valid:
            continue
        lines.append(f"{verdict.path}: {verdict.reason}")
        if verdict.status == "invalid" and len(verdict.problems) + verdict.omitted > 1:
            # the reason line only counts them: list each one
            lines.extend(f"    {p.message}" for p in verdict.problems)
            if verdict.omitted:
                lines.append(f"    ... and {verdict.omitted} more problem(s)")
    if len(layouts) > 1:
        lines.append("")
        lines.append(f"the files have {len(layouts)} column layouts (unusual first):")
        for group in layouts:
            mark = "contract" if group.matches_contract else "differs"
            shown = ", ".join(str(p) for p in group.paths[:3])
            more = f" and {len(group.paths) - 3} more" if len(group.paths) > 3 else ""
            lines.append(f"  [{mark}] {len(group.paths)} file(s): {shown}{more}")
            if not group.matches_contract:
                lines.append(f"      columns: {', '.join(group.columns)}")
    total = len(verdicts)
    valid = sum(v.valid for v in verdicts)
    invalid = sum(v.status == "invalid" for v in verdicts)
    unreadable = total - valid - invalid
    lines.append("")
    lines.append(
        f"{total} file(s) against {contract.dataset_name}: {valid} valid, {invalid} invalid, "
        f"{unreadable} unreadable"
    )
    return "\n".join(lines)
