"""Discover: expand paths, folders and globs into a sorted, de-duplicated file set.

A path named explicitly (an argument, or a line of ``--files-from``, taken literally)
always gets an answer: it is in the file set, or it is *rejected* with a reason
(missing, an unknown extension, unreadable). A folder means every file under it,
recursively, except hidden files and folders and the manifest's own folder; a glob
(``**`` recursive) selects what it matches. What a folder or a glob happens to hold
that cannot be sent (other extensions, sub-folders a glob matched) is counted as
*ignored*, not rejected, so ``data/*`` beside a README still works; ``--include`` and
``--exclude`` narrow what folders and globs select (see :class:`Filters`). Files are
identified by their real path, so ``a.csv``, ``./a.csv`` and a symlink to it are one
file. Compressed CSVs (``.csv.gz``, ``.csv.zst``, ``.csv.bz2``) are CSV files. Nothing
here reads a file's content; only ``stat`` is called. Neither a ``**`` nor a folder walk
goes through a symbolic link to a directory, so a link that loops back
(``data/again -> ..``) cannot make discovery endless.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from batchload.errors import UsageError
from batchload.protocol import SUFFIX_FORMATS, FileFormat
from batchload.read import objects

_GLOB_CHARS = frozenset("*?[")

#: Compression suffixes read after ``.csv`` (pyarrow's codec names): such a file is
#: decompressed to read it, and sent as the CSV text it holds.
CSV_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}
_KNOWN = ", ".join([*sorted(SUFFIX_FORMATS), *(f".csv{s}" for s in CSV_COMPRESSIONS)])
_MAX_REASONS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file to upload, as ``stat`` (or an object listing) saw it when discovered."""

    path: Path
    """Absolute real path (symlinks resolved). For an object: its key until it is read,
    then the copy the check stage read it into (see :mod:`batchload.read.objects`)."""
    size: int
    mtime_ns: int
    file_format: FileFormat
    url: str | None = None
    """An object's URL (``s3://bucket/key``); None for a local file."""
    etag: str | None = None
    """The object's ETag as listed (or as read, once read): what its reads are pinned to."""
    version: str | None = None

    @property
    def key(self) -> str:
        """The file's identity in the manifest and in messages: its URL or its path."""
        return self.url or str(self.path)

    @property
    def stem(self) -> str:
        """The file name without its extension (an object's: its key's last segment's)."""
        return PurePosixPath(self.url).stem if self.url else self.path.stem

    @property
    def name(self) -> str:
        """The file name with its extension."""
        return PurePosixPath(self.url).name if self.url else self.path.name


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


def file_list(lines: Iterable[str]) -> tuple[str, ...]:
    """The entries of a ``--files-from`` list: one path or URL a line; blank lines and
    lines starting with ``#`` are skipped, surrounding whitespace is not part of a name."""
    entries = (line.strip() for line in lines)
    return tuple(e for e in entries if e and not e.startswith("#"))


def _is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


@dataclass(frozen=True, slots=True)
class Filters:
    """``--include`` / ``--exclude`` globs that narrow what folders and globs select.

    A pattern without ``/`` is matched against a file's name (``*.csv``); one with
    ``/`` against its path below the folder named, or below the current folder for a
    glob's matches (``2023/*``: ``*`` crosses ``/`` here). A file is kept when it
    matches some include (or there is none) and no exclude; a folder an exclude
    matches is not entered. A file named explicitly is always taken.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def keeps(self, relative: str) -> bool:
        """Whether the file at ``relative`` (``/``-separated) is selected."""
        if self.include and not _matches(self.include, relative):
            return False
        return not _matches(self.exclude, relative)

    def prunes(self, relative: str) -> bool:
        """Whether the folder at ``relative`` is excluded whole."""
        return _matches(self.exclude, relative)


def _matches(patterns: tuple[str, ...], relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relative if "/" in p else name, p.strip("/")) for p in patterns)


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
                return _FOLDER
            real = os.path.realpath(path)
        elif stat.S_ISDIR(st.st_mode):
            return _FOLDER
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
            return _unknown_extension(path)
        if not os.access(path, os.R_OK):
            return "not readable: permission denied"
        return SourceFile(
            path=Path(real), size=st.st_size, mtime_ns=st.st_mtime_ns, file_format=file_format
        )


_FOLDER = "is a folder"
"""What the examiner says of a folder (or a link to one): a named one is walked."""


def discover(
    patterns: Iterable[str | Path],
    *,
    base: Path | None = None,
    require: bool = True,
    listed: Iterable[str] = (),
    filters: Filters | None = None,
    skip: Iterable[Path] = (),
) -> FileSet:
    """Expand paths, folders and globs relative to ``base`` into a :class:`FileSet`.

    ``listed`` paths (``--files-from``) are taken literally, never as globs.
    ``skip`` folders (the manifest's) are not entered by a folder walk. With
    ``require`` (the default), a set with no uploadable file at all is a
    :class:`~batchload.errors.UsageError` that says why.
    """
    root = base or Path.cwd()
    walk = _Walk(
        examine=_Examiner(),
        filters=filters or Filters(),
        skip=frozenset(os.path.realpath(p) for p in skip),
    )
    for pattern in patterns:
        text = os.path.expanduser(str(pattern))
        if objects.is_url(text):
            walk.objects(text)
        elif _is_glob(text):
            walk.glob(text, os.path.join(root, text), str(root))
        else:
            walk.named(text, os.path.join(root, text))
    for line in listed:
        if objects.is_url(line):
            walk.object(line)
            continue
        text = os.path.expanduser(line)
        walk.named(text, os.path.join(root, text))
    files = tuple(sorted(walk.found.values(), key=lambda f: f.key))
    file_set = FileSet(
        files=files,
        rejected=tuple(sorted(walk.rejected.values(), key=lambda r: r.path)),
        ignored=tuple(sorted(walk.ignored.values(), key=lambda r: r.path)),
        unmatched=tuple(walk.unmatched),
    )
    if require and not files:
        raise UsageError(
            _nothing_found(file_set),
            hint="check the paths; quote globs ('data/*.csv') so that batchload expands them",
        )
    return file_set


def nothing_named_exists(
    patterns: Iterable[str | Path], *, listed: Iterable[str] = (), base: Path | None = None
) -> bool:
    """Whether every entry is a local path (no URL, no glob) and none exists: then
    :func:`discover` refuses them without walking anything, so a command can ask it
    before it loads what a run needs (a mistyped path answers at once)."""
    root = base or Path.cwd()
    named = [str(p) for p in patterns]
    entries = [*named, *listed]  # listed lines are taken literally: never globs
    return (
        bool(entries)
        and not any(objects.is_url(e) for e in entries)
        and not any(_is_glob(e) for e in named)
        and not any(os.path.lexists(os.path.join(root, os.path.expanduser(e))) for e in entries)
    )


@dataclass
class _Walk:
    """What discovery has found so far, and the three ways it finds more."""

    examine: _Examiner
    filters: Filters
    skip: frozenset[str]
    found: dict[str, SourceFile] = field(default_factory=dict)
    rejected: dict[str, Rejected] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    ignored: dict[str, Rejected] = field(default_factory=dict)

    def named(self, text: str, full: str) -> None:
        """A path named explicitly: a file, a folder to walk, or a reason."""
        result = self.examine(full)
        if result == _FOLDER:
            self.folder(text, full)
        elif isinstance(result, SourceFile):
            self.found.setdefault(result.key, result)
        else:
            self.rejected.setdefault(text, Rejected(path=text, reason=result))

    def glob(self, text: str, full: str, root: str) -> None:
        """A glob: what it matches, narrowed by the filters; the rest is ignored."""
        matches = _glob(full)
        if not matches:
            self.unmatched.append(text)
        narrowed = bool(self.filters.include or self.filters.exclude)
        for match in matches:
            # (relpath is a third of a resume's discovery: taken only when a filter asks)
            if narrowed and not self.filters.keeps(
                os.path.relpath(match, root).replace(os.sep, "/")
            ):
                continue  # left out as asked
            result = self.examine(match)
            if isinstance(result, SourceFile):
                self.found.setdefault(result.key, result)
            elif result != _FOLDER:  # a folder is not a file passed over
                self.ignore(match, result)

    def folder(self, text: str, full: str) -> None:
        """Every file under a named folder: hidden entries and skipped folders left out.

        A file with an uploadable extension that cannot be used (unreadable, a broken
        link) is rejected with its reason, not ignored: the folder asked for it.
        """
        before = len(self.found) + len(self.rejected)
        for relative, path in _files_under(full, self.filters, self.skip):
            if file_format_of(path) is None:
                self.ignore(path, _unknown_extension(path))
                continue
            result = self.examine(path)
            if isinstance(result, SourceFile):
                self.found.setdefault(result.key, result)
            elif result != _FOLDER:
                shown = os.path.join(text, relative)
                self.rejected.setdefault(shown, Rejected(path=shown, reason=result))
        if len(self.found) + len(self.rejected) == before:
            self.unmatched.append(text)

    def ignore(self, path: str, reason: str) -> None:
        """What a folder or a glob held that cannot be sent: said, with the reason."""
        self.ignored.setdefault(path, Rejected(path=path, reason=reason))

    def objects(self, url: str) -> None:
        """An object URL: one object, or what a glob or a ``.../`` prefix selects."""
        if not (objects.is_glob(url) or url.endswith("/")):
            self.object(url)
            return
        before = len(self.found)
        for meta in objects.list_matching(url, self.filters.keeps):
            source = _object_source(meta)
            if source is None:
                self.ignore(objects.redact(meta.url), _unknown_extension(meta.url))
            else:
                self.found.setdefault(source.key, source)
        if len(self.found) == before:
            self.unmatched.append(objects.redact(url))

    def object(self, url: str) -> None:
        """An object named explicitly: in the set, or rejected with the reason."""
        meta = objects.head(url)
        source = None if isinstance(meta, str) else _object_source(meta)
        if source is not None:
            self.found.setdefault(source.key, source)
            return
        reason = meta if isinstance(meta, str) else _unknown_extension(url)
        shown = objects.redact(url)
        self.rejected.setdefault(shown, Rejected(path=shown, reason=reason))


def _object_source(meta: objects.ObjectMeta) -> SourceFile | None:
    """The SourceFile of a listed object, or None when its name is not csv/parquet/xls(x)."""
    name = meta.url.rsplit("/", 1)[-1]
    file_format = file_format_of(name)
    if file_format is None:
        return None
    return SourceFile(
        path=Path(meta.url.split("://", 1)[1].split("/", 1)[-1]),
        size=meta.size,
        mtime_ns=meta.mtime_ns,
        file_format=file_format,
        url=meta.url,
        etag=meta.etag,
        version=meta.version,
    )


def _unknown_extension(name: str) -> str:
    suffix = os.path.splitext(name)[1]
    return f"unknown extension {suffix or '(none)'}; expected one of {_KNOWN}"


def _files_under(top: str, filters: Filters, skip: frozenset[str]) -> Iterator[tuple[str, str]]:
    """(path relative to ``top``, full path) of the files a folder walk selects, in order.

    Sub-folders are walked in name order, one listing at a time (a folder of a million
    files is one listing, not a million held twice); links to folders are not followed.
    """
    for current, dirs, names in os.walk(top):
        below = os.path.relpath(current, top)
        prefix = "" if below == "." else below.replace(os.sep, "/") + "/"
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and not filters.prunes(prefix + d)
            and os.path.realpath(os.path.join(current, d)) not in skip
        )
        for name in sorted(names):
            if not name.startswith(".") and filters.keeps(prefix + name):
                yield prefix + name, os.path.join(current, name)


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that ``**`` follows no directory links."""
    if "**" not in pattern:
        return glob.glob(pattern)
    head, *parts = pattern.split(os.sep)
    return list(dict.fromkeys(_glob_matches(head or os.sep, parts)))


def _glob_matches(directory: str, parts: list[str]) -> Iterable[str]:
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
        yield from _glob_matches(directory, rest)  # zero directories
        for entry in _entries(directory):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                yield from _glob_matches(entry.path, parts)
    elif glob.has_magic(part):
        for entry in _entries(directory):
            if fnmatch.fnmatchcase(entry.name, part) and (
                part.startswith(".") or not entry.name.startswith(".")
            ):
                yield from _glob_matches(entry.path, rest)
    else:
        path = os.path.join(directory, part)
        if os.path.lexists(path):
            yield from _glob_matches(path, rest)


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
