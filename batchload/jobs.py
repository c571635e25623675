"""Jobs and the work they make: the frozen plan of a run that every stage after prepare takes.

An :class:`UploadJob` is what a user asks (files, contract, dataset); prepare turns it
into a :class:`PreparedJob` with one :class:`Work` per file, the decisions already made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchload.contract.reading import SheetChoice
from batchload.errors import UsageError
from batchload.protocol import FileFormat
from batchload.read.content import Fingerprint
from batchload.read.discover import FileSet, SourceFile
from batchload.state.fileids import DEFAULT_TEMPLATE, FileIdTemplate
from batchload.state.records import DatasetRecord, FileRecord, Resume

if TYPE_CHECKING:
    from batchload.contract.model import Contract


#: Formats sent as parquet made from the validated frame, never as the file's bytes:
#: the API would guess a workbook's types (every number a double, dates timestamps),
#: so the parquet carries the contract's Arrow types instead.
SENT_AS_PARQUET: tuple[FileFormat, ...] = ("xls", "xlsx")


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadJob:
    """One dataset's share of a run: which files, checked against which contract, sent where."""

    files: tuple[str, ...]
    """Paths, folders and globs (``**`` recursive), relative to ``base``."""
    listed: tuple[str, ...] = ()
    """Paths taken literally, never as globs (``--files-from``), relative to ``base``."""
    include: tuple[str, ...] = ()
    """Globs that narrow what folders and globs select (see ``read.discover.Filters``)."""
    exclude: tuple[str, ...] = ()
    schema: Path
    """The contract file."""
    dataset: str | None = None
    """Dataset name; default: the contract's. Created by the first valid file if needed."""
    dataset_id: str | None = None
    """Add to this existing dataset instead of creating one."""
    file_id: str = DEFAULT_TEMPLATE
    sheet: str | None = None
    """A workbook's sheet (name or 1-based number); default: the contract's, else the first."""
    header_row: int | None = None
    """A workbook's header row, 1-based; default: the contract's, else the first filled row."""
    base: Path | None = None

    def __post_init__(self) -> None:
        FileIdTemplate(self.file_id)  # a bad template is refused before anything is read
        _ = self.sheet_choice  # so is a header row below 1
        if self.dataset and self.dataset_id:
            raise UsageError("give a dataset name or a dataset id, not both")
        if not (self.files or self.listed):
            raise UsageError("no files named", hint="give FILES, or --files-from LIST")

    @property
    def sheet_choice(self) -> SheetChoice:
        """The sheet and header row asked for (the contract's fill in what is unset)."""
        return SheetChoice(sheet=self.sheet, header_row=self.header_row)


@dataclass(frozen=True, slots=True)
class Work:
    """One file to read, validate and send."""

    job: int
    source: SourceFile
    file_id: str | None
    """None while it depends on the content (a ``{sha8}`` template), or when the file's
    name cannot make one (checking refuses the file with the reason)."""
    decision: Resume
    previous: tuple[FileRecord, ...]
    """The file's rows from earlier runs (to re-check a hash, and to clean up old parts)."""
    split: bool
    """Its request would exceed the limit: it is sent in parts."""
    convert: bool = False
    """Sent as parquet from its validated frame: a workbook (see SENT_AS_PARQUET) and a
    parquet file with a column of Arrow type ``null`` (sent with the contract's type).
    (A compressed CSV is sent as its text, decompressed once checked.)"""
    read: Fingerprint | str | None = None
    """An object read into the run's spool (its source then names the copy): the
    fingerprint of the bytes read, or why it could not be read. None for a local file,
    and for an object not read yet."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedJob:
    """A job with its contract loaded, its files found and its work decided."""

    index: int
    job: UploadJob
    name: str
    contract: Contract
    template: FileIdTemplate
    file_set: FileSet
    work: tuple[Work, ...]
    skipped: tuple[SourceFile, ...]
    record: DatasetRecord | None
    owners: Mapping[str, str] = field(default_factory=dict)
    """file_id -> source path for every id the manifest holds for this dataset, and the
    ids this run plans for its files."""
    recorded: Mapping[str, str] = field(default_factory=dict)
    """file_id -> source path for every id the manifest holds for this dataset."""
    forget: tuple[tuple[str, str, int], ...] = ()
    """Rows of files that are gone and whose ids a new file takes over."""
    taken_over: Mapping[str, str] = field(default_factory=dict)
    """file_id -> the gone source it was sent from, for the ids a new file takes over: the
    service holds them from this manifest, not from another source."""
    earlier_keys: tuple[tuple[str, int], ...] = ()
    """The dataset's files that earlier runs sent and this run does not send again
    (skipped, or only to be re-hashed), with how many unique-key hashes the manifest
    keeps for each: the cross-file check starts from those hashes. The same for every
    job of one dataset."""

    @property
    def convert_options(self) -> dict[str, object] | None:
        """What CSV bodies carry so the service parses exactly the validated values."""
        return self.contract.convert_options()
