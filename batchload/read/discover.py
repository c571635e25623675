"""Discover: expand FILE_OR_GLOB arguments into a sorted, de-duplicated file set.

A path named explicitly always gets an answer: it is in the file set, or it is
*rejected* with a reason (missing, a directory, an unknown extension, unreadable).
A glob only selects: the files with unknown extensions it happens to match are
*ignored*, not rejected, so ``data/*`` beside a README still works, but each is
listed with its reason (never dropped silently); directories are passed over.
Compressed CSVs (``.csv.gz``, ``.csv.zst``, ``.csv.bz2``) are CSV files. Files
are identified by their real path, so ``a.csv``, ``./a.csv`` and a symlink to it are
one file. Nothing here reads a file's content; only ``stat`` is called. A ``**`` goes
down real directories only, never through a symbolic link to a directory, so a link
that loops back (``data/again -> ..``) cannot make a glob endless.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from batchload.errors import UsageError
from batchload.protocol import SUFFIX_FORMATS, FileFormat

_GLOB_CHARS = frozenset("*?[")

#: Compression suffixes read after ``.csv`` (pyarrow's codec names): such a file is
#: decompressed to read it, and sent as the CSV text it holds.
CSV_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}
_KNOWN = ", ".join([*sorted(SUFFIX_FORMATS), *(f".csv{s}" for s in CSV_COMPRESSIONS)])
_MAX_REASONS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file to upload, as ``stat`` saw it when discovered."""

    path: Path
    """Absolute real path (symlinks resolved): the file's identity in the manifest."""
    size: int
    mtime_ns: int
    file_format: FileFormat

    @property
    def stem(self) -> str:
        """The file name without its extension."""
        return self.path.stem

    @property
    def name(self) -> str:
        """The file name with its extension."""
        return self.path.name


@dataclass(frozen=True, slots=True)
class Rejected:
    """A path that was named but cannot be uploaded, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class FileSet:
    """What discovery found: files to upload, paths rejected, and glob matches ignored."""

    files: tuple[SourceFile, ...]
    rejected: tuple[Rejected, ...] = ()
    ignored: tuple[Rejected, ...] = ()
    """Files a glob matched that batchload does not read, each with the reason."""
    unmatched: tuple[str, ...] = ()
    """Globs that matched nothing at all."""

    @property
    def total_bytes(self) -> int:
        """Total size of the files in the set."""
        return sum(f.size for f in self.files)


def file_format_of(path: Path | str) -> FileFormat | None:
    """The file_format a name's suffix says (case-insensitive), or None."""
    name = os.path.basename(path).lower()
    if csv_compression(name):
        return "csv"
    return SUFFIX_FORMATS.get(os.path.splitext(name)[1])


def csv_compression(path: Path | str) -> str | None:
    """The codec of a compressed CSV (``data.csv.gz`` -> ``gzip``), or None."""
    stem, suffix = os.path.splitext(os.path.basename(path).lower())
    return CSV_COMPRESSIONS.get(suffix) if stem.endswith(".csv") else None


def _is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


class _Examiner:
    """Turns matched paths into SourceFiles with as few system calls as it can.

    A plain file costs one ``lstat`` (and an access check); its real path is its
    directory's real path, resolved once per directory, plus its name. Only a
    symbolic link is followed and resolved on its own.
    """

    def __init__(self) -> None:
        self._real_dirs: dict[str, str] = {}

    def __call__(self, path: str) -> SourceFile | str:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return "no such file"
        except OSError as exc:
            return f"cannot stat: {exc.strerror or exc}"
        if stat.S_ISLNK(st.st_mode):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return "broken symbolic link"
            except OSError as exc:
                return f"cannot stat: {exc.strerror or exc}"
            if stat.S_ISDIR(st.st_mode):
                return f"is a symbolic link to a directory; {_DIRECTORY_HINT}"
            real = os.path.realpath(path)
        elif stat.S_ISDIR(st.st_mode):
            return f"is a directory; {_DIRECTORY_HINT}"
        else:
            head, name = os.path.split(path)
            real_dir = self._real_dirs.get(head)
            if real_dir is None:
                real_dir = self._real_dirs[head] = os.path.realpath(head)
            real = os.path.join(real_dir, name)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        file_format = file_format_of(path)
        if file_format is None:
            suffix = os.path.splitext(path)[1]
            return f"unknown extension {suffix or '(none)'}; expected one of {_KNOWN}"
        if not os.access(path, os.R_OK):
            return "not readable: permission denied"
        return SourceFile(
            path=Path(real), size=st.st_size, mtime_ns=st.st_mtime_ns, file_format=file_format
        )


_DIRECTORY_HINT = "name its files or use a glob such as DIR/*.csv"


def discover(
    patterns: Iterable[str | Path], *, base: Path | None = None, require: bool = True
) -> FileSet:
    """Expand paths and globs (``**`` recursive) relative to ``base`` into a :class:`FileSet`.

    With ``require`` (the default), a set with no uploadable file at all is a
    :class:`~batchload.errors.UsageError` that says why.
    """
    root = base or Path.cwd()
    examine = _Examiner()
    found: dict[Path, SourceFile] = {}
    rejected: dict[str, Rejected] = {}
    unmatched: list[str] = []
    ignored: dict[str, Rejected] = {}
    for pattern in patterns:
        text = os.path.expanduser(str(pattern))
        full = text if os.path.isabs(text) else os.path.join(root, text)
        if not _is_glob(text):
            result = examine(full)
            if isinstance(result, SourceFile):
                found.setdefault(result.path, result)
            else:
                rejected.setdefault(text, Rejected(path=text, reason=result))
            continue
        matches = _glob(full)
        if not matches:
            unmatched.append(text)
        for match in matches:
            result = examine(match)
            if isinstance(result, SourceFile):
                found.setdefault(result.path, result)
            elif not result.startswith("is a "):  # a directory is not a file passed over
                ignored.setdefault(match, Rejected(path=match, reason=result))
    files = tuple(sorted(found.values(), key=lambda f: str(f.path)))
    file_set = FileSet(
        files=files,
        rejected=tuple(sorted(rejected.values(), key=lambda r: r.path)),
        ignored=tuple(sorted(ignored.values(), key=lambda r: r.path)),
        unmatched=tuple(unmatched),
    )
    if require and not files:
        raise UsageError(
            _nothing_found(file_set),
            hint="check the paths; quote globs ('data/*.csv') so that batchload expands them",
        )
    return file_set


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that ``**`` follows no directory links."""
    if "**" not in pattern:
        return glob.glob(pattern)
    head, *parts = pattern.split(os.sep)
    return list(dict.fromkeys(_matches(head or os.sep, parts)))


def _matches(directory: str, parts: list[str]) -> Iterable[str]:
    """Paths under ``directory`` matching the components ``parts`` (glob's rules for hidden
    names: a wildcard matches a leading ``.`` only when the pattern starts with one)."""
    if not parts:
        yield directory
        return
    part, rest = parts[0], parts[1:]
    if part == "**" and not rest:  # everything below, as glob lists it
        yield os.path.join(directory, "")
        yield from _below(directory)
    elif part == "**":
        yield from _matches(directory, rest)  # zero directories
        for entry in _entries(directory):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                yield from _matches(entry.path, parts)
    elif glob.has_magic(part):
        for entry in _entries(directory):
            if fnmatch.fnmatchcase(entry.name, part) and (
                part.startswith(".") or not entry.name.startswith(".")
            ):
                yield from _matches(entry.path, rest)
    else:
        path = os.path.join(directory, part)
        if os.path.lexists(path):
            yield from _matches(path, rest)


def _below(directory: str) -> Iterable[str]:
    """Every entry under ``directory`` but hidden ones, through real directories only."""
    for entry in _entries(directory):
        if not entry.name.startswith("."):
            yield entry.path
            if entry.is_dir(follow_symlinks=False):
                yield from _below(entry.path)


def _entries(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError:  # not a directory, gone, or not readable: nothing matches below it
        return []


def _nothing_found(file_set: FileSet) -> str:
    reasons = [f"{r.path}: {r.reason}" for r in file_set.rejected[:_MAX_REASONS_SHOWN]]
    reasons += [f"{p}: matched no files" for p in file_set.unmatched[:_MAX_REASONS_SHOWN]]
    reasons += [f"{r.path}: {r.reason}" for r in file_set.ignored[:_MAX_REASONS_SHOWN]]
    return "no files matched" + (": " + "; ".join(reasons) if reasons else "")
