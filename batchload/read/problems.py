"""What cannot be read, said precisely: the bad cells of a column, the file that holds them.

Every reader (CSV, parquet, Excel) raises these, so a verdict names the same rows and
values whatever the format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from batchload.errors import UnreadableFile

#: Examples of bad cells kept per column (the count is always complete).
MAX_EXAMPLES = 5


#: Longest value quoted in a message, in characters.
MAX_VALUE_CHARS = 60


@dataclass(frozen=True, slots=True)
class BadCells:
    """Cells of one column that cannot be read as the contract's type."""

    column: str
    expected: str  # the Arrow type the column should hold
    count: int
    rows: tuple[int, ...]  # first few 1-based data rows
    values: tuple[str, ...]  # their text, shortened


class UnparseableValues(UnreadableFile):
    """Some cells cannot be parsed as the contract's types; ``cells`` says which."""

    def __init__(self, path: Path, cells: Sequence[BadCells]) -> None:
        first = cells[0]
        where = ", ".join(
            f"row {r}: {v!r}" for r, v in zip(first.rows[:2], first.values[:2], strict=False)
        )
        message = (
            f"{sum(c.count for c in cells)} value(s) cannot be read as the contract's types; "
            f"column {first.column!r} is {first.expected} ({where})"
        )
        super().__init__(message, path=path)
        self.cells = tuple(cells)


def shorten(value: object) -> str:
    """A value as one line of text, cut to MAX_VALUE_CHARS; control characters (a quoted
    newline, a NUL) are escaped, so a verdict never spans lines or hides bytes."""
    text = "null" if value is None else str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def check_readable(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise open_failure(path, exc) from None


def raise_unreadable(path: Path, what: str, exc: BaseException) -> NoReturn:
    lines = str(exc).strip().splitlines()
    raise UnreadableFile(f"{what}: {lines[0] if lines else type(exc).__name__}", path=path) from exc


def open_failure(path: Path, exc: OSError) -> UnreadableFile:
    if isinstance(exc, FileNotFoundError):
        return UnreadableFile("no such file", path=path)
    if isinstance(exc, IsADirectoryError):
        return UnreadableFile("is a directory, not a file", path=path)
    return UnreadableFile(f"cannot read: {exc.strerror or exc}", path=path)
