"""Plans for ``batchload run PLAN``: several uploads, possibly to several datasets, in a TOML file.

TOML because a plan is written by people: comments, globs, one block per dataset::

    # backfill.toml -- paths are relative to this file
    [run]                       # optional; command-line flags win
    concurrency = 8
    max_request_mb = 5
    manifest = ".batchload/manifests/backfill.sqlite"

    [[upload]]
    schema = "schemas/equity_signals.yaml"   # the contract (required)
    files = ["data/signals/*.csv"]           # paths, folders or globs (required)
    # include = ["*.csv"]                    # optional: narrow folders and globs
    # exclude = ["archive"]                  #   (see batchload upload --help)
    dataset = "equity_signals"               # optional: default the contract's name
    # dataset_id = "..."                     # optional: add to an existing dataset
    # file_id = "{stem}"                     # optional template
    # sheet = "Sheet1"                       # optional, Excel files: name or number
    # header_row = 3                         # optional, Excel files: 1-based, as shown

    [[upload]]
    schema = "schemas/market_prices.yaml"
    files = ["data/prices/**/*.parquet"]

Unknown keys are refused (a typo must not silently change a run). ``sheet`` and
``header_row`` win over the contract's ``metadata.batchload``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchload.errors import UsageError
from batchload.jobs import UploadJob
from batchload.state.fileids import DEFAULT_TEMPLATE

_UPLOAD_KEYS = frozenset(
    {
        "schema",
        "files",
        "dataset",
        "dataset_id",
        "file_id",
        "sheet",
        "header_row",
        "include",
        "exclude",
    }
)
_RUN_KEYS = frozenset({"concurrency", "max_request_mb", "manifest"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A parsed plan: its jobs, and the run settings it asks for."""

    path: Path
    jobs: tuple[UploadJob, ...]
    concurrency: int | None = None
    max_request_mb: float | None = None
    manifest: Path | None = None


def load_plan(path: Path) -> Plan:
    """Read and check a TOML plan; every mistake is a UsageError naming the plan."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such plan: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read plan {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"plan {path} is not valid TOML: {exc}") from None
    base = path.parent.resolve()
    extra = set(document) - {"run", "upload"}
    if extra:
        raise UsageError(f"plan {path}: unknown table(s) {', '.join(sorted(extra))}")
    run = _table(document.get("run", {}), _RUN_KEYS, path, "[run]")
    uploads = document.get("upload")
    if not isinstance(uploads, list) or not uploads:
        raise UsageError(f"plan {path} has no [[upload]] blocks", hint="see batchload run --help")
    jobs = tuple(
        _job(_table(u, _UPLOAD_KEYS, path, f"[[upload]] #{i + 1}"), base, path, i)
        for i, u in enumerate(uploads)
    )
    manifest = run.get("manifest")
    return Plan(
        path=path,
        jobs=jobs,
        concurrency=_typed(run, "concurrency", int, path),
        max_request_mb=_typed(run, "max_request_mb", (int, float), path),
        manifest=(base / manifest) if isinstance(manifest, str) else None,
    )


def _table(value: Any, allowed: frozenset[str], path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"plan {path}: {where} must be a table")
    unknown = set(value) - allowed
    if unknown:
        raise UsageError(
            f"plan {path}: {where} has unknown key(s) {', '.join(sorted(unknown))}",
            hint=f"allowed: {', '.join(sorted(allowed))}",
        )
    return value


def _typed(table: dict[str, Any], key: str, kind: Any, path: Path) -> Any:
    value = table.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise UsageError(f"plan {path}: {key} must be a number")
    return value


def _job(block: dict[str, Any], base: Path, path: Path, index: int) -> UploadJob:
    where = f"plan {path}: [[upload]] #{index + 1}"
    schema, files = block.get("schema"), block.get("files")
    if not isinstance(schema, str) or not schema:
        raise UsageError(f'{where} needs schema = "PATH" (the contract)')
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise UsageError(f'{where} needs files = ["PATH or GLOB", ...]')
    for key in ("dataset", "dataset_id", "file_id", "sheet"):
        if key in block and not isinstance(block[key], str):
            raise UsageError(f"{where}: {key} must be a string")
    header_row = block.get("header_row")
    if header_row is not None and (
        isinstance(header_row, bool) or not isinstance(header_row, int) or header_row < 1
    ):
        raise UsageError(f"{where}: header_row must be a row number (1 is the first row)")
    filters = {key: block.get(key, []) for key in ("include", "exclude")}
    for key, value in filters.items():
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f'{where}: {key} must be a list of globs, e.g. ["*.csv"]')
    if block.get("dataset") and block.get("dataset_id"):
        raise UsageError(f"{where}: give dataset or dataset_id, not both")
    return UploadJob(
        files=tuple(files),
        include=tuple(filters["include"]),
        exclude=tuple(filters["exclude"]),
        schema=base / schema,
        dataset=block.get("dataset"),
        dataset_id=block.get("dataset_id"),
        file_id=block.get("file_id", DEFAULT_TEMPLATE),
        sheet=block.get("sheet"),
        header_row=header_row,
        base=base,
    )
