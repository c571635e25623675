"""What validation says about a file: a :class:`FileVerdict` holding bounded :class:`Problem` s.

Both are small frozen dataclasses, JSON-ready through ``to_dict()``, so a verdict can
go into the manifest, a ``--json`` summary or a log line without a DataFrame in sight
(except the optional ``frame`` a caller asked to keep). Rows are 1-based **data row**
numbers: row 1 is the first row under the header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from batchload.contract.model import Contract

if TYPE_CHECKING:
    import polars as pl

    from batchload.state.records import KeyHashes

__all__ = [
    "MAX_EXAMPLES",
    "MAX_PROBLEMS",
    "FileVerdict",
    "FingerprintGroup",
    "Problem",
    "Status",
    "group_by_fingerprint",
    "with_problem",
]

#: Rows and values shown per problem (the count is always complete).
MAX_EXAMPLES = 5
#: Problems kept per file; the rest are counted in ``FileVerdict.omitted``.
MAX_PROBLEMS = 20

Status = Literal["valid", "invalid", "unreadable"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One failed check in one file: which, where, how many rows, and a few examples."""

    check: (
        str  # pandera's check name, e.g. "in_range(-1, 1)", "not_nullable", "column_in_dataframe"
    )
    column: str | None  # None for a check on the whole file
    count: int  # failing rows; 0 when the problem is the file's shape (a missing column)
    rows: tuple[int, ...] = ()  # first few 1-based data rows
    values: tuple[str, ...] = ()  # their values, shortened
    detail: str | None = None  # e.g. the file that already holds a repeated key

    @property
    def message(self) -> str:
        """One line for a person."""
        check, column = self.check, self.column
        if check == "column_in_dataframe":
            text = f"column {column!r} is missing"
        elif check == "column_in_schema":
            text = f"unexpected column {column!r}"
        elif check == "column_ordered":
            text = f"columns are out of order at {column!r}"
        elif check.startswith("dtype("):
            text = f"column {column!r} is {self.values[0] if self.values else '?'}, expected "
            text += check[len("dtype(") : -1].strip("'")
            return text
        elif check == "no_rows":
            text = "no data rows (header only)"
        elif check == "unique_across_files":
            text = f"{self.count} row(s) repeat a ({column}) key"
        elif check == "multiple_fields_uniqueness":
            text = f"{self.count} row(s) share a ({column}) key with another row"
        elif check == "field_uniqueness":
            text = f"{column}: {self.count} duplicate value(s)"
        elif check == "not_nullable":
            text = f"{column}: {self.count} null value(s)"
        elif check.startswith("parses_as("):
            text = f"{column}: {self.count} value(s) are not {check[len('parses_as(') : -1]}"
        else:
            where = f"{column}: " if column else ""
            text = f"{where}{check} failed on {self.count} row(s)"
        if self.rows:
            examples = ", ".join(
                f"{r}: {v}" if v is not None else str(r)
                for r, v in zip(self.rows, self.values or (None,) * len(self.rows), strict=False)
            )
            text += f" (rows {examples})" if check != "not_nullable" else f" (rows {_rows(self)})"
        if self.detail:
            text += f"; {self.detail}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "check": self.check,
            "count": self.count,
            "rows": list(self.rows),
            "values": list(self.values),
            "detail": self.detail,
            "message": self.message,
        }


def _label(problem: Problem) -> str:
    """Where a problem is, in a word or two: a column, ``unique key``, ``no rows``."""
    if problem.check in ("multiple_fields_uniqueness", "unique_across_files"):
        return "unique key"
    if problem.check == "no_rows":
        return "no rows"
    return problem.column or problem.check


def _rows(problem: Problem) -> str:
    return ", ".join(str(r) for r in problem.rows)


@dataclass(frozen=True)
class FileVerdict:
    """The outcome of reading and validating one file."""

    path: Path
    status: Status
    rows: int | None = None  # data rows read; None when unreadable
    problems: tuple[Problem, ...] = ()
    omitted: int = 0  # problems beyond MAX_PROBLEMS, not listed
    error: str | None = None  # why an unreadable file could not be read
    fingerprint: str | None = None  # of the columns as read (see contract.schema_fingerprint)
    columns: tuple[str, ...] = field(default=(), repr=False)  # "name: type" as read
    frame: pl.DataFrame | None = field(default=None, repr=False, compare=False)
    key_hashes: KeyHashes | None = field(default=None, repr=False, compare=False)
    """A valid file's unique-key hashes, when asked for (to record in the manifest)."""

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    @property
    def reason(self) -> str:
        """One line: ``valid (200 rows)``, ``invalid: ...``, ``unreadable: ...``."""
        if self.status == "valid":
            return f"valid ({self.rows} row{'' if self.rows == 1 else 's'})"
        if self.status == "unreadable":
            return f"unreadable: {self.error}"
        total = len(self.problems) + self.omitted
        if total == 1:
            line = f"invalid: {self.problems[0].message}"
        else:
            labels = list(dict.fromkeys(_label(p) for p in self.problems))
            shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
            line = f"invalid: {total} problems ({shown})"
        return line if len(line) <= 300 else line[:299] + "…"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "status": self.status,
            "valid": self.valid,
            "rows": self.rows,
            "reason": self.reason,
            "problems": [p.to_dict() for p in self.problems],
            "omitted_problems": self.omitted,
            "fingerprint": self.fingerprint,
        }


def with_problem(verdict: FileVerdict, problem: Problem) -> FileVerdict:
    """A copy of ``verdict`` made invalid by one more problem (for checks made by callers)."""
    problems = (*verdict.problems, problem)
    return replace(verdict, status="invalid", problems=problems[:MAX_PROBLEMS], frame=None)


@dataclass(frozen=True, slots=True)
class FingerprintGroup:
    """Files that read with the same ordered column names and types."""

    fingerprint: str
    matches_contract: bool
    columns: tuple[str, ...]
    paths: tuple[Path, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "matches_contract": self.matches_contract,
            "columns": list(self.columns),
            "paths": [str(p) for p in self.paths],
        }


def group_by_fingerprint(
    verdicts: Iterable[FileVerdict], contract: Contract
) -> list[FingerprintGroup]:
    """Files grouped by column layout as read: layouts unlike the contract's first, rarest first."""
    groups: dict[str, tuple[tuple[str, ...], list[Path]]] = {}
    for verdict in verdicts:
        if verdict.fingerprint is None:
            continue
        groups.setdefault(verdict.fingerprint, (verdict.columns, []))[1].append(verdict.path)
    result = [
        FingerprintGroup(fp, fp == contract.fingerprint, columns, tuple(paths))
        for fp, (columns, paths) in groups.items()
    ]
    result.sort(key=lambda g: (g.matches_contract, len(g.paths)))
    return result
