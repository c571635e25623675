"""How a contract says its files are read, and how its YAML itself is read.

- :class:`Reading`: the settings under ``metadata.batchload`` beside ``arrow_types``
  (extra CSV null spellings, a workbook's sheet and header row).
- :class:`SheetChoice`: a workbook's sheet and header row as a flag or a run plan
  says, over the contract's (flags over plan over contract).
- :class:`Yaml12Loader`: contracts are read with YAML 1.2 booleans, so a list of
  country codes ``[NO, SE]`` stays text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from batchload.errors import ContractError, UsageError

__all__ = [
    "FIRST_SHEET",
    "READING_KEYS",
    "Reading",
    "SheetChoice",
    "Yaml12Loader",
    "contract_text",
    "reading_from_metadata",
]


def contract_text(path: Path) -> str:
    """A contract file's text; a ContractError naming the file when it cannot be read.

    Cheap on purpose: the CLI asks it before loading pandera, so a mistyped ``--schema``
    answers at once."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(
            "no such contract file",
            path=path,
            hint="check --schema; `batchload schema infer FILES --name NAME -o PATH` writes one",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ContractError(f"cannot read the contract: {reason}", path=path) from None


#: The keys of :class:`Reading` under ``metadata.batchload``.
READING_KEYS = ("null_values", "sheet", "header_row")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """How a dataset's files are read, where a contract says (``metadata.batchload``).

    Flags (``--sheet``, ``--header-row``) and a plan's keys win over these.
    """

    null_values: tuple[str, ...] = ()
    """Texts that are null in a CSV besides the empty field (sent to the service too)."""
    sheet: str | None = None
    """A workbook's sheet: its name, or its 1-based position."""
    header_row: int | None = None
    """A workbook's header row, 1-based as the spreadsheet shows it."""

    def to_metadata(self) -> dict[str, Any]:
        """The keys to write under ``metadata.batchload`` (only those set)."""
        found = {
            "null_values": list(self.null_values) or None,
            "sheet": self.sheet,
            "header_row": self.header_row,
        }
        return {k: v for k, v in found.items() if v is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class SheetChoice:
    """Which sheet of a workbook is read and which row is its header, as ``--sheet`` and
    ``--header-row`` (or a run plan's ``sheet`` and ``header_row``) say.

    What is unset comes from the contract (:meth:`over`), else the first sheet, with
    its header in its first row that has a cell.
    """

    sheet: str | None = None
    """The sheet's name, or its 1-based position."""
    header_row: int | None = None
    """The header's row, 1-based as the spreadsheet shows it."""

    def __post_init__(self) -> None:
        if self.header_row is not None and self.header_row < 1:
            raise UsageError(f"header row {self.header_row}: rows count from 1")

    def over(self, reading: Reading) -> SheetChoice:
        """This choice, with what it leaves unset taken from a contract's ``reading``."""
        return SheetChoice(
            sheet=self.sheet if self.sheet is not None else reading.sheet,
            header_row=self.header_row if self.header_row is not None else reading.header_row,
        )


#: No choice made: the contract's, else the first sheet.
FIRST_SHEET = SheetChoice()


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: only ``true`` and ``false``.

    PyYAML resolves scalars as YAML 1.1, where ``NO``, ``ON``, ``yes`` and ``off`` are
    booleans: a contract listing country codes ``[NO, SE]`` would check for ``False``.
    """


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def reading_from_metadata(block: Any, path: Path | None) -> Reading:
    """The reading settings under ``metadata.batchload``; a ContractError if malformed."""
    block = block or {}
    where = "metadata.batchload"
    nulls = block.get("null_values") or []
    if not isinstance(nulls, list) or not all(isinstance(v, str) for v in nulls):
        raise ContractError(
            f"`{where}.null_values` must be a list of texts",
            path=path,
            hint='quote each: null_values: ["N/A", "NULL"]',
        )
    sheet = block.get("sheet")
    if sheet is not None and (isinstance(sheet, bool) or not isinstance(sheet, str | int)):
        raise ContractError(f"`{where}.sheet` must be a sheet name or number", path=path)
    header_row = block.get("header_row")
    if header_row is not None and (
        isinstance(header_row, bool) or not isinstance(header_row, int) or header_row < 1
    ):
        raise ContractError(
            f"`{where}.header_row` must be a row number (1 is the first row)", path=path
        )
    return Reading(
        null_values=tuple(nulls),
        sheet=None if sheet is None else str(sheet),
        header_row=header_row,
    )
